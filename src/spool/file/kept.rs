//! The file backend's kept attachments (see [`crate::spool::kept`]):
//! `kept/<id>.<index>`, one file per part: line 1 its expiry (unix s) as
//! exactly 20 digits, line 2 the rest of its [`KeptMeta`] as JSON, then
//! the decoded bytes. A new part is written like every record (tmp,
//! fsync, rename, fsync of the directory), so a reader sees a whole file
//! or none. A part kept again (a retry, another route) with the same
//! bytes only has its expiry overwritten in place: 20 bytes, not the
//! whole attachment again.

use std::io::{BufRead as _, ErrorKind, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Spool, ignore_missing, sync_dir};
use crate::spool::kept::{Body, Kept, KeptMeta, KeptPart};
use crate::spool::{Result, blocking, is_message_id, new_id};

/// The directory under the spool root.
pub(super) const KEPT: &str = "kept";

/// A meta line longer than this is not one we wrote.
const MAX_META: u64 = 64 * 1024;

/// Digits of the expiry line (`u64::MAX` has 20).
const EXPIRY_DIGITS: usize = 20;

/// Line 2 of a kept file: the meta without its expiry (line 1).
#[derive(Serialize, Deserialize)]
struct Described {
    content_type: String,
    filename: Option<String>,
    sha256: String,
    size: u64,
}

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
                // Under the spool's lock, so that two deliveries keeping
                // the same part at once leave the later expiry.
                if this.extend(&dest, &part.meta.sha256, expires)? {
                    continue;
                }
                // Unique: two deliveries may write the same part at once.
                let tmp =
                    this.root
                        .join("tmp")
                        .join(format!("kept-{id}.{}-{}", part.index, new_id()));
                write_new(&tmp, &part, expires, this.fsync)?;
                let _ops = this.lock_ops();
                if this.extend_locked(&dest, &part.meta.sha256, expires)? {
                    ignore_missing(std::fs::remove_file(&tmp))?;
                } else {
                    std::fs::rename(&tmp, &dest)?;
                }
            }
            sync_dir(&this.root.join(KEPT), this.fsync)
        })
        .await
    }

    /// When `dest` holds the bytes with `sha256`: makes sure it is kept
    /// until `expires` and says so (`true`).
    fn extend(&self, dest: &Path, sha256: &str, expires: u64) -> Result<bool> {
        let _ops = self.lock_ops();
        self.extend_locked(dest, sha256, expires)
    }

    fn extend_locked(&self, dest: &Path, sha256: &str, expires: u64) -> Result<bool> {
        let old = match read_meta(dest) {
            Ok(Some(old)) => old,
            // None, or unreadable: written anew.
            Ok(None) | Err(crate::spool::Error::Corrupt(..)) => return Ok(false),
            Err(e) => return Err(e),
        };
        if old.sha256 != sha256 {
            return Ok(false);
        }
        if old.expires < expires {
            use std::os::unix::fs::FileExt as _;
            let f = std::fs::OpenOptions::new().write(true).open(dest)?;
            f.write_all_at(expiry_digits(expires).as_bytes(), 0)?;
            if self.fsync {
                f.sync_data()?;
            }
        }
        Ok(true)
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

/// A new kept file at `tmp`: expiry line, meta line, bytes; durable.
fn write_new(tmp: &Path, part: &KeptPart, expires: u64, fsync: bool) -> Result<()> {
    let m = &part.meta;
    let described = Described {
        content_type: m.content_type.clone(),
        filename: m.filename.clone(),
        sha256: m.sha256.clone(),
        size: m.size,
    };
    let mut head = format!("{}\n", expiry_digits(expires)).into_bytes();
    serde_json::to_writer(&mut head, &described).expect("meta serialises");
    head.push(b'\n');
    let mut f = std::fs::File::create(tmp)?;
    f.write_all(&head)?;
    f.write_all(&part.bytes)?;
    if fsync {
        f.sync_all()?;
    }
    Ok(())
}

fn expiry_digits(expires: u64) -> String {
    format!("{expires:0EXPIRY_DIGITS$}")
}

/// The meta of a kept file; `None` when there is no such file.
fn read_meta(path: &Path) -> Result<Option<KeptMeta>> {
    match std::fs::File::open(path) {
        Ok(f) => Ok(meta_line(&mut std::io::BufReader::new(f))?.map(|(m, _)| m)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads the expiry and meta lines; with them, where the bytes start.
fn meta_line(reader: &mut impl std::io::BufRead) -> Result<Option<(KeptMeta, u64)>> {
    use std::io::Read as _;
    let corrupt = |why: &str| crate::spool::Error::Corrupt(KEPT.into(), why.into());
    let mut reader = reader.take(MAX_META);
    let mut first = Vec::new();
    reader.read_until(b'\n', &mut first)?;
    let expires = first
        .strip_suffix(b"\n")
        .filter(|d| d.len() == EXPIRY_DIGITS && d.iter().all(u8::is_ascii_digit))
        .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u64>().ok())
        .ok_or_else(|| corrupt("no expiry line"))?;
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Err(corrupt("no meta line"));
    }
    let d: Described = serde_json::from_slice(&line).map_err(|e| corrupt(&e.to_string()))?;
    let meta = KeptMeta {
        content_type: d.content_type,
        filename: d.filename,
        sha256: d.sha256,
        size: d.size,
        expires,
    };
    Ok(Some((meta, (first.len() + line.len() + 1) as u64)))
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
        let inode = || {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(spool.kept_path(&id, 2)).unwrap().ino()
        };
        let before = inode();
        spool.keep(&id, vec![part(2, bytes)], 200).await.unwrap();
        assert_eq!(expires(&spool).await, Some(200));
        assert_eq!(inode(), before, "extended in place, not written again");
        assert_eq!(read(&spool, &id, 2, 0, 99).await.unwrap(), bytes);
        // Other bytes under the same name (not something we do) replace it.
        spool.keep(&id, vec![part(2, b"other")], 150).await.unwrap();
        assert_eq!(read(&spool, &id, 2, 0, 99).await.unwrap(), b"other");
        assert_eq!(expires(&spool).await, Some(150));
        spool.keep(&id, vec![part(2, bytes)], 200).await.unwrap();

        std::fs::write(dir.path().join(KEPT).join("junk"), b"no meta line").unwrap();
        assert_eq!(spool.sweep_kept(199).unwrap(), 1, "only the junk goes");
        assert_eq!(expires(&spool).await, Some(200));
        assert_eq!(spool.sweep_kept(200).unwrap(), 1);
        assert!(spool.open_kept(&id, 2).await.unwrap().is_none());
        assert_eq!(std::fs::read_dir(dir.path().join(KEPT)).unwrap().count(), 0);
    }
}
