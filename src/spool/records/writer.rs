//! The records log's one writer (group commit, as the message log's
//! writer): every Put waiting goes out in one write and one `fdatasync`,
//! then the index points at them and the writers are answered. It also
//! compacts, so that a copy is never written behind a newer Put of the
//! same key: only this thread appends.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::{Entry, MAGIC, Segment, State, segment_name};
use crate::spool::log::appender::Appender;
use crate::spool::log::record::{self, Kind};

/// At most this many bytes go into one write (a batch).
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Oldest segments compacted in one go, at most (the rest wait for the
/// next roll or sweep).
const COMPACT_AT_ONCE: usize = 4;

pub(super) enum Request {
    Put {
        /// The encoded record.
        bytes: Vec<u8>,
        key: Box<str>,
        written_ms: u64,
        reply: tokio::sync::oneshot::Sender<std::io::Result<()>>,
    },
    /// Compact a sparse oldest segment, if there is one.
    Compact,
    /// Answered once everything sent before is handled (tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Flush(tokio::sync::oneshot::Sender<()>),
}

struct Writer {
    state: Arc<Mutex<State>>,
    out: Appender,
    buf: Vec<u8>,
}

/// Creates the first segment of this run and starts the thread; it ends
/// when every sender is gone.
pub(super) fn start(
    dir: PathBuf,
    fsync: bool,
    segment_bytes: u64,
    state: Arc<Mutex<State>>,
) -> std::io::Result<Sender<Request>> {
    let seq = state.lock().unwrap_or_else(|e| e.into_inner()).active;
    let out = Appender::create(&dir, MAGIC, segment_name, seq, fsync, segment_bytes)?;
    register(&state, &out)?;
    let mut w = Writer {
        state,
        out,
        buf: Vec::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("postern-records".into())
        .spawn(move || {
            // Whatever an earlier run left sparse.
            w.compact();
            w.run(rx)
        })?;
    Ok(tx)
}

/// Makes the appender's new segment the active one in `state`.
fn register(state: &Mutex<State>, out: &Appender) -> std::io::Result<()> {
    let file = Arc::new(out.file.try_clone()?);
    let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
    state.segments.insert(
        out.seq,
        Segment {
            file,
            size: out.len,
            live: 0,
            live_bytes: 0,
        },
    );
    state.active = out.seq;
    state.collect();
    Ok(())
}

/// One Put of a batch: its bytes are in the batch buffer.
struct Pending {
    key: Box<str>,
    len: u64,
    written_ms: u64,
    reply: tokio::sync::oneshot::Sender<std::io::Result<()>>,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut puts = Vec::new();
            let mut flushes = Vec::new();
            let mut compact = false;
            self.buf.clear();
            let mut next = Some(first);
            while let Some(request) = next {
                match request {
                    Request::Put {
                        bytes,
                        key,
                        written_ms,
                        reply,
                    } => {
                        self.buf.extend_from_slice(&bytes);
                        puts.push(Pending {
                            key,
                            len: bytes.len() as u64,
                            written_ms,
                            reply,
                        });
                    }
                    Request::Compact => compact = true,
                    Request::Flush(tx) => flushes.push(tx),
                }
                next = if self.buf.len() < BATCH_BYTES {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            if !puts.is_empty() {
                let rolled = self.out.due();
                match self.write() {
                    Ok(start) => self.apply(puts, start),
                    Err(e) => {
                        tracing::error!(error = %e, segment = self.out.seq, "records write failed");
                        for p in puts {
                            let _ = p
                                .reply
                                .send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        }
                    }
                }
                compact |= rolled;
            }
            if compact {
                self.compact();
            }
            for f in flushes {
                let _ = f.send(());
            }
        }
    }

    /// Writes the batch buffer (starting a new segment first when due)
    /// and syncs it; returns where it starts.
    fn write(&mut self) -> std::io::Result<u64> {
        if self.out.due() {
            self.out.roll()?;
            register(&self.state, &self.out)?;
        }
        let start = self.out.append(&self.buf, true);
        if self.buf.capacity() > 2 * BATCH_BYTES {
            self.buf = Vec::new();
        }
        start
    }

    fn apply(&mut self, puts: Vec<Pending>, start: u64) {
        let mut offset = start;
        let mut replies = Vec::with_capacity(puts.len());
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(seg) = state.segments.get_mut(&self.out.seq) {
                seg.size = self.out.len;
            }
            for p in puts {
                state.set(
                    &p.key,
                    Entry {
                        seq: self.out.seq,
                        offset,
                        bytes: p.len as u32,
                        written_ms: p.written_ms,
                    },
                );
                offset += p.len;
                replies.push(p.reply);
            }
        }
        for reply in replies {
            let _ = reply.send(Ok(()));
        }
    }

    /// Copies the live records of a sparse oldest segment to the active
    /// one, then lets it go (see the module docs); up to
    /// [`COMPACT_AT_ONCE`] segments.
    fn compact(&mut self) {
        for _ in 0..COMPACT_AT_ONCE {
            let found = self
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .compactable();
            let Some(c) = found else {
                return;
            };
            if let Err(e) = self.copy_out(c.seq, &c.file, c.live) {
                tracing::warn!(segment = c.seq, error = %e, "could not compact a records segment");
                return;
            }
        }
    }

    fn copy_out(
        &mut self,
        seq: u64,
        file: &File,
        live: Vec<(Box<str>, Entry)>,
    ) -> std::io::Result<()> {
        self.buf.clear();
        let mut copied = Vec::with_capacity(live.len());
        for (key, entry) in live {
            match record::read_at(file, entry.offset, Kind::Put, &key)? {
                Some(content) => {
                    let at = self.buf.len() as u64;
                    record::encode(&mut self.buf, Kind::Put, &key, &content);
                    copied.push((key, entry, at, self.buf.len() as u64 - at));
                }
                None => {
                    // Checked at start and written by us since: a disk
                    // that changed under us. Keep the segment.
                    return Err(std::io::Error::other(format!(
                        "record {key} at {} does not check out",
                        entry.offset
                    )));
                }
            }
        }
        let start = if self.buf.is_empty() {
            self.out.len
        } else {
            self.write()?
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seg) = state.segments.get_mut(&self.out.seq) {
            seg.size = self.out.len;
        }
        for (key, old, at, len) in copied {
            // Expired meanwhile (the sweep runs on another thread): the
            // copy is dead bytes. Puts come only through this thread, so
            // a key still at its old place has no newer value.
            if state.index.get(&key) != Some(&old) {
                continue;
            }
            state.set(
                &key,
                Entry {
                    seq: self.out.seq,
                    offset: start + at,
                    bytes: len as u32,
                    written_ms: old.written_ms,
                },
            );
        }
        debug_assert_eq!(
            state.segments.get(&seq).map_or(0, |s| s.live),
            0,
            "a compacted segment still holds live records"
        );
        state.collect();
        Ok(())
    }
}
