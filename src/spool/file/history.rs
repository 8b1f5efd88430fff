//! The message history in the spool directory (see [`crate::spool::history`]):
//! a message whose last delivery is done moves from `msg/` to `history/`
//! with a sidecar that holds what lists and details show, and is swept
//! `POSTERN_HISTORY_RETENTION` after that.
//!
//! ```text
//! history/<id>.json   written first (atomically): {"finished_at", "summary"
//!                     (id, received_at, direction, mail_from, rcpt_to,
//!                     subject, size, status, deliveries), "states" (every
//!                     delivery's final state with its attempts), "auth"
//!                     (the verdicts record, or null)}
//! history/<id>.msg    then renamed from msg/<id>.msg, byte for byte
//! ```
//!
//! So the start-up scan, the queue and everything that walks `msg/` never
//! see a finished message. A crash between the two steps leaves the
//! message in `msg/` (delivered once more after the restart: at least
//! once, as before) and a sidecar without its message, which the sweep
//! removes in time. The sweep goes by the sidecar's modification time
//! (its finish) and removes the message before its sidecar.
//!
//! A list call reads the names in `msg/` and `history/` (all of them: a
//! directory has no order), then at most [`SCAN_LIMIT`] entries newest
//! first: a sidecar for a finished message; the envelope line, the first
//! [`HEAD_BYTES`] and the state files for a pending one.

use std::io::{BufRead as _, ErrorKind, Read as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::{Spool, ignore_missing, split_record, sync_dir};
use crate::spool::history::{
    self, HEAD_BYTES, MessageDetail, MessagePage, MessageQuery, MessageSummary, SCAN_LIMIT,
};
use crate::spool::{
    DeliveryState, Envelope, Error, JobKey, Result, State, blocking, is_message_id,
};

/// The directory of finished messages.
pub(super) const HISTORY: &str = "history";

/// `history/<id>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    /// RFC 3339.
    finished_at: String,
    summary: MessageSummary,
    states: Vec<DeliveryState>,
    #[serde(default)]
    auth: Option<serde_json::Value>,
}

/// A message's envelope, the start of its content and its content's size.
struct Head {
    envelope: Envelope,
    head: Vec<u8>,
    size: u64,
}

/// The head of a message whose bytes (envelope line and content) are in
/// memory (a message of the log).
fn head_of(id: &str, bytes: Vec<u8>) -> Result<Head> {
    let (envelope, mut content) = split_record(id, bytes)?;
    let size = content.len() as u64;
    content.truncate(HEAD_BYTES);
    Ok(Head {
        envelope,
        head: content,
        size,
    })
}

fn summary(head: &Head, states: &[DeliveryState]) -> Option<MessageSummary> {
    let env = &head.envelope;
    Some(MessageSummary {
        id: env.id.clone(),
        received_at: env.received_at.clone(),
        direction: history::direction_of(env)?,
        mail_from: env.mail_from.clone(),
        rcpt_to: env.rcpt_to.clone(),
        subject: history::subject_of(&head.head),
        size: head.size,
        status: history::status_of(states.iter().map(|s| s.state)),
        deliveries: env.deliveries.len(),
    })
}

impl Spool {
    /// Whether finished messages are kept.
    pub(super) fn keeps_history(&self) -> bool {
        !self.history.is_zero()
    }

    fn history_path(&self, id: &str, ext: &str) -> PathBuf {
        self.root.join(HISTORY).join(format!("{id}.{ext}"))
    }

    /// The message file of `id`: in `msg/` while pending, in `history/`
    /// once finished.
    fn any_msg_path(&self, id: &str) -> Option<PathBuf> {
        [self.msg_path(id), self.history_path(id, "msg")]
            .into_iter()
            .find(|p| p.exists())
    }

    /// The content of message `id`, pending or finished.
    pub async fn read_message(&self, id: &str) -> Result<Vec<u8>> {
        let this = self.clone();
        let id = id.to_string();
        blocking(move || {
            for kept in [false, true] {
                if let Some(bytes) = this.log.read(&id, kept)? {
                    return Ok(split_record(&id, bytes)?.1);
                }
            }
            let path = this
                .any_msg_path(&id)
                .ok_or_else(|| Error::Io(ErrorKind::NotFound.into()))?;
            Ok(split_record(&id, std::fs::read(path)?)?.1)
        })
        .await
    }

