//! Webhook delivery: signing ([`sign`]), the retry policy ([`retry`]), the
//! per-endpoint limits and circuit breaker ([`endpoint`], [`breaker`]) and
//! the worker that takes due deliveries from the spool and POSTs them
//! ([`deliver`]).

pub mod breaker;
pub mod deliver;
pub mod endpoint;
pub mod retry;
pub mod sign;
