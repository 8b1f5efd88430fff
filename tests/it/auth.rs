//! SMTP AUTH (PLAIN, LOGIN) on plain sockets with
//! `POSTERN_SMTP_ALLOW_INSECURE_AUTH` (TLS itself is tested elsewhere):
//! exact replies, `auth` modes, routes that require AUTH, and the per-IP
//! failure throttle.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::helpers::*;
use crate::hostile::OTHER_IP;

const PASSWORD: &str = "correct horse battery staple";

const AUTH_OK: &str = "235 2.7.0 Authentication successful";
const AUTH_FAILED: &str = "535 5.7.8 Authentication credentials invalid";
const AUTH_BLOCKED: &str = "421 4.7.0 Too many failed authentication attempts, closing connection";
const AUTH_REQUIRED: &str = "530 5.7.0 Authentication required";
const USERNAME_PROMPT: &str = "334 VXNlcm5hbWU6";
const PASSWORD_PROMPT: &str = "334 UGFzc3dvcmQ6";

/// EHLO reply with default limits, without and with AUTH.
const EHLO: &str = "250-mx.test Hello client.test\n250-PIPELINING\n250-SIZE 26214400\n250-8BITMIME\n250-SMTPUTF8\n250 ENHANCEDSTATUSCODES";
const EHLO_AUTH: &str = "250-mx.test Hello client.test\n250-PIPELINING\n250-SIZE 26214400\n250-8BITMIME\n250-SMTPUTF8\n250-ENHANCEDSTATUSCODES\n250 AUTH PLAIN LOGIN";

fn b64(s: &str) -> String {
    B64.encode(s)
}

/// `AUTH PLAIN` with an initial response.
fn plain(user: &str, password: &str) -> String {
    format!("AUTH PLAIN {}", b64(&format!("\0{user}\0{password}")))
}

/// `alice` with the production hasher (about 0.3 s in a debug build).
fn users() -> String {
    format!("alice:{}", postern::model::users::hash_password(PASSWORD))
}

/// `alice` with a cheap argon2id hash (m=8,t=1,p=1), for the throttle test:
/// there a production-cost verify would swamp the delays being measured.
fn cheap_users() -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let phc = argon.hash_password(PASSWORD.as_bytes(), &salt).unwrap();
    format!("alice:{phc}")
}

/// App with user `alice`, AUTH allowed on plain sockets and a tiny failure
/// delay; `extra` adds or overrides variables.
async fn app(users: &str, extra: &[(&str, &str)]) -> (App, Receiver) {
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let mut vars: Vec<(&str, &str)> = vec![
        ("POSTERN_WEBHOOK_URL", &url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_HOSTNAME", "mx.test"),
        ("POSTERN_SMTP_USERS", users),
        ("POSTERN_SMTP_ALLOW_INSECURE_AUTH", "true"),
        ("POSTERN_AUTH_FAILURE_DELAY", "1ms"),
    ];
    for (k, v) in extra {
        vars.retain(|(name, _)| name != k);
        vars.push((k, v));
    }
    let app = spawn_app(&vars).await;
    (app, rx)
}

/// Connects and says EHLO; returns the client and the EHLO reply.
async fn ehlo(app: &App) -> (Smtp, String) {
    let (mut c, greeting) = Smtp::connect(app.smtp).await;
    assert_eq!(greeting, "220 mx.test ESMTP Postern ready");
    let r = c.cmd("EHLO client.test").await;
    (c, r)
}

#[tokio::test]
async fn auth_needs_encryption_unless_insecure_auth_is_allowed() {
    // An empty value is the same as unset (the default, false).
    let (app, _rx) = app(&users(), &[("POSTERN_SMTP_ALLOW_INSECURE_AUTH", "")]).await;
    let (mut c, r) = ehlo(&app).await;
    assert_eq!(r, EHLO, "AUTH not offered on a plain session");
    let needs_tls = "538 5.7.11 Encryption required for requested authentication mechanism";
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, needs_tls);
    assert_eq!(c.cmd("AUTH LOGIN").await, needs_tls);
    // Optional AUTH: unauthenticated mail still goes through.
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
}

#[tokio::test]
async fn plain_with_initial_response_and_only_once() {
    let (app, _rx) = app(&users(), &[]).await;
    let (mut c, r) = ehlo(&app).await;
    assert_eq!(r, EHLO_AUTH);
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
    let already = "503 5.5.1 Already authenticated";
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, already);
    assert_eq!(c.cmd("AUTH LOGIN").await, already);
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
}

#[tokio::test]
async fn plain_without_initial_response() {
    let (app, _rx) = app(&users(), &[]).await;
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd(&b64(&format!("\0alice\0{PASSWORD}"))).await, AUTH_OK);
    // authzid equal to the user is fine too.
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(
        c.cmd(&b64(&format!("alice\0alice\0{PASSWORD}"))).await,
        AUTH_OK
    );
}

