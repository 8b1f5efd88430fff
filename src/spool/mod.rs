//! The durable store: where a message lives from the moment we answer `250`
//! until every endpoint it was routed to has taken it (or given up on it).
//!
//! Everything outside this module goes through [`Store`] (the interface,
//! `store.rs`), never through a backend. The shared types (envelope,
//! delivery state, ids, errors) are here; `file/` is the file backend,
//! the embedded default (its on-disk layout is documented there);
//! attempts hold a [`Lease`] (`lease.rs`); the attachments behind signed
//! links are kept apart from their message ([`kept`]).

mod delivery;
mod file;
pub mod history;
mod intake;
pub mod kept;
mod lease;
mod log;
pub mod pg;
mod records;
mod store;

pub use delivery::{Delivery, Kind, Target};
pub use file::ScanReport;
use file::{MessageWriter, Queue, Spool};
pub use history::{
    DeliveryDetail, Direction, MessageDetail, MessagePage, MessageQuery, MessageStatus,
    MessageSummary,
};
pub use intake::{CommitError, Committed, Incoming, Intake, KeyRecord};
pub use kept::{Kept, KeptMeta, KeptPart};
pub use lease::Lease;
pub use store::{DatabaseStats, Store};

use std::io::ErrorKind;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// One delivery: message `id`, delivery number `index` in its envelope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobKey {
    pub id: String,
    pub index: usize,
}

/// Spool failures. Each maps to a temporary SMTP reply: the client keeps the
/// message and tries again later.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spool is full: {0}")]
    Full(std::io::Error),
    #[error("spool I/O error: {0}")]
    Io(std::io::Error),
    #[error("corrupt spool entry {0}: {1}")]
    Corrupt(String, String),
    /// The attempt's lease was revoked (the delivery was deleted or
    /// retried meanwhile): its outcome is not written.
    #[error("lease on delivery {0}.{1} no longer holds; outcome not written")]
    LeaseLost(String, usize),
    /// The shared store's database is unreachable or failed the statement
    /// (the PostgreSQL backend): temporary, like an I/O error.
    #[error("database error: {0}")]
    Database(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        // ENOSPC and EDQUOT: out of space, as opposed to a broken disk.
        if e.kind() == ErrorKind::StorageFull || e.kind() == ErrorKind::QuotaExceeded {
            Error::Full(e)
        } else {
            Error::Io(e)
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// TLS details of the session a message arrived on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TlsInfo {
    pub version: String,
    pub cipher: String,
}

/// What the API was given besides the message, returned in events.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Outbound {
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The Message-ID header, without brackets.
    #[serde(default)]
    pub message_id: String,
}

/// Everything about a message except its content. Fixed at accept time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope {
    pub id: String,
    /// RFC 3339.
    pub received_at: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub helo: String,
    pub remote_ip: String,
    pub tls: Option<TlsInfo>,
    pub authenticated_user: Option<String>,
    pub deliveries: Vec<Delivery>,
    /// Set for mail submitted through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound: Option<Outbound>,
}

/// Where one delivery stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Dead,
    Delivered,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryState {
    pub state: State,
    pub attempts: u32,
    /// Unix milliseconds of the next attempt (pending only).
    pub next_at: u64,
    pub last_error: Option<String>,
    /// Relay deliveries: where each recipient stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<RcptState>,
    /// Every attempt, oldest first (the last [`MAX_ATTEMPTS_KEPT`]);
    /// webhook and event deliveries since #14.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Attempt>,
}

/// One recipient of a relay delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RcptState {
    pub address: String,
    pub status: RcptStatus,
    /// The relay's last reply for this recipient.
    pub reply: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    Pending,
    Sent,
    Failed,
}

/// One attempt of a delivery, of any kind. Relay attempts have had
/// `recipients`, `outcomes` and `replies` since the first version; the
/// rest came with the history (#14) and is absent from older state files
/// (hence the defaults). Never holds a secret: `target` is the URL without
/// userinfo and query ([`history::safe_target`]), `error` is the
/// transport's error without its URL.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// RFC 3339.
    pub at: String,
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Per the recipients above.
    #[serde(default)]
    pub outcomes: Vec<AttemptOutcome>,
    #[serde(default)]
    pub replies: Vec<String>,
    /// Where the attempt went: a webhook or events URL without userinfo
    /// and query; the relay's `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The endpoint's HTTP status (webhook and event attempts that got an
    /// answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why the attempt did not deliver (transport error, status, reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the policy made of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<AttemptResult>,
}

