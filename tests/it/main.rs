//! Integration tests: the real server on real sockets (port 0), real SMTP
//! clients, and a real HTTP server receiving the webhooks.

mod helpers;

mod clients;
mod delivery;
mod durability;
mod payload;
mod routing;
mod session;
mod spool;
mod tls;
