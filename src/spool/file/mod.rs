//! The file backend of [`super::Store`]: the spool directory, the
//! embedded default. One process owns it; its due work is scheduled in
//! memory ([`queue`]) and rebuilt from disk at start, and a lease
//! ([`super::lease`]) lives in that process.
//!
//! # On-disk layout (under `POSTERN_SPOOL_DIR`)
//!
//! ```text
//! segments/<seq>.seg      committed messages up to 256 KB, many to a
//!                         file, and their Done records (with the history
//!                         sidecar of a kept one): see `spool::log`
//! tmp/<id>.msg            a larger message being received; never read
//!                         back, cleared at start
//! msg/<id>.msg            a larger message (or one moved out of the log,
//!                         or written by a version before the log),
//!                         line 1: the envelope as one line of JSON (id,
//!                         received_at, mail_from, rcpt_to, helo, remote_ip,
//!                         deliveries[route, url, rcpt_to, …]); then the
//!                         message exactly as received, our Received: first
//! state/<id>.<k>.json     delivery k of that message once it has been tried:
//!                         {"state": "pending"|"dead"|"delivered",
//!                          "attempts", "next_at" (unix ms), "last_error"}
//! corrupt/                entries that could not be read at start, moved
//!                         aside (never deleted) for an operator to inspect
//! records/<seq>.rec       the records log ([`super::records`]): the status
//!                         of each message sent through the API (what
//!                         `GET /v1/messages/{id}` shows), written by each
//!                         relay attempt (before the first one the status
//!                         is derived from the pending message: `queued`),
//!                         kept after it is done for the status retention
//! outbox/<id>.json        such a status as earlier versions wrote it: read
//!                         when the log has none for the id, swept
//! idem/<sha256>.json      `Idempotency-Key` records, kept 24 h
//! kept/<id>.<k>           attachment k of a message's payload, sent as a
//!                         signed `url`: line 1 its expiry (unix s, 20
//!                         digits, extended in place), line 2 its meta as
//!                         JSON (content_type, filename, sha256, size),
//!                         then its decoded bytes; outlives
//!                         `msg/<id>.msg` until the sweep after `expires`
//!                         ([`kept`], `spool::kept`)
//! attachment-url.key      the generated key of attachment links when
//!                         `POSTERN_ATTACHMENT_URL_SECRET` is unset (0600;
//!                         written by the wiring, `app::setup`)
//! auth/<id>.json          the SPF/DKIM/DMARC/ARC verdicts of an inbound
//!                         message (when checks are on), written after its
//!                         commit and before it is scheduled, removed with
//!                         it (orphans from a crash are cleared at start)
//! history/<id>.json       a finished message's sidecar (summary, every
//!                         delivery's final state and attempts, verdicts),
//! history/<id>.msg        and the message, renamed from msg/: kept for
//!                         POSTERN_HISTORY_RETENTION ([`history`])
//! ```
//!
//! A message of up to 256 KB is committed by appending it to the log; the
//! log's writer covers all that are waiting with one `fdatasync` (group
//! commit), and only then does the SMTP session answer `250`. A larger one
//! is committed by writing it to `tmp/`, `fsync`ing the file, renaming it
//! into `msg/` and `fsync`ing `msg/`. Rename is atomic, so after a crash
//! `msg/` holds only whole messages; what is left in `tmp/` was never
//! acknowledged and is removed. A record of the log is checksummed, so a
//! torn one is recognised and set aside. Envelope and body are stored
//! together (one record, or one file), in the same bytes either way.
//!
//! A delivery with no state file is pending and due now. When the last
//! delivery of a message is done, the message is kept for the history
//! (with `POSTERN_HISTORY_RETENTION` above 0; see [`history`]: a message of
//! the log stays in its segment and its Done record carries the sidecar; a
//! file moves to `history/`), or its Done record is appended or
//! `msg/<id>.msg` removed (that is the commit record); then its state
//! files go; orphans from a crash in between are cleared at start. A
//! delivery an operator deletes is not kept.
//!
//! An `Idempotency-Key` record (`idem/`) is written before its message's
//! rename into `msg/` and trusted only while the message, or its
//! `outbox/` status record, exists ([`Spool::is_committed`]; see
//! `api::idempotency`), so the two commit together under `kill -9`.
//! An attempt's outcome is written under the operator lock, and only
//! while the attempt's lease holds; an operator change revokes the
//! lease under the same lock ([`Spool::write_state`]).

mod history;
mod kept;
mod present;
mod queue;

pub(crate) use queue::Queue;

use std::io::{ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::log::{self, Log};
use super::records::{self, Records};
use super::{
    Change, DeliveryInfo, DeliveryState, Envelope, Error, JobKey, Lease, RECORDS_AUTH,
    RECORDS_IDEM, RECORDS_OUTBOX, Result, State, blocking, is_message_id, lease, new_id,
    parse_delivery_id,
};
use present::{Present, state_name};

/// The spool directory: the file backend of [`Store`].
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    root: PathBuf,
    fsync: bool,
    /// Serialises operator changes (retry, delete, retention) so each one
    /// checks a delivery's state and changes it as one step.
    ops: std::sync::Arc<std::sync::Mutex<()>>,
    /// Attempts in flight (see [`lease`]).
    leases: lease::Table,
    /// How long finished messages are kept in `history/` (zero: not kept).
    history: std::time::Duration,
    /// Where messages up to [`log::MAX_INLINE`] bytes are committed.
    log: Log,
    /// Where status records are kept (see [`in_records_log`]).
    records: Records,
    /// The state files and verdicts records that exist ([`present`]).
    states: std::sync::Arc<Present>,
    auths: std::sync::Arc<Present>,
}

/// Records of `dir` kept in the records log rather than one file each:
/// the status records, one per API message and rewritten each attempt.
/// Idempotency records stay files (one per request that carries a key),
/// and so does the verdicts record, which lives and goes with its message.
fn in_records_log(dir: &str) -> bool {
    dir == RECORDS_OUTBOX
}

