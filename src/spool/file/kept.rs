//! The file backend's kept attachments (see [`crate::spool::kept`]):
//! `kept/<id>.<index>`, one file per part, its first line the
//! [`KeptMeta`] as JSON, then the decoded bytes. Written like every
//! record (tmp, fsync, rename, fsync of the directory), so a reader sees
//! a whole file or none, and one still open while the part is kept again
//! reads the file it opened.

use std::io::{BufRead as _, ErrorKind, Write as _};
use std::path::PathBuf;

use super::{Spool, ignore_missing, sync_dir};
use crate::spool::kept::{Body, Kept, KeptMeta, KeptPart};
use crate::spool::{Result, blocking, is_message_id, new_id};

/// The directory under the spool root.
pub(super) const KEPT: &str = "kept";

/// A meta line longer than this is not one we wrote.
const MAX_META: u64 = 64 * 1024;

impl Spool {
    fn kept_path(&self, id: &str, index: usize) -> PathBuf {
        self.root.join(KEPT).join(format!("{id}.{index}"))
    }

    /// Keeps `parts` of message `id` until at least `expires` (unix s).
    pub async fn keep(&self, id: &str, parts: Vec<KeptPart>, expires: u64) -> Result<()> {
        let this = self.clone();
        let id = id.to_string();
        blocking(move || {
            for part in parts {
                let dest = this.kept_path(&id, part.index);
                let mut meta = part.meta;
                meta.expires = expires;
                if let Some(old) = read_meta(&dest)? {
                    if old.sha256 == meta.sha256 && old.expires >= expires {
                        continue;
                    }
                    meta.expires = meta.expires.max(old.expires);
                }
                let mut line = serde_json::to_vec(&meta).expect("meta serialises");
                line.push(b'\n');
                // Unique: two deliveries may keep the same part at once.
                let tmp =
                    this.root
                        .join("tmp")
                        .join(format!("kept-{id}.{}-{}", part.index, new_id()));
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&line)?;
                f.write_all(&part.bytes)?;
                if this.fsync {
                    f.sync_all()?;
                }
                std::fs::rename(&tmp, &dest)?;
            }
            sync_dir(&this.root.join(KEPT), this.fsync)
        })
        .await
    }

    /// Kept part `index` of message `id`, opened; `None` when there is none.
    pub async fn open_kept(&self, id: &str, index: usize) -> Result<Option<Kept>> {
        if !is_message_id(id) {
            return Ok(None);
        }
        let path = self.kept_path(id, index);
        blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut reader = std::io::BufReader::new(file);
            let Some((meta, offset)) = meta_line(&mut reader)? else {
                return Ok(None);
            };
            let file = reader.into_inner();
            Ok(Some(Kept {
                meta,
                body: Body::File {
                    file: tokio::fs::File::from_std(file),
                    offset,
                },
            }))
        })
        .await
    }

    /// Removes kept parts whose expiry is at or before `now` (unix s), and
    /// files that are not kept parts; returns how many.
    pub fn sweep_kept(&self, now: u64) -> Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join(KEPT))? {
            let path = entry?.path();
            let expired = match read_meta(&path) {
                Ok(Some(meta)) => meta.expires <= now,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable kept attachment removed");
                    true
                }
            };
            if expired {
                ignore_missing(std::fs::remove_file(&path))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// The meta line of a kept file; `None` when there is no such file.
fn read_meta(path: &std::path::Path) -> Result<Option<KeptMeta>> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(meta_line(&mut std::io::BufReader::new(f))?.map(|(m, _)| m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the meta line; with it, where the bytes start.
fn meta_line(reader: &mut impl std::io::BufRead) -> Result<Option<(KeptMeta, u64)>> {
    use std::io::Read as _;
    let mut line = Vec::new();
    reader.take(MAX_META).read_until(b'\n', &mut line)?;
    let corrupt = |why: String| crate::spool::Error::Corrupt(KEPT.into(), why);
    if line.pop() != Some(b'\n') {
        return Err(corrupt("no meta line".into()));
    }
    let meta: KeptMeta = serde_json::from_slice(&line).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some((meta, line.len() as u64 + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    fn part(index: usize, bytes: &[u8]) -> KeptPart {
        KeptPart {
            index,
            meta: KeptMeta {
                content_type: "application/pdf".into(),
                filename: Some("é.pdf".into()),
                sha256: format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(bytes)),
                size: bytes.len() as u64,
                expires: 0,
            },
            bytes: bytes.to_vec(),
        }
    }

    async fn read(spool: &Spool, id: &str, index: usize, start: u64, len: u64) -> Option<Vec<u8>> {
        let kept = spool.open_kept(id, index).await.unwrap()?;
        let mut out = Vec::new();
        kept.range(start, len)
            .await
            .unwrap()
            .read_to_end(&mut out)
            .await
            .unwrap();
        Some(out)
    }

    #[tokio::test]
    async fn kept_parts_are_read_by_range_and_swept_after_their_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let id = new_id();
        let bytes = b"0123456789\nline two\r\n";
        spool.keep(&id, vec![part(2, bytes)], 100).await.unwrap();
        let meta = spool.open_kept(&id, 2).await.unwrap().unwrap().meta;
        assert_eq!((meta.expires, meta.size), (100, bytes.len() as u64));
        assert_eq!(meta.filename.as_deref(), Some("é.pdf"));
        assert_eq!(read(&spool, &id, 2, 0, 99).await.unwrap(), bytes);
        assert_eq!(read(&spool, &id, 2, 3, 4).await.unwrap(), b"3456");
        assert!(spool.open_kept(&id, 1).await.unwrap().is_none());
        assert!(spool.open_kept("../kept", 2).await.unwrap().is_none());

        // Kept again with an earlier expiry: the later one stays; a later
        // one extends it.
        spool.keep(&id, vec![part(2, bytes)], 50).await.unwrap();
        let expires = |s: &Spool| {
            let s = s.clone();
            let id = id.clone();
            async move { s.open_kept(&id, 2).await.unwrap().map(|k| k.meta.expires) }
        };
        assert_eq!(expires(&spool).await, Some(100));
        spool.keep(&id, vec![part(2, bytes)], 200).await.unwrap();
        assert_eq!(expires(&spool).await, Some(200));

        std::fs::write(dir.path().join(KEPT).join("junk"), b"no meta line").unwrap();
        assert_eq!(spool.sweep_kept(199).unwrap(), 1, "only the junk goes");
        assert_eq!(expires(&spool).await, Some(200));
        assert_eq!(spool.sweep_kept(200).unwrap(), 1);
        assert!(spool.open_kept(&id, 2).await.unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path().join(KEPT)).unwrap().count(), 0);
    }
}
