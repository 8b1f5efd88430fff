//! Log-in sessions: a random 256-bit id in an `HttpOnly`, `SameSite=Strict`
//! cookie, looked up in memory. Kept in memory on purpose: nothing to sign
//! or rotate, and logging out really ends a session. The price: a restart,
//! or a request that a balancer sends to another replica, asks for the log-in
//! again (README, "Web console").

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;

use super::Console;

/// The cookie's name.
pub const COOKIE: &str = "postern_ui";

/// Sessions kept at most; beyond, the oldest goes (a flood of log-ins
/// cannot grow memory without bound).
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who logged in: a user name, or "API key".
    pub who: String,
    /// The token every state-changing form carries.
    pub csrf: String,
    expires: Instant,
}

/// The sessions of this process.
pub struct Sessions {
    ttl: Duration,
    map: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as 64 hex digits.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            ttl,
            map: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `who`: its id (the cookie's value).
    pub fn create(&self, who: String, now: Instant) -> String {
        let id = random_token();
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.expires)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                who,
                csrf: random_token(),
                expires: now + self.ttl,
            },
        );
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.lock();
        match map.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` that starts a session (`max_age` seconds) or, with
/// `None` and an empty id, ends it.
pub fn set_cookie(id: &str, max_age: Option<Duration>, secure: bool) -> String {
    let age = max_age.map_or(0, |d| d.as_secs());
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={age}{secure}")
}

/// A request from a logged-in browser: the handlers that take one are
/// never reached without (a redirect to the log-in page).
pub struct LoggedIn {
    pub id: String,
    pub session: Session,
}

impl FromRequestParts<Console> for LoggedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Console) -> Result<Self, Response> {
        let found = cookie_value(&parts.headers)
            .and_then(|id| Some((id.to_string(), st.sessions.get(id, Instant::now())?)));
        match found {
            Some((id, session)) => Ok(LoggedIn { id, session }),
            None => Err(Redirect::to("/ui/login").into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_end() {
        let s = Sessions::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let id = s.create("ann".into(), t0);
        assert_eq!(id.len(), 64);
        let got = s.get(&id, t0 + Duration::from_secs(59)).expect("live");
        assert_eq!(got.who, "ann");
        assert_eq!(got.csrf.len(), 64);
        assert_ne!(got.csrf, id);
        assert!(s.get(&id, t0 + Duration::from_secs(60)).is_none());
        let id = s.create("bob".into(), t0);
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
        assert!(s.get("nope", t0).is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others_and_its_attributes() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; postern_ui=abc; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h), Some("abc"));
        assert_eq!(cookie_value(&HeaderMap::new()), None);
        assert_eq!(
            set_cookie("x", Some(Duration::from_secs(9)), true),
            "postern_ui=x; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=9; Secure"
        );
        assert_eq!(
            set_cookie("", None, false),
            "postern_ui=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }
}
