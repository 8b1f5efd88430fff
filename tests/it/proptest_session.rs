//! Property test: an SMTP session fed arbitrary client bytes, split at
//! arbitrary points, always ends cleanly and only ever writes well-formed
//! replies.
//!
//! The session runs in memory over `tokio::io::duplex`, on a current-thread
//! runtime, with debug logging switched on (so the formatting of logged
//! client input is exercised too). AUTH is offered without TLS (one user,
//! `alice` / `secret`, hashed with the cheapest argon2id parameters so a
//! case stays fast) and the failure delay is zero. The webhook URL is never
//! contacted: no delivery worker runs, the queue is only filled.
//!
//! `fuzz/fuzz_targets/smtp_session.rs` is the coverage-guided twin of this
//! test; docs/FUZZING.md says how to run both.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use postern::config::Config;
use postern::smtp::reply::EARLY_TALKER;
use postern::smtp::session::{End, Inbound, Peer, Session};
use postern::spool::Store;
use postern::telemetry::Metrics;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::SECRET;

const HOSTNAME: &str = "mx.prop.test";
const GREETING: &str = "220 mx.prop.test ESMTP Postern ready";
/// `alice` / `secret`, argon2id with m=8 KiB, t=1, p=1: fast to verify.
const USERS: &str = "alice:$argon2id$v=19$m=8,t=1,p=1$cG9zdGVybmZ1enpzYWx0$m/FMeh714PTVl/ILpHqdqGAAIldwp0oC/9h1HSvUvAo";

/// Everything a session needs, over a spool in a temp dir.
struct Harness {
    config: Arc<Config>,
    store: Store,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let spool_dir = dir.path().display().to_string();
        let config = Config::from_vars([
            ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/"),
            ("POSTERN_WEBHOOK_SECRET", SECRET),
            ("POSTERN_HOSTNAME", HOSTNAME),
            ("POSTERN_SPOOL_DIR", spool_dir.as_str()),
            ("POSTERN_FSYNC", "false"),
            ("POSTERN_MAX_MESSAGE_SIZE", "4K"),
            ("POSTERN_MAX_RECIPIENTS", "5"),
            ("POSTERN_SMTP_IDLE_TIMEOUT", "2s"),
            ("POSTERN_SMTP_USERS", USERS),
            ("POSTERN_SMTP_AUTH", "optional"),
            ("POSTERN_SMTP_ALLOW_INSECURE_AUTH", "true"),
            ("POSTERN_AUTH_MAX_FAILURES", "3"),
            ("POSTERN_AUTH_FAILURE_DELAY", "0s"),
        ])
        .expect("valid config");
        let (store, _) = Store::open_file(&config.spool_dir, config.fsync).unwrap();
        Harness {
            config: Arc::new(config),
            store,
            _dir: dir,
        }
    }

    /// Runs one session: the client writes `chunks` one by one (yielding in
    /// between so the server sees the splits), closes its side, and reads
    /// everything the server wrote. With `early`, the first byte is already
    /// waiting when the session starts. Returns how the session ended and
    /// the server's output.
    fn run(&self, chunks: &[Vec<u8>], pipe: usize, early: bool) -> Result<(End, Vec<u8>), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, server) = tokio::io::duplex(pipe);
            let (mut rd, mut wr) = tokio::io::split(client);
            let mut chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            if early && let Some(first) = chunks.first_mut() {
                wr.write_all(&first[..1]).await.unwrap();
                *first = &first[1..];
            }
            // Fresh each case: the AUTH throttle counts failures per IP.
            let inbound = Inbound::new(
                self.config.smtp_settings(),
                self.store.clone(),
                None,
                Arc::new(Metrics::new()),
            );
            let peer = Peer {
                ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            };
            let session = Session::new(server, inbound, peer, CancellationToken::new());
            let write = async move {
                for c in chunks {
                    // The server may close first (QUIT, too many errors).
                    if wr.write_all(c).await.is_err() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                let _ = wr.shutdown().await;
            };
            let read = async move {
                let mut out = Vec::new();
                let _ = rd.read_to_end(&mut out).await;
                out
            };
            let all = async { tokio::join!(session.run(), write, read) };
            // The client always closes, so the session must end on its own,
            // well before the 2 s idle timeout.
            match tokio::time::timeout(Duration::from_secs(10), all).await {
                Ok((end, (), out)) => Ok((end, out)),
                Err(_) => Err("session did not end within 10 s of the client closing".into()),
            }
        })
    }
}

