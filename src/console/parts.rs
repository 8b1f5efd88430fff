//! A message's parts as the console serves them: the raw source, each
//! attachment (as a download), inline `cid:` images, and the HTML preview.
//!
//! **Mail HTML is hostile.** The preview is not sanitised (no regex can);
//! it is contained instead: the page frames it in `<iframe sandbox>` with
//! nothing allowed (no scripts, no forms, no same-origin), and the
//! preview's own CSP allows no script, no frame, no font, no connection,
//! and images only from this message's `cid:` route — remote images only
//! on `?remote=1`, after the reader's click. `cid:` URLs are pointed at
//! that route (with a short-lived token, see [`super::inline`], because the
//! sandboxed frame cannot send the session cookie); the rest of the HTML is
//! served as the sender wrote it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;

use super::Console;
use super::dead::unavailable;
use super::messages::parsed;
use super::session::LoggedIn;
use crate::mail::{Attachment, PayloadOptions, parse_message};

/// The raw message, or `None` (unknown id, or nothing stored).
async fn raw_of(st: &Console, id: &str) -> Result<Option<Vec<u8>>, Response> {
    if !crate::spool::is_message_id(id) {
        return Ok(None);
    }
    match st.store.message_detail(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return Ok(None),
        Err(e) => return Err(unavailable(e)),
    }
    st.store
        .read_message(id)
        .await
        .map(Some)
        .map_err(unavailable)
}

fn gone() -> Response {
    (StatusCode::NOT_FOUND, "no such message or part").into_response()
}

/// `GET /ui/messages/{id}/raw`: the source as text, never rendered.
pub async fn raw(State(st): State<Console>, _: LoggedIn, Path(id): Path<String>) -> Response {
    match raw_of(&st, &id).await {
        Ok(Some(raw)) => (
            [
                (
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".to_string(),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    format!("inline; filename=\"{id}.eml\""),
                ),
            ],
            raw,
        )
            .into_response(),
        Ok(None) => gone(),
        Err(r) => r,
    }
}

/// The attachments with their decoded contents.
fn attachments(raw: &[u8]) -> Vec<Attachment> {
    parse_message(raw, &PayloadOptions::default()).attachments
}

fn decoded(a: &Attachment) -> Vec<u8> {
    a.content
        .as_deref()
        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
        .unwrap_or_default()
}

/// Types a browser may be told as they are: they cannot carry script.
/// Anything else (HTML, SVG, XML, …) is served as bytes.
fn safe_type(content_type: &str) -> &str {
    let raster = content_type.starts_with("image/") && content_type != "image/svg+xml";
    if raster || matches!(content_type, "text/plain" | "application/pdf") {
        content_type
    } else {
        "application/octet-stream"
    }
}

/// `Content-Disposition: attachment` with the name in both forms (RFC
/// 6266): an ASCII fallback without quotes or controls, and the exact name
/// percent-encoded.
pub fn disposition(filename: Option<&str>) -> String {
    let name = filename.unwrap_or("attachment");
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = url::form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20");
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// `GET /ui/messages/{id}/attachments/{n}`: a download, whatever its type.
pub async fn attachment(
    State(st): State<Console>,
    _: LoggedIn,
    Path((id, n)): Path<(String, usize)>,
) -> Response {
    let raw = match raw_of(&st, &id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => return gone(),
        Err(r) => return r,
    };
    let Some(a) = attachments(&raw).into_iter().nth(n) else {
        return gone();
    };
    (
        [
            (header::CONTENT_TYPE, safe_type(&a.content_type).to_string()),
            (
                header::CONTENT_DISPOSITION,
                disposition(a.filename.as_deref()),
            ),
        ],
        decoded(&a),
    )
        .into_response()
}

/// `GET /ui/messages/{id}/cid/{content-id}`: an inline image of the
/// message, for a logged-in reader; images only.
pub async fn cid(
    State(st): State<Console>,
    _: LoggedIn,
    Path((id, cid)): Path<(String, String)>,
) -> Response {
    image_of(&st, &id, &cid).await
}

/// `GET /ui/messages/{id}/inline/{token}/{content-id}`: the same image
/// for the sandboxed preview, which cannot send the session cookie; the
/// token from [`super::inline`] is the credential.
pub async fn inline_image(
    State(st): State<Console>,
    Path((id, token, cid)): Path<(String, String, String)>,
) -> Response {
    if !st.inline.allows(&id, &token, crate::spool::now_ms() / 1000) {
        return (
            StatusCode::FORBIDDEN,
            "this image link is not valid (any more)",
        )
            .into_response();
    }
    image_of(&st, &id, &cid).await
}

async fn image_of(st: &Console, id: &str, cid: &str) -> Response {
    let raw = match raw_of(st, id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => return gone(),
        Err(r) => return r,
    };
    let found = attachments(&raw)
        .into_iter()
        .find(|a| a.content_id.as_deref() == Some(cid));
    match found {
        Some(a) if safe_type(&a.content_type).starts_with("image/") => (
            [(header::CONTENT_TYPE, a.content_type.clone())],
            decoded(&a),
        )
            .into_response(),
        _ => gone(),
    }
}

/// Points `src="cid:…"` (any quoting, any case) at the message's cid
/// route. Not a sanitiser: it only changes where inline images come from.
pub fn rewrite_cids(html: &str, route: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(i) = lower[from..].find("cid:") {
        let at = from + i;
        let before = lower[..at].trim_end_matches(['"', '\'']).trim_end();
        if before.ends_with("src=") || before.ends_with("src =") {
            out.push_str(&html[last..at]);
            out.push_str(route);
            last = at + 4;
        }
        from = at + 4;
    }
    out.push_str(&html[last..]);
    out
}

/// The preview's policy: inline styles, images from `cid_route` only (or
/// from anywhere with `remote`), nothing else, and only we may frame it.
pub fn preview_csp(cid_route: &str, remote: bool) -> String {
    let img = if remote {
        "* data: https: http:".to_string()
    } else {
        cid_route.to_string()
    };
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src {img}; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    )
}

