//! The web console (`/ui/`, on the HTTP listener): server-rendered pages
//! (maud) over the store, for operators who want to *look* — the dead
//! letters with Retry and Delete, and (with message history) every message
//! with its deliveries and attempts.
//!
//! - [`session`]: log-in sessions (random 256-bit ids in memory, with an
//!   expiry) and their CSRF tokens.
//! - [`guard`]: what every response carries (CSP and friends) and the
//!   same-origin check of state-changing requests.
//! - [`login`]: log in with an API key or a `POSTERN_UI_USERS` password,
//!   throttled per IP; log out.
//! - [`messages`]: the messages list (filters, paging, live rows over
//!   Server-Sent Events) and one message with its deliveries' timelines.
//! - [`parts`]: a message's raw source, attachments, `cid:` images and its
//!   sandboxed HTML preview (mail HTML is hostile: see there).
//! - [`inline`]: the short-lived links that let the sandboxed preview load
//!   its `cid:` images without the session cookie.
//! - [`dead`]: the dead letters page, Retry, Delete with a confirmation page.
//! - [`layout`]: the page frame and the small formatting helpers (relative
//!   times).
//! - [`assets`]: the vendored CSS and JavaScript, compiled in.
//!
//! Everything works with JavaScript off except the live updates of the
//! list; the only script is `static/console.js` (no CDN, nothing to build).
//! The console is off (`/ui/` is 404) when nobody could log in: no API
//! key, no console user and not development mode ([`Settings::off_reason`]).

mod assets;
mod dead;
mod guard;
mod inline;
mod layout;
mod login;
mod messages;
mod parts;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::api::auth::Keys;
use crate::model::throttle::AuthThrottle;
use crate::model::users::Users;
use crate::spool::Store;

/// How long a session lasts after log-in (a working day).
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What the console takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The API keys, which also log in here.
    pub keys: Keys,
    /// `POSTERN_UI_USERS`.
    pub users: Users,
    /// Mark the session cookie `Secure`: `POSTERN_PUBLIC_URL` is https (the
    /// HTTP listener itself speaks plain HTTP, so TLS is a proxy's).
    pub secure_cookie: bool,
    /// The origin of `POSTERN_PUBLIC_URL` (`https://host[:port]`), accepted
    /// as a POST's `Origin` besides the request's own `Host`.
    pub public_origin: Option<String>,
    /// Failed logins per IP within `failure_window` before refusals
    /// (`POSTERN_AUTH_MAX_FAILURES`, shared with SMTP AUTH).
    pub max_failures: u32,
    pub failure_window: Duration,
    /// The answer to a failed login waits this much per recent failure.
    pub failure_delay: Duration,
    /// How long a session lasts after log-in.
    pub session_ttl: Duration,
}

impl Settings {
    /// Why the console is off, if it is: nobody could ever log in.
    pub fn off_reason(&self) -> Option<&'static str> {
        (!self.keys.any() && self.users.is_empty()).then_some(
            "no POSTERN_API_KEYS and no POSTERN_UI_USERS, and not in development mode: nobody could log in",
        )
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Console {
    settings: Arc<Settings>,
    store: Store,
    sessions: Arc<session::Sessions>,
    throttle: Arc<AuthThrottle>,
    /// Signs the preview's `cid:` image links.
    inline: Arc<inline::InlineKey>,
    /// Ends the live streams, so a drain does not wait for them.
    shutdown: CancellationToken,
}

/// The `/ui/` routes, or `None` when the console is off.
pub fn router(settings: Settings, store: Store, shutdown: CancellationToken) -> Option<Router> {
    if settings.off_reason().is_some() {
        return None;
    }
    let console = Console {
        throttle: Arc::new(AuthThrottle::new(
            settings.max_failures,
            settings.failure_window,
            settings.failure_delay,
        )),
        sessions: Arc::new(session::Sessions::new(settings.session_ttl)),
        inline: Arc::new(inline::InlineKey::generate()),
        settings: Arc::new(settings),
        store,
        shutdown,
    };
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(dead::home))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .merge(dead::routes())
        .merge(messages::routes())
        .route("/ui/static/{file}", get(assets::serve))
        .with_state(console);
    Some(pages.layer(axum::middleware::map_response(guard::headers)))
}
