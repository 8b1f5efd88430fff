//! TLS end to end on the real listeners: STARTTLS and implicit TLS with a
//! test CA made here (rcgen), real clients (tokio-rustls, lettre, smtplib,
//! `openssl s_client`), certificate rotation and development mode.

use std::future::Future;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::helpers::*;
use crate::pki::{Pki, TestCa};

/// Every test's network and timing work is bounded by this.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// One reply or one handshake.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

const MESSAGE: &str = "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: over TLS\r\n\r\nHello over TLS\r\n.\r\n";

/// `alice:<argon2id hash of "s3cret">`, hashed once for all tests.
static ALICE: LazyLock<String> =
    LazyLock::new(|| format!("alice:{}", postern::model::users::hash_password(PASSWORD)));
const PASSWORD: &str = "s3cret";

async fn bounded<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

/// A receiver and an app serving `pki`'s certificate, plus `extra`.
async fn tls_app(pki: &Pki, extra: &[(&str, &str)]) -> (App, Receiver) {
    let mut vars = pki.vars();
    vars.extend_from_slice(extra);
    app_with_receiver(&vars).await
}

// ---------------------------------------------------------------------------
// A raw SMTP client over any stream, so it works before and after STARTTLS.

struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Client<S> {
        Client {
            io: BufReader::new(stream),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        let stream = self.io.get_mut();
        stream.write_all(bytes).await.unwrap();
        stream.flush().await.unwrap();
    }

    /// One reply, lines joined with `\n`; empty once the server closed.
    /// Panics after 10 s ([`STEP_TIMEOUT`]).
    async fn reply(&mut self) -> String {
        read_reply(&mut self.io).await
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await
    }

    /// The stream, checking that nothing was received past the last reply
    /// (plaintext after `220 Ready to start TLS` would be an injection).
    fn into_inner(self) -> S {
        assert!(
            self.io.buffer().is_empty(),
            "bytes after the last reply: {:?}",
            String::from_utf8_lossy(self.io.buffer())
        );
        self.io.into_inner()
    }

    /// MAIL, RCPT, DATA and the message; returns the final reply.
    async fn send_mail(&mut self) -> String {
        assert_eq!(
            self.cmd("MAIL FROM:<alice@example.org>").await,
            "250 2.1.0 Sender OK"
        );
        assert_eq!(
            self.cmd("RCPT TO:<bob@example.com>").await,
            "250 2.1.5 Recipient OK"
        );
        assert!(self.cmd("DATA").await.starts_with("354 "));
        self.send(MESSAGE.as_bytes()).await;
        self.reply().await
    }

    /// QUIT, then the server must close.
    async fn quit(&mut self) {
        assert_eq!(self.cmd("QUIT").await, "221 2.0.0 Bye");
        assert_eq!(self.reply().await, "", "nothing after 221, then close");
    }
}

async fn connect(addr: std::net::SocketAddr) -> (Client<TcpStream>, String) {
    let tcp = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .unwrap();
    let mut c = Client::new(tcp);
    let greeting = c.reply().await;
    (c, greeting)
}

/// A rustls client config (ring) trusting only the PEM certificates given.
fn client_config(trusted_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trusted_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(config)
}

/// A client-side TLS handshake on `tcp` for the name "localhost".
pub(crate) async fn handshake(
    tcp: TcpStream,
    trusted_pem: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = TlsConnector::from(client_config(trusted_pem));
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp))
        .await
        .expect("handshake in time")
}

/// STARTTLS on a plain session and the handshake; the TLS session has not
/// said EHLO yet.
async fn starttls(mut c: Client<TcpStream>, trusted_pem: &str) -> Client<TlsStream<TcpStream>> {
    assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready to start TLS");
    let tls = handshake(c.into_inner(), trusted_pem)
        .await
        .expect("TLS handshake after STARTTLS");
    Client::new(tls)
}

fn leaf_of(c: &Client<TlsStream<TcpStream>>) -> CertificateDer<'static> {
    let (_, conn) = c.io.get_ref().get_ref();
    conn.peer_certificates().expect("server certificate")[0].clone()
}

