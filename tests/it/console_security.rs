//! The web console's security properties over plain HTTP (no browser): the
//! console is off without anyone to log in, every page's headers, the
//! session cookie's attributes, CSRF and origin checks on every POST, the
//! log-in throttle, log-out, and the dead letters' Retry and Delete forms.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::helpers::*;

const KEY: &str = "console-key-0123456789abcdef";

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn url(app: &App, path: &str) -> String {
    format!("http://{}{}", app.http, path)
}

async fn app_with_key(extra: &[(&str, &str)]) -> (App, Receiver) {
    let mut vars = vec![("POSTERN_API_KEYS", KEY)];
    vars.extend_from_slice(extra);
    app_with_receiver(&vars).await
}

/// Posts the log-in form; the response.
async fn log_in(app: &App, user: &str, secret: &str) -> reqwest::Response {
    client()
        .post(url(app, "/ui/login"))
        .form(&[("user", user), ("secret", secret)])
        .send()
        .await
        .unwrap()
}

/// The `name=value` of the session cookie a log-in set.
fn session_cookie(headers: &HeaderMap) -> String {
    let set = headers
        .get(SET_COOKIE)
        .expect("Set-Cookie")
        .to_str()
        .unwrap();
    set.split(';').next().unwrap().to_string()
}

/// Logs in with [`KEY`]: the cookie to send.
async fn session(app: &App) -> String {
    let r = log_in(app, "", KEY).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    session_cookie(r.headers())
}