/// Checks the server's whole output: CRLF-terminated reply lines
/// `^[2-5][0-9][0-9][ -]` followed by printable ASCII, multi-line replies
/// whose lines share the code and end with a `NNN ` line, `first` (the
/// greeting) first, and nothing after a closing reply (221, 421, or the
/// early-talker 554).
pub fn check_replies(out: &[u8], first: &str) -> Result<(), String> {
    let show = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    if !out.ends_with(b"\r\n") {
        return Err(format!(
            "output does not end with CRLF: ...{:?}",
            show(&out[out.len().saturating_sub(80)..])
        ));
    }
    let body = &out[..out.len() - 2];
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let mut open: Option<&[u8]> = None; // code of an unfinished multi-line reply
    let mut closed = false;
    for (i, line) in lines.iter().enumerate() {
        // Every line but the last lost its LF to split(); the CR must be there.
        let line = if i + 1 < lines.len() {
            line.strip_suffix(b"\r")
                .ok_or_else(|| format!("line {i} ends with a bare LF: {:?}", show(line)))?
        } else {
            line
        };
        if closed {
            return Err(format!("line {i} after a closing reply: {:?}", show(line)));
        }
        let ok_shape = line.len() >= 4
            && (b'2'..=b'5').contains(&line[0])
            && line[1].is_ascii_digit()
            && line[2].is_ascii_digit()
            && (line[3] == b' ' || line[3] == b'-');
        if !ok_shape {
            return Err(format!("line {i} is not `NNN[ -]text`: {:?}", show(line)));
        }
        if let Some(b) = line.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(format!(
                "line {i} has a non-printable byte {b:#04x}: {:?}",
                show(line)
            ));
        }
        let code = &line[..3];
        if let Some(prev) = open
            && prev != code
        {
            return Err(format!(
                "line {i} continues a {} reply with code {}",
                show(prev),
                show(code)
            ));
        }
        open = (line[3] == b'-').then_some(code);
        if i == 0 && (line != first.as_bytes() || open.is_some()) {
            return Err(format!("first line is not {first:?}: {:?}", show(line)));
        }
        if open.is_none() && (code == b"221" || code == b"421" || line == EARLY_TALKER.as_bytes()) {
            closed = true;
        }
    }
    if open.is_some() {
        return Err("output ends inside a multi-line reply".into());
    }
    Ok(())
}

/// Cuts `bytes` into chunks whose lengths cycle through `sizes`.
fn split(bytes: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    for &n in sizes.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(n.clamp(1, rest.len()));
        out.push(a.to_vec());
        rest = b;
    }
    out
}

// ---- strategies -------------------------------------------------------------

fn bytes_of(s: &str) -> BoxedStrategy<Vec<u8>> {
    Just(s.as_bytes().to_vec()).boxed()
}

/// A line ending: mostly CRLF, sometimes bare LF, bare CR, or none.
fn eol() -> impl Strategy<Value = &'static [u8]> {
    prop_oneof![
        8 => Just(&b"\r\n"[..]),
        1 => Just(&b"\n"[..]),
        1 => Just(&b"\r"[..]),
        1 => Just(&b""[..]),
    ]
}

/// Short junk: random bytes, or the usual suspects.
fn junk() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..24),
        bytes_of("\0"),
        bytes_of("\0\0\r\n"),
        Just(vec![0xff, 0xfe, 0xc3, 0x28, 0xe2, 0x82]),
        Just("é€😀".as_bytes().to_vec()),
        bytes_of("\r"),
        bytes_of("\n"),
        bytes_of("\r\r\n"),
        bytes_of("."),
        bytes_of(" "),
        bytes_of("\t"),
    ]
    .boxed()
}

/// An argument for a command: plausible, or anything at all.
fn arg() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => "[a-z0-9.-]{1,20}".prop_map(String::into_bytes),
        2 => "[ -~]{0,30}".prop_map(String::into_bytes),
        1 => any::<String>().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..30),
    ]
    .boxed()
}

fn address() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => Just(b"bob@example.com".to_vec()),
        1 => Just(b"Postmaster".to_vec()),
        1 => Just(Vec::new()),
        1 => Just(b"@relay.test:bob@example.com".to_vec()),
        1 => Just("bø@exämple.com".as_bytes().to_vec()),
        2 => "[a-z]{1,8}@[a-z]{1,8}\\.test".prop_map(String::into_bytes),
        1 => arg(),
    ]
    .boxed()
}