/// The negotiated (version, cipher) as Postern names them.
fn client_view(c: &Client<TlsStream<TcpStream>>) -> (String, String) {
    let (_, conn) = c.io.get_ref().get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        other => format!("{other:?}"),
    };
    let suite = conn.negotiated_cipher_suite().unwrap().suite();
    let name = suite.as_str().unwrap();
    let cipher = match name.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => name.to_string(),
    };
    (version, cipher)
}

/// The EHLO keywords (each line after the first, without `250-`/`250 `).
fn ehlo_keywords(reply: &str) -> Vec<String> {
    let lines: Vec<&str> = reply.lines().collect();
    assert!(lines.len() > 1, "EHLO reply: {reply}");
    for l in &lines {
        assert!(l.starts_with("250"), "EHLO reply: {reply}");
    }
    lines[1..].iter().map(|l| l[4..].to_string()).collect()
}

fn received(payload: &Value) -> String {
    let first = &payload["headers"][0];
    assert_eq!(first["name"], "Received", "{payload}");
    first["value"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------

/// 1. STARTTLS is offered only before TLS, the client starts again with
/// EHLO, and the TLS session is recorded in the payload.
#[tokio::test]
async fn starttls_resets_the_session_and_is_recorded_in_the_payload() {
    bounded(async {
        let pki = Pki::new();
        let (app, rx) = tls_app(&pki, &[]).await;

        let (mut c, greeting) = connect(app.smtp).await;
        assert_eq!(greeting, "220 localhost ESMTP Postern ready");
        let keywords = ehlo_keywords(&c.cmd("EHLO client.test").await);
        assert!(keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        assert!(
            !keywords.iter().any(|k| k.starts_with("AUTH")),
            "{keywords:?}"
        );

        let mut t = starttls(c, &pki.ca.pem()).await;
        assert_eq!(leaf_of(&t), pki.leaf.der);
        // RFC 3207 4.2: the EHLO from before the handshake is forgotten.
        assert_eq!(
            t.cmd("MAIL FROM:<alice@example.org>").await,
            "503 5.5.1 Send EHLO or HELO first"
        );
        let keywords = ehlo_keywords(&t.cmd("EHLO client.test").await);
        assert!(!keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        assert!(keywords.contains(&"PIPELINING".to_string()), "{keywords:?}");
        assert_eq!(t.cmd("STARTTLS").await, "503 5.5.1 TLS already active");

        let done = t.send_mail().await;
        assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
        let (version, cipher) = client_view(&t);
        assert_eq!(version, "TLSv1.3");
        t.quit().await;

        let hits = rx.wait_for(1, 10).await;
        assert!(hits[0].verify());
        let p = hits[0].json();
        assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");
        assert_eq!(p["envelope"]["tls"]["cipher"], cipher.as_str(), "{p}");
        assert!(cipher.starts_with("TLS_"), "{cipher}");
        assert_eq!(p["envelope"]["authenticated_user"], Value::Null);
        let r = received(&p);
        assert!(
            r.contains(&format!("(using TLSv1.3 with cipher {cipher})")),
            "{r}"
        );
        assert!(r.contains("with ESMTPS id "), "{r}");
        app.stop().await;
    })
    .await;
}

/// 2. Commands pipelined after STARTTLS in plaintext must never run inside
/// the TLS session (CVE-2011-0411). If they did, the first reply inside TLS
/// would be theirs (250 for RSET, 503 for MAIL without EHLO, or an EHLO
/// reply) instead of the one to our own HELP.
#[tokio::test]
async fn plaintext_pipelined_after_starttls_is_discarded() {
    bounded(async {
        let pki = Pki::new();
        let (app, _rx) = tls_app(&pki, &[]).await;

        for injected in [
            // The issue's exact case: a RSET run inside TLS would answer
            // 250 before our HELP's 214.
            "RSET\r\n",
            "MAIL FROM:<x@y>\r\n",
            "EHLO evil.test\r\nMAIL FROM:<x@y>\r\nRCPT TO:<bob@example.com>\r\n",
        ] {
            let (mut c, _) = connect(app.smtp).await;
            assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
            // One write: the server reads STARTTLS and the rest together.
            c.send(format!("STARTTLS\r\n{injected}").as_bytes()).await;
            assert_eq!(c.reply().await, "220 2.0.0 Ready to start TLS");
            // Nothing else in plaintext (into_inner checks the buffer), and
            // the handshake succeeds (stray plaintext would break it).
            let tls = handshake(c.into_inner(), &pki.ca.pem())
                .await
                .expect("TLS handshake");
            let mut t = Client::new(tls);
            assert_eq!(
                t.cmd("HELP").await,
                "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT VRFY HELP",
                "injected {injected:?}"
            );
            // No transaction was carried into TLS by the injected lines.
            assert_eq!(
                t.cmd("RCPT TO:<bob@example.com>").await,
                "503 5.5.1 Send MAIL first"
            );
            assert!(t.cmd("EHLO client.test").await.starts_with("250-"));
            assert_eq!(
                t.cmd("MAIL FROM:<alice@example.org>").await,
                "250 2.1.0 Sender OK"
            );
            t.quit().await;
        }
        app.stop().await;
    })
    .await;
}

/// 3. Implicit TLS (RFC 8314): handshake first, then the greeting; no
/// STARTTLS inside.
#[tokio::test]
async fn implicit_tls_listener_handshakes_before_the_greeting() {
    bounded(async {
        let pki = Pki::new();
        let (app, rx) = tls_app(&pki, &[("POSTERN_SMTPS_LISTEN", "127.0.0.1:0")]).await;
        let smtps = app.smtps.expect("implicit TLS listener");

        let tcp = TcpStream::connect(smtps).await.unwrap();
        let tls = handshake(tcp, &pki.ca.pem()).await.expect("TLS handshake");
        let mut t = Client::new(tls);
        assert_eq!(leaf_of(&t), pki.leaf.der);
        assert_eq!(t.reply().await, "220 localhost ESMTP Postern ready");
        let keywords = ehlo_keywords(&t.cmd("EHLO client.test").await);
        assert!(!keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        assert_eq!(t.cmd("STARTTLS").await, "503 5.5.1 TLS already active");
        let done = t.send_mail().await;
        assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
        let (_, cipher) = client_view(&t);
        t.quit().await;

        let p = rx.wait_for(1, 10).await[0].json();
        assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");
        assert_eq!(p["envelope"]["tls"]["cipher"], cipher.as_str(), "{p}");
        let r = received(&p);
        assert!(r.contains("with ESMTPS id "), "{r}");

        // A plaintext client on the TLS port gets no SMTP dialogue: its
        // EHLO is not a ClientHello, and the connection is closed.
        let mut tcp = TcpStream::connect(smtps).await.unwrap();
        tcp.write_all(b"EHLO plain.test\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(STEP_TIMEOUT, tcp.read_to_end(&mut answer))
            .await
            .expect("the server closes the connection");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            !answer.contains("220") && !answer.contains("250"),
            "{answer:?}"
        );
        app.stop().await;
    })
    .await;
}

/// 4. POSTERN_SMTP_REQUIRE_TLS: no transaction before STARTTLS.
#[tokio::test]
async fn require_tls_refuses_mail_until_starttls() {
    bounded(async {
        let pki = Pki::new();
        let (app, rx) = tls_app(&pki, &[("POSTERN_SMTP_REQUIRE_TLS", "true")]).await;

        let (mut c, _) = connect(app.smtp).await;
        let keywords = ehlo_keywords(&c.cmd("EHLO client.test").await);
        assert!(keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        assert_eq!(
            c.cmd("MAIL FROM:<alice@example.org>").await,
            "530 5.7.0 Must issue a STARTTLS command first"
        );
        let mut t = starttls(c, &pki.ca.pem()).await;
        assert!(t.cmd("EHLO client.test").await.starts_with("250-"));
        let done = t.send_mail().await;
        assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
        t.quit().await;

        let p = rx.wait_for(1, 10).await[0].json();
        assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");
        app.stop().await;
    })
    .await;
}

fn lettre_tls(pki: &Pki) -> TlsParameters {
    TlsParameters::builder("localhost".to_string())
        .add_root_certificate(Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .build_rustls()
        .unwrap()
}

fn lettre_message(id: &str) -> Message {
    Message::builder()
        .from("alice@example.org".parse().unwrap())
        .to("bob@example.com".parse().unwrap())
        .subject(format!("lettre {id}"))
        .message_id(Some(format!("<{id}@tls.test>")))
        .header(ContentType::TEXT_PLAIN)
        .body(format!("Sent by lettre ({id})."))
        .unwrap()
}

fn payload_with_id(hits: &[Hit], id: &str) -> Value {
    let found: Vec<Value> = hits
        .iter()
        .map(Hit::json)
        .filter(|p| p["message_id"] == format!("{id}@tls.test"))
        .collect();
    assert_eq!(found.len(), 1, "one webhook for {id}");
    found[0].clone()
}

/// 5a. lettre: STARTTLS + AUTH PLAIN, and implicit TLS + AUTH LOGIN.
#[tokio::test]
async fn lettre_starttls_plain_and_implicit_tls_login() {
    bounded(async {
        let users = ALICE.clone();
        let pki = Pki::new();
        let (app, rx) = tls_app(
            &pki,
            &[
                ("POSTERN_SMTPS_LISTEN", "127.0.0.1:0"),
                ("POSTERN_SMTP_USERS", users.as_str()),
                ("POSTERN_SMTP_AUTH", "required"),
            ],
        )
        .await;
        let credentials = Credentials::new("alice".to_string(), PASSWORD.to_string());

        let starttls = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(app.smtp.port())
            .tls(Tls::Required(lettre_tls(&pki)))
            .credentials(credentials.clone())
            .authentication(vec![Mechanism::Plain])
            .timeout(Some(STEP_TIMEOUT))
            .build();
        let r = starttls
            .send(lettre_message("lettre-starttls"))
            .await
            .expect("lettre STARTTLS + AUTH PLAIN");
        assert_eq!(u16::from(r.code()), 250, "{r:?}");

        let wrapper = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(app.smtps.expect("implicit TLS listener").port())
            .tls(Tls::Wrapper(lettre_tls(&pki)))
            .credentials(credentials)
            .authentication(vec![Mechanism::Login])
            .timeout(Some(STEP_TIMEOUT))
            .build();
        let r = wrapper
            .send(lettre_message("lettre-wrapper"))
            .await
            .expect("lettre implicit TLS + AUTH LOGIN");
        assert_eq!(u16::from(r.code()), 250, "{r:?}");

        let hits = rx.wait_for(2, 10).await;
        for id in ["lettre-starttls", "lettre-wrapper"] {
            let p = payload_with_id(&hits, id);
            assert_eq!(p["envelope"]["authenticated_user"], "alice", "{p}");
            assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");
            let r = received(&p);
            assert!(r.contains("with ESMTPSA id "), "{r}");
        }
        app.stop().await;
    })
    .await;
}

const SMTPLIB_TLS: &str = r#"
import json, smtplib, ssl, sys
from email.message import EmailMessage

port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
out = {}
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    s.ehlo("py.test")
    out["plain_starttls"] = s.has_extn("starttls")
    out["plain_auth"] = s.has_extn("auth")
    out["starttls"] = s.starttls(context=ctx)[0]
    out["version"] = s.sock.version()
    s.ehlo("py.test")
    out["tls_auth"] = s.esmtp_features.get("auth", "").strip()
    out["login"] = s.login("alice", "s3cret")[0]
    m = EmailMessage()
    m["From"] = "alice@example.org"
    m["To"] = "bob@example.com"
    m["Subject"] = "smtplib over TLS"
    m["Message-ID"] = "<smtplib@tls.test>"
    m.set_content("Hello from smtplib over TLS")
    out["refused"] = s.send_message(m)
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    s.starttls(context=ctx)
    try:
        s.login("alice", "wrong password")
        out["wrong"] = None
    except smtplib.SMTPAuthenticationError as e:
        out["wrong"] = [e.smtp_code, e.smtp_error.decode()]
print(json.dumps(out))
"#;

/// 5b. Python smtplib: STARTTLS with a verifying context, login, send; and
/// a wrong password is a 535.
#[tokio::test]
async fn python_smtplib_starttls_login_and_wrong_password() {
    bounded(async {
        let users = ALICE.clone();
        let pki = Pki::new();
        let (app, rx) = tls_app(
            &pki,
            &[
                ("POSTERN_SMTP_USERS", users.as_str()),
                ("POSTERN_SMTP_AUTH", "required"),
                ("POSTERN_AUTH_FAILURE_DELAY", "50ms"),
            ],
        )
        .await;

        let port = app.smtp.port().to_string();
        let out = python_json(SMTPLIB_TLS, &[&port, &pki.ca_file], 40).await;
        assert_eq!(
            out,
            serde_json::json!({
                "plain_starttls": true,
                "plain_auth": false,
                "starttls": 220,
                "version": "TLSv1.3",
                "tls_auth": "PLAIN LOGIN",
                "login": 235,
                "refused": {},
                "wrong": [535, "5.7.8 Authentication credentials invalid"],
            })
        );

        let hits = rx.wait_for(1, 10).await;
        let p = hits[0].json();
        assert_eq!(p["message_id"], "smtplib@tls.test");
        assert_eq!(p["envelope"]["authenticated_user"], "alice", "{p}");
        assert_eq!(p["envelope"]["tls"]["version"], "TLSv1.3", "{p}");
        app.stop().await;
    })
    .await;
}

const OPENSSL: &str = "/usr/bin/openssl";

/// `openssl s_client -starttls smtp` with `EHLO x` and `QUIT` on stdin.
async fn s_client(port: u16, cafile: &str) -> std::process::Output {
    let mut child = tokio::process::Command::new(OPENSSL)
        .args(["s_client", "-starttls", "smtp", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-CAfile", cafile, "-verify_return_error", "-quiet"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl starts");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"EHLO x\r\nQUIT\r\n").await.unwrap();
    drop(stdin);
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("openssl s_client finishes in time")
        .unwrap()
}

/// 6. OpenSSL's client verifies our chain and sees AUTH inside STARTTLS.
#[tokio::test]
async fn openssl_s_client_starttls_verifies_and_sees_auth() {
    if !Path::new(OPENSSL).exists() {
        eprintln!("SKIPPED openssl_s_client_starttls_verifies_and_sees_auth: {OPENSSL} is missing");
        return;
    }
    bounded(async {
        let users = ALICE.clone();
        let pki = Pki::new();
        let (app, _rx) = tls_app(&pki, &[("POSTERN_SMTP_USERS", users.as_str())]).await;

        let out = s_client(app.smtp.port(), &pki.ca_file).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "s_client failed ({}):\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
        assert!(stderr.contains("verify return:1"), "{stderr}");
        assert!(!stderr.contains("verify error"), "{stderr}");
        let lines: Vec<&str> = stdout.lines().map(|l| l.trim_end()).collect();
        assert!(lines.contains(&"250-localhost Hello x"), "{stdout}");
        assert!(lines.contains(&"250 AUTH PLAIN LOGIN"), "{stdout}");
        assert!(!lines.iter().any(|l| l.contains("STARTTLS")), "{stdout}");
        assert!(lines.contains(&"221 2.0.0 Bye"), "{stdout}");

        // The same client trusting another CA refuses the handshake.
        let other = TestCa::new("Some other CA");
        let other_file = Path::new(&pki.ca_file).with_file_name("other-ca.pem");
        std::fs::write(&other_file, other.pem()).unwrap();
        let out = s_client(app.smtp.port(), other_file.to_str().unwrap()).await;
        assert!(
            !out.status.success(),
            "s_client accepted a certificate from an untrusted CA"
        );
        app.stop().await;
    })
    .await;
}

/// 7. Rotation: new handshakes get the new certificate within a few
/// reload intervals; a session opened before keeps working.
#[tokio::test]
async fn certificate_rotation_reaches_new_handshakes_and_spares_open_sessions() {
    bounded(async {
        let pki = Pki::new();
        let (app, _rx) = tls_app(&pki, &[("POSTERN_TLS_RELOAD_INTERVAL", "100ms")]).await;

        let (mut c, _) = connect(app.smtp).await;
        assert!(c.cmd("EHLO s1.test").await.starts_with("250-"));
        let mut s1 = starttls(c, &pki.ca.pem()).await;
        assert_eq!(leaf_of(&s1), pki.leaf.der);
        assert!(s1.cmd("EHLO s1.test").await.starts_with("250-"));

        let b = pki.ca.leaf(2);
        assert_ne!(b.der, pki.leaf.der);
        pki.install(&b);

        let started = tokio::time::Instant::now();
        loop {
            let (mut c, _) = connect(app.smtp).await;
            assert!(c.cmd("EHLO s2.test").await.starts_with("250-"));
            let mut t = starttls(c, &pki.ca.pem()).await;
            let leaf = leaf_of(&t);
            t.quit().await;
            if leaf == b.der {
                break;
            }
            assert_eq!(leaf, pki.leaf.der, "neither the old nor the new leaf");
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the rotated certificate was not served within 3 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // S1 still works, on the certificate it started with.
        assert_eq!(s1.cmd("NOOP").await, "250 2.0.0 OK");
        assert_eq!(leaf_of(&s1), pki.leaf.der);
        s1.quit().await;
        app.stop().await;
    })
    .await;
}

/// 8. Development mode: STARTTLS with a self-signed certificate written to
/// the spool for clients to trust.
#[tokio::test]
async fn dev_mode_offers_starttls_with_the_certificate_in_the_spool() {
    bounded(async {
        let app = spawn_app(&[]).await;
        let pem_path = app.spool.join("dev-tls-cert.pem");
        let pem = std::fs::read_to_string(&pem_path)
            .unwrap_or_else(|e| panic!("{}: {e}", pem_path.display()));
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

        let (mut c, _) = connect(app.smtp).await;
        let keywords = ehlo_keywords(&c.cmd("EHLO client.test").await);
        assert!(keywords.contains(&"STARTTLS".to_string()), "{keywords:?}");
        let mut t = starttls(c, &pem).await;
        assert_eq!(
            leaf_of(&t).as_ref(),
            CertificateDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .as_ref()
        );
        assert!(t.cmd("EHLO client.test").await.starts_with("250-"));
        let done = t.send_mail().await;
        assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
        t.quit().await;

        // A client that trusts something else refuses it.
        let (mut c, _) = connect(app.smtp).await;
        assert!(c.cmd("EHLO client.test").await.starts_with("250-"));
        assert_eq!(c.cmd("STARTTLS").await, "220 2.0.0 Ready to start TLS");
        let other = TestCa::new("Not the dev certificate");
        assert!(handshake(c.into_inner(), &other.pem()).await.is_err());
        app.stop().await;
    })
    .await;
}

/// The JSON log of the real binary: the "message accepted" line of a
/// session that did STARTTLS says `tls=true` in its connection span (it was
/// recorded as `false` at accept and never updated).
#[tokio::test]
async fn message_accepted_log_records_tls_after_starttls() {
    bounded(async {
        let pki = Pki::new();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("postern.log");
        let spool = dir.path().join("spool");
        let mut env = pki.vars();
        env.push(("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/hook"));
        env.push(("POSTERN_LOG_FORMAT", "json"));
        let launch = crate::binary::Launch {
            domain: "tls.test",
            spool: &spool,
            log: &log,
            env: &env,
        };
        let p = launch.start().await;
        let (mut c, _) = connect(p.smtp).await;
        c.cmd("EHLO client.test").await;
        let mut t = starttls(c, &pki.ca.pem()).await;
        t.cmd("EHLO client.test").await;
        let done = t.send_mail().await;
        assert!(done.starts_with("250 2.0.0 OK: queued as "), "{done}");
        t.quit().await;
        // A plain session, for contrast.
        let (mut c, _) = connect(p.smtp).await;
        c.cmd("EHLO client.test").await;
        assert!(c.send_mail().await.starts_with("250 "));
        c.quit().await;
        let mut accepted = Vec::new();
        for _ in 0..100 {
            accepted = std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter(|l| l.contains("\"message accepted\""))
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect();
            if accepted.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(accepted.len(), 2, "{accepted:?}");
        let tls_of = |line: &Value| {
            line["spans"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == "smtp"))
                .map(|s| s["tls"].clone())
        };
        assert_eq!(
            tls_of(&accepted[0]),
            Some(Value::Bool(true)),
            "{}",
            accepted[0]
        );
        assert_eq!(
            tls_of(&accepted[1]),
            Some(Value::Bool(false)),
            "{}",
            accepted[1]
        );
        p.terminate().await;
    })
    .await;
}
