//! The records log: where the file spool keeps its small keyed records
//! (the status record of each API message, idempotency keys), many to a
//! file, so that writing one costs an append and a share of one
//! `fdatasync` instead of a file created, `fsync`ed and renamed. Creating
//! `tmp/outbox-<id>.json` was 29 % of the server's CPU on the sending path
//! (ext4 inode allocation; docs/BENCHMARKS.md), and the files stayed for
//! `POSTERN_STATUS_RETENTION`, one inode per API message.
//!
//! # On-disk layout (under `POSTERN_SPOOL_DIR/records/`)
//!
//! ```text
//! <seq>.rec     20-digit sequence number; "PSTNREC1", then records framed
//!               as the message log's ([`super::log::record`]), each a Put:
//!               key "<dir>/<name>" (e.g. "outbox/<id>.json"),
//!               content [written_at: u64 LE unix ms][the record's bytes]
//! ```
//!
//! A key's value is its last Put in log order (sequence, then offset).
//! One writer thread ([`writer`]) appends: every Put waiting goes out in
//! one write, one `fdatasync` covers them (group commit), and only then
//! are the writers answered, as a file's `fsync` and rename did before.
//! Each start opens a new segment, read back with every older one at
//! start: a record that is not whole or fails its checksum ends its
//! segment's valid records (never acknowledged), and the rest is set
//! aside in `corrupt/<seq>.rec-tail`.
//!
//! Records expire by their write time (the hourly sweep: the status
//! retention, the idempotency TTL); nothing else removes one. Segments
//! are deleted **oldest first only**, so a record's older values, always
//! in older segments, can never outlive it and come back at the next
//! start. An oldest segment that is mostly dead (live bytes at most half
//! of it) is compacted: the writer copies its live records to the end of
//! the active segment, syncs, points the index at the copies, and deletes
//! it. The copies keep their write time, so compaction never extends a
//! retention.
//!
//! The index (key → segment and offset, about 130 bytes a record) is in
//! memory; the value is read from the segment on demand. A spool written
//! by an earlier version keeps its `outbox/` and `idem/` files: they are
//! read when the log has no record for the key and swept as before.

mod writer;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::log::record::{self, Kind};
use super::{Error, Result};

/// A segment is closed once it is this large.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const MAGIC: &[u8; 8] = b"PSTNREC1";
/// Keys are at most this long (the record's id field is one byte long).
const MAX_KEY: usize = u8::MAX as usize;

/// The records log of a spool directory. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Records {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

struct Inner {
    dir: PathBuf,
    tx: std::sync::mpsc::Sender<writer::Request>,
    state: Arc<Mutex<State>>,
}

/// Where a key's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    seq: u64,
    offset: u64,
    /// The whole record's length on disk.
    bytes: u32,
    written_ms: u64,
}

struct Segment {
    file: Arc<File>,
    size: u64,
    /// Records in it that are a key's value, and their bytes.
    live: usize,
    live_bytes: u64,
}

impl Segment {
    /// Worth copying out: at most half of it is still needed.
    fn sparse(&self) -> bool {
        self.live_bytes * 2 <= self.size
    }
}

/// A segment to compact: its live records, to be copied out.
struct Compaction {
    seq: u64,
    file: Arc<File>,
    live: Vec<(Box<str>, Entry)>,
}

pub(super) struct State {
    dir: PathBuf,
    index: HashMap<Box<str>, Entry>,
    segments: BTreeMap<u64, Segment>,
    active: u64,
}

impl State {
    /// Makes `entry` the value of `key`.
    fn set(&mut self, key: &str, entry: Entry) {
        if let Some(seg) = self.segments.get_mut(&entry.seq) {
            seg.live += 1;
            seg.live_bytes += entry.bytes as u64;
        }
        if let Some(old) = self.index.insert(key.into(), entry) {
            self.forget(old);
        }
    }

    fn forget(&mut self, entry: Entry) {
        if let Some(seg) = self.segments.get_mut(&entry.seq) {
            seg.live -= 1;
            seg.live_bytes -= entry.bytes as u64;
        }
    }

    /// Deletes the oldest segments while nothing in them is needed.
    fn collect(&mut self) {
        while let Some((&seq, seg)) = self.segments.first_key_value() {
            if seq == self.active || seg.live > 0 {
                return;
            }
            if let Err(e) = std::fs::remove_file(self.dir.join(segment_name(seq))) {
                tracing::warn!(segment = seq, error = %e, "could not delete a records segment");
                return;
            }
            self.segments.remove(&seq);
        }
    }

    /// The oldest segment, when it is not the active one and is worth
    /// compacting.
    fn compactable(&self) -> Option<Compaction> {
        let (&seq, seg) = self.segments.first_key_value()?;
        if seq == self.active || !seg.sparse() {
            return None;
        }
        let live = self
            .index
            .iter()
            .filter(|(_, e)| e.seq == seq)
            .map(|(k, e)| (k.clone(), *e))
            .collect();
        Some(Compaction {
            seq,
            file: seg.file.clone(),
            live,
        })
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.rec")
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".rec")?;
    (digits.len() == 20).then(|| digits.parse().ok())?
}

