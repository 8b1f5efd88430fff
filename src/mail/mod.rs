//! Message content: raw RFC 5322 → the JSON fields of the webhook payload.
//!
//! `json` builds the payload; `repair` restores header blocks that lack
//! their blank line; `body` decides which parts are body text and what the
//! `text`/`html` views hold; `transfer` and `charset` turn a part's bytes
//! into text; `lossy` records every guess on the way; `reply` finds the new
//! text of a reply (`reply_text`); `carry` decides whether an attachment
//! goes as `content` or as a signed `url`; `elide` lets a large message be
//! parsed without its attachments' bytes, and `deferred` leaves large
//! base64 values for the sender to encode while sending.

mod body;
mod carry;
mod charset;
pub mod deferred;
mod elide;
mod json;
mod lossy;
mod repair;
mod reply;
mod transfer;

pub use carry::{Carry, LinkedPart, carry};
pub use json::*;
pub use lossy::{LossyKind, LossyReason, MAX_REASONS};