/// What a start-up scan found.
#[derive(Debug, Default)]
pub struct ScanReport {
    /// Pending deliveries with their due time (unix ms).
    pub pending: Vec<(JobKey, u64)>,
    pub dead: usize,
    pub messages: usize,
    pub corrupt: usize,
}

impl Spool {
    /// Creates the layout if needed and clears `tmp/` (never-acknowledged
    /// partial writes).
    pub fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<Spool> {
        let root = root.into();
        for d in [
            "tmp",
            "msg",
            "state",
            "corrupt",
            kept::KEPT,
            RECORDS_OUTBOX,
            RECORDS_IDEM,
            RECORDS_AUTH,
            history::HISTORY,
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        for entry in std::fs::read_dir(root.join("tmp"))? {
            let _ = std::fs::remove_file(entry?.path());
        }
        let (log, _) = Log::open(
            &root.join("segments"),
            &root.join("corrupt"),
            fsync,
            log::SEGMENT_BYTES,
        )?;
        let records = Records::open(
            &root.join("records"),
            &root.join("corrupt"),
            fsync,
            records::SEGMENT_BYTES,
        )?;
        let states = std::sync::Arc::new(Present::of_dir(&root.join("state"))?);
        let auths = std::sync::Arc::new(Present::of_dir(&root.join(RECORDS_AUTH))?);
        Ok(Spool {
            root,
            fsync,
            ops: Default::default(),
            leases: Default::default(),
            history: std::time::Duration::ZERO,
            log,
            records,
            states,
            auths,
        })
    }

    /// Keeps finished messages for `retention` (zero: removed when done).
    pub fn keep_history(&mut self, retention: std::time::Duration) {
        self.history = retention;
    }

    /// Takes the earliest due delivery from `queue` with a lease on it;
    /// otherwise tells when the next one is due (None: none scheduled).
    pub fn claim(&self, queue: &Queue, now: u64) -> std::result::Result<Lease, Option<u64>> {
        queue.pop_due(now).map(|key| self.leases.grant(key))
    }

    fn msg_path(&self, id: &str) -> PathBuf {
        self.root.join("msg").join(format!("{id}.msg"))
    }

    /// The verdicts record of message `id` (see [`RECORDS_AUTH`]).
    fn auth_path(&self, id: &str) -> PathBuf {
        self.root.join(RECORDS_AUTH).join(format!("{id}.json"))
    }

    fn state_path(&self, key: &JobKey) -> PathBuf {
        self.root
            .join("state")
            .join(format!("{}.{}.json", key.id, key.index))
    }

    /// Removes the state file of `key`, if any (errors ignored).
    fn remove_state_file(&self, key: &JobKey) {
        if std::fs::remove_file(self.state_path(key)).is_ok() {
            self.states.remove(&state_name(&key.id, key.index));
        }
    }

    /// The verdicts record of message `id`, if it has one.
    fn read_auth_sync(&self, id: &str) -> Option<Vec<u8>> {
        if !self.auths.may_exist(id) {
            return None;
        }
        std::fs::read(self.auth_path(id)).ok()
    }

    /// Starts writing a message: the envelope line goes first, the caller
    /// streams the content, then [`MessageWriter::commit`]. Nothing is
    /// written until the message outgrows [`log::MAX_INLINE`] (then it
    /// becomes a `tmp/` file) or is committed (to the log).
    pub async fn create(&self, envelope: &Envelope) -> Result<MessageWriter> {
        let tmp = self.root.join("tmp").join(format!("{}.msg", envelope.id));
        let mut buf = Vec::with_capacity(16 * 1024);
        serde_json::to_writer(&mut buf, envelope).expect("envelope serialises");
        buf.push(b'\n');
        Ok(MessageWriter {
            id: envelope.id.clone(),
            file: None,
            spilled: false,
            buf,
            tmp,
            dest: self.msg_path(&envelope.id),
            fsync: self.fsync,
            log: self.log.clone(),
            committed: false,
        })
    }

    /// The size of a committed message's file (0 when it is gone). A stat
    /// of a just-written file is served from the inode cache; doing it in
    /// place costs less than a trip to the blocking pool.
    pub fn message_size(&self, id: &str) -> Result<u64> {
        if let Some(n) = self.log.size(id) {
            return Ok(n);
        }
        match std::fs::metadata(self.msg_path(id)) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads a committed message (envelope and content), the state of
    /// one of its deliveries and its verdicts record (`auth/`, if any),
    /// then runs `prepare` on them, all in one trip to the blocking pool
    /// (the delivery worker builds its JSON body there, so a message costs
    /// one hand-off instead of two).
    pub async fn load_with<T: Send + 'static>(
        &self,
        key: &JobKey,
        prepare: impl FnOnce(&Envelope, &DeliveryState, Vec<u8>, Option<Vec<u8>>) -> T + Send + 'static,
    ) -> Result<(Envelope, DeliveryState, T)> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            let bytes = this.pending_bytes(&key.id)?;
            let (envelope, raw) = split_record(&key.id, bytes)?;
            let state = this.read_state_sync(&key).unwrap_or_else(|e| {
                // A torn state write loses only retry bookkeeping. Remove
                // it, so that "no state file" means fresh again and the
                // file cannot outlive its message.
                tracing::warn!(message_id = %key.id, error = %e, "unreadable delivery state; treating as fresh");
                this.remove_state_file(&key);
                DeliveryState::fresh()
            });
            // Absent on the default path (checks off).
            let auth = this.read_auth_sync(&key.id);
            let prepared = prepare(&envelope, &state, raw, auth);
            Ok((envelope, state, prepared))
        })
        .await
    }

    fn read_state_sync(&self, key: &JobKey) -> Result<DeliveryState> {
        if !self.states.may_exist(&state_name(&key.id, key.index)) {
            return Ok(DeliveryState::fresh());
        }
        match std::fs::read(self.state_path(key)) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| Error::Corrupt(format!("{}.{}", key.id, key.index), e.to_string())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(DeliveryState::fresh()),
            Err(e) => Err(e.into()),
        }
    }

    /// Atomically replaces the state of the delivery `lease` holds: the
    /// outcome of its attempt. Refused when the lease no longer holds.
    pub async fn write_state(&self, lease: &Lease, state: &DeliveryState) -> Result<()> {
        let this = self.clone();
        let check = lease.check();
        let state = state.clone();
        blocking(move || {
            let _ops = this.lock_ops();
            this.still_held(&check)?;
            this.write_state_sync(&check.key, &state)
        })
        .await
    }

    /// Under the operator lock: the lease still holds, or `LeaseLost`.
    fn still_held(&self, check: &lease::Check) -> Result<()> {
        if check.holds() {
            Ok(())
        } else {
            Err(Error::LeaseLost(check.key.id.clone(), check.key.index))
        }
    }

    fn write_state_sync(&self, key: &JobKey, state: &DeliveryState) -> Result<()> {
        let bytes = serde_json::to_vec(state).expect("state serialises");
        let tmp = format!("{}.{}.state", key.id, key.index);
        self.states.add(&state_name(&key.id, key.index));
        self.write_atomic(&tmp, &self.state_path(key), &bytes)
    }

    /// Writes `dest` atomically and durably: `tmp/<tmp_name>`, fsync,
    /// rename, fsync of `dest`'s directory.
    fn write_atomic(&self, tmp_name: &str, dest: &Path, bytes: &[u8]) -> Result<()> {
        let tmp = self.root.join("tmp").join(tmp_name);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        if self.fsync {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dest)?;
        sync_dir(dest.parent().expect("spool subdirectory"), self.fsync)
    }

    /// The delivery `lease` holds is done (`done`: its state with its
    /// attempts). When it was the last one, the message leaves the spool
    /// (or moves to the history); otherwise its state records it so a
    /// restart does not send it twice. `had_state`: whether state files
    /// may exist (after a failed attempt); saves failing unlinks on the
    /// common first-try path. Refused when the lease no longer holds.
    pub async fn finish(
        &self,
        lease: &Lease,
        deliveries: usize,
        had_state: bool,
        done: &DeliveryState,
    ) -> Result<()> {
        let this = self.clone();
        let check = lease.check();
        let done = history::finished(done);
        blocking(move || {
            let _ops = this.lock_ops();
            this.still_held(&check)?;
            let key = check.key;
            if deliveries > 1 {
                this.write_state_sync(&key, &done)?;
                for index in 0..deliveries {
                    let other = JobKey {
                        id: key.id.clone(),
                        index,
                    };
                    if this.read_state_sync(&other)?.state != State::Delivered {
                        return Ok(());
                    }
                }
            }
            if this.keeps_history() {
                return this.archive_sync(&key.id, deliveries, (&key, &done));
            }
            this.remove_sync(&key.id, deliveries, had_state || deliveries > 1)
        })
        .await
    }

    /// Removes a committed message that was never scheduled (its producer
    /// took its acceptance back: a sync route refused it, or it has no
    /// delivery left to make).
    pub async fn withdraw(&self, id: &str, deliveries: usize) -> Result<()> {
        let this = self.clone();
        let id = id.to_string();
        blocking(move || {
            let _ops = this.lock_ops();
            // Durably gone: a crash must not bring back a message the
            // client was told is refused.
            if this.log.finish_blocking(&id, None, true)? {
                return this.remove_sync(&id, deliveries, false);
            }
            this.remove_sync(&id, deliveries, false)?;
            sync_dir(&this.root.join("msg"), this.fsync)
        })
        .await
    }

    /// Removes a message and its states, commit record (its Done record
    /// in the log, or the removal of its file) first.
    fn remove_sync(&self, id: &str, deliveries: usize, states: bool) -> Result<()> {
        if !self.log.finish_blocking(id, None, false)? {
            ignore_missing(std::fs::remove_file(self.msg_path(id)))?;
        }
        self.remove_records_sync(id, deliveries, states)
    }

    /// Removes a finished message's verdicts record and (with `states`)
    /// its delivery states.
    fn remove_records_sync(&self, id: &str, deliveries: usize, states: bool) -> Result<()> {
        if self.auths.may_exist(id) {
            ignore_missing(std::fs::remove_file(self.auth_path(id)))?;
            self.auths.remove(id);
        }
        if states {
            for index in 0..deliveries {
                let key = JobKey {
                    id: id.to_string(),
                    index,
                };
                let name = state_name(id, index);
                if self.states.may_exist(&name) {
                    ignore_missing(std::fs::remove_file(self.state_path(&key)))?;
                    self.states.remove(&name);
                }
            }
        }
        Ok(())
    }

    /// Walks `msg/` at start: every pending delivery is returned with its
    /// due time; unreadable entries are moved to `corrupt/`; state files
    /// whose message is gone are removed.
    pub fn scan(&self) -> Result<ScanReport> {
        let mut report = ScanReport::default();
        let mut ids = std::collections::HashSet::new();
        // Files (larger messages, and spools of earlier versions), then
        // the log's pending messages.
        let mut entries: Vec<(String, Option<PathBuf>)> = Vec::new();
        for entry in std::fs::read_dir(self.root.join("msg"))? {
            let path = entry?.path();
            if let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".msg"))
            {
                entries.push((id.to_string(), Some(path)));
            }
        }
        let files: std::collections::HashSet<String> =
            entries.iter().map(|(id, _)| id.clone()).collect();
        for id in self.log.pending() {
            if files.contains(&id) {
                // Moved out to its file, and a crash came before its Done
                // record: the file is the message.
                self.log.finish_blocking(&id, None, true)?;
            } else {
                entries.push((id, None));
            }
        }
        for (id, path) in entries {
            let bytes = match &path {
                Some(path) => std::fs::read(path).map_err(Error::from),
                None => self
                    .log
                    .read(&id, false)
                    .and_then(|b| b.ok_or_else(|| Error::Io(ErrorKind::NotFound.into()))),
            };
            let envelope = match bytes.and_then(|b| split_record(&id, b)) {
                Ok((env, _)) => env,
                Err(e) => {
                    tracing::error!(message_id = %id, error = %e, "corrupt spool entry moved to corrupt/");
                    let aside = self.root.join("corrupt").join(format!("{id}.msg"));
                    match &path {
                        Some(path) => std::fs::rename(path, aside)?,
                        None => {
                            // What could be read of it, then its Done record.
                            if let Ok(Some(b)) = self.log.read(&id, false) {
                                std::fs::write(aside, b)?;
                            }
                            self.log.finish_blocking(&id, None, true)?;
                        }
                    }
                    report.corrupt += 1;
                    continue;
                }
            };
            if envelope.deliveries.is_empty() {
                // Nothing to deliver: all its targets were sync routes and
                // we stopped before their answer (the client got no 250,
                // so it sends again).
                tracing::info!(message_id = %id, "message without deliveries removed");
                match &path {
                    Some(path) => drop(std::fs::remove_file(path)),
                    None => drop(self.log.finish_blocking(&id, None, true)),
                }
                continue;
            }
            report.messages += 1;
            ids.insert(id.clone());
            for index in 0..envelope.deliveries.len() {
                let key = JobKey {
                    id: id.clone(),
                    index,
                };
                let state = match std::fs::read(self.state_path(&key)) {
                    Ok(b) => match serde_json::from_slice::<DeliveryState>(&b) {
                        Ok(s) => s,
                        Err(e) => {
                            // A torn state write only loses retry bookkeeping: retry now.
                            tracing::warn!(message_id = %id, delivery = index, error = %e, "unreadable delivery state; retrying now");
                            let _ = std::fs::remove_file(self.state_path(&key));
                            DeliveryState::fresh()
                        }
                    },
                    Err(e) if e.kind() == ErrorKind::NotFound => DeliveryState::fresh(),
                    Err(e) => return Err(e.into()),
                };
                match state.state {
                    State::Pending => report.pending.push((key, state.next_at)),
                    State::Dead => report.dead += 1,
                    State::Delivered => {}
                }
            }
        }
        for entry in std::fs::read_dir(self.root.join("state"))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let id = name.split('.').next().unwrap_or("");
            if !ids.contains(id) {
                let _ = std::fs::remove_file(&path);
            }
        }
        for entry in std::fs::read_dir(self.root.join(RECORDS_AUTH))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !ids.contains(name.trim_end_matches(".json")) {
                let _ = std::fs::remove_file(&path);
            }
        }
        report
            .pending
            .sort_by_key(|(k, due)| (*due, k.id.clone(), k.index));
        Ok(report)
    }
}

