//! The inbound SMTP server: accept loop ([`server`]), the per-connection
//! state machine ([`session`]), the DATA decoder ([`dot`]) and the reply
//! texts ([`reply`]), and the PROXY protocol header in front of it all
//! ([`proxy`]). It never talks to webhook delivery: the two meet only
//! at the spool.

pub mod address;
mod auth;
pub mod dot;
mod ehlo;
mod mail;
mod printable;
pub mod proxy;
mod rcpt;
mod received;
pub mod reply;
pub mod sasl;
pub mod server;
pub mod session;
mod starttls;
pub mod throttle;
