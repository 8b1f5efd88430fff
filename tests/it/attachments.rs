//! Attachments by signed URL (issue 13 item 5): a message with a small
//! and a large attachment goes in over SMTP; the webhook gets `content`
//! for the small one and a signed `url` for the large one, and that link
//! serves the exact bytes (ETag, 304, Range, 416) after the delivery is
//! done and after a restart; altered, borrowed and expired links are
//! `403`, and the sweep removes what expired links pointed at.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use sha2::Digest;

use crate::api::client;
use crate::helpers::*;

/// What the route writes into payloads; the tests reach it on `app.http`.
const PUBLIC: &str = "https://postern.example/mail";
/// The large attachment's name: RFC 2231 encoded in the message.
const BIG_NAME: &str = "résumé € 2026.pdf";

/// `n` bytes that compress badly and differ at every offset.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn wrapped_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
        .as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
        .collect()
}

/// A message with a short text attachment and `big` as a PDF named
/// [`BIG_NAME`].
fn message(big: &[u8]) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: files\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nTwo files.\r\n\
         --b\r\nContent-Type: text/plain; name=small.txt\r\nContent-Disposition: attachment; filename=small.txt\r\n\r\nsmall one\r\n\
         --b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20%E2%82%AC%202026.pdf\r\n\r\n{}\
         --b--\r\n",
        wrapped_base64(big)
    )
    .into_bytes()
}

fn routes(rx: &Receiver, options: &str) -> String {
    format!(
        r#"[{{"match": "*", "url": "{}"{options}}}]"#,
        rx.url("/hook")
    )
}

/// Starts Postern on `spool` with one route to `rx` and `extra` settings.
async fn start(spool: &Path, routes: &str, extra: &[(&str, &str)]) -> App {
    let spool = spool.display().to_string();
    let mut vars = vec![
        ("POSTERN_ROUTES", routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", spool.as_str()),
    ];
    vars.extend_from_slice(extra);
    spawn_app(&vars).await
}

/// Sends `raw` and returns the payload the receiver got.
async fn deliver(app: &App, rx: &Receiver, raw: &[u8]) -> serde_json::Value {
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_raw_mail("alice@example.org", &["bob@example.com"], raw)
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let n = rx.hits().len() + 1;
    let hit = rx.wait_for(n, 10).await.remove(n - 1);
    assert!(hit.verify());
    hit.json()
}

/// The link as written in the payload, pointed at `app`'s listener.
fn local(app: &App, url: &str) -> String {
    let rest = url
        .strip_prefix(PUBLIC)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC}"));
    format!("http://{}{rest}", app.http)
}

async fn get(url: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = client().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The link serves `big` whole, by range and conditionally.
async fn assert_serves(url: &str, big: &[u8]) {
    let sha = format!("{:x}", sha2::Sha256::digest(big));
    let r = get(url, &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "application/pdf");
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"r_sum_ _ 2026.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E2%82%AC%202026.pdf"
    );
    let etag = format!("\"{sha}\"");
    assert_eq!(header(&r, "etag"), etag);
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-length"), big.len().to_string());
    assert_eq!(header(&r, "x-content-type-options"), "nosniff");
    assert_eq!(r.bytes().await.unwrap(), big);

    let r = get(url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(&r, "etag"), etag);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = get(url, &[("range", "bytes=1000-70999")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes 1000-70999/{}", big.len())
    );
    assert_eq!(header(&r, "content-length"), "70000");
    assert_eq!(r.bytes().await.unwrap(), &big[1000..71000]);

    let r = get(url, &[("range", "bytes=-10")]).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap(), &big[big.len() - 10..]);

    let past = format!("bytes={}-", big.len());
    let r = get(url, &[("range", &past)]).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        header(&r, "content-range"),
        format!("bytes */{}", big.len())
    );
}

/// `url` with its last signature character changed.
fn altered_signature(url: &str) -> String {
    let mut s = url.to_string();
    let last = s.pop().unwrap();
    s.push(if last == 'A' { 'B' } else { 'A' });
    s
}