/// What one attempt of a delivery came to, as a whole.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttemptResult {
    Delivered,
    Retry,
    Dead,
}

/// Attempts kept per delivery (the newest): a delivery retried for days
/// must not grow its state without bound.
pub const MAX_ATTEMPTS_KEPT: usize = 50;

/// What one relay attempt did for one recipient.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Sent,
    Deferred,
    Failed,
}

impl DeliveryState {
    /// Appends `attempt` to the history, dropping the oldest beyond
    /// [`MAX_ATTEMPTS_KEPT`].
    pub fn record_attempt(&mut self, attempt: Attempt) {
        self.history.push(attempt);
        let over = self.history.len().saturating_sub(MAX_ATTEMPTS_KEPT);
        self.history.drain(..over);
    }

    pub fn fresh() -> Self {
        DeliveryState {
            state: State::Pending,
            attempts: 0,
            next_at: 0,
            last_error: None,
            recipients: Vec::new(),
            history: Vec::new(),
        }
    }

    /// What an operator's retry makes of a dead delivery: pending again with
    /// a fresh retry schedule, but its attempts so far stay on record, so
    /// the timeline still shows why it died before it was retried.
    pub fn retried(self) -> Self {
        DeliveryState {
            history: self.history,
            ..DeliveryState::fresh()
        }
    }

    /// Whether anything about this delivery is on record beyond "fresh"
    /// (the file spool keeps it in a state file then).
    pub fn has_record(&self) -> bool {
        self.attempts > 0 || !self.history.is_empty()
    }
}

/// A new, time-ordered message id (UUIDv7, 32 hex digits): sorting ids
/// sorts by arrival, which keeps `ls msg/` readable.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Directory of API message status records.
pub const RECORDS_OUTBOX: &str = "outbox";
/// Directory of idempotency records.
pub const RECORDS_IDEM: &str = "idem";
/// Directory of inbound messages' authentication verdicts, one
/// `<id>.json` each (written by the SMTP stage, read with the message by
/// [`Store::load_with`], removed with the message).
pub const RECORDS_AUTH: &str = "auth";

/// Runs file I/O on the blocking pool.
/// Ids of the messages pending in the file spool at `root` (its `msg/`
/// files and its log), read from disk without opening the spool: what
/// `postern doctor` counts, and what tests look at from outside the
/// server.
pub fn pending_on_disk(root: &std::path::Path) -> std::io::Result<Vec<String>> {
    let mut ids = log::pending_on_disk(&root.join("segments"))?;
    match std::fs::read_dir(root.join("msg")) {
        Ok(dir) => {
            for entry in dir {
                if let Some(id) = entry?
                    .file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".msg"))
                {
                    ids.push(id.to_string());
                }
            }
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))?
}

/// One delivery as an operator sees it (`/v1/deliveries`).
#[derive(Debug, Clone)]
pub struct DeliveryInfo {
    pub key: JobKey,
    /// The message's `received_at` (RFC 3339).
    pub received_at: String,
    pub delivery: Delivery,
    pub state: DeliveryState,
}

/// What an operator change (retry, delete) did.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// No such message, or no such delivery in it.
    NotFound,
    /// The delivery is in a state the change does not apply to.
    WrongState(State),
    /// Done; `message_removed`: nothing of the message was left, so its
    /// files are gone.
    Done { message_removed: bool },
}

/// `<message id>.<index>`, as the API and the CLI name a delivery.
pub fn delivery_id(key: &JobKey) -> String {
    format!("{}.{}", key.id, key.index)
}

