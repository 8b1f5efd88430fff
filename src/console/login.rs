//! Log in (an API key, or a `POSTERN_UI_USERS` user and password) and log
//! out. Failed log-ins are throttled per client IP with the SMTP AUTH
//! throttle's policy (its own instance): each recent failure delays the
//! next refusal, and at `POSTERN_AUTH_MAX_FAILURES` within the window the
//! form answers `429` without checking anything. Behind a proxy every
//! client shares the proxy's IP (forwarded headers are not trusted).

use std::net::SocketAddr;
use std::time::Instant;

use axum::Form;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use tracing::{info, warn};

use super::Console;
use super::guard;
use super::layout::page;
use super::session::{LoggedIn, set_cookie};
use crate::model::throttle::Verdict;

fn login_page(error: Option<&str>) -> Markup {
    page(
        "Log in",
        None,
        html! {
            @if let Some(e) = error {
                p.notice.error role="alert" { (e) }
            }
            form.card method="post" action="/ui/login" {
                p.hint { "Log in with an API key (leave the user empty), or with a console user's password." }
                label for="user" { "User" }
                input id="user" name="user" type="text" autocomplete="username";
                label for="secret" { "API key or password" }
                input id="secret" name="secret" type="password" required autocomplete="current-password";
                button type="submit" { "Log in" }
            }
        },
    )
}

/// `GET /ui/login`.
pub async fn form() -> Markup {
    login_page(None)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    secret: String,
}

/// Whether the form's credentials are good: an API key without a user, or
/// a console user's password (argon2, checked on a blocking thread).
async fn credentials_ok(st: &Console, user: &str, secret: &str) -> Option<String> {
    if user.is_empty() {
        return st
            .settings
            .keys
            .accepts(secret)
            .then(|| "API key".to_string());
    }
    let settings = st.settings.clone();
    let (user, secret) = (user.to_string(), secret.to_string());
    tokio::task::spawn_blocking(move || settings.users.verify(&user, &secret).then_some(user))
        .await
        .ok()
        .flatten()
}

/// `POST /ui/login`.
pub async fn submit(
    State(st): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if let Err(refused) = guard::check_origin(&st, &headers) {
        return refused.into_response();
    }
    let ip = peer.ip();
    let attempt = match st.throttle.begin(ip, Instant::now()) {
        Ok(a) => a,
        Err(_) => {
            warn!(%ip, "console log-in refused: too many recent failures");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                login_page(Some(
                    "Too many failed log-ins from your address; try again later.",
                )),
            )
                .into_response();
        }
    };
    match credentials_ok(&st, f.user.trim(), &f.secret).await {
        Some(who) => {
            st.throttle.succeeded(attempt);
            info!(%ip, who = %who, "console log-in");
            let id = st.sessions.create(who, Instant::now());
            let cookie = set_cookie(&id, Some(st.sessions.ttl()), st.settings.secure_cookie);
            ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/")).into_response()
        }
        None => {
            let verdict = st.throttle.failed(attempt, Instant::now());
            warn!(%ip, "console log-in failed");
            if let Verdict::Delay(d) = verdict {
                tokio::time::sleep(d).await;
            }
            (
                StatusCode::UNAUTHORIZED,
                login_page(Some("Wrong API key, user or password.")),
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /ui/logout`: the session ends here and in the browser.
pub async fn logout(
    State(st): State<Console>,
    login: LoggedIn,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    if let Err(refused) = guard::check_post(&st, &login.session, &headers, &f.csrf) {
        return refused.into_response();
    }
    st.sessions.remove(&login.id);
    let cookie = set_cookie("", None, st.settings.secure_cookie);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/ui/login")).into_response()
}
