//! One SMTP session over an in-memory pipe, fed the fuzzer's bytes.
//!
//! Input layout: byte 0 picks the pipe capacity (top 2 bits) and the first
//! chunk size (low 6 bits), byte 1 the second chunk size (0xff: also talk
//! before the greeting); the rest is what the client sends, cut into chunks
//! of those two sizes in turn. The client then closes its side and reads
//! everything the server wrote. AUTH is offered without TLS to one user,
//! `alice` / `secret` (cheapest argon2id parameters), with no failure delay.
//!
//! Fails (aborts) when the session panics, does not end within 10 s of the
//! client closing, ends otherwise than by QUIT / client gone / too many
//! errors / too many AUTH failures (early talker when it talked first), or
//! writes anything but well-formed replies (see `check_replies`). The twin
//! property test is tests/it/proptest_session.rs.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use postern::config::Config;
use postern::smtp::reply::EARLY_TALKER;
use postern::smtp::session::{End, Inbound, Peer, Session};
use postern::spool::{Queue, Spool};
use postern::telemetry::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const GREETING: &str = "220 mx.fuzz.test ESMTP Postern ready";
/// `alice` / `secret`, argon2id with m=8 KiB, t=1, p=1: fast to verify.
const USERS: &str =
    "alice:$argon2id$v=19$m=8,t=1,p=1$cG9zdGVybmZ1enpzYWx0$m/FMeh714PTVl/ILpHqdqGAAIldwp0oC/9h1HSvUvAo";

struct Fixture {
    config: Arc<Config>,
    spool: Spool,
    msg_dir: PathBuf,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        // Debug logging on, written nowhere: the log lines format client
        // input, which must not panic either.
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

        let dir = std::env::temp_dir().join(format!("postern-fuzz-{}", std::process::id()));
        let spool_dir = dir.display().to_string();
        let config = Config::from_vars([
            ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/"),
            (
                "POSTERN_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
            ("POSTERN_HOSTNAME", "mx.fuzz.test"),
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
        let spool = Spool::open(&config.spool_dir, config.fsync).expect("spool");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Fixture {
            msg_dir: dir.join("msg"),
            config: Arc::new(config),
            spool,
            rt,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, stream) = data.split_at(data.len().min(2));
    let a = head.first().copied().unwrap_or(0);
    let b = head.get(1).copied().unwrap_or(0);
    let pipe = [64, 512, 4096, 64 * 1024][usize::from(a >> 6)];
    let sizes = [1 + usize::from(a & 0x3f), 1 + usize::from(b) * 8];
    let early = b == 0xff && !stream.is_empty();
    let mut chunks: Vec<&[u8]> = {
        let mut out = Vec::new();
        let mut rest = stream;
        for n in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (c, r) = rest.split_at((*n).min(rest.len()));
            out.push(c);
            rest = r;
        }
        out
    };

    let fx = fixture();
    // Fresh each run: nothing consumes the queue (a shared one would grow),
    // and the AUTH throttle counts failures per IP.
    let inbound = Inbound::new(
        fx.config.smtp_settings(),
        fx.spool.clone(),
        Arc::new(Queue::new()),
        None,
        Arc::new(Metrics::new()),
    );
    let (end, out) = fx.rt.block_on(async {
        let (client, server) = tokio::io::duplex(pipe);
        let (mut rd, mut wr) = tokio::io::split(client);
        if early {
            wr.write_all(&chunks[0][..1]).await.expect("pipe has room");
            chunks[0] = &chunks[0][1..];
        }
        let peer = Peer {
            ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        };
        let session = Session::new(server, inbound, peer, CancellationToken::new());
        let write = async move {
            for c in chunks {
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
        match tokio::time::timeout(Duration::from_secs(10), all).await {
            Ok((end, (), out)) => (end, out),
            Err(_) => panic!("session did not end within 10 s of the client closing"),
        }
    });

    // Accepted messages pile up in the spool: drop them.
    if out.windows(9).any(|w| w == b"queued as") {
        if let Ok(dir) = std::fs::read_dir(&fx.msg_dir) {
            for e in dir.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    let (ended_well, first) = if early {
        (matches!(end, End::EarlyTalker), EARLY_TALKER)
    } else {
        let ok = matches!(
            end,
            End::Quit | End::ClientGone | End::TooManyErrors | End::TooManyAuthFailures
        );
        (ok, GREETING)
    };
    assert!(ended_well, "session ended with {end:?}");
    if let Err(e) = check_replies(&out, first) {
        panic!(
            "{e}\nserver wrote:\n{}",
            String::from_utf8_lossy(&out).escape_debug()
        );
    }
});

/// CRLF-terminated reply lines `^[2-5][0-9][0-9][ -]` + printable ASCII,
/// multi-line replies sharing one code and closed by a `NNN ` line, `first`
/// (the greeting) first, nothing after a closing reply (221, 421, the
/// early-talker 554). Same rules as `check_replies` in
/// tests/it/proptest_session.rs.
fn check_replies(out: &[u8], first: &str) -> Result<(), String> {
    let show = |l: &[u8]| String::from_utf8_lossy(l).into_owned();
    let Some(body) = out.strip_suffix(b"\r\n") else {
        return Err("output does not end with CRLF".into());
    };
    let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let mut open: Option<&[u8]> = None;
    let mut closed = false;
    for (i, line) in lines.iter().enumerate() {
        let line: &[u8] = if i + 1 < lines.len() {
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
        if open.is_some_and(|prev| prev != code) {
            return Err(format!("line {i} changes the code of a multi-line reply"));
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