    /// The head of pending message `id` (log or `msg/`).
    fn pending_head(&self, id: &str) -> Result<Head> {
        // The envelope line and the head only, not the whole record again
        // (up to `log::MAX_INLINE`, 256 KB) to find the subject.
        const ENVELOPE_ROOM: usize = 64 * 1024;
        if let Some((mut prefix, total)) = self.log.read_prefix(id, ENVELOPE_ROOM + HEAD_BYTES)? {
            let whole = prefix.len() == total;
            if let Some(nl) = prefix.iter().position(|&b| b == b'\n')
                && (whole || prefix.len() - (nl + 1) >= HEAD_BYTES)
            {
                prefix.truncate(nl + 1 + HEAD_BYTES);
                let (envelope, head) = split_record(id, prefix)?;
                return Ok(Head {
                    envelope,
                    head,
                    size: (total - (nl + 1)) as u64,
                });
            }
        }
        match self.log.read(id, false)? {
            Some(bytes) => head_of(id, bytes),
            None => self.read_head_sync(id, &self.msg_path(id)),
        }
    }

    /// The head of finished message `id` (`history/` or the log).
    fn finished_head(&self, id: &str) -> Result<Head> {
        match self.read_head_sync(id, &self.history_path(id, "msg")) {
            Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => {
                match self.log.read(id, true)? {
                    Some(bytes) => head_of(id, bytes),
                    None => Err(Error::Io(e)),
                }
            }
            r => r,
        }
    }

    fn read_head_sync(&self, id: &str, path: &Path) -> Result<Head> {
        let file = std::fs::File::open(path)?;
        let total = file.metadata()?.len();
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        reader.read_until(b'\n', &mut line)?;
        let size = total.saturating_sub(line.len() as u64);
        let (envelope, _) = split_record(id, line)?;
        let mut head = Vec::new();
        reader.take(HEAD_BYTES as u64).read_to_end(&mut head)?;
        Ok(Head {
            envelope,
            head,
            size,
        })
    }

    fn states_sync(&self, envelope: &Envelope) -> Result<Vec<DeliveryState>> {
        (0..envelope.deliveries.len())
            .map(|index| {
                self.read_state_lenient(&JobKey {
                    id: envelope.id.clone(),
                    index,
                })
            })
            .collect()
    }

