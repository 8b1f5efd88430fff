//! The message log: where the file spool keeps committed messages of up
//! to [`MAX_INLINE`] bytes, many to a file, so that accepting one costs an
//! append and a share of one `fdatasync` instead of a file created,
//! `fsync`ed, renamed and unlinked (on ext4 those inode operations were
//! most of the server's CPU; see docs/BENCHMARKS.md).
//!
//! # On-disk layout (under `POSTERN_SPOOL_DIR/segments/`)
//!
//! ```text
//! <seq>.seg     20-digit sequence number; "PSTNLOG1", then records
//!               ([`record`]): Message (id, envelope line + message,
//!               the same bytes a `msg/<id>.msg` file holds) and Done (id)
//! ```
//!
//! One writer thread ([`writer`]) appends. It takes every request that is
//! waiting, writes them with one `write`, then one `fdatasync` covers them
//! all (group commit), and only then are the callers answered: an SMTP
//! `250` follows the sync that covers its record. Each start opens a new
//! segment (old ones are only read), and a segment is replaced by the next
//! one at [`SEGMENT_BYTES`].
//!
//! A message is pending from its Message record until its Done record;
//! finished messages kept for the history stay readable in their segment
//! until the history sweep releases them. The index (id → segment and
//! offset) is in memory and rebuilt at start by reading every segment,
//! checking every record: a record that is not whole or fails its checksum
//! ends its segment's valid records (a torn tail: it was never
//! acknowledged, since its sync never returned); the bytes from there on
//! are copied to `corrupt/<seq>.tail` and cut off.
//!
//! Segments are deleted oldest first, once no message in them is pending
//! or kept: a Done record always lies in the same or a later segment than
//! its Message, so it is never lost while its message could be read back.
//! A pending message that holds up the oldest segment while newer ones
//! wait (a delivery retried for a day, a dead letter) is moved out to a
//! `msg/<id>.msg` file by [`Log::stuck`] and the hourly sweep.
//!
//! Larger messages are written as `msg/<id>.msg` files as before (their
//! cost is their bytes, not the file), and a spool written by an earlier
//! version, which has only such files, is read as it is.

pub(super) mod appender;
pub(super) mod record;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{Error, Result};
use record::Kind;

/// Messages up to this size (envelope line included) go to the log.
pub const MAX_INLINE: usize = 256 * 1024;
/// A segment is closed once it is this large.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Segments waiting behind a stuck oldest one before its pending messages
/// are moved out to files.
const STUCK_AFTER: usize = 4;
const MAGIC: &[u8; 8] = b"PSTNLOG1";

/// The log of a spool directory. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Log {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.inner.dir).finish()
    }
}

struct Inner {
    dir: PathBuf,
    tx: std::sync::mpsc::Sender<writer::Request>,
    state: Arc<Mutex<State>>,
}

/// Where a message is, and whether it is pending or kept.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    offset: u64,
    len: u32,
    kept: Option<Kept>,
}

/// A finished message kept for the history: where its Done record (with
/// the sidecar) is, and when it finished.
#[derive(Debug, Clone, Copy)]
struct Kept {
    seq: u64,
    offset: u64,
    finished_ms: u64,
}

impl Entry {
    fn is_kept(&self) -> bool {
        self.kept.is_some()
    }
}

struct Segment {
    file: Arc<File>,
    /// Pending and kept messages in it.
    pending: usize,
    kept: usize,
    /// When it was written last (its age for [`Log::oldest_pending`]).
    modified: std::time::SystemTime,
}

pub(super) struct State {
    dir: PathBuf,
    index: HashMap<Box<str>, Entry>,
    segments: BTreeMap<u64, Segment>,
    active: u64,
}

impl State {
    fn add(&mut self, id: &str, entry: Entry) {
        if let Some(seg) = self.segments.get_mut(&entry.seq) {
            if entry.is_kept() {
                seg.kept += 1;
            } else {
                seg.pending += 1;
            }
        }
        if let Some(old) = self.index.insert(id.into(), entry) {
            self.forget(old);
        }
    }

    fn forget(&mut self, entry: Entry) {
        if let Some(seg) = self.segments.get_mut(&entry.seq) {
            if entry.is_kept() {
                seg.kept -= 1;
            } else {
                seg.pending -= 1;
            }
        }
    }

