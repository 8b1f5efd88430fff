//! Delivery: signing ([`sign`]), the retry policy ([`policy`]), the
//! per-endpoint limits and circuit breaker ([`endpoint`], [`breaker`]), the
//! webhook request ([`webhook`]), the relay attempt ([`relay_job`]),
//! delivery events ([`events`]), the outbox bookkeeping of API mail
//! ([`outbox`]) and the worker that takes due deliveries from the spool and
//! runs them ([`worker`]).

use std::time::Duration;

use crate::route::Route;
use sign::Secret;

pub use worker::Worker;

pub mod breaker;
pub mod endpoint;
pub mod events;
pub mod outbox;
pub mod policy;
mod relay_job;
pub mod sign;
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
    /// attempt reserves about four times its message's size (raw message,
    /// decoded parts, base64 JSON), so a burst of large messages waits for
    /// room instead of exhausting memory.
    pub memory_budget: u64,
    /// Per-endpoint concurrency and circuit breaker.
    pub endpoints: endpoint::Limits,
    /// The routes configured now: spooled webhook deliveries follow their
    /// route's URL and secrets ([`crate::route::endpoint`]).
    pub routes: Vec<Route>,
    /// Secrets of routes without their own.
    pub default_secrets: Vec<Secret>,
    /// `POSTERN_EVENTS_URL`: where events go (those spooled earlier too).
    pub events_url: Option<String>,
    pub events_secrets: Vec<Secret>,
}
