//! Wall-clock timestamps in the forms the pipeline writes: RFC 3339 in
//! envelopes, records and events, RFC 2822 in `Received:` headers.

use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// Now, as RFC 3339 (UTC).
pub fn rfc3339_now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Now, as RFC 2822 (the date of a `Received:` header).
pub fn rfc2822_now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc2822)
        .unwrap_or_default()
}