fn mail_params() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        4 => Just(Vec::new()),
        1 => (0u64..100_000).prop_map(|n| format!(" SIZE={n}").into_bytes()),
        1 => Just(b" SIZE=99999999999999999999999".to_vec()),
        1 => Just(b" BODY=8BITMIME".to_vec()),
        1 => Just(b" SMTPUTF8".to_vec()),
        1 => Just(b" RET=FULL ENVID=x+2Ey".to_vec()),
        1 => arg().prop_map(|a| [b" ".to_vec(), a].concat()),
    ]
    .boxed()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// An AUTH exchange: PLAIN or LOGIN, right or wrong credentials, initial
/// response or not, cancelled, or undecodable.
fn auth() -> BoxedStrategy<Vec<u8>> {
    let cred = prop_oneof![
        3 => Just(("alice".to_string(), "secret".to_string())),
        2 => Just(("alice".to_string(), "wrong".to_string())),
        1 => Just(("bob".to_string(), "secret".to_string())),
        1 => ("[ -~]{0,12}", "[ -~]{0,12}"),
        1 => (any::<String>(), any::<String>()),
    ];
    let plain = (cred.clone(), any::<bool>(), eol()).prop_map(|((u, p), initial, e)| {
        let resp = b64(format!("\0{u}\0{p}").as_bytes());
        let mut l = if initial {
            format!("AUTH PLAIN {resp}").into_bytes()
        } else {
            let mut l = b"AUTH PLAIN\r\n".to_vec();
            l.extend(resp.into_bytes());
            l
        };
        l.extend_from_slice(e);
        l
    });
    let login = (cred, eol()).prop_map(|((u, p), e)| {
        let mut l = format!(
            "AUTH LOGIN\r\n{}\r\n{}",
            b64(u.as_bytes()),
            b64(p.as_bytes())
        )
        .into_bytes();
        l.extend_from_slice(e);
        l
    });
    let odd = prop_oneof![
        bytes_of("AUTH PLAIN\r\n*\r\n"),
        bytes_of("AUTH LOGIN\r\n*\r\n"),
        bytes_of("AUTH PLAIN =\r\n"),
        bytes_of("AUTH PLAIN !!!not-base64\r\n"),
        bytes_of("AUTH LOGIN YWxpY2U=\r\n"),
        bytes_of("AUTH CRAM-MD5\r\n"),
        bytes_of("AUTH\r\n"),
        any::<String>().prop_map(|s| format!("AUTH PLAIN {}\r\n", b64(s.as_bytes())).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| [
            b"AUTH PLAIN ".to_vec(),
            b,
            b"\r\n".to_vec()
        ]
        .concat()),
    ];
    prop_oneof![2 => plain, 2 => login, 2 => odd].boxed()
}

/// One command line (possibly malformed), with its line ending.
fn command() -> BoxedStrategy<Vec<u8>> {
    let verb = prop_oneof![
        Just("EHLO"),
        Just("HELO"),
        Just("ehlo"),
        Just("LHLO"),
        Just("MAIL FROM:"),
        Just("RCPT TO:"),
        Just("DATA"),
        Just("RSET"),
        Just("NOOP"),
        Just("QUIT"),
        Just("VRFY"),
        Just("EXPN"),
        Just("HELP"),
        Just("STARTTLS"),
        Just("AUTH PLAIN"),
        Just("BDAT"),
        Just("ETRN"),
        Just("XYZZY"),
    ];
    let plain = (verb, prop::option::of(arg()), eol()).prop_map(|(v, a, e)| {
        let mut l = v.as_bytes().to_vec();
        if let Some(a) = a {
            l.push(b' ');
            l.extend(a);
        }
        l.extend_from_slice(e);
        l
    });
    let mail = (address(), mail_params(), eol())
        .prop_map(|(a, p, e)| [b"MAIL FROM:<".to_vec(), a, b">".to_vec(), p, e.to_vec()].concat());
    let rcpt = (address(), eol())
        .prop_map(|(a, e)| [b"RCPT TO:<".to_vec(), a, b">".to_vec(), e.to_vec()].concat());
    let ehlo = (prop_oneof![Just("EHLO "), Just("HELO ")], arg(), eol())
        .prop_map(|(v, a, e)| [v.as_bytes().to_vec(), a, e.to_vec()].concat());
    prop_oneof![3 => plain, 2 => mail, 2 => rcpt, 2 => ehlo].boxed()
}

/// A line longer than the 512-byte command limit, maybe without an end.
fn long_line() -> BoxedStrategy<Vec<u8>> {
    (
        prop_oneof![Just("NOOP "), Just("MAIL FROM:<"), Just("")],
        400usize..1600,
        any::<u8>(),
        eol(),
    )
        .prop_map(|(p, n, b, e)| {
            let fill = if b.is_ascii_graphic() { b } else { b'x' };
            let mut l = p.as_bytes().to_vec();
            l.resize(p.len() + n, fill);
            l.extend_from_slice(e);
            l
        })
        .boxed()
}