#[tokio::test]
async fn big_attachments_go_by_link_that_outlives_delivery_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let routes = routes(&rx, r#", "max_attachment_inline": 1000"#);
    let public = [("POSTERN_PUBLIC_URL", PUBLIC)];
    let app = start(dir.path(), &routes, &public).await;
    let big = noise(1024 * 1024 + 7);
    let p = deliver(&app, &rx, &message(&big)).await;

    let atts = p["attachments"].as_array().unwrap();
    assert_eq!(atts.len(), 2, "{p}");
    let (small, large) = (&atts[0], &atts[1]);
    assert_eq!(small["content"], B64.encode("small one"));
    assert!(small["url"].is_null());
    assert!(large["content"].is_null());
    assert_eq!(large["filename"], BIG_NAME);
    assert_eq!(large["size"], big.len());
    let url = large["url"].as_str().unwrap();
    let id = p["id"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{PUBLIC}/v1/attachments/{id}/1?expires=")),
        "{url}"
    );
    // Expires in about POSTERN_ATTACHMENT_URL_TTL's default, 7 days.
    let expires_at = time::OffsetDateTime::parse(
        large["url_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires_at - time::OffsetDateTime::now_utc();
    assert!(
        ttl > time::Duration::days(7) - time::Duration::minutes(1),
        "{ttl}"
    );
    assert!(ttl <= time::Duration::days(7), "{ttl}");

    // The delivery is done and its message gone from the spool: the link
    // still works.
    wait_until(10, || "message removed".into(), || spooled(&app.spool) == 0).await;
    let link = local(&app, url);
    assert_serves(&link, &big).await;

    // Altered or borrowed links: 403, one body for all.
    let other_id = link.replace(id, &"0".repeat(32));
    let other_index = link.replace(&format!("{id}/1?"), &format!("{id}/0?"));
    let later = {
        let (head, sig) = link.split_once("&sig=").unwrap();
        let (base, expires) = head.split_once("expires=").unwrap();
        let later: u64 = expires.parse::<u64>().unwrap() + 1;
        format!("{base}expires={later}&sig={sig}")
    };
    let no_sig = link.split_once("&sig=").unwrap().0.to_string();
    let mut bodies = Vec::new();
    for bad in [
        altered_signature(&link),
        other_id,
        other_index,
        later,
        no_sig,
    ] {
        let r = get(&bad, &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad}");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    // A restart on the same spool: the generated key and the bytes are
    // still there.
    app.stop().await;
    let app = start(dir.path(), &routes, &public).await;
    assert_serves(&local(&app, url), &big).await;

    // A valid link whose bytes are gone (here: removed by hand) is a 404.
    for entry in std::fs::read_dir(dir.path().join("kept")).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let r = get(&local(&app, url), &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn url_mode_links_every_attachment_until_the_link_expires() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let routes = routes(&rx, r#", "attachments": "url""#);
    let extra = [
        ("POSTERN_PUBLIC_URL", PUBLIC),
        ("POSTERN_ATTACHMENT_URL_TTL", "2s"),
        (
            "POSTERN_ATTACHMENT_URL_SECRET",
            "a configured secret of enough bytes",
        ),
    ];
    let app = start(dir.path(), &routes, &extra).await;
    let big = noise(5000);
    let p = deliver(&app, &rx, &message(&big)).await;
    let links: Vec<&str> = p["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert!(a["content"].is_null(), "{a}");
            a["url"].as_str().unwrap()
        })
        .collect();
    let urls: Vec<String> = links.iter().map(|l| local(&app, l)).collect();
    assert_eq!(urls.len(), 2);
    let r = get(&urls[0], &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "text/plain");
    assert_eq!(
        header(&r, "content-disposition"),
        "attachment; filename=\"small.txt\""
    );
    assert_eq!(r.bytes().await.unwrap(), "small one");
    assert_eq!(get(&urls[1], &[]).await.bytes().await.unwrap(), big);
    assert_eq!(count(dir.path(), "kept"), 2);

    // Past the expiry: refused, though the bytes are still kept...
    tokio::time::sleep(Duration::from_millis(3100)).await;
    for url in &urls {
        assert_eq!(get(url, &[]).await.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(count(dir.path(), "kept"), 2);
    // ...until the sweep (at start, then hourly) removes them.
    app.stop().await;
    let app = start(dir.path(), &routes, &extra).await;
    wait_until(
        10,
        || "kept attachments swept".into(),
        || count(dir.path(), "kept") == 0,
    )
    .await;
    let r = get(&local(&app, links[1]), &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

/// Development mode without `POSTERN_PUBLIC_URL` links to its own HTTP
/// listener.
#[tokio::test]
async fn development_mode_links_to_its_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let routes = routes(&rx, r#", "attachments": "url""#);
    let app = start(dir.path(), &routes, &[("POSTERN_DEV_MODE", "true")]).await;
    let big = noise(3000);
    let p = deliver(&app, &rx, &message(&big)).await;
    let url = p["attachments"][1]["url"].as_str().unwrap();
    let own = format!("http://{}/v1/attachments/", app.http);
    assert!(url.starts_with(&own), "{url}");
    assert_eq!(get(url, &[]).await.bytes().await.unwrap(), big);
    app.stop().await;
}

/// Whatever the path holds, a link that is not one of ours gets the one
/// `403` answer, never a parser's error.
#[tokio::test]
async fn malformed_links_get_the_same_403() {
    let (app, _rx) = app_with_receiver(&[]).await;
    let base = format!("http://{}/v1/attachments", app.http);
    let id = "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b";
    let sig = "A".repeat(43);
    let mut bodies = Vec::new();
    for path in [
        format!("{id}/0?expires=99999999999&sig={sig}"),
        format!("{id}/0"),
        format!("{id}/x?expires=1&sig={sig}"),
        format!("{id}/-1?expires=1&sig={sig}"),
        format!("%FF%FE/0?expires=1&sig={sig}"),
        format!("{id}/0?expires=1&sig=%00"),
    ] {
        let r = get(&format!("{base}/{path}"), &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
    app.stop().await;
}

/// A retried delivery links again with a later expiry; the bytes are kept
/// once, and the links of both attempts work.
#[tokio::test]
async fn a_retry_links_again_and_both_links_work() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    rx.script(&[(500, None)]);
    let routes = routes(&rx, r#", "max_attachment_inline": 100"#);
    let extra = [
        ("POSTERN_PUBLIC_URL", PUBLIC),
        // Over a second later, exactly: the link's expiry (in seconds)
        // differs.
        ("POSTERN_RETRY_SCHEDULE", "1100ms"),
        ("POSTERN_RETRY_JITTER", "0"),
    ];
    let app = start(dir.path(), &routes, &extra).await;
    let big = noise(4000);
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_raw_mail("alice@example.org", &["bob@example.com"], &message(&big))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(2, 15).await;
    let links: Vec<String> = hits
        .iter()
        .map(|h| {
            h.json()["attachments"][1]["url"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_ne!(links[0], links[1], "the retry's link expires later");
    assert_eq!(count(dir.path(), "kept"), 1);
    for link in &links {
        let r = get(&local(&app, link), &[]).await;
        assert_eq!(r.status(), StatusCode::OK, "{link}");
        assert_eq!(r.bytes().await.unwrap(), big);
    }
    app.stop().await;
}

/// A sync route's payload (POSTed during DATA, `smtp::sync`) links
/// attachments as the worker's does, and the bytes are kept before the
/// app is asked, so the link works while it decides.
#[tokio::test]
async fn a_sync_routes_payload_links_attachments_too() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let routes = routes(&rx, r#", "mode": "sync", "attachments": "url""#);
    let app = start(dir.path(), &routes, &[("POSTERN_PUBLIC_URL", PUBLIC)]).await;
    let big = noise(100_000);
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_raw_mail("alice@example.org", &["bob@example.com"], &message(&big))
        .await;
    assert!(r.starts_with("250 "), "{r}");
    // Asked before the 250: the one POST is there already.
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    assert!(hits[0].verify());
    let p = hits[0].json();
    let url = p["attachments"][1]["url"].as_str().expect("a link");
    assert!(p["attachments"][1]["content"].is_null(), "{p}");
    assert_serves(&local(&app, url), &big).await;
    app.stop().await;
}
