//! The inbound SMTP server: accept loop ([`server`]), the per-connection
//! state machine ([`session`]), the DATA decoder ([`data`]) and the reply
//! texts ([`reply`]), and the PROXY protocol header in front of it all
//! ([`proxy`]). It never talks to webhook delivery: the two meet only
//! at the spool.

pub mod address;
pub mod data;
pub mod proxy;
pub mod reply;
pub mod sasl;
pub mod server;
pub mod session;
pub mod throttle;
