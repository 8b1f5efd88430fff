//! The HTTP API: sending mail (`POST /v1/messages` turns JSON into a MIME
//! message with [`crate::compose`], spools it for the relay and answers
//! `202` only once it is durable; `GET /v1/messages/{id}` reports its
//! status, [`messages`]), the message history (list, one message with its
//! deliveries and attempts, its source and attachments, [`history`]) and
//! operator access to deliveries ([`deliveries`]). Every `/v1/` request carries an API key ([`auth`]),
//! except `GET /v1/attachments/…`, whose signed link is its credential
//! ([`attachments`]).
//!
//! Errors are JSON `{"error": {"code", "message", "field"}}` ([`error`]):
//! 400 for malformed JSON, 401 for a missing or wrong API key, 413 for a
//! body over `POSTERN_API_MAX_BYTES`, 415 for a body that is not declared
//! JSON ([`body`]), 422 for a request that parses but cannot be sent
//! (including every per-element limit, [`crate::compose::limits`]), 503
//! when the spool cannot take it or the requests in flight fill the memory
//! budget ([`budget`]); the client retries a 503.

pub mod attachments;
pub mod auth;
pub mod body;
pub mod budget;
pub mod deliveries;
pub mod error;
pub mod history;
pub mod idempotency;
pub mod messages;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use tokio_util::sync::CancellationToken;

use crate::compose;
use crate::delivery::outbox::InFlight;
use crate::model::attachment_url::LinkKey;
use crate::spool::{Intake, Store};
use error::ApiError;

/// What the API takes from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The accepted API keys.
    pub keys: auth::Keys,
    /// Largest request body (`POSTERN_API_MAX_BYTES`).
    pub max_body: usize,
    /// Our name in the `Received:` header of API mail.
    pub hostname: String,
    /// Per-request limits of what a message may hold.
    pub limits: compose::Limits,
    /// Keys that sign messages by their `From` domain.
    pub dkim: compose::dkim::DkimKeys,
    /// What checks the signed links of `GET /v1/attachments/…`.
    pub link_key: LinkKey,
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    settings: Arc<Settings>,
    store: Store,
    /// Where accepted messages go (the same store).
    intake: Intake,
    /// Ids with a relay attempt in flight (status `sending`).
    sending: Arc<InFlight>,
    idempotency: idempotency::Lock,
    /// Whether a relay exists to send through.
    relay_ready: bool,
    /// Once cancelled, new messages get `503` (the client retries
    /// elsewhere or later).
    shutdown: CancellationToken,
    /// What `POST /v1/messages` requests may hold in memory together.
    budget: budget::Budget,
}

impl ApiState {
    pub fn new(
        settings: Settings,
        store: Store,
        sending: Arc<InFlight>,
        relay_ready: bool,
        shutdown: CancellationToken,
    ) -> ApiState {
        ApiState {
            budget: budget::Budget::for_max_body(settings.max_body),
            settings: Arc::new(settings),
            intake: store.intake(),
            store,
            sending,
            idempotency: idempotency::Lock::default(),
            relay_ready,
            shutdown,
        }
    }
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/messages", post(messages::send).get(history::list))
        .merge(history::routes())
        .merge(deliveries::routes())
        .merge(attachments::routes())
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state)
}
