//! What protects the console's pages: the headers every `/ui/` response
//! carries, and the check of every state-changing request (`POST` only:
//! its form's CSRF token and where it came from).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Console;
use super::session::Session;

/// The pages' policy: our own scripts, styles and images, forms only to
/// ourselves, frames only ours (the preview) and nobody may frame us.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Adds the headers every console response carries, unless the handler
/// set its own (the preview has a CSP and framing of its own).
pub async fn headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let defaults: [(header::HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Pages show mail: no shared cache keeps them.
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    res
}

/// Whether a state-changing request comes from our own pages.
///
/// A browser sends `Origin` with a POST; under our
/// `Referrer-Policy: no-referrer` Chromium sends it as `null`, so `null`
/// (or none, as from a command-line client) is judged by `Sec-Fetch-Site`
/// instead, which browsers send whatever the policy. Anything naming
/// another origin is refused. The CSRF token is checked as well; this is
/// the second lock.
pub fn same_origin(
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
    public_origin: Option<&str>,
) -> bool {
    match origin {
        Some(o) if o != "null" => {
            let authority = o.split_once("://").map(|(_, a)| a);
            Some(o) == public_origin || (authority.is_some() && authority == host)
        }
        _ => matches!(fetch_site, None | Some("same-origin")),
    }
}

/// Compares two tokens without telling how much of them matched.
fn tokens_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The check of a state-changing request from a logged-in browser: its
/// form's token is the session's and it comes from our pages; `403`
/// otherwise.
pub fn check_post(
    st: &Console,
    session: &Session,
    headers: &HeaderMap,
    token: &str,
) -> Result<(), Refused> {
    if !tokens_equal(token, &session.csrf) {
        return Err(Refused(
            "the form's CSRF token is missing or wrong: reload the page and try again",
        ));
    }
    check_origin(st, headers)
}

/// The origin half of [`check_post`], alone for the log-in form (which has
/// no session yet).
pub fn check_origin(st: &Console, headers: &HeaderMap) -> Result<(), Refused> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if same_origin(
        text(header::ORIGIN),
        fetch_site,
        text(header::HOST),
        st.settings.public_origin.as_deref(),
    ) {
        Ok(())
    } else {
        Err(Refused(
            "this request did not come from the console's own pages",
        ))
    }
}

/// A state-changing request refused: `403` with why.
#[derive(Debug)]
pub struct Refused(&'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (
            StatusCode::FORBIDDEN,
            super::layout::page("Forbidden", None, super::layout::notice_body(self.0)),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_cases() {
        let host = Some("127.0.0.1:8080");
        let public = Some("https://mail.example.com");
        type Case = (Option<&'static str>, Option<&'static str>, bool);
        let cases: &[Case] = &[
            (Some("http://127.0.0.1:8080"), Some("same-origin"), true),
            (Some("https://127.0.0.1:8080"), None, true),
            (Some("https://mail.example.com"), Some("same-origin"), true),
            (Some("http://evil.example"), Some("cross-site"), false),
            (Some("http://127.0.0.1:8081"), Some("same-site"), false),
            (Some("127.0.0.1:8080"), None, false),
            (Some("null"), Some("same-origin"), true),
            (Some("null"), Some("cross-site"), false),
            (Some("null"), Some("same-site"), false),
            (None, None, true),
            (None, Some("none"), false),
        ];
        for (origin, site, want) in cases {
            assert_eq!(
                same_origin(*origin, *site, host, public),
                *want,
                "{origin:?} {site:?}"
            );
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(tokens_equal("abc", "abc"));
        assert!(!tokens_equal("abc", "abd"));
        assert!(!tokens_equal("abc", "ab"));
        assert!(!tokens_equal("", "a"));
    }
}