/// A message body line for DATA: text, dot-stuffed or not, odd endings.
fn body_line() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => ("[ -~]{0,60}", eol())
            .prop_map(|(t, e)| [t.into_bytes(), e.to_vec()].concat()),
        1 => Just(b"..stuffed\r\n".to_vec()),
        1 => Just(b".\n".to_vec()),
        1 => Just(b".\r".to_vec()),
        1 => Just(b"\n.\r\n".to_vec()),
        1 => Just(b"\r.\r\n".to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..80),
        1 => (1usize..3000).prop_map(|n| {
            let mut l = vec![b'b'; n];
            l.extend_from_slice(b"\r\n");
            l
        }),
    ]
    .boxed()
}

/// A whole transaction: MAIL, RCPT(s), DATA, a body, and (usually) the end.
fn transaction() -> BoxedStrategy<Vec<u8>> {
    (
        address(),
        prop::collection::vec(address(), 1..4),
        prop::collection::vec(body_line(), 0..12),
        prop_oneof![
            6 => Just(&b"\r\n.\r\n"[..]),
            1 => Just(&b".\r\n"[..]),
            1 => Just(&b""[..]),
        ],
    )
        .prop_map(|(from, rcpts, body, end)| {
            let mut s = [b"MAIL FROM:<".to_vec(), from, b">\r\n".to_vec()].concat();
            for r in rcpts {
                s.extend_from_slice(b"RCPT TO:<");
                s.extend(r);
                s.extend_from_slice(b">\r\n");
            }
            s.extend_from_slice(b"DATA\r\n");
            s.extend(body.concat());
            s.extend_from_slice(end);
            s
        })
        .boxed()
}

/// A client session: an optional greeting, then a mix of commands,
/// transactions, long lines and junk.
fn smtp_stream() -> BoxedStrategy<Vec<u8>> {
    let item = prop_oneof![
        6 => command(),
        2 => auth(),
        3 => transaction(),
        1 => long_line(),
        2 => junk(),
    ];
    (
        prop::bool::weighted(0.8),
        prop::collection::vec(item, 0..24),
    )
        .prop_map(|(hello, items)| {
            let mut s = if hello {
                b"EHLO client.test\r\n".to_vec()
            } else {
                Vec::new()
            };
            s.extend(items.concat());
            s
        })
        .boxed()
}

/// One case: client bytes, the chunk sizes they are cut into (cycled), the
/// capacity of the in-memory pipe, and whether the client talks before the
/// greeting.
struct Case {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
    pipe: usize,
    early: bool,
}

/// Shows the bytes as an escaped byte string, so a failure can be pasted.
impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Case {{ bytes: b\"{}\", sizes: {:?}, pipe: {}, early: {} }}",
            self.bytes.escape_ascii(),
            self.sizes,
            self.pipe,
            self.early
        )
    }
}

fn case() -> impl Strategy<Value = Case> {
    let bytes = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..2048),
        3 => smtp_stream(),
    ];
    let sizes = prop::collection::vec(
        prop_oneof![1 => 1usize..8, 2 => 1usize..200, 1 => 200usize..5000],
        1..8,
    );
    let pipe = prop_oneof![Just(64usize), Just(1024), Just(64 * 1024)];
    let early = prop::bool::weighted(0.05);
    (bytes, sizes, pipe, early).prop_map(|(bytes, sizes, pipe, early)| Case {
        bytes,
        sizes,
        pipe,
        early,
    })
}

// ---- tests ------------------------------------------------------------------

impl Harness {
    /// Runs `case` and checks the property; `Err` says what broke.
    fn check(&self, case: &Case) -> Result<(), String> {
        let chunks = split(&case.bytes, &case.sizes);
        let early = case.early && !case.bytes.is_empty();
        let (end, out) = self.run(&chunks, case.pipe, early)?;
        let (ended_well, first) = if early {
            (matches!(end, End::EarlyTalker), EARLY_TALKER)
        } else {
            let ok = matches!(
                end,
                End::Quit | End::ClientGone | End::TooManyErrors | End::TooManyAuthFailures
            );
            (ok, GREETING)
        };
        let verdict = if ended_well {
            check_replies(&out, first)
        } else {
            Err(format!("session ended with {end:?}"))
        };
        verdict.map_err(|e| format!("{e}\nserver wrote:\n{}", String::from_utf8_lossy(&out)))
    }
}