/// The request's own origin from its `Host`, when it is a plain host name
/// or address with an optional port (anything else: `None`).
fn host_origin(headers: &HeaderMap, secure: bool) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    let scheme = if secure { "https" } else { "http" };
    plain.then(|| format!("{scheme}://{host}"))
}

#[derive(Deserialize)]
pub struct PreviewQuery {
    remote: Option<String>,
}

/// `GET /ui/messages/{id}/preview`: the HTML part, for the sandboxed frame.
pub async fn preview(
    State(st): State<Console>,
    _: LoggedIn,
    Path(id): Path<String>,
    Query(q): Query<PreviewQuery>,
    headers: HeaderMap,
) -> Response {
    let raw = match raw_of(&st, &id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => return gone(),
        Err(r) => return r,
    };
    let Some(html) = parsed(&raw).html else {
        return gone();
    };
    let token = st.inline.mint(&id, crate::spool::now_ms() / 1000);
    let path = format!("/ui/messages/{id}/inline/{token}/");
    let cid_source = match host_origin(&headers, st.settings.secure_cookie) {
        Some(origin) => format!("{origin}{path}"),
        None => "'none'".to_string(),
    };
    let csp = preview_csp(&cid_source, q.remote.as_deref() == Some("1"));
    let mut res = (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        rewrite_cids(&html, &path),
    )
        .into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_FRAME_OPTIONS,
        HeaderValue::from_static("SAMEORIGIN"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cid_sources_point_at_the_route_and_nothing_else_changes() {
        let route = "/ui/messages/abc/cid/";
        let cases = [
            (
                r#"<img src="cid:logo@x">"#,
                r#"<img src="/ui/messages/abc/cid/logo@x">"#,
            ),
            ("<IMG SRC='CID:a'>", "<IMG SRC='/ui/messages/abc/cid/a'>"),
            ("<img src=cid:a>", "<img src=/ui/messages/abc/cid/a>"),
            ("<p>write to cid:me</p>", "<p>write to cid:me</p>"),
            (r#"<a href="cid:x">"#, r#"<a href="cid:x">"#),
        ];
        for (html, want) in cases {
            assert_eq!(rewrite_cids(html, route), want, "{html}");
        }
    }

    #[test]
    fn the_preview_policy() {
        let csp = preview_csp("http://h/ui/messages/a/cid/", false);
        assert_eq!(
            csp,
            "default-src 'none'; style-src 'unsafe-inline'; img-src http://h/ui/messages/a/cid/; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
        );
        assert!(!csp.contains("script"));
        assert!(preview_csp("x", true).contains("img-src * data: https: http:;"));
    }

    #[test]
    fn downloads_are_never_rendered_as_active_content() {
        assert_eq!(safe_type("image/png"), "image/png");
        assert_eq!(safe_type("image/svg+xml"), "application/octet-stream");
        assert_eq!(safe_type("text/html"), "application/octet-stream");
        assert_eq!(safe_type("text/plain"), "text/plain");
        assert_eq!(
            disposition(Some("r\"é\nport.pdf")),
            "attachment; filename=\"r___port.pdf\"; filename*=UTF-8''r%22%C3%A9%0Aport.pdf"
        );
        assert_eq!(
            disposition(None),
            "attachment; filename=\"attachment\"; filename*=UTF-8''attachment"
        );
    }

    #[test]
    fn only_plain_hosts_make_an_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            host_origin(&h, false).as_deref(),
            Some("http://127.0.0.1:8080")
        );
        h.insert(header::HOST, "a b;c".parse().unwrap());
        assert_eq!(host_origin(&h, true), None);
    }
}
