//! Delivery: signing ([`sign`]), the retry policy ([`policy`]), the
//! per-endpoint limits and circuit breaker ([`endpoint`], [`breaker`]), the
//! webhook request ([`webhook`]), the relay attempt ([`relay_job`]),
//! delivery events ([`events`]), the outbox bookkeeping of API mail
//! ([`outbox`]) and the worker that takes due deliveries from the spool and
//! runs them ([`worker`]).

pub mod breaker;
pub mod endpoint;
pub mod events;
pub mod outbox;
pub mod policy;
mod relay_job;
pub mod sign;
pub mod webhook;
pub mod worker;