fn ignore_missing(r: std::io::Result<()>) -> Result<()> {
    match r {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Splits a `msg/` record into envelope and content.
fn split_record(id: &str, mut bytes: Vec<u8>) -> Result<(Envelope, Vec<u8>)> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::Corrupt(id.into(), "no envelope line".into()))?;
    let envelope: Envelope = serde_json::from_slice(&bytes[..nl])
        .map_err(|e| Error::Corrupt(id.into(), format!("envelope: {e}")))?;
    if envelope.id != id {
        return Err(Error::Corrupt(
            id.into(),
            "envelope id does not match file name".into(),
        ));
    }
    bytes.drain(..=nl);
    Ok((envelope, bytes))
}

impl Spool {
    /// Durably writes a small record (`outbox/`, `idem/`), atomically.
    pub async fn write_record(&self, dir: &'static str, name: &str, bytes: Vec<u8>) -> Result<()> {
        if in_records_log(dir)
            && let Some(key) = records::key(dir, name)
        {
            return self.records.put(&key, &bytes).await;
        }
        if dir == RECORDS_AUTH {
            self.auths.add(name.strip_suffix(".json").unwrap_or(name));
        }
        let this = self.clone();
        let name = name.to_string();
        blocking(move || {
            let dest = this.root.join(dir).join(&name);
            this.write_atomic(&format!("{dir}-{name}"), &dest, &bytes)
        })
        .await
    }