    /// The sidecar of finished message `id`: its Done record in the log,
    /// or `history/<id>.json`.
    fn read_sidecar_sync(&self, id: &str) -> Result<Option<Sidecar>> {
        let bytes = match self.log.sidecar(id)? {
            Some(b) => b,
            None => match std::fs::read(self.history_path(id, "json")) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e.into()),
            },
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Corrupt(id.into(), format!("history sidecar: {e}")))
    }

    /// Under the operator lock, after the last delivery of `id` is done
    /// (`last` with its final state): the message moves to `history/`
    /// (see the module docs), or leaves the spool when it is not kept (an
    /// event message). The caller removed nothing yet.
    pub(super) fn archive_sync(
        &self,
        id: &str,
        deliveries: usize,
        last: (&JobKey, &DeliveryState),
    ) -> Result<()> {
        let head = self.pending_head(id)?;
        let mut states = self.states_sync(&head.envelope)?;
        if let Some(s) = states.get_mut(last.0.index) {
            *s = last.1.clone();
        }
        let Some(summary) = summary(&head, &states) else {
            return self.remove_sync(id, deliveries, true);
        };
        let auth = self
            .read_auth_sync(id)
            .and_then(|b| serde_json::from_slice(&b).ok());
        let sidecar = Sidecar {
            finished_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            summary,
            states,
            auth,
        };
        let bytes = serde_json::to_vec(&sidecar).expect("sidecar serialises");
        // A message of the log stays in its segment, kept, its sidecar in
        // its Done record: no file is written for it.
        if !self
            .log
            .finish_blocking(id, Some((crate::spool::now_ms(), &bytes)), false)?
        {
            self.write_atomic(
                &format!("history-{id}.json"),
                &self.history_path(id, "json"),
                &bytes,
            )?;
            std::fs::rename(self.msg_path(id), self.history_path(id, "msg"))?;
            sync_dir(&self.root.join(HISTORY), self.fsync)?;
        }
        // The message is kept in the log or moved to history/ by now.
        self.remove_records_sync(id, deliveries, true)
    }

    /// Removes finished messages whose sidecar is older than `max_age`
    /// (message first); returns how many.
    pub fn sweep_history(&self, max_age: Duration) -> Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for entry in std::fs::read_dir(self.root.join(HISTORY))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age);
            if !expired {
                continue;
            }
            ignore_missing(std::fs::remove_file(self.history_path(id, "msg")))?;
            ignore_missing(std::fs::remove_file(entry.path()))?;
            removed += 1;
        }
        let cutoff = SystemTime::now()
            .checked_sub(max_age)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64);
        Ok(removed + self.log.expire(cutoff))
    }

    /// Ids in `dir` with `suffix` that are in the query's range.
    fn ids_in(&self, dir: &Path, suffix: &str, query: &MessageQuery) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(suffix))
                && is_message_id(id)
                && query.in_range(id)
            {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    /// A page of messages, pending and finished, newest first.
    pub async fn list_messages(&self, query: MessageQuery) -> Result<MessagePage> {
        let this = self.clone();
        blocking(move || {
            let mut ids: Vec<(String, bool)> = this
                .ids_in(&this.root.join("msg"), ".msg", &query)?
                .into_iter()
                .chain(
                    this.log
                        .pending()
                        .into_iter()
                        .filter(|id| is_message_id(id) && query.in_range(id)),
                )
                .map(|id| (id, false))
                .chain(
                    this.ids_in(&this.root.join(HISTORY), ".json", &query)?
                        .into_iter()
                        .chain(
                            this.log
                                .kept()
                                .into_iter()
                                .filter(|id| is_message_id(id) && query.in_range(id)),
                        )
                        .map(|id| (id, true)),
                )
                .collect();
            // Newest first; a message caught moving is listed once.
            ids.sort_unstable_by(|a, b| b.cmp(a));
            ids.dedup_by(|a, b| a.0 == b.0);
            let full = ids.len() > SCAN_LIMIT;
            ids.truncate(SCAN_LIMIT);
            let summaries = ids.into_iter().filter_map(|(id, finished)| {
                match this.summary_sync(&id, finished) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(message_id = %id, error = %e, "not listed");
                        None
                    }
                }
            });
            Ok(history::page(&query, summaries, full))
        })
        .await
    }

    fn summary_sync(&self, id: &str, finished: bool) -> Result<Option<MessageSummary>> {
        if finished {
            return Ok(self.read_sidecar_sync(id)?.map(|s| s.summary));
        }
        let head = match self.pending_head(id) {
            Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
            r => r?,
        };
        let states = self.states_sync(&head.envelope)?;
        Ok(summary(&head, &states))
    }

    /// Message `id` with its deliveries, pending or finished; `None` when
    /// there is none (or it is an event).
    pub async fn message_detail(&self, id: &str) -> Result<Option<MessageDetail>> {
        let this = self.clone();
        let id = id.to_string();
        blocking(move || {
            if !is_message_id(&id) {
                return Ok(None);
            }
            match this.pending_head(&id) {
                Ok(head) => {
                    let states = this.states_sync(&head.envelope)?;
                    let Some(summary) = summary(&head, &states) else {
                        return Ok(None);
                    };
                    let auth = this
                        .read_auth_sync(&id)
                        .and_then(|b| serde_json::from_slice(&b).ok());
                    let deliveries = history::delivery_details(&head.envelope, states);
                    Ok(Some(MessageDetail {
                        summary,
                        envelope: head.envelope,
                        auth,
                        deliveries,
                    }))
                }
                Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => {
                    let Some(sidecar) = this.read_sidecar_sync(&id)? else {
                        return Ok(None);
                    };
                    let head = match this.finished_head(&id) {
                        Err(Error::Io(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
                        r => r?,
                    };
                    let deliveries = history::delivery_details(&head.envelope, sidecar.states);
                    Ok(Some(MessageDetail {
                        summary: sidecar.summary,
                        envelope: head.envelope,
                        auth: sidecar.auth,
                        deliveries,
                    }))
                }
                Err(e) => Err(e),
            }
        })
        .await
    }
}

/// The state a delivery is finished with: delivered, its attempts kept.
pub(crate) fn finished(done: &DeliveryState) -> DeliveryState {
    DeliveryState {
        state: State::Delivered,
        next_at: 0,
        ..done.clone()
    }
}
