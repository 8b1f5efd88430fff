//! SMTP AUTH (RFC 4954) building blocks: the user database, password
//! hashing/verification, decoding of the PLAIN (RFC 4616) and LOGIN
//! exchanges, and a per-IP throttle for failed attempts.
//!
//! Everything here is I/O-free so the session code can stay a thin state
//! machine and the security-sensitive parts can be unit-tested in isolation.
//! Password verification is deliberately slow (argon2id); callers must run
//! [`Users::verify`] on a blocking thread, never on the async executor.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{
    PasswordHash, PasswordHashString, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Errors from parsing the user database or decoding client AUTH data.
///
/// Messages are safe to log and (for the decoding variants) to show to the
/// client: they name the problem but never echo a password or a hash.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The client's data was not valid base64.
    #[error("invalid base64 in AUTH data")]
    InvalidBase64,
    /// The decoded data was not UTF-8; we only accept UTF-8 identities.
    #[error("AUTH data is not valid UTF-8")]
    NotUtf8,
    /// The client sent an empty response (e.g. a lone "=") where credentials
    /// were required.
    #[error("empty AUTH response")]
    EmptyResponse,
    /// A PLAIN message without exactly two NUL separators.
    #[error("malformed PLAIN response: expected authzid NUL authcid NUL password")]
    MalformedPlain,
    /// The authentication identity (user name) was empty.
    #[error("empty user name")]
    EmptyUsername,
    /// The password was empty.
    #[error("empty password")]
    EmptyPassword,
    /// A LOGIN line contained a NUL byte, which no valid identity contains.
    #[error("AUTH data contains a NUL byte")]
    ContainsNul,
    /// PLAIN authzid differs from authcid: proxy authorization is not
    /// supported, so acting as someone else is refused outright.
    #[error("authorization identity must be empty or equal to the user name")]
    AuthzidMismatch,
    /// An entry of `POSTERN_SMTP_USERS` is invalid.
    #[error("POSTERN_SMTP_USERS line {line}, entry {entry}: {reason}")]
    InvalidUserEntry {
        /// 1-based line number in the configuration text.
        line: usize,
        /// 1-based entry number counted over the whole text.
        entry: usize,
        /// What is wrong with the entry (never contains the hash itself).
        reason: String,
    },
}

/// Base64 of `Username:`, the first LOGIN challenge.
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// Base64 of `Password:`, the second LOGIN challenge.
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// The user database.
///
/// `POSTERN_SMTP_USERS` is a list of `user:<argon2id PHC hash>` entries
/// separated by whitespace or newlines. Commas do *not* separate entries
/// because PHC strings contain commas (`m=19456,t=2,p=1`). Blank lines and
/// `#` comments (a token starting with `#` up to the end of its line) are
/// ignored, so a `POSTERN_SMTP_USERS_FILE` can be annotated.
///
/// Each hash must be a PHC string of argon2id with a salt and an output;
/// argon2i/argon2d are refused because only argon2id resists both
/// side-channel and GPU attacks. Duplicate users are refused rather than
/// "last one wins" so a typo cannot silently shadow an account. User names
/// must be non-empty and contain no `:`, whitespace or control characters.
#[derive(Clone)]
pub struct Users {
    users: HashMap<String, PasswordHashString>,
    /// Hash verified for unknown users so their rejection costs as much as a
    /// wrong password. It is created with the parameters of the first entry
    /// so the timing matches real accounts (a fixed default-parameter dummy
    /// would be distinguishable when operators pick other parameters).
    dummy: Option<PasswordHashString>,
}

impl fmt::Debug for Users {
    // Hand-written so hashes never reach logs: offline cracking of a leaked
    // hash is exactly what argon2 only slows down, not prevents.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.users.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Users").field("users", &names).finish()
    }
}

