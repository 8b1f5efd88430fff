//! Delivery: signing ([`sign`]), the retry policy ([`policy`]), the
//! per-endpoint limits and circuit breaker ([`endpoint`], [`breaker`]), the
//! outbox bookkeeping of API mail ([`outbox`]) and the worker that takes
//! due deliveries from the spool and runs them ([`worker`]).

pub mod breaker;
pub mod endpoint;
pub mod outbox;
pub mod policy;
pub mod sign;
pub mod worker;
