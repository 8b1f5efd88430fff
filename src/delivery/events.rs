//! Delivery events (`message.sent`, `message.deferred`, `message.failed`,
//! `message.dead`): their bodies, and how they are spooled.
//!
//! An event is itself spooled as a message with one [`Target::Event`]
//! delivery whose content is the JSON body, so it is durable, signed and
//! retried exactly like an inbound webhook. The worker emits them after a
//! relay attempt (`relay_job`) and when an inbound delivery dies.

use serde_json::{Value, json};

use crate::model::clock::rfc3339_now;
use crate::spool::{self, Delivery, DeliveryState, Envelope, Intake, RcptState, Target};

/// Relay recipients accepted by the relay.
pub const SENT: &str = "message.sent";
/// Relay recipients deferred (4xx, or no answer): tried again later.
pub const DEFERRED: &str = "message.deferred";
/// Relay recipients refused (5xx), or still deferred when the schedule ran out.
pub const FAILED: &str = "message.failed";

/// The body of an outbound event.
pub fn relay_event(kind: &str, envelope: &Envelope, recipients: &[RcptState]) -> Value {
    let ob = envelope.outbound.clone().unwrap_or_default();
    json!({
        "type": kind,
        "id": envelope.id,
        "created_at": rfc3339_now(),
        "message_id": ob.message_id,
        "mail_from": envelope.mail_from,
        "recipients": recipients,
        "tags": ob.tags,
        "metadata": ob.metadata,
    })
}

/// The body of `message.dead`: an inbound delivery that gave up.
pub fn dead_event(envelope: &Envelope, index: usize, url: &str, state: &DeliveryState) -> Value {
    let rcpts = envelope
        .deliveries
        .get(index)
        .map(|d| d.rcpt_to.clone())
        .unwrap_or_default();
    json!({
        "type": "message.dead",
        "id": envelope.id,
        "created_at": rfc3339_now(),
        "endpoint": url,
        "recipients": rcpts,
        "mail_from": envelope.mail_from,
        "attempts": state.attempts,
        "reason": state.last_error,
    })
}

/// Spools an event for `events_url` (`POSTERN_EVENTS_URL`); a no-op when
/// there is none.
pub async fn emit(intake: &Intake, events_url: Option<&str>, body: &Value) -> spool::Result<()> {
    let Some(url) = events_url else {
        return Ok(());
    };
    let envelope = Envelope {
        id: spool::new_id(),
        received_at: rfc3339_now(),
        mail_from: String::new(),
        rcpt_to: Vec::new(),
        helo: String::new(),
        remote_ip: String::new(),
        tls: None,
        authenticated_user: None,
        deliveries: vec![Delivery {
            target: Target::Event {
                url: url.to_string(),
            },
            rcpt_to: Vec::new(),
            raw: false,
            max_attachment_inline: None,
            attachment_urls: false,
        }],
        outbound: None,
    };
    let body = serde_json::to_vec(body).expect("event serialises");
    intake.submit(envelope, &body).await?;
    Ok(())
}
