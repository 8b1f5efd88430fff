//! The log's one writer: a thread that appends what is waiting in one
//! write, covers it with one `fdatasync`, then applies it to the index
//! and answers (group commit). A thread and not a task: it blocks in
//! `fdatasync`, and a dedicated thread costs one wake-up per batch where
//! the blocking pool cost a hand-off per message.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};

use super::appender::Appender;
use super::record::Kind;
use super::{Entry, Kept, MAGIC, Segment, State, record, segment_name};

/// At most this many bytes go into one write (a batch).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

pub(super) struct Request {
    /// The encoded record.
    pub bytes: Vec<u8>,
    pub kind: Kind,
    pub id: Box<str>,
    pub content_len: u32,
    /// Done: kept for the history, finished at (unix ms).
    pub keep: Option<u64>,
    /// Answer only once the record is on disk.
    pub sync: bool,
    pub reply: Reply,
}

/// Where the answer goes: to a task, or to a thread that waits for it
/// (the blocking pool, or start-up before the runtime matters).
pub(super) enum Reply {
    Task(tokio::sync::oneshot::Sender<std::io::Result<()>>),
    Thread(std::sync::mpsc::SyncSender<std::io::Result<()>>),
}

impl Reply {
    fn send(self, r: std::io::Result<()>) {
        let _ = match self {
            Reply::Task(tx) => tx.send(r).map_err(drop),
            Reply::Thread(tx) => tx.send(r).map_err(drop),
        };
    }
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
        .name("postern-log".into())
        .spawn(move || w.run(rx))?;
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
            pending: 0,
            kept: 0,
            modified: std::time::SystemTime::now(),
        },
    );
    state.active = out.seq;
    state.collect();
    Ok(())
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let mut bytes = batch[0].bytes.len();
            while bytes < BATCH_BYTES {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.bytes.len();
                        batch.push(r);
                    }
                    Err(_) => break,
                }
            }
            let result = self.write(&batch);
            match result {
                Ok(start) => self.apply(batch, start),
                Err(e) => {
                    tracing::error!(error = %e, segment = self.out.seq, "log write failed");
                    for r in batch {
                        r.reply
                            .send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
    }

    /// Writes the batch (starting a new segment first when due) and syncs
    /// it; returns where it starts.
    fn write(&mut self, batch: &[Request]) -> std::io::Result<u64> {
        if self.out.due() {
            self.out.roll()?;
            register(&self.state, &self.out)?;
        }
        self.buf.clear();
        for r in batch {
            self.buf.extend_from_slice(&r.bytes);
        }
        let start = self.out.append(&self.buf, batch.iter().any(|r| r.sync));
        if self.buf.capacity() > 2 * BATCH_BYTES {
            self.buf = Vec::new();
        }
        start
    }

    fn apply(&mut self, batch: Vec<Request>, start: u64) {
        let mut offset = start;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(seg) = state.segments.get_mut(&self.out.seq) {
            seg.modified = std::time::SystemTime::now();
        }
        let mut replies = Vec::with_capacity(batch.len());
        for r in batch {
            match r.kind {
                Kind::Message => state.add(
                    &r.id,
                    Entry {
                        seq: self.out.seq,
                        offset,
                        len: r.content_len,
                        kept: None,
                    },
                ),
                Kind::Done => {
                    let kept = r.keep.map(|finished_ms| Kept {
                        seq: self.out.seq,
                        offset,
                        finished_ms,
                    });
                    state.done(&r.id, kept);
                }
                Kind::Put => debug_assert!(false, "a keyed record in a message segment"),
            }
            offset += r.bytes.len() as u64;
            debug_assert_eq!(
                r.bytes.len() as u64,
                record::encoded_len(&r.id, r.content_len as usize)
            );
            replies.push(r.reply);
        }
        state.collect();
        drop(state);
        for reply in replies {
            reply.send(Ok(()));
        }
    }
}
