//! RCPT-time authorization: a route with `"authorize_url"` lets the app
//! decide, recipient by recipient, whether mail is accepted at all (the
//! only way to refuse unknown users of a catch-all domain without
//! backscatter).
//!
//! Where it sits: the RCPT phase (`smtp/rcpt.rs`) routes a recipient, then asks here for
//! each route of it that names an `authorize_url`. The request is a small
//! JSON document signed like webhooks (`crate::model::sign`, the route's
//! secrets); the answer maps to a [`Verdict`] ([`classify`]) and so to the
//! RCPT reply. Answers are cached briefly ([`Cache`]) so a pipelined burst
//! or a sender retrying does not hammer the app; the cache is bounded, and
//! keyed by the whole request, so one sender's answer is never reused for
//! a request that differs in anything.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::warn;

use crate::model::secret::Secret;
use crate::model::sign;
use crate::model::subaddress::Parts;
use crate::spool::TlsInfo;

/// How long an answer is reused: short, so an app's change of mind (a new
/// user) shows within a minute.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// The most answers kept: about 100 bytes each, so a sender trying a
/// million addresses costs at most a few MB and evicts only older answers.
pub const CACHE_ENTRIES: usize = 10_000;
/// The most of a refusal's body read: the reply text is 200 characters.
const MAX_BODY: usize = 4096;
const MAX_REPLY_TEXT: usize = 200;

/// The JSON POSTed to `authorize_url` (`type: recipient.authorize`).
/// Nothing in it changes between two identical RCPTs (the id and time are
/// headers), so its bytes are the cache key.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub mail_from: &'a str,
    pub rcpt_to: &'a str,
    /// `rcpt_to` in parts, as in the webhook payload's `rcpt_detail`.
    pub rcpt_detail: Parts<'a>,
    pub remote_ip: String,
    pub helo: &'a str,
    pub tls: Option<&'a TlsInfo>,
    pub authenticated_user: Option<&'a str>,
    /// `SIZE=` of MAIL FROM, when the client gave one.
    pub size: Option<u64>,
}

/// What the app said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `2xx`.
    Accept,
    /// `4xx`: refused for good (`550 5.7.1`), with the app's text when it
    /// sent a usable `text/plain` one.
    Refuse(Option<String>),
    /// `5xx` or any other status: the sender is told to try later
    /// (`451 4.3.0`).
    Unavailable,
    /// No answer: a timeout, no connection, no secret to sign with
    /// (`451 4.3.0` too).
    NoAnswer,
}

/// The verdict of an HTTP answer; `body` is read only for `4xx`.
pub fn classify(status: u16, content_type: Option<&str>, body: &[u8]) -> Verdict {
    match status {
        200..=299 => Verdict::Accept,
        400..=499 => {
            let plain = content_type.is_some_and(|ct| {
                ct.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/plain"))
            });
            Verdict::Refuse(plain.then(|| reply_text(body)).flatten())
        }
        // 3xx (redirects are not followed), 1xx and 5xx: no decision.
        _ => Verdict::Unavailable,
    }
}