    /// Applies a Done record of a pending message: it is kept or gone.
    fn done(&mut self, id: &str, keep: Option<Kept>) {
        let Some(entry) = self.index.get(id).copied().filter(|e| !e.is_kept()) else {
            return;
        };
        self.index.remove(id);
        self.forget(entry);
        if keep.is_some() {
            self.add(
                id,
                Entry {
                    kept: keep,
                    ..entry
                },
            );
        }
    }

    /// Deletes the oldest segments while nothing in them is needed.
    fn collect(&mut self) {
        while let Some((&seq, seg)) = self.segments.first_key_value() {
            if seq == self.active || seg.pending + seg.kept > 0 {
                return;
            }
            if let Err(e) = std::fs::remove_file(self.dir.join(segment_name(seq))) {
                tracing::warn!(segment = seq, error = %e, "could not delete a finished log segment");
                return;
            }
            self.segments.remove(&seq);
        }
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// What [`Log::open`] found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    /// Ids of the pending messages.
    pub pending: Vec<String>,
    /// Finished messages kept for the history.
    pub kept: usize,
    /// Segments whose tail was cut off (torn or corrupt).
    pub torn: usize,
}

impl Log {
    /// Reads every segment in `dir` (see the module docs), then starts
    /// the writer on a new segment.
    pub fn open(
        dir: &Path,
        corrupt: &Path,
        fsync: bool,
        segment_bytes: u64,
    ) -> Result<(Log, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = std::fs::read_dir(dir)?
            .filter_map(|e| segment_seq(e.ok()?.file_name().to_str()?))
            .collect();
        seqs.sort_unstable();
        let mut state = State {
            dir: dir.to_path_buf(),
            index: HashMap::new(),
            segments: BTreeMap::new(),
            active: seqs.last().map_or(1, |s| s + 1),
        };
        let mut recovered = Recovered::default();
        for &seq in &seqs {
            let path = dir.join(segment_name(seq));
            let file = std::fs::OpenOptions::new().read(true).open(&path)?;
            let modified = file.metadata()?.modified()?;
            state.segments.insert(
                seq,
                Segment {
                    file: Arc::new(file.try_clone()?),
                    pending: 0,
                    kept: 0,
                    modified,
                },
            );
            let mut magic = [0u8; 8];
            let start = {
                use std::os::unix::fs::FileExt as _;
                match file.read_exact_at(&mut magic, 0) {
                    Ok(()) if &magic == MAGIC => MAGIC.len() as u64,
                    _ => 0,
                }
            };
            let mut scanner = record::Scanner::new(file, start)?;
            if start == 0 {
                // Not even a whole header: a segment created at a crash.
                tracing::warn!(segment = seq, "log segment without its header; set aside");
            } else {
                while let Some(r) = scanner.next_record()? {
                    match r.kind {
                        Kind::Message => state.add(
                            &r.id,
                            Entry {
                                seq,
                                offset: r.offset,
                                len: r.content_len,
                                kept: None,
                            },
                        ),
                        Kind::Done => {
                            let kept = r.stamp_ms.map(|finished_ms| Kept {
                                seq,
                                offset: r.offset,
                                finished_ms,
                            });
                            state.done(&r.id, kept);
                        }
                        // Only the records log writes these.
                        Kind::Put => {}
                    }
                }
            }
            let (valid, end) = (scanner.position(), scanner.end());
            if valid < end {
                let aside = corrupt.join(format!("{seq:020}.tail"));
                set_aside_tail(&path, &aside, seq, valid)?;
                recovered.torn += 1;
            }
        }
        recovered.pending = state
            .index
            .iter()
            .filter(|(_, e)| !e.is_kept())
            .map(|(id, _)| id.to_string())
            .collect();
        recovered.kept = state.index.len() - recovered.pending.len();
        recovered.pending.sort_unstable();
        let state = Arc::new(Mutex::new(state));
        let tx = writer::start(dir.to_path_buf(), fsync, segment_bytes, state.clone())?;
        Ok((
            Log {
                inner: Arc::new(Inner {
                    dir: dir.to_path_buf(),
                    tx,
                    state,
                }),
            },
            recovered,
        ))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn request(
        &self,
        kind: Kind,
        id: &str,
        content: &[u8],
        keep: Option<u64>,
        sync: bool,
        reply: writer::Reply,
    ) -> Result<()> {
        let mut bytes = Vec::new();
        record::encode(&mut bytes, kind, id, content);
        self.inner
            .tx
            .send(writer::Request {
                bytes,
                kind,
                id: id.into(),
                content_len: content.len() as u32,
                keep,
                sync,
                reply,
            })
            .map_err(|_| stopped())
    }

    /// Commits message `id` (`content`: envelope line and message): when
    /// this returns `Ok`, its record is on disk (with fsync on) and it is
    /// pending.
    pub async fn append(&self, id: &str, content: &[u8]) -> Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.request(
            Kind::Message,
            id,
            content,
            None,
            true,
            writer::Reply::Task(tx),
        )?;
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(stopped()),
        }
    }