impl Users {
    /// Parses the `POSTERN_SMTP_USERS` text. The error names the 1-based
    /// line and entry and the reason.
    pub fn parse(text: &str) -> Result<Users, AuthError> {
        let mut users = HashMap::new();
        let mut first_params: Option<Params> = None;
        let mut entry = 0;

        for (line_idx, line) in text.lines().enumerate() {
            let line_no = line_idx + 1;
            for token in line.split_whitespace() {
                if token.starts_with('#') {
                    break;
                }
                entry += 1;
                let err = |reason: String| AuthError::InvalidUserEntry {
                    line: line_no,
                    entry,
                    reason,
                };

                let (user, hash) = token
                    .split_once(':')
                    .ok_or_else(|| err("expected user:<argon2id PHC hash>".into()))?;
                validate_username(user).map_err(|r| err(r.into()))?;
                let (phc, params) = parse_argon2id(hash).map_err(err)?;
                if users.contains_key(user) {
                    return Err(err(format!("duplicate user {user:?}")));
                }
                first_params.get_or_insert(params);
                users.insert(user.to_owned(), phc);
            }
        }

        let dummy = first_params.map(make_dummy_hash);
        Ok(Users { users, dummy })
    }

    /// True when no users are configured.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of configured users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Checks `password` for `user`.
    ///
    /// Constant-time with respect to the password via argon2's verify (the
    /// final comparison is constant-time). For an unknown user a dummy hash
    /// is verified anyway, so timing does not reveal which users exist.
    /// Slow by design (tens of ms): callers run it on a blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match (self.users.get(user), &self.dummy) {
            (Some(hash), _) => check_password(hash, password),
            (None, Some(dummy)) => {
                // Result ignored on purpose: the dummy only burns the same
                // CPU time as a real check; the answer is always "no".
                let _ = check_password(dummy, password);
                false
            }
            // No users at all: nothing exists to be enumerated.
            (None, None) => false,
        }
    }
}

fn check_password(hash: &PasswordHashString, password: &str) -> bool {
    // The algorithm/version/params come from the stored hash; `default()`
    // only supplies the (absent) secret.
    Argon2::default()
        .verify_password(password.as_bytes(), &hash.password_hash())
        .is_ok()
}

fn validate_username(user: &str) -> Result<(), &'static str> {
    if user.is_empty() {
        return Err("empty user name");
    }
    // ':' would be ambiguous with the separator; whitespace/control chars
    // cannot be typed reliably by clients and make logs misleading.
    if user
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("user name contains ':', whitespace or a control character");
    }
    Ok(())
}

/// Validates a PHC string fully up front so misconfiguration fails at start-up
/// rather than as mysterious login failures later.
fn parse_argon2id(hash: &str) -> Result<(PasswordHashString, Params), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("malformed PHC hash: {e}"))?;
    match Algorithm::try_from(parsed.algorithm) {
        Ok(Algorithm::Argon2id) => {}
        Ok(other) => {
            return Err(format!(
                "hash uses {other}, only argon2id is accepted (re-hash with `postern hash-password`)"
            ));
        }
        Err(_) => {
            return Err(format!(
                "hash algorithm {:?} is not argon2id",
                parsed.algorithm.as_str()
            ));
        }
    }
    if let Some(v) = parsed.version {
        Version::try_from(v).map_err(|_| format!("unsupported argon2 version {v}"))?;
    }
    if parsed.salt.is_none() {
        return Err("hash has no salt".into());
    }
    if parsed.hash.is_none() {
        return Err("hash has no output".into());
    }
    let params =
        Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    Ok((parsed.serialize(), params))
}

fn make_dummy_hash(params: Params) -> PasswordHashString {
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    // A random password nobody knows, so the dummy can never match.
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(&secret, &salt)
        .expect("params were validated from an existing hash")
        .serialize()
}

/// Hashes a password for `postern hash-password`: argon2id with the crate's
/// default (OWASP-recommended) parameters and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("default argon2 parameters with a generated salt cannot fail")
        .to_string()
}

/// Decodes base64 client data into UTF-8; shared by PLAIN and LOGIN.
fn decode_b64_utf8(b64: &str) -> Result<String, AuthError> {
    let b64 = b64.trim();
    // RFC 4954: a lone "=" is an empty response, distinct from bad base64.
    if b64.is_empty() || b64 == "=" {
        return Err(AuthError::EmptyResponse);
    }
    let bytes = BASE64.decode(b64).map_err(|_| AuthError::InvalidBase64)?;
    String::from_utf8(bytes).map_err(|_| AuthError::NotUtf8)
}