/// The verdict of an app's HTTP answer, reading at most [`MAX_BODY`] of
/// a `4xx` body (the refusal's text); also a sync route's answer during
/// DATA (`super::sync`).
pub(super) async fn verdict_of(mut resp: reqwest::Response) -> Result<Verdict, reqwest::Error> {
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut text = Vec::new();
    if (400..500).contains(&status) {
        while text.len() < MAX_BODY {
            let Some(chunk) = resp.chunk().await? else {
                break;
            };
            let room = MAX_BODY - text.len();
            text.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
    }
    Ok(classify(status, content_type.as_deref(), &text))
}

/// The app's text made one safe reply line: printable ASCII only (a
/// reply is not SMTPUTF8), whitespace and controls collapsed to one
/// space, at most [`MAX_REPLY_TEXT`] characters; `None` when nothing is
/// left.
fn reply_text(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(MAX_REPLY_TEXT);
    for c in text.chars() {
        let c = match c {
            c if c.is_ascii_graphic() => c,
            c if c.is_whitespace() || c.is_control() => ' ',
            _ => '?',
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
        if out.len() == MAX_REPLY_TEXT {
            break;
        }
    }
    let out = out.trim_end();
    (!out.is_empty()).then(|| out.to_string())
}

/// Recent definitive answers (accept, refuse) by request digest; oldest
/// out first when full. Temporary failures are never cached: the next
/// RCPT asks again.
#[derive(Debug)]
pub struct Cache {
    ttl: Duration,
    cap: usize,
    answers: HashMap<[u8; 32], (Instant, Verdict)>,
    /// Insertion order with each entry's expiry; a key answered again
    /// leaves a stale entry behind, skipped when it reaches the front.
    order: VecDeque<([u8; 32], Instant)>,
}

impl Cache {
    pub fn new(ttl: Duration, cap: usize) -> Cache {
        Cache {
            ttl,
            cap,
            answers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, key: &[u8; 32], now: Instant) -> Option<Verdict> {
        self.answers
            .get(key)
            .filter(|(expires, _)| *expires > now)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&mut self, key: [u8; 32], verdict: Verdict, now: Instant) {
        while let Some((k, expires)) = self.order.front() {
            if *expires > now && self.answers.len() < self.cap {
                break;
            }
            if self.answers.get(k).is_some_and(|(e, _)| e == expires) {
                self.answers.remove(k);
            }
            self.order.pop_front();
        }
        let expires = now + self.ttl;
        self.answers.insert(key, (expires, verdict));
        self.order.push_back((key, expires));
    }

    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The cache key: the endpoint and the exact request bytes.
fn key(url: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}

/// The HTTP client and the answer cache, shared by every session. The
/// cache's lock is held only to read or write it, never while a request
/// is in flight, so sessions never wait on each other's app.
#[derive(Debug)]
pub struct Authorizer {
    client: reqwest::Client,
    cache: Mutex<Cache>,
}

impl Default for Authorizer {
    fn default() -> Authorizer {
        Authorizer::new(Cache::new(CACHE_TTL, CACHE_ENTRIES))
    }
}

impl Authorizer {
    pub fn new(cache: Cache) -> Authorizer {
        let client = reqwest::Client::builder()
            .user_agent(concat!("Postern/", env!("CARGO_PKG_VERSION")))
            // The operator configured this URL; a redirect would send the
            // signed request wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client builds");
        Authorizer {
            client,
            cache: Mutex::new(cache),
        }
    }

    /// The verdict of `url` on `request`, within `timeout` (connecting,
    /// sending and reading the answer all count).
    pub async fn ask(
        &self,
        url: &str,
        timeout: Duration,
        secrets: &[Secret],
        request: &Request<'_>,
    ) -> Verdict {
        let body = serde_json::to_vec(request).expect("request serialises");
        let key = key(url, &body);
        if let Some(v) = self.cache().get(&key, Instant::now()) {
            return v;
        }
        if secrets.is_empty() {
            // Never unsigned: the app could not tell us from anyone.
            warn!("authorize_url: no secret to sign with");
            return Verdict::NoAnswer;
        }
        let verdict = match tokio::time::timeout(timeout, self.call(url, secrets, body)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                warn!(error = %e.without_url(), "authorize_url: request failed");
                Verdict::NoAnswer
            }
            Err(_) => {
                warn!(?timeout, "authorize_url: no answer in time");
                Verdict::NoAnswer
            }
        };
        if matches!(verdict, Verdict::Accept | Verdict::Refuse(_)) {
            self.cache().put(key, verdict.clone(), Instant::now());
        }
        verdict
    }

    async fn call(
        &self,
        url: &str,
        secrets: &[Secret],
        body: Vec<u8>,
    ) -> Result<Verdict, reqwest::Error> {
        let id = format!("authz_{}", uuid::Uuid::now_v7().simple());
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/json");
        for (name, value) in sign::headers(secrets, &id, &body) {
            request = request.header(name, value);
        }
        verdict_of(request.body(body).send().await?).await
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic elsewhere while holding it leaves a consistent map.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_table() {
        let plain = Some("text/plain; charset=utf-8");
        let refuse = |t: &str| Verdict::Refuse(Some(t.to_string()));
        let table: &[(u16, Option<&str>, &[u8], Verdict)] = &[
            (200, None, b"", Verdict::Accept),
            (204, plain, b"ignored", Verdict::Accept),
            (
                404,
                plain,
                b"No such user here",
                refuse("No such user here"),
            ),
            (
                403,
                Some("TEXT/PLAIN"),
                b"  Go\r\naway\t now  ",
                refuse("Go away now"),
            ),
            // not text/plain: the fixed text
            (
                404,
                Some("text/html"),
                b"<h1>404</h1>",
                Verdict::Refuse(None),
            ),
            (404, None, b"no type", Verdict::Refuse(None)),
            (410, plain, b" \r\n ", Verdict::Refuse(None)),
            // no SMTP reply injection, ASCII only
            (422, plain, b"bad\r\n250 OK\x00\x7f", refuse("bad 250 OK")),
            (422, plain, "caf\u{e9}".as_bytes(), refuse("caf?")),
            (500, plain, b"oops", Verdict::Unavailable),
            (503, None, b"", Verdict::Unavailable),
            (302, None, b"", Verdict::Unavailable),
            (101, None, b"", Verdict::Unavailable),
        ];
        for (status, ct, body, want) in table {
            assert_eq!(classify(*status, *ct, body), *want, "{status} {ct:?}");
        }
        let long = "x".repeat(1000);
        let Verdict::Refuse(Some(t)) = classify(404, plain, long.as_bytes()) else {
            panic!("refused with text");
        };
        assert_eq!(t.len(), MAX_REPLY_TEXT);
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let t0 = Instant::now();
        let k = |i: u32| key("http://a/", &i.to_be_bytes());
        let mut c = Cache::new(Duration::from_secs(60), 3);
        c.put(k(1), Verdict::Accept, t0);
        assert_eq!(c.get(&k(1), t0), Some(Verdict::Accept));
        assert_eq!(c.get(&k(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(c.get(&k(2), t0), None);
        for i in 2..=10 {
            c.put(k(i), Verdict::Refuse(None), t0);
            assert!(c.len() <= 3);
        }
        // the oldest went first
        assert_eq!(c.get(&k(8), t0), Some(Verdict::Refuse(None)));
        assert_eq!(c.get(&k(7), t0), None);
        // expired entries make room before live ones are evicted
        let later = t0 + Duration::from_secs(61);
        c.put(k(11), Verdict::Accept, later);
        assert_eq!(c.len(), 1);
        // answering a key again leaves it once in the map
        c.put(k(11), Verdict::Refuse(None), later);
        assert_eq!(c.len(), 1);
        assert_eq!(c.get(&k(11), later), Some(Verdict::Refuse(None)));
        // and the order entry it left behind does not evict the new answer
        c.put(k(12), Verdict::Accept, later);
        c.put(k(13), Verdict::Accept, later);
        assert_eq!(c.get(&k(11), later), Some(Verdict::Refuse(None)));
    }

    #[test]
    fn keys_differ_with_the_endpoint_and_the_request() {
        assert_ne!(key("http://a/", b"{}"), key("http://b/", b"{}"));
        assert_ne!(
            key("http://a/", b"{\"x\":1}"),
            key("http://a/", b"{\"x\":2}")
        );
        // the separator: url and body cannot trade bytes
        assert_ne!(key("http://a/x", b"y"), key("http://a/", b"xy"));
    }
}