#[tokio::test]
async fn login_exchange_with_and_without_initial_response() {
    let (app, _rx) = app(&users(), &[]).await;
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd("AUTH LOGIN").await, USERNAME_PROMPT);
    assert_eq!(c.cmd(&b64("alice")).await, PASSWORD_PROMPT);
    assert_eq!(c.cmd(&b64(PASSWORD)).await, AUTH_OK);

    let (mut c, _) = ehlo(&app).await;
    assert_eq!(
        c.cmd(&format!("AUTH LOGIN {}", b64("alice"))).await,
        PASSWORD_PROMPT
    );
    assert_eq!(c.cmd(&b64(PASSWORD)).await, AUTH_OK);
}

#[tokio::test]
async fn cancel_bad_credentials_and_bad_input() {
    let (app, _rx) = app(&users(), &[]).await;
    let (mut c, _) = ehlo(&app).await;
    let cancelled = "501 5.7.0 Authentication cancelled";
    assert_eq!(c.cmd("AUTH PLAIN").await, "334 ");
    assert_eq!(c.cmd("*").await, cancelled);
    assert_eq!(c.cmd("AUTH LOGIN").await, USERNAME_PROMPT);
    assert_eq!(c.cmd("*").await, cancelled);
    assert_eq!(c.cmd("AUTH LOGIN").await, USERNAME_PROMPT);
    assert_eq!(c.cmd(&b64("alice")).await, PASSWORD_PROMPT);
    assert_eq!(c.cmd("*").await, cancelled);

    assert_eq!(c.cmd(&plain("alice", "wrong")).await, AUTH_FAILED);
    assert_eq!(c.cmd(&plain("mallory", PASSWORD)).await, AUTH_FAILED);
    assert_eq!(c.cmd("AUTH LOGIN").await, USERNAME_PROMPT);
    assert_eq!(c.cmd(&b64("alice")).await, PASSWORD_PROMPT);
    assert_eq!(c.cmd(&b64("Wrong")).await, AUTH_FAILED);

    let undecodable = "501 5.5.2 Cannot decode AUTH response";
    assert_eq!(c.cmd("AUTH PLAIN !!!notbase64").await, undecodable);
    assert_eq!(c.cmd("AUTH LOGIN").await, USERNAME_PROMPT);
    assert_eq!(c.cmd("%%%").await, PASSWORD_PROMPT);
    assert_eq!(c.cmd(&b64(PASSWORD)).await, undecodable);
    assert_eq!(
        c.cmd("AUTH CRAM-MD5").await,
        "504 5.5.4 Unrecognized authentication type"
    );

    // None of that authenticated anyone, and the session still works.
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
}

#[tokio::test]
async fn auth_only_after_ehlo_and_outside_a_transaction() {
    let (app, _rx) = app(&users(), &[]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert_eq!(
        c.cmd(&plain("alice", PASSWORD)).await,
        "503 5.5.1 Send EHLO or HELO first"
    );
    assert_eq!(c.cmd("EHLO client.test").await, EHLO_AUTH);
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    assert_eq!(
        c.cmd(&plain("alice", PASSWORD)).await,
        "503 5.5.1 AUTH not permitted during a mail transaction"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK");
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
}

#[tokio::test]
async fn auth_off_is_not_offered() {
    let (app, _rx) = app(&users(), &[("POSTERN_SMTP_AUTH", "off")]).await;
    let (mut c, r) = ehlo(&app).await;
    assert_eq!(r, EHLO);
    assert_eq!(
        c.cmd(&plain("alice", PASSWORD)).await,
        "503 5.5.1 Authentication not enabled"
    );
}

#[tokio::test]
async fn auth_required_mode() {
    let (app, rx) = app(&users(), &[("POSTERN_SMTP_AUTH", "required")]).await;
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, AUTH_REQUIRED);
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            "Subject: authed\r\n\r\nhi\r\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 OK: queued as "), "{r}");
    let hits = rx.wait_for(1, 10).await;
    let json = hits[0].json();
    assert_eq!(json["envelope"]["authenticated_user"], "alice");
    let received = payload_header(&json, "Received");
    assert!(received.contains("with ESMTPA id "), "{received}");
}

