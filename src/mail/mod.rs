//! Message content: raw RFC 5322 → the JSON fields of the webhook payload.

mod charset;
mod json;
mod lossy;

pub use json::*;
pub use lossy::{LossyKind, LossyReason, MAX_REASONS};
