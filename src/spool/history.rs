//! Message history (#14): what the store tells about messages, pending
//! and done, for the API's `/v1/messages` list and detail and the console.
//!
//! A message whose deliveries are all done is kept for
//! `POSTERN_HISTORY_RETENTION` after that (the file spool moves it to
//! `history/`, the database marks its row `finished_at`), then swept. The
//! list is newest first by message id (a UUID v7, so ids sort by arrival
//! time and a time range is an id range), paged with an opaque cursor
//! (the last id shown). Subject, size and direction are recorded when a
//! message is committed or finished, so a list call never parses
//! messages. Each backend looks at no more than [`SCAN_LIMIT`] messages
//! per call: a page may come back short (even empty) with a
//! `next_cursor`, which then continues the walk.
//!
//! The decisions (status from the delivery states, direction, the filter,
//! the safe form of a target URL) are the pure functions here, shared by
//! both backends.

use serde::{Deserialize, Serialize};

use super::{Delivery, DeliveryState, Envelope, Kind, State};

/// Messages one list call looks at, at most (see the module docs).
pub const SCAN_LIMIT: usize = 5000;
/// Largest page.
pub const MAX_PAGE: usize = 200;

/// Which way a message went. Event messages (delivery events spooled for
/// the events URL) have none and are not listed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received over SMTP, delivered to webhooks.
    Inbound,
    /// Sent through the API, delivered to the relay.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Option<Direction> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// Where a message stands, from its deliveries' states.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// At least one delivery is still to be made.
    Pending,
    /// Every delivery is done.
    Delivered,
    /// Nothing pending, and every delivery is dead.
    Dead,
    /// Nothing pending; some delivered, some dead.
    Partial,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Dead => "dead",
            MessageStatus::Partial => "partial",
        }
    }

    pub fn parse(s: &str) -> Option<MessageStatus> {
        [
            MessageStatus::Pending,
            MessageStatus::Delivered,
            MessageStatus::Dead,
            MessageStatus::Partial,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// A list request. `limit` is 1..=[`MAX_PAGE`] (the API checks it; the
/// stores clamp it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MessageQuery {
    pub direction: Option<Direction>,
    pub status: Option<MessageStatus>,
    /// Case-insensitive substring of the sender or of any recipient.
    pub address: Option<String>,
    /// Case-insensitive substring of the subject.
    pub text: Option<String>,
    /// Unix ms, inclusive: messages received at or after.
    pub since_ms: Option<u64>,
    /// Unix ms, exclusive: messages received before.
    pub until_ms: Option<u64>,
    /// From a previous page's `next_cursor`: older messages than that.
    pub cursor: Option<String>,
    pub limit: usize,
}

/// One message in a list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessageSummary {
    pub id: String,
    /// RFC 3339.
    pub received_at: String,
    pub direction: Direction,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub subject: Option<String>,
    /// Bytes of the message as received.
    pub size: u64,
    pub status: MessageStatus,
    /// How many deliveries it has.
    pub deliveries: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MessagePage {
    pub items: Vec<MessageSummary>,
    /// Pass as `cursor` for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}

/// One message with everything the store knows of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MessageDetail {
    pub summary: MessageSummary,
    pub envelope: Envelope,
    /// The SPF/DKIM/DMARC/ARC verdicts record, when checks ran.
    pub auth: Option<serde_json::Value>,
    pub deliveries: Vec<DeliveryDetail>,
}

/// One delivery of a message, with its attempts (`state.history`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DeliveryDetail {
    /// `<message id>.<index>`.
    pub id: String,
    pub kind: Kind,
    /// The webhook or events URL without userinfo and query
    /// ([`safe_target`]); `relay` for the relay.
    pub target: String,
    pub state: DeliveryState,
}

/// Pure: a message's status from its deliveries' states.
pub fn status_of(states: impl IntoIterator<Item = State>) -> MessageStatus {
    let (mut pending, mut delivered, mut dead) = (false, false, false);
    for s in states {
        match s {
            State::Pending => pending = true,
            State::Delivered => delivered = true,
            State::Dead => dead = true,
        }
    }
    match (pending, delivered, dead) {
        (true, _, _) => MessageStatus::Pending,
        (false, _, false) => MessageStatus::Delivered,
        (false, false, true) => MessageStatus::Dead,
        (false, true, true) => MessageStatus::Partial,
    }
}

/// Pure: which way a message went; `None` for event messages (every
/// delivery an event), which are neither listed nor kept.
pub fn direction_of(envelope: &Envelope) -> Option<Direction> {
    let events = !envelope.deliveries.is_empty()
        && envelope
            .deliveries
            .iter()
            .all(|d| d.target.kind() == Kind::Event);
    if events {
        None
    } else if envelope.outbound.is_some() {
        Some(Direction::Outbound)
    } else {
        Some(Direction::Inbound)
    }
}

