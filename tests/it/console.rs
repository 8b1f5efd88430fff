//! The web console in a real browser: headless Chromium driven by
//! Playwright (`tests/browser/console.mjs`, `playwright-core` installed by
//! tests/run.sh into target/browser) against the real binary. Mail goes in
//! over SMTP from here; the script says when (`STEP` lines) and asserts on
//! the page, its frames' network log, its console and its dialogs. A local
//! listener plays the remote host of the hostile mail's images and must
//! see no request until "load remote images" is clicked.
//!
//! Skipped, loudly, only when Chromium or the Playwright package is absent
//! and `CI` is not set; in CI it must run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::binary::Launch;
use crate::helpers::*;

const KEY: &str = "browser-key-0123456789abcdef";
const CHROMIUM: &str = "/usr/bin/chromium";

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

/// What the script needs, or why the test cannot run.
fn browser_missing() -> Option<String> {
    if !Path::new(CHROMIUM).exists() {
        return Some(format!("{CHROMIUM} is missing (apt-get install chromium)"));
    }
    let module = target_dir().join("browser/node_modules/playwright-core/package.json");
    if !module.exists() {
        return Some(format!(
            "{} is missing (tests/run.sh installs it)",
            module.display()
        ));
    }
    None
}

async fn send(smtp: std::net::SocketAddr, to: &str, message: &str) {
    Smtp::mail_one(smtp, to, message).await;
}

/// A message with a text and an HTML part.
fn multipart(subject: &str, text: &str, html: &str) -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    )
}

/// A 24 x 24 blue PNG, base64.
const PICTURE: &str = "iVBORw0KGgoAAAANSUhEUgAAABgAAAAYCAIAAABvFaqvAAAAH0lEQVR4nGPQyr9NFcQwatCoQaMGjRo0atCoQQNvEAA8WUUuZd2FcgAAAABJRU5ErkJggg==";

/// HTML that shows an inline image by `cid:`, the way mail clients send
/// logos and signatures (multipart/related).
fn with_inline_picture() -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: Inline picture\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/related; boundary=\"r1\"\r\n\r\n\
         --r1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>Picture below</p><img id=\"dot\" alt=\"dot\" src=\"cid:dot@console.test\">\r\n\
         --r1\r\nContent-Type: image/png\r\nContent-ID: <dot@console.test>\r\n\
         Content-Disposition: inline; filename=\"dot.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {PICTURE}\r\n--r1--\r\n"
    )
}

#[tokio::test]
async fn the_console_in_a_real_browser() {
    if let Some(why) = browser_missing() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the browser test cannot run: {why}"
        );
        eprintln!("\n\n*** SKIPPING the browser test of the web console: {why} ***\n\n");
        return;
    }
    // The "remote" host of the hostile mail, and the endpoint that is
    // down until the dead delivery is retried.
    let remote = Endpoint::slow(Duration::ZERO);
    let remote_origin = format!("http://{}", remote.addr);
    let mut hook = Endpoint::reserve();
    let inbox = Receiver::start().await;
    let routes = serde_json::json!([
        {"match": "dead@example.com", "url": hook.url()},
        {"match": "*", "url": inbox.url("/all")}
    ])
    .to_string();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("postern.log");
    let spool = dir.path().join("spool");
    let env = [
        ("POSTERN_API_KEYS", KEY),
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_RETRY_SCHEDULE", "none"),
    ];
    let postern = Launch {
        domain: "console.test",
        spool: &spool,
        log: &log,
        env: &env,
    }
    .start()
    .await;

    let hostile_html = format!(
        "<html><head><link rel=\"stylesheet\" href=\"{r}/style.css\"><style>p {{ color: #800 }}</style></head><body>\
         <p>Hostile body</p><script>console.log('PWNED script'); alert('PWNED')</script>\
         <img src=\"x\" onerror=\"console.log('PWNED onerror'); alert(2)\">\
         <img src=\"{r}/pixel.png\" alt=\"remote\"><iframe src=\"{r}/frame\"></iframe>\
         <a href=\"javascript:alert(3)\">click</a></body></html>",
        r = remote_origin
    );
    send(
        postern.smtp,
        "bob@example.com",
        &multipart("Hostile", "hostile text", &hostile_html),
    )
    .await;
    send(postern.smtp, "bob@example.com", &with_inline_picture()).await;
    send(
        postern.smtp,
        "dead@example.com",
        "Subject: Dead one\r\n\r\nfor a closed port\r\n",
    )
    .await;

    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let profile = target_dir().join(format!("browser-profile-{}", rand::random::<u32>()));
    let _ = std::fs::remove_dir_all(&profile);
    let mut node = tokio::process::Command::new("node")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs"))
        .env("NODE_MODULES", target_dir().join("browser/node_modules"))
        .env("POSTERN_UI", format!("http://{}", postern.http))
        .env("POSTERN_UI_KEY", KEY)
        .env("REMOTE", &remote_origin)
        .env("SHOTS", &shots)
        .env("USER_DATA_DIR", &profile)
        .env("CHROMIUM", CHROMIUM)
        .current_dir(target_dir().join("browser"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut stdin = node.stdin.take().unwrap();
    let mut out = BufReader::new(node.stdout.take().unwrap()).lines();
    let mut transcript = Vec::new();
    let run = async {
        while let Some(line) = out.next_line().await.unwrap() {
            println!("browser: {line}");
            transcript.push(line.clone());
            let Some(step) = line.strip_prefix("STEP ") else {
                continue;
            };
            let answer = match step {
                "send-live" => {
                    send(
                        postern.smtp,
                        "bob@example.com",
                        &multipart("Live hello", "plain words", "<p>rich words</p>"),
                    )
                    .await;
                    "go"
                }
                "remote-blocked" if remote.hits().is_empty() => "go",
                "remote-blocked" => "the remote host got a request",
                "remote-loaded" if remote.hits().iter().any(|h| h.path == "/pixel.png") => "go",
                "remote-loaded" => "the remote image was never asked for",
                "open-endpoint" => {
                    hook.open();
                    "go"
                }
                _ => "unknown step",
            };
            stdin
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser scenario finished in time");
    let status = tokio::time::timeout(Duration::from_secs(20), node.wait())
        .await
        .expect("node exits")
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let text = transcript.join("\n");
    assert!(
        status.success() && text.lines().any(|l| l == "RESULT ok"),
        "browser scenario failed ({status}):\n{text}"
    );
    // Beyond what the page saw: the remote host got the image only, and
    // only after the click (the step answers above), never a frame, a
    // style sheet or anything else.
    let paths: Vec<String> = remote.hits().iter().map(|h| h.path.clone()).collect();
    assert!(
        paths.iter().all(|p| p == "/pixel.png"),
        "the remote host got {paths:?}"
    );
    assert_eq!(hook.hits().len(), 1, "the retried delivery arrived once");
    for shot in [
        "login",
        "messages",
        "message",
        "hostile",
        "inline-picture",
        "dead",
        "delivered",
    ] {
        assert!(shots.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
    postern.terminate().await;
}