/// Whether `s` has the exact shape of a message id from [`new_id`]: 32
/// lowercase hex digits (a UUID v7 without dashes). Ids from clients are
/// checked with this before they name a file, so a string that cannot be
/// an id is a plain "not found" and never reaches the store (where an
/// over-long name would be an I/O error, and an uppercase one might match
/// on a case-insensitive file system).
pub fn is_message_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Parses a delivery id: a message id ([`is_message_id`]), a dot, a
/// delivery number of at most 6 digits without leading zeros; the same
/// shape as the `DeliveryId` pattern of docs/openapi.yaml. Anything else is
/// refused before it reaches a path.
pub fn parse_delivery_id(s: &str) -> Option<JobKey> {
    let (id, index) = s.split_once('.')?;
    let number = !index.is_empty()
        && index.len() <= 6
        && index.bytes().all(|b| b.is_ascii_digit())
        && (index == "0" || !index.starts_with('0'));
    if !(is_message_id(id) && number) {
        return None;
    }
    Some(JobKey {
        id: id.to_string(),
        index: index.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with `n` webhook deliveries (also used by the tests of
    /// [`intake`]).
    pub(super) fn envelope(id: &str, n: usize) -> Envelope {
        Envelope {
            id: id.into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            mail_from: "a@b".into(),
            rcpt_to: vec!["c@d".into()],
            helo: "client".into(),
            remote_ip: "127.0.0.1".into(),
            tls: None,
            authenticated_user: None,
            deliveries: (0..n)
                .map(|i| Delivery {
                    target: Target::Webhook {
                        route: "*".into(),
                        url: format!("http://h/{i}"),
                    },
                    rcpt_to: vec!["c@d".into()],
                    raw: false,
                    max_attachment_inline: None,
                    attachment_urls: false,
                })
                .collect(),
            outbound: None,
        }
    }

    #[test]
    fn delivery_ids_are_checked() {
        const ID: &str = "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b";
        let key = parse_delivery_id(&format!("{ID}.12")).unwrap();
        assert_eq!((key.id.as_str(), key.index), (ID, 12));
        assert_eq!(delivery_id(&key), format!("{ID}.12"));
        assert!(parse_delivery_id(&format!("{ID}.0")).is_some());
        assert!(parse_delivery_id(&format!("{ID}.999999")).is_some());
        let upper = ID.to_uppercase();
        let short = &ID[1..];
        for bad in [
            "".to_string(),
            ".0".to_string(),
            ID.to_string(),
            format!("{ID}."),
            format!("{ID}.01"),
            format!("{ID}.-1"),
            format!("{ID}.1.2"),
            format!("{ID}.1234567"),
            format!("{ID}.0 "),
            format!("{ID}.+1"),
            "../x.0".to_string(),
            // The shapes the spec's pattern refuses that a looser check
            // once let through to the store (found by schemathesis).
            "0.5".to_string(),
            "a.5".to_string(),
            "0.0".to_string(),
            format!("{upper}.0"),
            format!("{short}.0"),
            format!("{ID}0.0"),
            format!("{}g.0", &ID[1..]),
            format!("{}.0", "a".repeat(300)),
        ] {
            assert!(parse_delivery_id(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn message_ids_have_the_shape_of_new_ids() {
        for _ in 0..100 {
            assert!(is_message_id(&new_id()));
        }
        for bad in [
            "",
            "0192f0c5c5a87b5e9d1d6d6f1c1e2a3",
            "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b0",
            "0192F0C5C5A87B5E9D1D6D6F1C1E2A3B",
            "0192f0c5-c5a8-7b5e-9d1d-6d6f1c1e",
            "0192f0c5c5a87b5e9d1d6d6f1c1e2a3g",
            "../../../../../../../../../etc/x",
        ] {
            assert!(!is_message_id(bad), "{bad:?}");
        }
    }

    /// Status words on disk (and in `GET /v1/messages/{id}`) are the
    /// ones earlier versions wrote.
    #[test]
    fn status_words_on_disk() {
        use AttemptOutcome as O;
        assert_eq!(
            serde_json::to_value([O::Sent, O::Deferred, O::Failed]).unwrap(),
            serde_json::json!(["sent", "deferred", "failed"])
        );
        use RcptStatus as R;
        assert_eq!(
            serde_json::to_value([R::Pending, R::Sent, R::Failed]).unwrap(),
            serde_json::json!(["pending", "sent", "failed"])
        );
    }

    /// Entries written before `kind` and `outbound` existed still load.
    #[test]
    fn older_envelopes_read_as_webhook_deliveries() {
        let line = r#"{"id":"x","received_at":"t","mail_from":"","rcpt_to":["a@b"],"helo":"h","remote_ip":"127.0.0.1","tls":null,"authenticated_user":null,"deliveries":[{"route":"*","url":"http://h/","rcpt_to":["a@b"]}]}"#;
        let env: Envelope = serde_json::from_str(line).unwrap();
        assert_eq!(env.deliveries[0].target.kind(), Kind::Webhook);
        assert!(env.outbound.is_none());
    }
}
