//! Postern: an SMTP ⇄ HTTP webhook bridge.
//!
//! Mail arrives over SMTP, is written durably to a spool before we answer
//! `250`, and is then POSTed as signed JSON (Standard Webhooks) to the
//! endpoints its recipients route to, with retries for about a day.
//!
//! # Layout
//!
//! - [`config`]: `POSTERN_*` environment → validated [`config::Config`].
//! - [`smtp`]: accept loop, session state machine, DATA decoder, replies.
//! - [`model`]: leaf types every stage shares (the clock).
//! - [`route`]: recipient → webhook endpoints, at RCPT and again at each
//!   attempt of a spooled delivery.
//! - [`spool`]: the durable store, its one intake path (accept → commit →
//!   schedule) and the in-memory schedule of due work.
//! - [`mail`]: raw message → JSON fields (mail-parser).
//! - [`delivery`]: the worker that claims due deliveries and runs one
//!   attempt each (signed webhook POST, relay submission, event), the
//!   outcome policy, per-endpoint limits and circuit breakers, outbox
//!   bookkeeping.
//! - [`http`]: health endpoint and the development inbox.
//! - [`doctor`]: `postern doctor`, checks a configuration without serving.
//!
//! The SMTP side and the delivery side never call each other: they meet at
//! the spool. [`app::run`] takes already-bound listeners and a cancellation
//! token, so tests start everything on port 0 and stop it at will.

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod compose;
pub mod config;
pub mod delivery;
pub mod doctor;
pub mod http;
pub mod mail;
pub mod model;
pub mod relay;
pub mod route;
pub mod smtp;
pub mod spool;
pub mod telemetry;
pub mod tls;