#[tokio::test]
async fn routes_that_require_auth() {
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "*@app.test", "url": "{}", "auth": "required"}},
            {{"match": "*@public.test", "url": "{}"}}]"#,
        rx.url("/app"),
        rx.url("/public")
    );
    let users = users();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_HOSTNAME", "mx.test"),
        ("POSTERN_SMTP_USERS", &users),
        ("POSTERN_SMTP_AUTH", "optional"),
        ("POSTERN_SMTP_ALLOW_INSECURE_AUTH", "true"),
    ])
    .await;
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd("MAIL FROM:<a@b.test>").await, "250 2.1.0 Sender OK");
    assert_eq!(c.cmd("RCPT TO:<x@app.test>").await, AUTH_REQUIRED);
    assert_eq!(
        c.cmd("RCPT TO:<y@public.test>").await,
        "250 2.1.5 Recipient OK"
    );
    assert_eq!(c.cmd("RSET").await, "250 2.0.0 OK");
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
    let r = c
        .send_mail(
            "a@b.test",
            &["x@app.test", "y@public.test"],
            "Subject: both\r\n\r\nhi\r\n",
        )
        .await;
    assert!(r.starts_with("250 2.0.0 OK: queued as "), "{r}");
    let mut paths: Vec<String> = rx
        .wait_for(2, 10)
        .await
        .iter()
        .map(|h| h.path.clone())
        .collect();
    paths.sort();
    assert_eq!(paths, ["/app", "/public"]);
}

#[tokio::test]
async fn failed_auth_is_throttled_per_ip() {
    let (app, _rx) = app(
        &cheap_users(),
        &[
            ("POSTERN_AUTH_MAX_FAILURES", "3"),
            ("POSTERN_AUTH_FAILURE_DELAY", "50ms"),
        ],
    )
    .await;
    let (mut c, _) = ehlo(&app).await;
    // The delay grows by 50 ms per recent failure.
    for want in [Duration::from_millis(50), Duration::from_millis(100)] {
        let start = Instant::now();
        assert_eq!(c.cmd(&plain("alice", "wrong")).await, AUTH_FAILED);
        let took = start.elapsed();
        assert!(took >= want, "535 after {took:?}, want at least {want:?}");
    }
    assert_eq!(c.cmd(&plain("alice", "wrong")).await, AUTH_FAILED);
    assert_eq!(c.reply().await, AUTH_BLOCKED);
    assert!(c.closed().await);

    // A new connection from the same address is refused at once, even with
    // the right password...
    let (mut c, _) = ehlo(&app).await;
    let start = Instant::now();
    assert_eq!(c.cmd(&plain("alice", PASSWORD)).await, AUTH_BLOCKED);
    assert!(start.elapsed() < Duration::from_millis(150));
    assert!(c.closed().await);

    // ...while another address is not affected.
    let mut other = Smtp::connect_from(OTHER_IP, app.smtp).await;
    assert_eq!(other.reply().await, "220 mx.test ESMTP Postern ready");
    assert_eq!(other.cmd("EHLO client.test").await, EHLO_AUTH);
    assert_eq!(other.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
}

#[tokio::test]
async fn parallel_guesses_are_counted_before_they_are_checked() {
    // Production-cost hashes: each check takes long enough that all twenty
    // sessions are inside it at once. Without a reservation per attempt,
    // every guess was checked (twenty 535s) before the first failure counted.
    let (app, _rx) = app(&users(), &[("POSTERN_AUTH_MAX_FAILURES", "3")]).await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let (c, r) = ehlo(&app).await;
        assert_eq!(r, EHLO_AUTH);
        sessions.push(c);
    }
    let guesses = sessions.into_iter().enumerate().map(|(i, mut c)| {
        tokio::spawn(async move { c.cmd(&plain("alice", &format!("guess-{i}"))).await })
    });
    let guesses: Vec<_> = guesses.collect();
    let mut checked = 0;
    for g in guesses {
        match g.await.unwrap().as_str() {
            AUTH_FAILED => checked += 1,
            AUTH_BLOCKED => {}
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert!(checked <= 3, "{checked} passwords checked, the limit is 3");
    assert!(checked >= 1, "at least the first guesses are checked");
}

#[tokio::test]
async fn a_known_account_does_not_reset_failures_against_another() {
    let (app, _rx) = app(
        &cheap_users(),
        &[
            ("POSTERN_AUTH_MAX_FAILURES", "3"),
            ("POSTERN_AUTH_FAILURE_DELAY", "1ms"),
        ],
    )
    .await;
    // Two guesses against `bob`, a login as `alice` (the attacker's own
    // account), then the third guess against `bob` hits the limit.
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd(&plain("bob", "guess-1")).await, AUTH_FAILED);
    assert_eq!(c.cmd(&plain("bob", "guess-2")).await, AUTH_FAILED);
    let (mut known, _) = ehlo(&app).await;
    assert_eq!(known.cmd(&plain("alice", PASSWORD)).await, AUTH_OK);
    assert_eq!(c.cmd(&plain("bob", "guess-3")).await, AUTH_FAILED);
    assert_eq!(c.reply().await, AUTH_BLOCKED);
    assert!(c.closed().await);
    let (mut c, _) = ehlo(&app).await;
    assert_eq!(c.cmd(&plain("bob", "guess-4")).await, AUTH_BLOCKED);
}