    /// Records that pending message `id` is finished: kept for the history
    /// with `sidecar` (finished at, unix ms; its JSON), else gone. Waits until the record is written and, with
    /// `sync`, on disk (a withdrawn message must not come back); without
    /// it a crash may bring the message back as pending (delivered again:
    /// at least once). Returns false when the message is not a pending one
    /// of the log (it is a file). Blocking: call from the blocking pool.
    pub fn finish_blocking(
        &self,
        id: &str,
        sidecar: Option<(u64, &[u8])>,
        sync: bool,
    ) -> Result<bool> {
        if !self.is_pending(id) {
            return Ok(false);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let mut content = Vec::new();
        if let Some((finished_ms, json)) = sidecar {
            content.reserve(8 + json.len());
            content.extend_from_slice(&finished_ms.to_le_bytes());
            content.extend_from_slice(json);
        }
        let keep = sidecar.map(|(at, _)| at);
        self.request(
            Kind::Done,
            id,
            &content,
            keep,
            sync,
            writer::Reply::Thread(tx),
        )?;
        match rx.recv() {
            Ok(r) => Ok(r.map(|()| true)?),
            Err(_) => Err(stopped()),
        }
    }

    /// Lets go of the kept messages that finished before `cutoff_ms`
    /// (unix ms): their history has expired. Returns how many.
    pub fn expire(&self, cutoff_ms: u64) -> usize {
        let mut state = self.state();
        let old: Vec<(Box<str>, Entry)> = state
            .index
            .iter()
            .filter(|(_, e)| e.kept.is_some_and(|k| k.finished_ms < cutoff_ms))
            .map(|(id, e)| (id.clone(), *e))
            .collect();
        for (id, entry) in &old {
            state.index.remove(id);
            state.forget(*entry);
        }
        state.collect();
        old.len()
    }

    /// Ids of the finished messages kept for the history.
    pub fn kept(&self) -> Vec<String> {
        let state = self.state();
        state
            .index
            .iter()
            .filter(|(_, e)| e.is_kept())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The history sidecar (JSON) of kept message `id`.
    pub fn sidecar(&self, id: &str) -> Result<Option<Vec<u8>>> {
        let (kept, file) = {
            let state = self.state();
            let Some(kept) = state.index.get(id).and_then(|e| e.kept) else {
                return Ok(None);
            };
            let Some(seg) = state.segments.get(&kept.seq) else {
                return Ok(None);
            };
            (kept, seg.file.clone())
        };
        match record::read_at(&file, kept.offset, Kind::Done, id)? {
            Some(mut content) if content.len() >= 8 => {
                content.drain(..8);
                Ok(Some(content))
            }
            _ => Err(Error::Corrupt(
                id.into(),
                format!("log segment {} at {}: bad record", kept.seq, kept.offset),
            )),
        }
    }

    /// Whether `id` is a pending message of the log.
    pub fn is_pending(&self, id: &str) -> bool {
        self.state().index.get(id).is_some_and(|e| !e.is_kept())
    }

    /// The content of message `id` (`kept`: a finished one, else a
    /// pending one), or `None` when the log does not hold it so.
    /// Blocking (a read).
    pub fn read(&self, id: &str, kept: bool) -> Result<Option<Vec<u8>>> {
        let Some((entry, file)) = self.message_at(id, kept) else {
            return Ok(None);
        };
        match record::read_content_at(&file, entry.offset, Kind::Message, id, entry.len as usize)? {
            Some(content) => Ok(Some(content)),
            None => Err(Error::Corrupt(
                id.into(),
                format!("log segment {} at {}: bad record", entry.seq, entry.offset),
            )),
        }
    }

    /// The first `max` bytes of the content of pending message `id`, and
    /// the content's whole size; not checked against the record's
    /// checksum (see [`record::read_prefix_at`]), so only for summaries.
    /// Blocking (a read).
    pub fn read_prefix(&self, id: &str, max: usize) -> Result<Option<(Vec<u8>, usize)>> {
        let Some((entry, file)) = self.message_at(id, false) else {
            return Ok(None);
        };
        let len = entry.len as usize;
        let prefix = record::read_prefix_at(&file, entry.offset, id, len, max)?;
        Ok(Some((prefix, len)))
    }

    /// Where message `id`'s record is (`kept`: a finished one, else a
    /// pending one), with its segment's file; `None` when the log does
    /// not hold it so.
    fn message_at(&self, id: &str, kept: bool) -> Option<(Entry, Arc<File>)> {
        let state = self.state();
        let entry = state
            .index
            .get(id)
            .copied()
            .filter(|e| e.is_kept() == kept)?;
        let seg = state.segments.get(&entry.seq)?;
        Some((entry, seg.file.clone()))
    }

    /// The content's size of pending message `id`.
    pub fn size(&self, id: &str) -> Option<u64> {
        let state = self.state();
        state
            .index
            .get(id)
            .filter(|e| !e.is_kept())
            .map(|e| e.len as u64)
    }

    /// Ids of the pending messages.
    pub fn pending(&self) -> Vec<String> {
        let state = self.state();
        state
            .index
            .iter()
            .filter(|(_, e)| !e.is_kept())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// Pending messages that hold up the oldest segment while more than
    /// [`STUCK_AFTER`] newer ones wait to be deleted; the spool moves
    /// them to files.
    pub fn stuck(&self) -> Vec<String> {
        let state = self.state();
        let Some((&oldest, seg)) = state.segments.first_key_value() else {
            return Vec::new();
        };
        if state.segments.len() <= STUCK_AFTER || seg.kept > 0 || seg.pending == 0 {
            return Vec::new();
        }
        state
            .index
            .iter()
            .filter(|(_, e)| e.seq == oldest && !e.is_kept())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// How long ago the oldest segment with a pending message was written.
    pub fn oldest_pending(&self) -> Option<std::time::Duration> {
        let state = self.state();
        let seg = state.segments.values().find(|s| s.pending > 0)?;
        Some(seg.modified.elapsed().unwrap_or_default())
    }

    /// Segment files on disk.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.state().segments.len()
    }
}

/// Ids of the messages pending in the log at `dir`, read without opening
/// it (nothing is written or cut): what `postern doctor` and tests count.
pub fn pending_on_disk(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut seqs: Vec<u64> = match std::fs::read_dir(dir) {
        Ok(d) => d
            .filter_map(|e| segment_seq(e.ok()?.file_name().to_str()?))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    seqs.sort_unstable();
    let mut pending = std::collections::BTreeSet::new();
    for seq in seqs {
        let file = match File::open(dir.join(segment_name(seq))) {
            Ok(f) => f,
            // Deleted meanwhile: finished.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut scanner = record::Scanner::new(file, MAGIC.len() as u64)?;
        while let Some(r) = scanner.next_record()? {
            match r.kind {
                Kind::Message => pending.insert(r.id),
                Kind::Done => pending.remove(&r.id),
                Kind::Put => false,
            };
        }
    }
    Ok(pending.into_iter().collect())
}

fn stopped() -> Error {
    Error::Io(std::io::Error::other("the log writer has stopped"))
}

/// Copies the bytes of segment `seq` (at `path`) from `valid` on to
/// `aside` in `corrupt/` (never deleted: an operator may want them), then
/// cuts them off.
pub(super) fn set_aside_tail(path: &Path, aside: &Path, seq: u64, valid: u64) -> Result<()> {
    use std::io::{Seek as _, SeekFrom};
    let mut from = std::fs::File::open(path)?;
    let len = from.metadata()?.len();
    from.seek(SeekFrom::Start(valid))?;
    let mut to = std::fs::File::create(aside)?;
    std::io::copy(&mut from, &mut to)?;
    to.sync_all()?;
    tracing::warn!(
        segment = seq,
        valid_bytes = valid,
        cut_bytes = len - valid,
        aside = %aside.display(),
        "log segment ends in a torn or corrupt record (never acknowledged if torn); the rest was set aside"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(valid)?;
    Ok(())
}

#[cfg(test)]
mod tests;
