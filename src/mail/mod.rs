//! Message content: raw RFC 5322 → the JSON fields of the webhook payload.

mod json;

pub use json::*;