/// Decodes a PLAIN initial response (base64 of `authzid NUL authcid NUL
/// passwd`) into `(user, password)`.
///
/// `authzid` must be empty or equal to `authcid`: proxy authorization is not
/// supported. A lone `=` (RFC 4954's empty initial response) is an error
/// because PLAIN needs credentials.
pub fn decode_plain(b64: &str) -> Result<(String, String), AuthError> {
    let text = decode_b64_utf8(b64)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedPlain);
    };
    if authcid.is_empty() {
        return Err(AuthError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(AuthError::EmptyPassword);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(AuthError::AuthzidMismatch);
    }
    Ok((authcid.to_owned(), password.to_owned()))
}

/// Decodes one base64 line of the LOGIN exchange (user name or password).
///
/// Empty values and embedded NULs are refused: neither can be a valid
/// credential, and rejecting them early keeps them out of logs and lookups.
pub fn decode_line(b64: &str) -> Result<String, AuthError> {
    let text = decode_b64_utf8(b64)?;
    if text.is_empty() {
        return Err(AuthError::EmptyResponse);
    }
    if text.contains('\0') {
        return Err(AuthError::ContainsNul);
    }
    Ok(text)
}

/// True when the client cancelled the exchange (RFC 4954 section 4: a line
/// consisting of `*`). Surrounding whitespace (e.g. a stray CR) is tolerated.
pub fn is_cancel(line: &str) -> bool {
    line.trim() == "*"
}

/// What the session should do about an AUTH attempt from some IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No recent failures: proceed normally.
    Allow,
    /// Recent failures: wait this long before answering.
    Delay(Duration),
    /// Too many failures within the window: reply `421 4.7.0` and close.
    Block,
}

/// Upper bound on any delay, so a generous configuration cannot push clients
/// into their own command timeouts (RFC 5321 suggests 5 minutes).
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Default bound on the number of tracked client networks.
pub const DEFAULT_MAX_TRACKED: usize = 100_000;

/// Per-IP throttle for failed AUTH attempts.
///
/// Failures are remembered per client for `window`. Each failure adds
/// `base_delay` to the delay (capped at [`MAX_DELAY`]); at `max_failures`
/// failures within `window` the client is blocked until the oldest failure
/// ages out. IPv6 clients are tracked per /64 because a single host usually
/// controls a whole /64 and could otherwise rotate addresses freely;
/// IPv4-mapped IPv6 addresses count as their IPv4 address.
///
/// An attempt is counted as a failure *before* its password is checked
/// ([`AuthThrottle::begin`] reserves a slot under the lock), because the
/// check is slow on purpose: were failures counted only afterwards, twenty
/// parallel sessions would all get their guess checked before the first
/// failure landed. A correct password releases only its own reservation
/// ([`AuthThrottle::succeeded`]): a login to an account the attacker knows
/// must not wipe the failures of guesses against other accounts, so
/// failures are never reset, they only age out. (Tracking per IP and user
/// would let one client guess against many users; the per-IP count is the
/// bound that matters.) An attempt abandoned mid-check stays a failure.
///
/// Memory is bounded: beyond `max_tracked` clients, expired entries are
/// dropped and then the least recently failing tenth is evicted (in one
/// batch, so the cost is amortised under a flood of new addresses).
///
/// Pure with respect to time: callers pass `now`.
pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    base_delay: Duration,
    max_tracked: usize,
    inner: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    next_token: u64,
    // Each deque holds at most `max_failures` (instant, token) pairs,
    // oldest first: failures and attempts still being checked.
    by_client: HashMap<IpAddr, VecDeque<(Instant, u64)>>,
}