    /// A record, or `None` when there is none.
    pub async fn read_record(&self, dir: &'static str, name: &str) -> Result<Option<Vec<u8>>> {
        // Names come from clients (ids in URLs): never let one leave `dir`.
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Ok(None);
        }
        if in_records_log(dir)
            && let Some(key) = records::key(dir, name)
        {
            let records = self.records.clone();
            if let Some(bytes) = blocking(move || records.get(&key)).await? {
                return Ok(Some(bytes));
            }
            // Not there: maybe a file an earlier version wrote.
        }
        match tokio::fs::read(self.root.join(dir).join(name)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether message `id` was committed: it is in the spool, or (once
    /// delivered) its status record is. What an idempotency record written
    /// before its message's commit is checked against.
    pub async fn is_committed(&self, id: &str) -> Result<bool> {
        if !is_message_id(id) {
            return Ok(false);
        }
        if self.log.is_pending(id) {
            return Ok(true);
        }
        if records::key(RECORDS_OUTBOX, &format!("{id}.json"))
            .is_some_and(|key| self.records.contains(&key))
        {
            return Ok(true);
        }
        for path in [
            self.msg_path(id),
            self.root.join(RECORDS_OUTBOX).join(format!("{id}.json")),
        ] {
            if tokio::fs::try_exists(&path).await? {
                return Ok(true);
            }
        }
        // Not the history: an API message's status record outlives it.
        Ok(false)
    }

    /// Writes and removes a probe file: can the spool take a message now?
    pub fn probe_writable(&self) -> Result<()> {
        let path = self
            .root
            .join("tmp")
            .join(format!("ready-probe-{}", new_id()));
        let mut f = std::fs::File::create(&path)?;
        let r = f.write_all(b"probe");
        let _ = std::fs::remove_file(&path);
        Ok(r?)
    }

    /// Bytes available to us on the spool's filesystem (what an
    /// unprivileged writer may still use, as `df` shows it).
    pub fn free_space(&self) -> std::io::Result<u64> {
        let st = rustix::fs::statvfs(&self.root).map_err(std::io::Error::from)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Age of the oldest message (pending or dead), if any: of its file,
    /// or of the log segment it is in.
    pub fn oldest_age(&self) -> Option<std::time::Duration> {
        let now = SystemTime::now();
        std::fs::read_dir(self.root.join("msg"))
            .ok()?
            .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
            .map(|t| now.duration_since(t).unwrap_or_default())
            .chain(self.log.oldest_pending())
            .max()
    }

    /// Removes records in `dir` not modified for `max_age`; returns how many.
    pub fn sweep(&self, dir: &str, max_age: std::time::Duration) -> Result<usize> {
        let mut removed = 0;
        if in_records_log(dir) {
            let cutoff = super::now_ms().saturating_sub(max_age.as_millis() as u64);
            removed += self.records.expire(dir, cutoff);
        }
        let now = SystemTime::now();
        for entry in std::fs::read_dir(self.root.join(dir))? {
            let entry = entry?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() > max_age)
                .unwrap_or(false);
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A message still smaller than this at its commit goes to the log, whole;
/// a larger one becomes a `tmp/` file, its bytes handed to the blocking
/// pool in chunks of this size, so a 25 MB message never sits in memory
/// whole.
const SPILL_AT: usize = log::MAX_INLINE;

fn sync_dir(dir: &Path, fsync: bool) -> Result<()> {
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A message being received. Dropping it without `commit` removes the
/// temporary file, if it has one: nothing half-written ever reaches `msg/`
/// or the log.
pub(crate) struct MessageWriter {
    id: String,
    /// The `tmp/` file, once the message outgrew the log (`None` also
    /// while a spill is on the blocking pool).
    file: Option<std::fs::File>,
    spilled: bool,
    buf: Vec<u8>,
    tmp: PathBuf,
    dest: PathBuf,
    fsync: bool,
    log: Log,
    committed: bool,
}

impl MessageWriter {
    pub async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= SPILL_AT {
            self.spill().await?;
        }
        Ok(())
    }

    async fn spill(&mut self) -> Result<()> {
        let mut file = match self.file.take() {
            Some(f) => f,
            None => {
                let path = self.tmp.clone();
                self.spilled = true;
                blocking(move || {
                    Ok(std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&path)?)
                })
                .await?
            }
        };
        let mut buf = std::mem::take(&mut self.buf);
        let (file, buf, result) = tokio::task::spawn_blocking(move || {
            let r = file.write_all(&buf);
            buf.clear();
            (file, buf, r)
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?;
        self.file = Some(file);
        self.buf = buf;
        Ok(result?)
    }

    /// Makes the message durable: appended to the log (a small one), or
    /// written, fsynced, renamed into `msg/` with its directory fsynced, in
    /// one trip to the blocking pool. When this returns `Ok`, the message
    /// survives a crash.
    pub async fn commit(mut self) -> Result<()> {
        if !self.spilled {
            // Small: one record in the log, covered by a group commit.
            self.log.append(&self.id, &self.buf).await?;
            self.committed = true;
            return Ok(());
        }
        let mut file = self.file.take().expect("writer has its file");
        let buf = std::mem::take(&mut self.buf);
        let (tmp, dest, fsync) = (self.tmp.clone(), self.dest.clone(), self.fsync);
        blocking(move || {
            file.write_all(&buf)?;
            if fsync {
                file.sync_all()?;
            }
            drop(file);
            std::fs::rename(&tmp, &dest)?;
            sync_dir(dest.parent().expect("msg dir"), fsync)
        })
        .await?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for MessageWriter {
    fn drop(&mut self) {
        if !self.committed && self.spilled {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Spool {
    /// The envelope line of a message only (the content is not read), or
    /// `None` when the message is not in the spool.
    fn read_envelope_sync(&self, id: &str) -> Result<Option<Envelope>> {
        use std::io::BufRead as _;
        if let Some(mut bytes) = self.log.read(id, false)? {
            let nl = bytes
                .iter()
                .position(|&b| b == b'\n')
                .unwrap_or(bytes.len());
            bytes.truncate(nl + 1);
            return Ok(Some(split_record(id, bytes)?.0));
        }
        let file = match std::fs::File::open(self.msg_path(id)) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut line = Vec::new();
        std::io::BufReader::new(file).read_until(b'\n', &mut line)?;
        Ok(Some(split_record(id, line)?.0))
    }

    /// A delivery's state; an unreadable state file reads as fresh
    /// (pending, due now), as [`Spool::scan`] and [`Spool::load`] treat it.
    fn read_state_lenient(&self, key: &JobKey) -> Result<DeliveryState> {
        match self.read_state_sync(key) {
            Err(Error::Corrupt(..)) => Ok(DeliveryState::fresh()),
            r => r,
        }
    }

    /// The bytes of pending message `id` (envelope line and content):
    /// from the log, or its file.
    fn pending_bytes(&self, id: &str) -> Result<Vec<u8>> {
        match self.log.read(id, false)? {
            Some(bytes) => Ok(bytes),
            None => Ok(std::fs::read(self.msg_path(id))?),
        }
    }

    /// Ids of the pending messages: the log's and the files in `msg/`.
    fn pending_ids(&self) -> Result<Vec<String>> {
        let mut ids = self.log.pending();
        for entry in std::fs::read_dir(self.root.join("msg"))? {
            if let Some(id) = entry?
                .file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".msg"))
            {
                ids.push(id.to_string());
            }
        }
        Ok(ids)
    }

    /// Moves pending messages that hold up the log's oldest segment out to
    /// `msg/` files, so that the segments behind it can be deleted (see
    /// `spool::log`); returns how many. Run by the hourly sweep.
    pub fn move_out_stuck(&self) -> Result<usize> {
        let mut moved = 0;
        for id in self.log.stuck() {
            let _ops = self.lock_ops();
            let Some(bytes) = self.log.read(&id, false)? else {
                continue;
            };
            self.write_atomic(&format!("{id}.msg"), &self.msg_path(&id), &bytes)?;
            self.log.finish_blocking(&id, None, true)?;
            moved += 1;
        }
        Ok(moved)
    }

    fn lock_ops(&self) -> std::sync::MutexGuard<'_, ()> {
        self.ops.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deliveries in `states`, ordered by message id then delivery number,
    /// starting after `after`; at most `limit`, and whether more follow.
    pub async fn list_deliveries(
        &self,
        states: Vec<State>,
        after: Option<JobKey>,
        limit: usize,
    ) -> Result<(Vec<DeliveryInfo>, bool)> {
        let this = self.clone();
        blocking(move || {
            let mut ids = Vec::new();
            for id in this.pending_ids()? {
                // Only ids the API can name back are listed.
                if parse_delivery_id(&format!("{id}.0")).is_some()
                    && after.as_ref().is_none_or(|a| id >= a.id)
                {
                    ids.push(id);
                }
            }
            ids.sort_unstable();
            ids.dedup();
            let mut out = Vec::new();
            for id in ids {
                let envelope = match this.read_envelope_sync(&id) {
                    Ok(Some(e)) => e,
                    // Finished since the directory was read.
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(message_id = %id, error = %e, "unreadable spool entry; not listed");
                        continue;
                    }
                };
                for (index, delivery) in envelope.deliveries.into_iter().enumerate() {
                    let key = JobKey {
                        id: id.clone(),
                        index,
                    };
                    if after.as_ref().is_some_and(|a| key <= *a) {
                        continue;
                    }
                    let state = this.read_state_lenient(&key)?;
                    if !states.contains(&state.state) {
                        continue;
                    }
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    out.push(DeliveryInfo {
                        key,
                        received_at: envelope.received_at.clone(),
                        delivery,
                        state,
                    });
                }
            }
            Ok((out, false))
        })
        .await
    }

    /// One delivery, whatever its state; `None` when there is no such
    /// message or delivery.
    pub async fn delivery_info(&self, key: &JobKey) -> Result<Option<DeliveryInfo>> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            let Some(envelope) = this.read_envelope_sync(&key.id)? else {
                return Ok(None);
            };
            let Some(delivery) = envelope.deliveries.get(key.index).cloned() else {
                return Ok(None);
            };
            let state = this.read_state_lenient(&key)?;
            Ok(Some(DeliveryInfo {
                key,
                received_at: envelope.received_at,
                delivery,
                state,
            }))
        })
        .await
    }

    /// A dead delivery becomes pending again with no attempts, due now: its
    /// state file goes (no state file means exactly that). The caller
    /// schedules it.
    pub async fn retry_dead(&self, key: &JobKey) -> Result<Change> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || {
            let _ops = this.lock_ops();
            let Some(envelope) = this.read_envelope_sync(&key.id)? else {
                return Ok(Change::NotFound);
            };
            if key.index >= envelope.deliveries.len() {
                return Ok(Change::NotFound);
            }
            let state = this.read_state_lenient(&key)?;
            if state.state != State::Dead {
                return Ok(Change::WrongState(state.state));
            }
            this.leases.revoke(&key);
            let retried = state.retried();
            if retried.has_record() {
                this.write_state_sync(&key, &retried)?;
            } else {
                ignore_missing(std::fs::remove_file(this.state_path(&key)))?;
                this.states.remove(&state_name(&key.id, key.index));
                sync_dir(&this.root.join("state"), this.fsync)?;
            }
            Ok(Change::Done {
                message_removed: false,
            })
        })
        .await
    }

    /// Gives up on a delivery whose state is one of `allowed`: it is
    /// recorded as done, and when no delivery of the message is left
    /// pending or dead the message leaves the spool (commit record first).
    pub async fn discard(&self, key: &JobKey, allowed: &'static [State]) -> Result<Change> {
        let this = self.clone();
        let key = key.clone();
        blocking(move || this.discard_sync(&key, allowed)).await
    }

    fn discard_sync(&self, key: &JobKey, allowed: &[State]) -> Result<Change> {
        let _ops = self.lock_ops();
        let Some(envelope) = self.read_envelope_sync(&key.id)? else {
            return Ok(Change::NotFound);
        };
        let deliveries = envelope.deliveries.len();
        if key.index >= deliveries {
            return Ok(Change::NotFound);
        }
        let state = self.read_state_lenient(key)?;
        if !allowed.contains(&state.state) {
            return Ok(Change::WrongState(state.state));
        }
        // An attempt in flight must not write its outcome over this.
        self.leases.revoke(key);
        if deliveries > 1 {
            let done = DeliveryState {
                state: State::Delivered,
                ..DeliveryState::fresh()
            };
            self.write_state_sync(key, &done)?;
            for index in (0..deliveries).filter(|i| *i != key.index) {
                let other = JobKey {
                    id: key.id.clone(),
                    index,
                };
                if self.read_state_lenient(&other)?.state != State::Delivered {
                    return Ok(Change::Done {
                        message_removed: false,
                    });
                }
            }
        }
        self.remove_sync(&key.id, deliveries, true)?;
        Ok(Change::Done {
            message_removed: true,
        })
    }

    /// Discards every dead delivery whose state file was last written more
    /// than `max_age` ago; returns them with the state they had.
    pub fn sweep_dead(&self, max_age: std::time::Duration) -> Result<Vec<(JobKey, DeliveryState)>> {
        let now = SystemTime::now();
        let mut old = Vec::new();
        for entry in std::fs::read_dir(self.root.join("state"))? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(key) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(parse_delivery_id)
            else {
                continue;
            };
            let expired = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > max_age);
            if expired {
                old.push(key);
            }
        }
        old.sort();
        let mut removed = Vec::new();
        for key in old {
            let state = match self.read_state_sync(&key) {
                Ok(s) if s.state == State::Dead => s,
                _ => continue,
            };
            match self.discard_sync(&key, &[State::Dead]) {
                Ok(Change::Done { .. }) => removed.push((key, state)),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message_id = %key.id, delivery = key.index, error = %e, "could not remove an expired dead delivery")
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::now_ms;
    use crate::spool::tests::envelope;

    #[tokio::test]
    async fn commit_load_finish() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), true).unwrap();
        let id = new_id();
        let mut w = spool.create(&envelope(&id, 2)).await.unwrap();
        w.write(b"Subject: hi\r\n\r\nbody\r\n").await.unwrap();
        w.commit().await.unwrap();
        let k0 = JobKey {
            id: id.clone(),
            index: 0,
        };
        let (env, state, raw) = spool.load_with(&k0, |_, _, raw, _| raw).await.unwrap();
        assert_eq!(state, DeliveryState::fresh());
        assert_eq!(env, envelope(&id, 2));
        assert_eq!(raw, b"Subject: hi\r\n\r\nbody\r\n");

        let report = spool.scan().unwrap();
        assert_eq!(report.pending.len(), 2);

        let k0 = JobKey {
            id: id.clone(),
            index: 0,
        };
        let k1 = JobKey {
            id: id.clone(),
            index: 1,
        };
        spool
            .finish(&spool.leases.grant(k0), 2, false, &DeliveryState::fresh())
            .await
            .unwrap();
        // one left: message still there, delivery 0 not pending any more
        let report = spool.scan().unwrap();
        assert_eq!(
            report.pending.iter().map(|p| p.0.index).collect::<Vec<_>>(),
            [1]
        );
        spool
            .finish(
                &spool.leases.grant(k1.clone()),
                2,
                false,
                &DeliveryState::fresh(),
            )
            .await
            .unwrap();
        assert!(spool.load_with(&k1, |_, _, _, _| ()).await.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join("state")).unwrap().count(),
            0
        );
    }

    /// The summary of a pending message of the log comes from a prefix
    /// of its record (not the whole message read again): its subject and
    /// size are the same as from the whole record, for a small message,
    /// one much longer than the prefix, and one whose envelope line alone
    /// is longer than the room the prefix gives it (read whole instead).
    #[tokio::test]
    async fn a_pending_summary_from_a_prefix_is_the_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), true).unwrap();
        let body = |n: usize| "x".repeat(76) + &"\r\nline of the body".repeat(n);
        let many: Vec<String> = (0..5000)
            .map(|i| format!("recipient-{i}@example.test"))
            .collect();
        for (rcpts, raw) in [
            (
                vec!["c@d".to_string()],
                format!("Subject: small\r\n\r\n{}", body(3)),
            ),
            (
                vec!["c@d".to_string()],
                format!("Subject: long\r\n\r\n{}", body(10_000)),
            ),
            (
                many,
                format!("From: a@b\r\nSubject: wide envelope\r\n\r\n{}", body(10)),
            ),
        ] {
            let id = new_id();
            let mut env = envelope(&id, 1);
            env.rcpt_to = rcpts;
            let mut w = spool.create(&env).await.unwrap();
            w.write(raw.as_bytes()).await.unwrap();
            w.commit().await.unwrap();
            assert!(spool.log.is_pending(&id), "in the log, not a file");
            let whole = head_of_whole(&spool, &id);
            let detail = spool.message_detail(&id).await.unwrap().unwrap();
            assert_eq!(detail.summary.size, raw.len() as u64);
            assert_eq!(detail.summary.size, whole.1);
            assert_eq!(detail.summary.subject, whole.0);
            assert_eq!(detail.envelope, env);
        }
    }

    /// Subject and size of pending `id` from its whole record.
    fn head_of_whole(spool: &Spool, id: &str) -> (Option<String>, u64) {
        let bytes = spool.log.read(id, false).unwrap().unwrap();
        let (_, raw) = split_record(id, bytes).unwrap();
        (crate::spool::history::subject_of(&raw), raw.len() as u64)
    }

    /// Status records go to the records log, not to `outbox/` files; one
    /// that an earlier version left as a file is still read, counts as
    /// committed and is swept; the log's value wins over an old file.
    #[tokio::test]
    async fn status_records_live_in_the_records_log_and_old_files_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let old = new_id();
        std::fs::create_dir_all(dir.path().join(RECORDS_OUTBOX)).unwrap();
        std::fs::write(
            dir.path().join(RECORDS_OUTBOX).join(format!("{old}.json")),
            b"{\"v\":\"file\"}",
        )
        .unwrap();
        let spool = Spool::open(dir.path(), true).unwrap();
        let id = new_id();
        let name = format!("{id}.json");
        spool
            .write_record(RECORDS_OUTBOX, &name, b"{\"v\":1}".to_vec())
            .await
            .unwrap();
        spool
            .write_record(RECORDS_OUTBOX, &name, b"{\"v\":2}".to_vec())
            .await
            .unwrap();
        assert!(!dir.path().join(RECORDS_OUTBOX).join(&name).exists());
        let got = |spool: &Spool, name: String| {
            let spool = spool.clone();
            async move { spool.read_record(RECORDS_OUTBOX, &name).await.unwrap() }
        };
        assert_eq!(
            got(&spool, name.clone()).await.as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
        assert_eq!(
            got(&spool, format!("{old}.json")).await.as_deref(),
            Some(&b"{\"v\":\"file\"}"[..])
        );
        assert!(spool.is_committed(&id).await.unwrap());
        assert!(spool.is_committed(&old).await.unwrap());
        assert!(!spool.is_committed(&new_id()).await.unwrap());
        // The old id rewritten: the log's value is read, not the file.
        spool
            .write_record(
                RECORDS_OUTBOX,
                &format!("{old}.json"),
                b"{\"v\":3}".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(
            got(&spool, format!("{old}.json")).await.as_deref(),
            Some(&b"{\"v\":3}"[..])
        );
        // Kept across a restart.
        drop(spool);
        let spool = Spool::open(dir.path(), true).unwrap();
        assert_eq!(
            got(&spool, name.clone()).await.as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
        // Nothing is old enough yet; then everything is (the file and both
        // records of the log).
        assert_eq!(
            spool
                .sweep(RECORDS_OUTBOX, std::time::Duration::from_secs(3600))
                .unwrap(),
            0
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(
            spool
                .sweep(RECORDS_OUTBOX, std::time::Duration::from_millis(1))
                .unwrap(),
            3
        );
        assert_eq!(got(&spool, name).await, None);
        assert!(!spool.is_committed(&id).await.unwrap());
    }

    /// A message's verdicts record is read with it, leaves with it
    /// (delivered or refused after its commit), and an orphan (a crash
    /// between the two unlinks) is cleared at start.
    #[tokio::test]
    async fn the_auth_record_lives_and_goes_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let committed = |id: String| {
            let spool = spool.clone();
            async move {
                let mut w = spool.create(&envelope(&id, 1)).await.unwrap();
                w.write(b"Subject: hi\r\n\r\nbody\r\n").await.unwrap();
                w.commit().await.unwrap();
                let name = format!("{id}.json");
                spool
                    .write_record(RECORDS_AUTH, &name, b"{}".to_vec())
                    .await
                    .unwrap();
                id
            }
        };
        let auth = || {
            std::fs::read_dir(dir.path().join(RECORDS_AUTH))
                .unwrap()
                .count()
        };
        let delivered = committed(new_id()).await;
        let key = JobKey {
            id: delivered.clone(),
            index: 0,
        };
        let (_, _, (raw, record)) = spool
            .load_with(&key, |_, _, raw, auth| (raw, auth))
            .await
            .unwrap();
        assert_eq!(spool.read_message(&delivered).await.unwrap(), raw);
        assert_eq!(record.as_deref(), Some(&b"{}"[..]));
        spool
            .finish(&spool.leases.grant(key), 1, false, &DeliveryState::fresh())
            .await
            .unwrap();
        assert_eq!(auth(), 0);
        let refused = committed(new_id()).await;
        spool.withdraw(&refused, 1).await.unwrap();
        assert_eq!((auth(), spool.scan().unwrap().messages), (0, 0));
        let orphan = dir
            .path()
            .join(RECORDS_AUTH)
            .join(format!("{}.json", new_id()));
        std::fs::write(&orphan, b"{}").unwrap();
        let kept = committed(new_id()).await;
        spool.scan().unwrap();
        assert!(!orphan.exists());
        assert!(
            dir.path()
                .join(RECORDS_AUTH)
                .join(format!("{kept}.json"))
                .exists()
        );
    }

    #[tokio::test]
    async fn uncommitted_writes_never_appear() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let id = new_id();
        let mut w = spool.create(&envelope(&id, 1)).await.unwrap();
        w.write(b"partial").await.unwrap();
        drop(w);
        assert_eq!(spool.scan().unwrap().messages, 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn corrupt_entries_are_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let good = new_id();
        let mut w = spool.create(&envelope(&good, 1)).await.unwrap();
        w.write(b"x").await.unwrap();
        w.commit().await.unwrap();
        std::fs::write(dir.path().join("msg/torn.msg"), b"{\"id\": \"to").unwrap();
        std::fs::write(dir.path().join("state/gone.0.json"), b"{}").unwrap();
        let report = spool.scan().unwrap();
        assert_eq!(report.corrupt, 1);
        assert_eq!(report.pending.len(), 1);
        assert!(dir.path().join("corrupt/torn.msg").exists());
        assert!(!dir.path().join("state/gone.0.json").exists());
    }

    #[tokio::test]
    async fn dead_deliveries_are_kept_not_scheduled() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let id = new_id();
        let w = spool.create(&envelope(&id, 1)).await.unwrap();
        w.commit().await.unwrap();
        let key = JobKey {
            id: id.clone(),
            index: 0,
        };
        let dead = DeliveryState {
            state: State::Dead,
            attempts: 8,
            next_at: 0,
            last_error: Some("410".into()),
            ..DeliveryState::fresh()
        };
        let lease = spool.leases.grant(key.clone());
        spool.write_state(&lease, &dead).await.unwrap();
        let report = spool.scan().unwrap();
        assert_eq!((report.dead, report.pending.len()), (1, 0));
        assert_eq!(spool.read_state_sync(&key).unwrap(), dead);
    }

    /// An operator change revokes the lease of an attempt in flight; that
    /// attempt's outcome is then refused, whatever it was.
    #[tokio::test]
    async fn outcomes_are_refused_once_an_operator_changed_the_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), false).unwrap();
        let id = new_id();
        spool
            .create(&envelope(&id, 2))
            .await
            .unwrap()
            .commit()
            .await
            .unwrap();
        let queue = Queue::new();
        queue.push(
            JobKey {
                id: id.clone(),
                index: 0,
            },
            0,
        );
        let lease = spool.claim(&queue, now_ms()).unwrap();
        let key = lease.key().clone();
        assert_eq!(spool.claim(&queue, now_ms()).unwrap_err(), None);

        let change = spool.discard(&key, &[State::Pending]).await.unwrap();
        assert_eq!(
            change,
            Change::Done {
                message_removed: false
            }
        );
        let retry = DeliveryState {
            attempts: 1,
            next_at: now_ms() + 1000,
            ..DeliveryState::fresh()
        };
        for refused in [
            spool.write_state(&lease, &retry).await,
            spool.finish(&lease, 2, true, &DeliveryState::fresh()).await,
        ] {
            assert!(
                matches!(refused, Err(Error::LeaseLost(ref i, 0)) if *i == id),
                "{refused:?}"
            );
        }
        assert_eq!(spool.read_state_sync(&key).unwrap().state, State::Delivered);

        // A new claim (the delivery scheduled again) writes as usual.
        let other = JobKey {
            id: id.clone(),
            index: 1,
        };
        let lease = spool.leases.grant(other.clone());
        spool.write_state(&lease, &retry).await.unwrap();
        assert_eq!(spool.read_state_sync(&other).unwrap(), retry);
    }
}
