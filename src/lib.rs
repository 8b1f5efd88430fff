//! Postern: an SMTP ⇄ HTTP webhook bridge.
//!
//! Mail arrives over SMTP, is written durably to a spool before we answer
//! `250`, and is then POSTed as signed JSON (Standard Webhooks) to the
//! endpoints its recipients route to, with retries for about a day. Mail
//! sent through the HTTP API is spooled the same way and submitted to an
//! SMTP relay.
//!
//! # Layout
//!
//! The modules in the order data flows through them: the edge, the two
//! producers (the HTTP API and SMTP), the spool between them and delivery,
//! delivery, and the leaf types everything shares.
//!
//! - `src/main.rs`, `src/cli/` (the binary, not this library): the command
//!   line — `serve`, `doctor`, `deliveries`, `hash-password`,
//!   `healthcheck`, … — the only place with `anyhow` and exit codes.
//! - [`app`]: wiring and drain. Builds each stage from [`config`] with its
//!   own settings and constructor, runs them on the listeners it is given,
//!   and stops them in order.
//! - [`config`]: `POSTERN_*` environment → validated [`config::Config`],
//!   one file per stage's settings.
//! - [`http`]: the HTTP listener: health, readiness, metrics, the
//!   development inbox, and the [`api`] routes.
//! - [`api`]: the sending API (`/v1/messages`) and operator access to
//!   deliveries (`/v1/deliveries`): API keys, errors, idempotency.
//! - [`console`]: the web console (`/ui/`): server-rendered pages over
//!   the store for operators — messages, deliveries with their attempts,
//!   dead letters with Retry and Delete — behind a log-in.
//! - [`compose`]: JSON request → MIME message, for the sending API, and
//!   its DKIM signature ([`compose::dkim`]).
//! - [`auth_checks`]: SPF, DKIM, DMARC and ARC verification of received
//!   mail (opt-in, `POSTERN_AUTH_CHECKS`), run by the SMTP session after
//!   DATA's commit ([`smtp::checks`]); the verdicts are stored beside the
//!   message and become the payload's `auth` and its
//!   `Authentication-Results:` header.
//! - [`smtp`]: accept loop, the session and one file per SMTP phase
//!   (RCPT asks a route's `authorize_url` there; DATA POSTs sync routes
//!   with delivery's payload and signed POST), every reply text; it
//!   receives its own [`smtp::Settings`] (built by `Config::smtp_settings`),
//!   never the whole `Config`.
//! - [`route`]: recipient → webhook endpoints, at RCPT and again at each
//!   attempt of a spooled delivery.
//! - [`spool`]: the durable store behind one interface ([`spool::Store`]:
//!   intake, claiming due deliveries with a lease, outcomes, the operator's
//!   view, records, readiness, sweeps), its one intake path (accept →
//!   commit → schedule) and its backends (today the file spool with an
//!   in-memory schedule of due work).
//! - [`delivery`]: the worker that claims due deliveries and runs one
//!   attempt each (signed webhook POST, relay submission, event), the
//!   outcome policy, per-endpoint limits and circuit breakers, outbox
//!   bookkeeping.
//! - [`mail`]: raw message → JSON fields (mail-parser), for webhooks.
//! - [`relay`]: the SMTP client that submits API mail to the relay.
//! - [`tls`]: certificates (load, reload on rotation, names of what was
//!   negotiated, the X.509 facts `doctor` shows), and the acceptor.
//! - [`telemetry`]: the metrics every stage counts into.
//! - [`doctor`]: `postern doctor`, checks a configuration without serving.
//! - [`model`]: leaf types every stage shares (clock, secrets and the
//!   Standard Webhooks signer, the SMTP users, subaddresses, `OneOrMany`,
//!   the one `<…>` rule for paths and Message-IDs);
//!   it imports nothing of the crate.
//!
//! The producers (SMTP sessions, the sending API, delivery events) and the
//! delivery worker never call each other (a sync route's POST during DATA
//! reuses delivery's webhook code, not the worker): they meet at the store, the
//! producers through its intake, the worker through its claims; [`spool`]
//! and [`model`] import nothing else of the crate, and [`delivery`] never
//! imports [`smtp`] or [`api`]. A unit test (`src/import_graph.rs`) holds
//! every edge between stages to an allowed table, so a new back-arrow fails.
//!
//! [`app::run`] takes already-bound listeners and a cancellation token, so
//! tests start everything on port 0 and stop it at will.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod auth_checks;
pub mod compose;
pub mod config;
pub mod console;
pub mod delivery;
pub mod doctor;
pub mod http;
#[cfg(test)]
mod import_graph;
pub mod mail;
pub mod model;
pub mod relay;
pub mod route;
pub mod smtp;
pub mod spool;
pub mod telemetry;
pub mod tls;