/// An AUTH attempt whose password is being checked, counted as a failure
/// until [`AuthThrottle::succeeded`] releases it.
#[derive(Debug)]
#[must_use = "an attempt ends with succeeded() or failed()"]
pub struct Attempt {
    key: IpAddr,
    token: u64,
}

impl fmt::Debug for AuthThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthThrottle")
            .field("max_failures", &self.max_failures)
            .field("window", &self.window)
            .field("base_delay", &self.base_delay)
            .field("max_tracked", &self.max_tracked)
            .field("tracked", &self.lock().by_client.len())
            .finish()
    }
}

impl AuthThrottle {
    /// Creates a throttle. `max_failures` is clamped to at least 1 (0 would
    /// block every client before its first attempt).
    pub fn new(max_failures: u32, window: Duration, base_delay: Duration) -> Self {
        AuthThrottle {
            max_failures: max_failures.max(1),
            window,
            base_delay,
            max_tracked: DEFAULT_MAX_TRACKED,
            inner: Mutex::new(Slots::default()),
        }
    }

    /// Overrides the bound on tracked clients (mainly for tests); at least 1.
    pub fn with_max_tracked(mut self, max_tracked: usize) -> Self {
        self.max_tracked = max_tracked.max(1);
        self
    }

    /// Current verdict for `ip` without recording anything: `Block` while
    /// blocked, `Delay` with the current penalty, `Allow` with a clean record.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let key = throttle_key(ip);
        let mut slots = self.lock();
        let count = match slots.by_client.get_mut(&key) {
            Some(times) => {
                self.prune(times, now);
                times.len()
            }
            None => 0,
        };
        if count == 0 {
            slots.by_client.remove(&key);
        }
        self.verdict(count)
    }

    /// Reserves a failure slot for an attempt about to be checked, or
    /// `Err(Verdict::Block)` when the failures and attempts in flight
    /// already reach the limit (then the password must not be checked).
    pub fn begin(&self, ip: IpAddr, now: Instant) -> Result<Attempt, Verdict> {
        let key = throttle_key(ip);
        let mut slots = self.lock();
        if !slots.by_client.contains_key(&key) && slots.by_client.len() >= self.max_tracked {
            self.make_room(&mut slots.by_client, now);
        }
        slots.next_token += 1;
        let token = slots.next_token;
        let times = slots.by_client.entry(key).or_default();
        self.prune(times, now);
        if times.len() >= self.max_failures as usize {
            return Err(Verdict::Block);
        }
        times.push_back((now, token));
        Ok(Attempt { key, token })
    }

    /// The attempt failed: its slot stays, now dated `now`. Returns the
    /// verdict for the reply to it.
    pub fn failed(&self, attempt: Attempt, now: Instant) -> Verdict {
        let mut slots = self.lock();
        let times = slots.by_client.entry(attempt.key).or_default();
        times.retain(|&(_, t)| t != attempt.token);
        self.prune(times, now);
        times.push_back((now, attempt.token));
        while times.len() > self.max_failures as usize {
            times.pop_front();
        }
        self.verdict(times.len())
    }

    /// The attempt succeeded: releases its own slot, and nothing else.
    pub fn succeeded(&self, attempt: Attempt) {
        let mut slots = self.lock();
        if let Some(times) = slots.by_client.get_mut(&attempt.key) {
            times.retain(|&(_, t)| t != attempt.token);
            if times.is_empty() {
                slots.by_client.remove(&attempt.key);
            }
        }
    }

    /// Records a failed attempt in one step (`begin` + `failed`).
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> Verdict {
        match self.begin(ip, now) {
            Ok(attempt) => self.failed(attempt, now),
            Err(v) => v,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // A panic while holding the lock cannot leave the map logically
        // inconsistent (each operation is a simple update), so recover
        // instead of propagating the poison to every later session.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verdict(&self, count: usize) -> Verdict {
        if count == 0 {
            Verdict::Allow
        } else if count >= self.max_failures as usize {
            Verdict::Block
        } else {
            let n = u32::try_from(count).unwrap_or(u32::MAX);
            let delay = self.base_delay.checked_mul(n).unwrap_or(MAX_DELAY);
            Verdict::Delay(delay.min(MAX_DELAY))
        }
    }

    fn is_expired(&self, t: Instant, now: Instant) -> bool {
        now.saturating_duration_since(t) >= self.window
    }

    fn prune(&self, times: &mut VecDeque<(Instant, u64)>, now: Instant) {
        while times.front().is_some_and(|&(t, _)| self.is_expired(t, now)) {
            times.pop_front();
        }
    }

    fn make_room(&self, map: &mut HashMap<IpAddr, VecDeque<(Instant, u64)>>, now: Instant) {
        map.retain(|_, times| times.back().is_some_and(|&(t, _)| !self.is_expired(t, now)));
        if map.len() < self.max_tracked {
            return;
        }
        let evict = (self.max_tracked / 10).max(1);
        let mut by_age: Vec<(Instant, IpAddr)> = map
            .iter()
            .filter_map(|(ip, times)| times.back().map(|&(t, _)| (t, *ip)))
            .collect();
        let cut = evict.min(by_age.len()) - 1;
        by_age.select_nth_unstable(cut);
        for (_, ip) in &by_age[..=cut] {
            map.remove(ip);
        }
    }
}