async fn get(app: &App, path: &str, cookie: &str) -> reqwest::Response {
    client()
        .get(url(app, path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

#[tokio::test]
async fn the_console_is_off_without_keys_users_or_development_mode() {
    let (app, _rx) = app_with_receiver(&[]).await;
    for path in ["/ui/", "/ui/login", "/ui/dead", "/ui/static/console.css"] {
        let r = client().get(url(&app, path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = log_in(&app, "", "dev").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn development_mode_takes_the_dev_key() {
    let app = spawn_app(&[]).await;
    let r = log_in(&app, "", "dev").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/");
    let cookie = session_cookie(r.headers());
    let page = get(&app, "/ui/dead", &cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("No dead deliveries."));

    // A browser opening the dev inbox is sent to the console; scripts
    // still get the JSON.
    let inbox = url(&app, "/dev/inbox");
    let browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let r = client()
        .get(&inbox)
        .header("accept", browser)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/messages");
    for accept in [None, Some("*/*"), Some("application/json")] {
        let mut req = client().get(&inbox);
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{accept:?}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["count"], 0, "{accept:?}");
    }
}

#[tokio::test]
async fn every_page_sends_the_strict_headers() {
    let (app, _rx) = app_with_key(&[]).await;
    let cookie = session(&app).await;
    for path in [
        "/ui/login",
        "/ui/dead",
        "/ui/",
        "/ui/static/console.js",
        "/ui/deliveries/nope/delete",
    ] {
        let r = get(&app, path, &cookie).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
    // The page loads only our own script, from our own path.
    let page = get(&app, "/ui/dead", &cookie).await.text().await.unwrap();
    assert!(page.contains(r#"<script src="/ui/static/console.js" defer>"#));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
}

#[tokio::test]
async fn a_wrong_key_gets_no_session_and_the_cookie_is_locked_down() {
    let (app, _rx) = app_with_key(&[]).await;
    let r = log_in(&app, "", "wrong-key-0123456789abcdef").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("Wrong API key"));
    // Not logged in: every page sends you to the log-in form.
    let r = get(&app, "/ui/dead", "postern_ui=0000").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");

    let r = log_in(&app, "", KEY).await;
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    let attrs: Vec<&str> = set.split("; ").collect();
    assert!(
        attrs[0].starts_with("postern_ui=") && attrs[0].len() == 11 + 64,
        "{set}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(attrs.contains(&a), "{a} in {set}");
    }
    assert!(!attrs.contains(&"Secure"), "plain HTTP: {set}");
}

#[tokio::test]
async fn the_cookie_is_secure_when_the_public_url_is_https() {
    let (app, _rx) = app_with_key(&[("POSTERN_PUBLIC_URL", "https://mail.example.com")]).await;
    let r = log_in(&app, "", KEY).await;
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.split("; ").any(|a| a == "Secure"), "{set}");
}

#[tokio::test]
async fn console_users_log_in_with_their_password() {
    let hash = postern::model::users::hash_password("s3cret pass");
    let users = format!("ann:{hash}");
    let (app, _rx) = app_with_key(&[("POSTERN_UI_USERS", users.as_str())]).await;
    assert_eq!(
        log_in(&app, "ann", "wrong").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        log_in(&app, "bob", "s3cret pass").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A user's password is not an API key, nor the other way round.
    assert_eq!(
        log_in(&app, "", "s3cret pass").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let r = log_in(&app, "ann", "s3cret pass").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = get(&app, "/ui/dead", &session_cookie(r.headers()))
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<span class="who">ann</span>"#), "{page}");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_ip() {
    let (app, _rx) = app_with_key(&[
        ("POSTERN_AUTH_MAX_FAILURES", "3"),
        ("POSTERN_AUTH_FAILURE_DELAY", "0s"),
        ("POSTERN_AUTH_FAILURE_WINDOW", "1h"),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            log_in(&app, "", "wrong").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right key is not looked at.
    let r = log_in(&app, "", KEY).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get(SET_COOKIE).is_none());
}

#[tokio::test]
async fn posts_need_the_session_token_and_our_origin_and_logout_ends_the_session() {
    let (app, _rx) = app_with_key(&[]).await;
    let cookie = session(&app).await;
    let page = get(&app, "/ui/dead", &cookie).await.text().await.unwrap();
    let csrf = csrf_of(&page);
    let post = |form: Vec<(&'static str, String)>, headers: Vec<(&'static str, &'static str)>| {
        let mut rq = client()
            .post(url(&app, "/ui/logout"))
            .header("cookie", &cookie)
            .form(&form);
        for (k, v) in headers {
            rq = rq.header(k, v);
        }
        rq.send()
    };
    type Forged = (
        Vec<(&'static str, String)>,
        Vec<(&'static str, &'static str)>,
    );
    let forged: [Forged; 4] = [
        (vec![], vec![]),
        (vec![("csrf", "0".repeat(64))], vec![]),
        (
            vec![("csrf", csrf.clone())],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("csrf", csrf.clone())],
            vec![("origin", "null"), ("sec-fetch-site", "cross-site")],
        ),
    ];
    for (form, headers) in forged {
        let r = post(form.clone(), headers.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{form:?} {headers:?}");
    }
    // Still logged in after the refusals.
    assert_eq!(
        get(&app, "/ui/dead", &cookie).await.status(),
        StatusCode::OK
    );
    let origin = format!("http://{}", app.http);
    let r = client()
        .post(url(&app, "/ui/logout"))
        .header("cookie", &cookie)
        .header("origin", origin)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // The old cookie is worth nothing now.
    let r = get(&app, "/ui/dead", &cookie).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
}

#[tokio::test]
async fn dead_letters_are_retried_and_deleted_from_their_forms() {
    let mut ep = Endpoint::reserve();
    let hook = ep.url();
    let app = spawn_app(&[
        ("POSTERN_API_KEYS", KEY),
        ("POSTERN_WEBHOOK_URL", hook.as_str()),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_RETRY_SCHEDULE", "none"),
    ])
    .await;
    let mut ids = Vec::new();
    for subject in ["one", "two"] {
        let message = format!("Subject: {subject}\r\n\r\nhi\r\n");
        let id = Smtp::mail_one(app.smtp, "bob@example.com", &message).await;
        ids.push(format!("{id}.0"));
    }
    let cookie = session(&app).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = get(&app, "/ui/dead", &cookie).await.text().await.unwrap();
        if ids.iter().all(|id| page.contains(id.as_str())) {
            break page;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "both deliveries dead: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let csrf = csrf_of(&page);
    let post = |path: String, token: Option<&str>| {
        let mut form = vec![];
        if let Some(t) = token {
            form.push(("csrf", t.to_string()));
        }
        client()
            .post(url(&app, &path))
            .header("cookie", &cookie)
            .form(&form)
            .send()
    };
    // Without the token, nothing happens.
    let retry = format!("/ui/deliveries/{}/retry", ids[0]);
    assert_eq!(
        post(retry.clone(), None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let delete = format!("/ui/deliveries/{}/delete", ids[1]);
    assert_eq!(
        post(delete.clone(), None).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Delete asks first, in a page of its own.
    let confirm = get(&app, &delete, &cookie).await.text().await.unwrap();
    assert!(confirm.contains("Delete this delivery?"), "{confirm}");
    assert!(
        confirm.contains(&format!(r#"action="{delete}""#)),
        "{confirm}"
    );
    let r = post(delete, Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/dead?done=deleted");

    ep.open();
    let r = post(retry, Some(&csrf)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/dead?done=retried");
    let start = tokio::time::Instant::now();
    while ep.hits().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "retried delivery never came"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = get(&app, "/ui/dead", &cookie).await.text().await.unwrap();
    assert!(page.contains("No dead deliveries."), "{page}");
    assert_eq!(ep.hits().len(), 1, "the deleted one stays undelivered");
}

/// The sandboxed preview cannot send the session cookie, so its `cid:`
/// images carry a short-lived token: it opens that message's inline images
/// and nothing else; a changed token, or one moved to another message,
/// gets 403, and the cookie route still wants a session.
#[tokio::test]
async fn preview_image_links_open_only_their_own_message() {
    use base64::Engine as _;
    let (app, rx) = app_with_key(&[]).await;
    let png = b"\x89PNG\r\n\x1a\nnot really a png";
    let message = format!(
        "Subject: pic\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=r\r\n\r\n\
         --r\r\nContent-Type: text/html\r\n\r\n<img src=\"cid:pic@x\">\r\n\
         --r\r\nContent-Type: image/png\r\nContent-ID: <pic@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--r--\r\n",
        base64::engine::general_purpose::STANDARD.encode(png)
    );
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(Smtp::mail_one(app.smtp, "bob@example.com", &message).await);
    }
    rx.wait_for(2, 20).await;
    let cookie = session(&app).await;
    let r = get(&app, &format!("/ui/messages/{}/preview", ids[0]), &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let html = r.text().await.unwrap();
    let prefix = format!("/ui/messages/{}/inline/", ids[0]);
    let at = html.find(&prefix).expect("the cid: is rewritten") + prefix.len();
    let token = html[at..].split('/').next().unwrap().to_string();
    assert!(
        html[at..].starts_with(&format!("{token}/pic@x\"")),
        "{html}"
    );
    assert!(
        csp.contains(&format!("img-src http://{}{prefix}{token}/;", app.http)),
        "{csp}"
    );

    let anonymous = |path: String| client().get(url(&app, &path)).send();
    let r = anonymous(format!("{prefix}{token}/pic@x")).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "no cookie needed with the token"
    );
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..], png);
    let other = format!("/ui/messages/{}/inline/{token}/pic@x", ids[1]);
    let mut changed = token.clone().into_bytes();
    let last = changed.len() - 1;
    changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(changed).unwrap();
    for path in [
        other,
        format!("{prefix}{changed}/pic@x"),
        format!("{prefix}1.{}/pic@x", token.split_once('.').unwrap().1),
        format!("{prefix}x/pic@x"),
    ] {
        let r = anonymous(path.clone()).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let r = anonymous(format!("/ui/messages/{}/cid/pic@x", ids[0]))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "the cookie route wants a session"
    );
    let r = get(&app, &format!("/ui/messages/{}/cid/pic@x", ids[0]), &cookie).await;
    assert_eq!(r.status(), StatusCode::OK);
}
