//! The HTTP listener's own limits (`POSTERN_HTTP_HEADER_TIMEOUT`,
//! `POSTERN_HTTP_BODY_TIMEOUT`, `POSTERN_HTTP_MAX_CONNECTIONS`) →
//! [`HttpLimits`], which [`crate::http::serve`] applies to every
//! connection. Without them a client that opens connections and then
//! sends nothing, or a request body one byte a minute, holds a task, a
//! socket and (for `POST /v1/messages`) its share of the API memory
//! budget for as long as it likes.

use std::time::Duration;

use super::{Problems, RawConfig, invalid};
pub use crate::http::serve::HttpLimits;

/// Largest accepted `POSTERN_HTTP_MAX_CONNECTIONS`.
const MAX_CONNECTIONS: usize = 1_000_000;

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> HttpLimits {
    let d = HttpLimits::default();
    let header_timeout = p.duration(
        "POSTERN_HTTP_HEADER_TIMEOUT",
        raw.http_header_timeout.take(),
        d.header_timeout,
    );
    let body_timeout = p.duration(
        "POSTERN_HTTP_BODY_TIMEOUT",
        raw.http_body_timeout.take(),
        d.body_timeout,
    );
    let max_connections = p.num(
        "POSTERN_HTTP_MAX_CONNECTIONS",
        raw.http_max_connections.take(),
        d.max_connections,
    );
    for (var, v) in [
        ("POSTERN_HTTP_HEADER_TIMEOUT", header_timeout),
        ("POSTERN_HTTP_BODY_TIMEOUT", body_timeout),
    ] {
        if v < Duration::from_secs(1) {
            p.push(invalid(var, "must be at least 1s"));
        }
    }
    if !(1..=MAX_CONNECTIONS).contains(&max_connections) {
        p.push(invalid(
            "POSTERN_HTTP_MAX_CONNECTIONS",
            format!("must be between 1 and {MAX_CONNECTIONS}"),
        ));
    }
    HttpLimits {
        header_timeout,
        body_timeout,
        max_connections: max_connections.clamp(1, MAX_CONNECTIONS),
    }
}
