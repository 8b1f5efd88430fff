//! Webhook delivery: signing ([`sign`]), the retry policy ([`retry`]) and
//! the worker that takes due deliveries from the spool and POSTs them
//! ([`deliver`]).

pub mod deliver;
pub mod retry;
pub mod sign;