/// Debug logging on, written nowhere: the log lines format client input.
fn debug_logging() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::set_default(subscriber)
}

#[test]
fn session_replies_are_well_formed() {
    let _log = debug_logging();
    let harness = Harness::new();
    let cases = std::env::var("POSTERN_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&case(), |case| {
        harness.check(&case).map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Inputs that once broke the property (found by this test or by
/// fuzz/fuzz_targets/smtp_session.rs), replayed every time.
#[test]
fn known_failures_stay_fixed() {
    let _log = debug_logging();
    let harness = Harness::new();
    let long = "x".repeat(600);
    let nine_errors = "XYZZY\r\n".repeat(9);
    let cases: [(&str, Vec<u8>); 4] = [
        // Control byte in the EHLO argument, echoed in the 250 reply.
        ("ehlo-control-byte", b"EHLO \x00\r\n".to_vec()),
        // Non-UTF-8 command: the debug log sliced the lossy text at byte 4.
        ("redact-non-utf8", b"\x00\x0b\x80\n".to_vec()),
        // Non-ASCII HELO argument.
        ("helo-utf8", "HELO \u{e9}\u{20ac}\r\n".as_bytes().to_vec()),
        // The 10th error is an over-long line answering an AUTH challenge:
        // 421 must close the session, not be followed by more replies.
        (
            "auth-challenge-too-many-errors",
            format!(
                "EHLO c\r\n{nine_errors}AUTH PLAIN\r\n{long}\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nNOOP\r\n"
            )
            .into_bytes(),
        ),
    ];
    for (name, bytes) in cases {
        for sizes in [vec![bytes.len()], vec![1]] {
            let case = Case {
                bytes: bytes.clone(),
                sizes,
                pipe: 64 * 1024,
                early: false,
            };
            if let Err(e) = harness.check(&case) {
                panic!("{name}: {e}");
            }
        }
    }
}

/// The checker itself must be able to fail, or the property proves nothing.
#[test]
fn reply_checker_rejects_malformed_output() {
    let g = format!("{GREETING}\r\n");
    assert!(check_replies(g.as_bytes(), GREETING).is_ok());
    let ok = format!("{g}250-a\r\n250-b\r\n250 c\r\n221 2.0.0 Bye\r\n");
    assert!(check_replies(ok.as_bytes(), GREETING).is_ok());
    for bad in [
        String::new(),
        GREETING.to_string(),                    // no CRLF at all
        format!("{g}250 OK"),                    // last reply without CRLF
        format!("{g}250 OK\n"),                  // bare LF
        format!("{g}250 OK\r\r\n"),              // stray CR
        format!("{g}250 O\rK\r\n"),              // CR inside a line
        "220 other.host ESMTP\r\n".to_string(),  // wrong greeting
        "250 OK\r\n".to_string(),                // no greeting
        format!("{g}25 OK\r\n"),                 // short code
        format!("{g}650 OK\r\n"),                // code out of range
        format!("{g}250_OK\r\n"),                // bad separator
        format!("{g}250\r\n"),                   // no separator
        format!("{g}250 caf\u{e9}\r\n"),         // not ASCII
        format!("{g}250 a\0b\r\n"),              // control byte
        format!("{g}250-a\r\n251 b\r\n"),        // continuation changes code
        format!("{g}250-a\r\n"),                 // unfinished multi-line
        format!("{g}221 Bye\r\n250 OK\r\n"),     // a reply after closing
        format!("{g}421 Closing\r\n250 OK\r\n"), // a reply after closing
        format!("{EARLY_TALKER}\r\n"),           // not the greeting
    ] {
        assert!(
            check_replies(bad.as_bytes(), GREETING).is_err(),
            "accepted {bad:?}"
        );
    }
    let early = format!("{EARLY_TALKER}\r\n");
    assert!(check_replies(early.as_bytes(), EARLY_TALKER).is_ok());
    let early = format!("{EARLY_TALKER}\r\n250 OK\r\n");
    assert!(check_replies(early.as_bytes(), EARLY_TALKER).is_err());
}

#[test]
fn split_cycles_sizes() {
    assert_eq!(
        split(b"abcdefg", &[2, 1]),
        vec![
            b"ab".to_vec(),
            b"c".to_vec(),
            b"de".to_vec(),
            b"f".to_vec(),
            b"g".to_vec()
        ]
    );
    assert_eq!(split(b"abc", &[0]).len(), 3);
    assert!(split(b"", &[4]).is_empty());
}