/// Pure: a URL as history shows it: no userinfo (a password in a route
/// URL), no query and no fragment (a signed link's key, a token); what
/// does not parse as a URL shows as `-`.
pub fn safe_target(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "-".to_string(),
    }
}

/// What a delivery's target shows as (see [`DeliveryDetail::target`]).
pub fn delivery_target(delivery: &Delivery) -> String {
    delivery
        .target
        .url()
        .map_or_else(|| "relay".to_string(), safe_target)
}

/// Pure: each delivery of `envelope` with its state (`states` in
/// delivery order).
pub fn delivery_details(envelope: &Envelope, states: Vec<DeliveryState>) -> Vec<DeliveryDetail> {
    envelope
        .deliveries
        .iter()
        .zip(states)
        .enumerate()
        .map(|(index, (d, state))| DeliveryDetail {
            id: super::delivery_id(&super::JobKey {
                id: envelope.id.clone(),
                index,
            }),
            kind: d.target.kind(),
            target: delivery_target(d),
            state,
        })
        .collect()
}

/// How much of a message's start is read for its subject: a header block
/// larger than this yields no subject (the message is still listed).
pub const HEAD_BYTES: usize = 64 * 1024;

/// Pure: the decoded `Subject` of a message from its start (at most
/// [`HEAD_BYTES`] are looked at; only the header block is parsed).
pub fn subject_of(content: &[u8]) -> Option<String> {
    let head = &content[..content.len().min(HEAD_BYTES)];
    let end = memchr::memmem::find(head, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| memchr::memmem::find(head, b"\n\n").map(|i| i + 2))
        .unwrap_or(head.len());
    let parsed = mail_parser::MessageParser::new().parse_headers(&head[..end])?;
    parsed.subject().map(str::to_string)
}

/// Pure: the lowest message id at or after unix ms `ms` (ids are UUID v7:
/// their first 12 hex digits are the creation time in ms).
pub fn id_floor(ms: u64) -> String {
    format!("{:012x}{}", ms.min(0xffff_ffff_ffff), "0".repeat(20))
}

impl MessageQuery {
    /// The page size, within 1..=[`MAX_PAGE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE)
    }

    /// Pure: ids below this are in range (the cursor or `until`,
    /// whichever is lower; `None`: no upper bound).
    pub fn id_below(&self) -> Option<String> {
        let until = self.until_ms.map(id_floor);
        match (self.cursor.clone(), until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Pure: ids at or above this are in range (`since`).
    pub fn id_from(&self) -> Option<String> {
        self.since_ms.map(id_floor)
    }

    /// Pure: whether message `id` is in the query's id range.
    pub fn in_range(&self, id: &str) -> bool {
        self.id_below().is_none_or(|b| id < b.as_str())
            && self.id_from().is_none_or(|f| id >= f.as_str())
    }

    /// Pure: whether `m` passes the filters (the id range aside).
    pub fn matches(&self, m: &MessageSummary) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        self.direction.is_none_or(|d| d == m.direction)
            && self.status.is_none_or(|s| s == m.status)
            && self
                .address
                .as_deref()
                .is_none_or(|a| has(&m.mail_from, a) || m.rcpt_to.iter().any(|r| has(r, a)))
            && self
                .text
                .as_deref()
                .is_none_or(|t| m.subject.as_deref().is_some_and(|s| has(s, t)))
    }
}

/// Pure: one page from the candidates the backend scanned (newest first,
/// at most [`SCAN_LIMIT`], all in the id range); `full_scan`: the backend
/// stopped at its scan limit, so older messages may follow.
pub fn page(
    query: &MessageQuery,
    scanned: impl IntoIterator<Item = MessageSummary>,
    full_scan: bool,
) -> MessagePage {
    let limit = query.page_size();
    let mut items = Vec::new();
    let mut last_seen = None;
    for m in scanned {
        last_seen = Some(m.id.clone());
        if !query.matches(&m) {
            continue;
        }
        if items.len() == limit {
            let next_cursor = items.last().map(|m: &MessageSummary| m.id.clone());
            return MessagePage { items, next_cursor };
        }
        items.push(m);
    }
    let next_cursor = if full_scan { last_seen } else { None };
    MessagePage { items, next_cursor }
}

