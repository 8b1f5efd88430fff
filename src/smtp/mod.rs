//! The inbound SMTP stage: from an accepted connection to a message
//! committed through the spool's intake (`spool::intake`), which is the
//! only place it hands anything on (sync routes excepted, see `sync`);
//! delivery never calls back into it.
//!
//! - [`server`]: accept loops, the session caps ([`server::Limiter`]); the
//!   PROXY protocol header in front of it all ([`proxy`]).
//! - [`session`]: session state, the command loop and the dispatch, one
//!   method per verb, each in its phase's file: `ehlo`, `mail`, `rcpt`,
//!   `data` (with the `dot` decoder and the `received` trace header),
//!   `auth` (with `sasl` decoding and the [`throttle`]), `starttls`
//!   (also the TLS handshake of the implicit-TLS listener).
//! - [`authorize`]: a route's `authorize_url`, asked at RCPT.
//! - `sync`: routes with `"mode": "sync"`, POSTed during DATA after the
//!   commit; their answers decide the reply (the one place this stage
//!   calls delivery code: the payload and the signed POST).
//! - [`checks`]: SPF/DKIM/DMARC/ARC of a committed message, after DATA
//!   (stored with it, or `dmarc_reject`).
//! - [`reply`]: every reply text we send and the reply class; `printable`
//!   keeps echoed client text safe; [`address`] canonicalises addresses.

pub mod address;
mod auth;
pub mod authorize;
pub mod checks;
mod data;
mod dot;
mod ehlo;
mod mail;
mod printable;
pub mod proxy;
mod rcpt;
mod received;
pub mod reply;
mod sasl;
pub mod server;
pub mod session;
mod settings;
mod starttls;
mod sync;
// The throttle is a leaf (model) so the console's login shares it.
pub use crate::model::throttle;

pub use settings::{AuthMode, Security, Settings, SmtpLimits};
