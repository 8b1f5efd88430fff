//! Integration tests: the real server on real sockets (port 0), real SMTP
//! clients, and a real HTTP server receiving the webhooks.

mod aiosmtpd;
mod binary;
mod dns;
mod helpers;
mod pki;

mod api;
mod api_limits;
mod attachments;
mod auth;
mod auth_checks;
mod auth_results;
mod authorize;
mod clients;
mod config;
mod contracts;
mod database;
mod database_tls;
mod deliveries;
mod delivery;
mod dkim;
mod durability;
mod faults;
mod fidelity;
mod hostile;
mod hung_endpoint;
mod old_spool;
mod openapi;
mod ops;
mod outbound;
mod payload;
mod proptest_session;
mod proxy_protocol;
mod readme;
mod relay;
mod replicas;
mod reply_text;
mod routing;
mod session;
mod shared_store;
mod spool;
mod store;
mod subaddress;
mod sync_mode;
mod tls;