/// The key of record `name` in `dir`, if it can be one.
pub fn key(dir: &str, name: &str) -> Option<String> {
    let key = format!("{dir}/{name}");
    (key.len() <= MAX_KEY).then_some(key)
}

/// A Put's content: the write time, then the bytes.
fn content(written_ms: u64, bytes: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(8 + bytes.len());
    c.extend_from_slice(&written_ms.to_le_bytes());
    c.extend_from_slice(bytes);
    c
}

impl Records {
    /// Reads every segment in `dir` (see the module docs), then starts the
    /// writer on a new segment.
    pub fn open(dir: &Path, corrupt: &Path, fsync: bool, segment_bytes: u64) -> Result<Records> {
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
        for &seq in &seqs {
            read_segment(&mut state, dir, corrupt, seq)?;
        }
        state.collect();
        let state = Arc::new(Mutex::new(state));
        let tx = writer::start(dir.to_path_buf(), fsync, segment_bytes, state.clone())?;
        Ok(Records {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tx,
                state,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `bytes` as the value of `key` (from [`key`]): when this
    /// returns `Ok`, it is on disk (with fsync on).
    pub async fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        let written_ms = super::now_ms();
        let content = content(written_ms, bytes);
        if key.len() > MAX_KEY
            || record::encoded_len(key, content.len()) > record::MAX_RECORD as u64
        {
            return Err(Error::Io(std::io::Error::other(format!(
                "record {key}: too large for the records log"
            ))));
        }
        let mut encoded = Vec::new();
        record::encode(&mut encoded, Kind::Put, key, &content);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .tx
            .send(writer::Request::Put {
                bytes: encoded,
                key: key.into(),
                written_ms,
                reply: tx,
            })
            .map_err(|_| stopped())?;
        match rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(stopped()),
        }
    }

    /// The value of `key`, or `None`. Blocking (a read).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let (entry, file) = {
            let state = self.state();
            let Some(entry) = state.index.get(key).copied() else {
                return Ok(None);
            };
            let Some(seg) = state.segments.get(&entry.seq) else {
                return Ok(None);
            };
            (entry, seg.file.clone())
        };
        match record::read_at(&file, entry.offset, Kind::Put, key)? {
            Some(mut content) if content.len() >= 8 => {
                content.drain(..8);
                Ok(Some(content))
            }
            _ => Err(Error::Corrupt(
                key.into(),
                format!(
                    "records segment {} at {}: bad record",
                    entry.seq, entry.offset
                ),
            )),
        }
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &str) -> bool {
        self.state().index.contains_key(key)
    }

    /// Removes the records under `dir/` written before `cutoff_ms` (unix
    /// ms); returns how many. Segments left with nothing live go, and the
    /// writer is asked to compact a sparse oldest one.
    pub fn expire(&self, dir: &str, cutoff_ms: u64) -> usize {
        let prefix = format!("{dir}/");
        let removed = {
            let mut state = self.state();
            let old: Vec<(Box<str>, Entry)> = state
                .index
                .iter()
                .filter(|(k, e)| e.written_ms < cutoff_ms && k.starts_with(&prefix))
                .map(|(k, e)| (k.clone(), *e))
                .collect();
            for (k, e) in &old {
                state.index.remove(k);
                state.forget(*e);
            }
            state.collect();
            old.len()
        };
        let _ = self.inner.tx.send(writer::Request::Compact);
        removed
    }

    /// Segment files on disk.
    #[cfg(test)]
    pub fn segments(&self) -> usize {
        self.state().segments.len()
    }

    /// Waits until the writer has handled everything sent before.
    #[cfg(test)]
    pub async fn settle(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.inner.tx.send(writer::Request::Flush(tx));
        let _ = rx.await;
    }
}

/// Reads segment `seq` into `state`, setting aside a torn or corrupt tail.
fn read_segment(state: &mut State, dir: &Path, corrupt: &Path, seq: u64) -> Result<()> {
    let path = dir.join(segment_name(seq));
    let file = std::fs::OpenOptions::new().read(true).open(&path)?;
    let size = file.metadata()?.len();
    state.segments.insert(
        seq,
        Segment {
            file: Arc::new(file.try_clone()?),
            size,
            live: 0,
            live_bytes: 0,
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
        tracing::warn!(
            segment = seq,
            "records segment without its header; set aside"
        );
    } else {
        while let Some(r) = scanner.next_record()? {
            // A Put always starts with its write time.
            let (Kind::Put, Some(written_ms)) = (r.kind, r.stamp_ms) else {
                continue;
            };
            let bytes = record::encoded_len(&r.id, r.content_len as usize) as u32;
            state.set(
                &r.id,
                Entry {
                    seq,
                    offset: r.offset,
                    bytes,
                    written_ms,
                },
            );
        }
    }
    let (valid, end) = (scanner.position(), scanner.end());
    if valid < end {
        let aside = corrupt.join(format!("{seq:020}.rec-tail"));
        super::log::set_aside_tail(&path, &aside, seq, valid)?;
        if let Some(seg) = state.segments.get_mut(&seq) {
            seg.size = valid;
        }
    }
    Ok(())
}

fn stopped() -> Error {
    Error::Io(std::io::Error::other("the records writer has stopped"))
}

#[cfg(test)]
mod tests;
