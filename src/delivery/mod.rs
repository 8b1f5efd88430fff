//! Delivery: the stage after the spool. The [`Worker`] claims due
//! deliveries from the queue, runs one attempt of each and records the
//! outcome back in the spool; it never sees SMTP sessions or HTTP
//! requests, only what the spool holds and its own [`Settings`].
//!
//! - [`worker`]: the dispatcher, one attempt (load → endpoint admission →
//!   attempt → apply the outcome), the memory budget.
//! - [`policy`]: what an answer means and what an outcome does (done,
//!   retry, dead), for every kind of delivery.
//! - [`webhook`]: the v1 payload and the signed POST (also used by
//!   `postern doctor`), signed by [`crate::model::sign`]; [`body`]: a
//!   POST body, a large payload encoded as it is sent.
//! - `relay_job`: the relay attempt of an API message.
//! - [`events`]: delivery events, spooled like any message.
//! - [`outbox`]: the status of API mail, the recipients' state machine,
//!   the messages in flight.
//! - [`endpoint`], [`breaker`]: per-endpoint concurrency and circuit breakers.

use std::time::Duration;

use crate::model::attachment_url::Linker;
use crate::model::secret::Secret;
use crate::model::subaddress::Delimiter;
use crate::route::Route;

pub use worker::Worker;

pub mod body;
pub mod breaker;
pub mod endpoint;
pub mod events;
pub mod outbox;
pub mod policy;
mod relay_job;
pub mod webhook;
pub mod worker;

/// What the worker needs to know, filled from the configuration at start
/// (the wiring builds it; nothing in this stage reads the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// When to try again, and when to give up.
    pub schedule: policy::Schedule,
    /// Total time for one POST (connect + send + response).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Memory the deliveries in flight may use together, in bytes. Each
    /// attempt reserves twice its message's size (the message, and a copy
    /// when the auth checks add their header; attachments are encoded as
    /// the body is sent), so a burst of large messages waits for room
    /// instead of exhausting memory.
    pub memory_budget: u64,
    /// Per-endpoint concurrency and circuit breaker.
    pub endpoints: endpoint::Limits,
    /// The routes configured now: spooled webhook deliveries follow their
    /// route's URL and secrets ([`crate::route::endpoint`]).
    pub routes: Vec<Route>,
    /// Where a recipient's subaddress starts: exact routes match its base
    /// address, and the payload's `envelope.rcpt_detail` splits it.
    pub recipient_delimiter: Delimiter,
    /// Secrets of routes without their own.
    pub default_secrets: Vec<Secret>,
    /// `POSTERN_EVENTS_URL`: where events go (those spooled earlier too).
    pub events_url: Option<String>,
    pub events_secrets: Vec<Secret>,
    /// Makes the signed links of attachments that are not inlined; `None`
    /// when no public URL is known (they are then sent without content).
    pub links: Option<Linker>,
}