/// The key under which a client is throttled (see [`AuthThrottle`]).
pub fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A cheap argon2 hash so tests do not spend seconds in the KDF.
    fn fast_hash(password: &str, algorithm: Algorithm) -> String {
        let params = Params::new(8, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn b64(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    #[test]
    fn decode_plain_table() {
        type Expected = Result<(&'static str, &'static str), &'static str>;
        let cases: Vec<(String, Expected)> = vec![
            (b64(b"\0alice\0secret"), Ok(("alice", "secret"))),
            (b64(b"alice\0alice\0secret"), Ok(("alice", "secret"))),
            (b64("\0jörg\0pässwörd".as_bytes()), Ok(("jörg", "pässwörd"))),
            (format!(" {} ", b64(b"\0a\0b")), Ok(("a", "b"))),
            (b64(b"bob\0alice\0secret"), Err("AuthzidMismatch")),
            (b64(b"alice secret"), Err("MalformedPlain")),
            (b64(b"alice\0secret"), Err("MalformedPlain")),
            (b64(b"\0alice\0sec\0ret"), Err("MalformedPlain")),
            (b64(b"\0\0secret"), Err("EmptyUsername")),
            (b64(b"\0alice\0"), Err("EmptyPassword")),
            ("not base64!".into(), Err("InvalidBase64")),
            ("AGFsaWNlAHNlY3JldA".into(), Err("InvalidBase64")),
            (b64(b"\0alice\0\xff\xfe"), Err("NotUtf8")),
            ("=".into(), Err("EmptyResponse")),
            ("".into(), Err("EmptyResponse")),
        ];
        for (input, expected) in cases {
            let got = decode_plain(&input);
            match (got, expected) {
                (Ok((u, p)), Ok((eu, ep))) => assert_eq!((u.as_str(), p.as_str()), (eu, ep)),
                (Err(e), Err(name)) => {
                    assert!(format!("{e:?}").starts_with(name), "{input}: {e:?}")
                }
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn decode_plain_error_does_not_echo_password() {
        let err = decode_plain(&b64(b"bob\0alice\0hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn decode_line_table() {
        let cases: Vec<(String, Result<&str, &str>)> = vec![
            (b64(b"alice"), Ok("alice")),
            ("c2VjcmV0\r\n".into(), Ok("secret")),
            (b64("pässwörd".as_bytes()), Ok("pässwörd")),
            ("=".into(), Err("EmptyResponse")),
            ("".into(), Err("EmptyResponse")),
            ("!!!".into(), Err("InvalidBase64")),
            (b64(b"\xc3\x28"), Err("NotUtf8")),
            (b64(b"ali\0ce"), Err("ContainsNul")),
        ];
        for (input, expected) in cases {
            match (decode_line(&input), expected) {
                (Ok(s), Ok(e)) => assert_eq!(s, e),
                (Err(e), Err(name)) => {
                    assert!(format!("{e:?}").starts_with(name), "{input}: {e:?}")
                }
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn is_cancel_table() {
        for (line, expected) in [
            ("*", true),
            ("*\r\n", true),
            (" * ", true),
            ("**", false),
            ("", false),
            ("=", false),
            ("Kg==", false),
        ] {
            assert_eq!(is_cancel(line), expected, "{line:?}");
        }
    }

    #[test]
    fn login_prompts_are_base64_of_the_text() {
        assert_eq!(LOGIN_USERNAME_PROMPT, b64(b"Username:"));
        assert_eq!(LOGIN_PASSWORD_PROMPT, b64(b"Password:"));
    }

    #[test]
    fn parse_good_entries_with_comments_and_blank_lines() {
        let text = format!(
            "# Postern SMTP users\n\nalice:{}   bob:{}  # trailing comment\n   \n  # indented comment\ncarol:{}\n",
            fast_hash("a", Algorithm::Argon2id),
            fast_hash("b", Algorithm::Argon2id),
            fast_hash("c", Algorithm::Argon2id),
        );
        let users = Users::parse(&text).unwrap();
        assert_eq!(users.len(), 3);
        assert!(!users.is_empty());
        assert!(users.verify("alice", "a"));
        assert!(users.verify("bob", "b"));
        assert!(users.verify("carol", "c"));
    }

    #[test]
    fn parse_empty_text() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let users = Users::parse(text).unwrap();
            assert!(users.is_empty());
            assert_eq!(users.len(), 0);
            assert!(!users.verify("alice", "a"));
        }
    }

    #[test]
    fn parse_bad_entries() {
        let good = fast_hash("x", Algorithm::Argon2id);
        let argon2i = fast_hash("x", Algorithm::Argon2i);
        let argon2d = fast_hash("x", Algorithm::Argon2d);
        // (text, line, entry, expected fragment of the reason)
        let cases: Vec<(String, usize, usize, &str)> = vec![
            (format!("alice:{argon2i}"), 1, 1, "only argon2id"),
            (format!("alice:{argon2d}"), 1, 1, "only argon2id"),
            ("alice:$argon2id$v=19$garbage".into(), 1, 1, "no output"),
            (
                "alice:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$not*base64*".into(),
                1,
                1,
                "malformed PHC",
            ),
            ("alice:not-a-hash".into(), 1, 1, "malformed PHC"),
            ("alice:$bcrypt$xyz".into(), 1, 1, "malformed PHC"),
            (
                "alice:$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                1,
                1,
                "not argon2id",
            ),
            (
                "alice:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ".into(),
                1,
                1,
                "no output",
            ),
            (
                "alice:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
                1,
                1,
                "invalid argon2 parameters",
            ),
            (format!("alice{good}"), 1, 1, "expected user:"),
            (format!(":{good}"), 1, 1, "empty user name"),
            (
                format!("# c\nalice:{good}\n\nalice:{good}"),
                4,
                2,
                "duplicate user",
            ),
            (format!("a:{good} b:{good}\nbad"), 2, 3, "expected user:"),
            (format!("a:{good}, b:{good}"), 1, 1, "malformed PHC"),
        ];
        for (text, line, entry, fragment) in cases {
            match Users::parse(&text) {
                Err(e @ AuthError::InvalidUserEntry { .. }) => {
                    let AuthError::InvalidUserEntry {
                        line: l, entry: n, ..
                    } = &e
                    else {
                        unreachable!()
                    };
                    assert_eq!((*l, *n), (line, entry), "{text}: {e}");
                    let msg = e.to_string();
                    assert!(msg.contains(fragment), "{text}: {msg}");
                    assert!(
                        msg.contains(&format!("line {line}, entry {entry}")),
                        "{msg}"
                    );
                    assert!(!msg.contains("$argon2"), "hash leaked: {msg}");
                }
                other => panic!("{text}: expected InvalidUserEntry, got {other:?}"),
            }
        }
    }

    #[test]
    fn verify_right_wrong_unknown() {
        let users = Users::parse(&format!(
            "alice:{}\nbob:{}",
            fast_hash("correct horse", Algorithm::Argon2id),
            fast_hash("battery staple", Algorithm::Argon2id)
        ))
        .unwrap();
        assert!(users.verify("alice", "correct horse"));
        assert!(!users.verify("alice", "battery staple"));
        assert!(!users.verify("alice", ""));
        assert!(!users.verify("Alice", "correct horse"));
        assert!(!users.verify("mallory", "correct horse"));
        assert!(!users.verify("", ""));
    }

    #[test]
    fn dummy_hash_uses_first_entry_params() {
        let users =
            Users::parse(&format!("alice:{}", fast_hash("x", Algorithm::Argon2id))).unwrap();
        let dummy = users.dummy.as_ref().unwrap();
        let params = Params::try_from(&dummy.password_hash()).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (8, 1, 1)
        );
        assert_eq!(dummy.algorithm().as_str(), "argon2id");
    }

    #[test]
    fn debug_shows_names_not_hashes() {
        let users = Users::parse(&format!(
            "bob:{} alice:{}",
            fast_hash("x", Algorithm::Argon2id),
            fast_hash("y", Algorithm::Argon2id)
        ))
        .unwrap();
        let dbg = format!("{users:?}");
        assert!(!dbg.contains("$argon2"), "{dbg}");
        assert!(dbg.contains("alice") && dbg.contains("bob"), "{dbg}");
        let alt = format!("{users:#?}");
        assert!(!alt.contains("$argon2"), "{alt}");
    }

    #[test]
    fn hash_password_is_default_argon2id_and_verifies() {
        let phc = hash_password("s3cret");
        let parsed = PasswordHash::new(&phc).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        let default = Params::default();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (default.m_cost(), default.t_cost(), default.p_cost())
        );
        let users = Users::parse(&format!("alice:{phc}")).unwrap();
        assert!(users.verify("alice", "s3cret"));
        assert!(!users.verify("alice", "S3cret"));
        // Random salt: hashing twice gives different strings.
        assert_ne!(phc, hash_password("s3cret"));
    }

    const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn throttle_delays_grow_then_block() {
        let t = AuthThrottle::new(4, Duration::from_secs(60), ms(500));
        let now = Instant::now();
        assert_eq!(t.check(IP, now), Verdict::Allow);
        assert_eq!(t.record_failure(IP, now), Verdict::Delay(ms(500)));
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(500)));
        assert_eq!(t.record_failure(IP, now + ms(1)), Verdict::Delay(ms(1000)));
        assert_eq!(t.record_failure(IP, now + ms(2)), Verdict::Delay(ms(1500)));
        assert_eq!(t.record_failure(IP, now + ms(3)), Verdict::Block);
        assert_eq!(t.check(IP, now + ms(4)), Verdict::Block);
        assert_eq!(t.record_failure(IP, now + ms(5)), Verdict::Block);
    }

    #[test]
    fn throttle_delay_is_capped() {
        let t = AuthThrottle::new(1000, Duration::from_secs(3600), Duration::from_secs(20));
        let now = Instant::now();
        t.record_failure(IP, now);
        assert_eq!(t.record_failure(IP, now), Verdict::Delay(MAX_DELAY));
    }

    #[test]
    fn throttle_window_expiry_resets() {
        let window = Duration::from_secs(60);
        let t = AuthThrottle::new(3, window, ms(100));
        let start = Instant::now();
        for i in 0..3 {
            t.record_failure(IP, start + ms(i));
        }
        assert_eq!(t.check(IP, start + ms(10)), Verdict::Block);
        // Sliding window: once the oldest failure ages out, one fewer counts.
        assert_eq!(t.check(IP, start + window), Verdict::Delay(ms(200)));
        assert_eq!(t.check(IP, start + window + ms(2)), Verdict::Allow);
        assert_eq!(
            t.record_failure(IP, start + window + ms(3)),
            Verdict::Delay(ms(100))
        );
    }

    #[test]
    fn throttle_other_ips_unaffected() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        t.record_failure(IP, now);
        t.record_failure(IP, now);
        assert_eq!(t.check(IP, now), Verdict::Block);
        assert_eq!(t.check(OTHER, now), Verdict::Allow);
        assert_eq!(t.record_failure(OTHER, now), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_success_releases_only_its_own_attempt() {
        let t = AuthThrottle::new(3, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        t.record_failure(IP, now);
        t.record_failure(IP, now);
        // A login to a known account does not wipe the other failures.
        let ok = t.begin(IP, now).unwrap();
        t.succeeded(ok);
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(200)));
        assert_eq!(t.record_failure(IP, now), Verdict::Block);
    }

    #[test]
    fn throttle_counts_attempts_in_flight() {
        // Parallel sessions: every attempt takes its slot before the slow
        // check, so only `max_failures` passwords are ever checked.
        let t = AuthThrottle::new(3, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let attempts: Vec<_> = (0..20).filter_map(|_| t.begin(IP, now).ok()).collect();
        assert_eq!(attempts.len(), 3);
        assert_eq!(t.begin(IP, now).unwrap_err(), Verdict::Block);
        let mut verdicts = Vec::new();
        for a in attempts {
            verdicts.push(t.failed(a, now + ms(1)));
        }
        assert_eq!(verdicts, [Verdict::Block; 3]);
        // Other clients are unaffected.
        assert!(t.begin(OTHER, now).is_ok());
    }

    #[test]
    fn throttle_success_in_flight_frees_its_slot() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let a = t.begin(IP, now).unwrap();
        let b = t.begin(IP, now).unwrap();
        assert!(t.begin(IP, now).is_err());
        t.succeeded(a);
        assert_eq!(t.failed(b, now), Verdict::Delay(ms(100)));
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_zero_max_failures_is_clamped() {
        let t = AuthThrottle::new(0, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        assert_eq!(t.check(IP, now), Verdict::Allow);
        assert_eq!(t.record_failure(IP, now), Verdict::Block);
    }

    #[test]
    fn throttle_ipv6_tracked_per_64_and_mapped_v4() {
        let t = AuthThrottle::new(2, Duration::from_secs(60), ms(100));
        let now = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.record_failure(a, now);
        assert_eq!(t.record_failure(b, now), Verdict::Block);
        assert_eq!(t.check(c, now), Verdict::Allow);

        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        t.record_failure(mapped, now);
        assert_eq!(t.check(IP, now), Verdict::Delay(ms(100)));
        assert_eq!(
            throttle_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        );
    }

    #[test]
    fn throttle_bounded_evicts_oldest() {
        let t = AuthThrottle::new(5, Duration::from_secs(600), ms(100)).with_max_tracked(20);
        let now = Instant::now();
        for i in 0..20u8 {
            t.record_failure(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)),
                now + ms(u64::from(i)),
            );
        }
        assert_eq!(t.lock().by_client.len(), 20);
        // Full: adding one more evicts the least recent tenth (2 entries).
        t.record_failure(OTHER, now + ms(100));
        assert_eq!(t.lock().by_client.len(), 19);
        let first = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0));
        let second = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let newest = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 19));
        assert_eq!(t.check(first, now + ms(100)), Verdict::Allow);
        assert_eq!(t.check(second, now + ms(100)), Verdict::Allow);
        assert_eq!(t.check(newest, now + ms(100)), Verdict::Delay(ms(100)));
        assert_eq!(t.check(OTHER, now + ms(100)), Verdict::Delay(ms(100)));
    }

    #[test]
    fn throttle_expired_entries_dropped_before_evicting() {
        let window = Duration::from_secs(10);
        let t = AuthThrottle::new(5, window, ms(100)).with_max_tracked(3);
        let now = Instant::now();
        t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), now);
        t.record_failure(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), now);
        let fresh = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
        t.record_failure(fresh, now + window);
        t.record_failure(OTHER, now + window);
        assert_eq!(t.lock().by_client.len(), 2);
        assert_eq!(t.check(fresh, now + window), Verdict::Delay(ms(100)));
    }
}