/// Pure: the `LIKE` pattern matching `needle` anywhere (`%`, `_` and `\`
/// in it match themselves).
pub fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Outbound, Target};

    #[test]
    fn status_from_states() {
        use MessageStatus as M;
        use State as S;
        let table: &[(&[State], MessageStatus)] = &[
            (&[S::Pending], M::Pending),
            (&[S::Delivered, S::Pending, S::Dead], M::Pending),
            (&[S::Delivered], M::Delivered),
            (&[], M::Delivered),
            (&[S::Dead, S::Dead], M::Dead),
            (&[S::Delivered, S::Dead], M::Partial),
        ];
        for (states, want) in table {
            assert_eq!(status_of(states.iter().copied()), *want, "{states:?}");
            assert_eq!(MessageStatus::parse(want.as_str()), Some(*want));
        }
        assert_eq!(MessageStatus::parse("Pending"), None);
    }

    #[test]
    fn directions() {
        let mut env = crate::spool::tests::envelope("x", 1);
        assert_eq!(direction_of(&env), Some(Direction::Inbound));
        env.outbound = Some(Outbound::default());
        assert_eq!(direction_of(&env), Some(Direction::Outbound));
        env.deliveries[0].target = Target::Event {
            url: "http://e/".into(),
        };
        assert_eq!(direction_of(&env), None);
        assert_eq!(Direction::parse("inbound"), Some(Direction::Inbound));
        assert_eq!(Direction::parse("in"), None);
    }

    #[test]
    fn targets_lose_userinfo_and_query() {
        for (url, want) in [
            ("http://h.test/hook", "http://h.test/hook"),
            (
                "https://user:pw@h.test:8443/in/bob?tag=x&sig=abc#f",
                "https://h.test:8443/in/bob",
            ),
            ("http://token@h.test/", "http://h.test/"),
            ("not a url", "-"),
        ] {
            assert_eq!(safe_target(url), want, "{url}");
        }
    }

    #[test]
    fn subjects_are_read_from_the_header_block_only() {
        let table: &[(&[u8], Option<&str>)] = &[
            (b"Subject: hi\r\n\r\nSubject: body\r\n", Some("hi")),
            (
                b"From: a@b\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nx",
                Some("caf\u{e9}"),
            ),
            (b"Subject: folded\r\n  line\r\n\r\n", Some("folded line")),
            (b"From: a@b\r\n\r\nSubject: no\r\n", None),
            (b"Subject: lf only\n\nbody", Some("lf only")),
            (b"", None),
        ];
        for (raw, want) in table {
            assert_eq!(
                subject_of(raw).as_deref(),
                *want,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn id_floors_order_like_ids() {
        let id = crate::spool::new_id();
        let ms = u64::from_str_radix(&id[..12], 16).unwrap();
        assert!(id_floor(ms) <= id && id < id_floor(ms + 1));
        assert_eq!(id_floor(0), "0".repeat(32));
        assert_eq!(id_floor(u64::MAX).len(), 32);
    }

    fn summary(id: &str, subject: &str, from: &str, status: MessageStatus) -> MessageSummary {
        MessageSummary {
            id: id.into(),
            received_at: String::new(),
            direction: Direction::Inbound,
            mail_from: from.into(),
            rcpt_to: vec!["Rcpt@In.Test".into()],
            subject: Some(subject.into()),
            size: 1,
            status,
            deliveries: 1,
        }
    }

    #[test]
    fn filters() {
        let m = summary(
            "a",
            "Invoice 42",
            "Bob@Example.test",
            MessageStatus::Delivered,
        );
        let q = |f: &dyn Fn(&mut MessageQuery)| {
            let mut q = MessageQuery::default();
            f(&mut q);
            q.matches(&m)
        };
        assert!(q(&|_| {}));
        assert!(q(&|q| q.address = Some("bob@".into())));
        assert!(q(&|q| q.address = Some("rcpt@in".into())));
        assert!(!q(&|q| q.address = Some("carol".into())));
        assert!(q(&|q| q.text = Some("INVOICE".into())));
        assert!(!q(&|q| q.text = Some("receipt".into())));
        assert!(q(&|q| q.status = Some(MessageStatus::Delivered)));
        assert!(!q(&|q| q.status = Some(MessageStatus::Dead)));
        assert!(!q(&|q| q.direction = Some(Direction::Outbound)));
    }

    #[test]
    fn pages_and_cursors() {
        let all: Vec<_> = (0..10)
            .rev()
            .map(|i| {
                let status = if i % 2 == 0 {
                    MessageStatus::Delivered
                } else {
                    MessageStatus::Dead
                };
                summary(&format!("{i:02}"), "s", "f", status)
            })
            .collect();
        let q = MessageQuery {
            limit: 3,
            ..Default::default()
        };
        let p = page(&q, all.clone(), false);
        let ids: Vec<_> = p.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(
            (ids, p.next_cursor.as_deref()),
            (vec!["09", "08", "07"], Some("07"))
        );
        // The last page has no cursor, unless the scan stopped at its limit.
        let p = page(&q, all[8..].to_vec(), false);
        assert_eq!((p.items.len(), p.next_cursor), (2, None));
        let q = MessageQuery {
            status: Some(MessageStatus::Dead),
            limit: 50,
            ..Default::default()
        };
        let p = page(&q, all.clone(), true);
        assert_eq!(p.items.len(), 5);
        assert_eq!(p.next_cursor.as_deref(), Some("00"));
        let q = MessageQuery {
            cursor: Some("05".into()),
            until_ms: Some(u64::MAX),
            ..Default::default()
        };
        assert!(q.in_range("04") && !q.in_range("05"));
    }

    #[test]
    fn like_patterns_escape() {
        assert_eq!(like_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
