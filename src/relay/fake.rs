//! A minimal fake relay for the unit tests of the pool and of implicit TLS:
//! an SMTP server on 127.0.0.1 that logs what it receives and can hang up at
//! chosen points. The integration tests use a real one (aiosmtpd).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};

use super::{RcptOutcome, Relay, RelayConfig};

/// How the fake relay below misbehaves on the first connection's second
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Hangup {
    Never,
    /// Closes the connection right after the first message's reply.
    AfterFirstMessage,
    /// Closes the connection on `MAIL`, without replying.
    OnSecondMail,
    /// Takes the whole second message, then closes without replying.
    OnSecondDot,
}

pub(super) struct FakeRelay {
    pub(super) port: u16,
    connections: Arc<AtomicUsize>,
    /// `MAIL` commands as received, and "MESSAGE" for each message
    /// received up to its final dot.
    log: Arc<Mutex<Vec<String>>>,
}

impl FakeRelay {
    pub(super) fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub(super) fn messages(&self) -> usize {
        self.log().iter().filter(|l| *l == "MESSAGE").count()
    }

    pub(super) fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A minimal SMTP server on 127.0.0.1 announcing `extensions`, with
/// implicit TLS when `tls` is given.
pub(super) async fn fake_relay(
    extensions: &'static str,
    tls: Option<tokio_rustls::TlsAcceptor>,
    hangup: Hangup,
) -> FakeRelay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (c, l) = (Arc::clone(&connections), Arc::clone(&log));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let first = c.fetch_add(1, Ordering::SeqCst) == 0;
            let hangup = if first { hangup } else { Hangup::Never };
            let (tls, log) = (tls.clone(), Arc::clone(&l));
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            serve(stream, extensions, hangup, log).await;
                        }
                    }
                    None => serve(tcp, extensions, hangup, log).await,
                }
            });
        }
    });
    FakeRelay {
        port,
        connections,
        log,
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    extensions: &str,
    hangup: Hangup,
    log: Arc<Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (r, mut w) = tokio::io::split(stream);
    let mut lines = BufReader::new(r).lines();
    let mut done = 0;
    let _ = w.write_all(b"220 fake ESMTP\r\n").await;
    while let Ok(Some(line)) = lines.next_line().await {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "EHLO" => format!("250-fake\r\n{extensions}250 HELP\r\n"),
            "MAIL" if done == 1 && hangup == Hangup::OnSecondMail => return,
            "MAIL" => {
                log.lock().unwrap().push(line.clone());
                "250 ok\r\n".to_owned()
            }
            "RCPT" => "250 ok\r\n".to_owned(),
            "DATA" => {
                let _ = w.write_all(b"354 go on\r\n").await;
                while let Ok(Some(l)) = lines.next_line().await {
                    if l == "." {
                        break;
                    }
                }
                log.lock().unwrap().push("MESSAGE".to_owned());
                done += 1;
                if done == 2 && hangup == Hangup::OnSecondDot {
                    return;
                }
                let _ = w.write_all(b"250 queued\r\n").await;
                let _ = w.flush().await;
                if hangup == Hangup::AfterFirstMessage {
                    return;
                }
                continue;
            }
            "QUIT" => {
                let _ = w.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => "502 no\r\n".to_owned(),
        };
        let _ = w.write_all(reply.as_bytes()).await;
        let _ = w.flush().await;
    }
}

pub(super) fn plain_relay_to(fake: &FakeRelay) -> Relay {
    let cfg = RelayConfig::parse(&format!("smtp://127.0.0.1:{}?tls=none", fake.port)).unwrap();
    Relay::new(&cfg, "postern.test").unwrap()
}

pub(super) async fn send_one(relay: &Relay, body: &[u8]) -> RcptOutcome {
    let mut out = relay
        .send("a@example.com", &["b@example.com".to_owned()], body)
        .await;
    assert_eq!(out.len(), 1);
    out.remove(0)
}
