//! The webhook request: the v1 payload of an inbound message, and the one
//! signed POST (Standard Webhooks headers over the exact bytes sent) that
//! webhook and event deliveries and `postern doctor`'s test event all use.
//!
//! Where it sits: the worker ([`super::worker`]) loads a message, builds its
//! body here, POSTs it here, and hands the answer to [`super::policy`].

use std::time::Duration;

use serde::Serialize;
use tracing::debug;

use crate::auth_checks::AuthResults;
use crate::auth_checks::record::Record;
use crate::mail::{self, MessageJson, PayloadOptions};
use crate::model::secret::Secret;
use crate::model::sign;
use crate::model::subaddress::{self, Delimiter, Parts};
use crate::spool::{Envelope, JobKey, TlsInfo};

/// `envelope` in the payload: what the SMTP session saw, with `rcpt_to`
/// narrowed to the recipients routed to this endpoint.
#[derive(Debug, Serialize)]
pub struct PayloadEnvelope<'a> {
    pub mail_from: &'a str,
    pub rcpt_to: &'a [String],
    /// `rcpt_to` in parts (RFC 5233 subaddress), one per recipient.
    pub rcpt_detail: Vec<Parts<'a>>,
    pub helo: &'a str,
    pub remote_ip: &'a str,
    pub tls: Option<&'a TlsInfo>,
    pub authenticated_user: Option<&'a str>,
    pub size: usize,
}

/// The v1 webhook body (`type: message.received`).
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub received_at: &'a str,
    pub envelope: PayloadEnvelope<'a>,
    /// SPF, DKIM, DMARC and ARC verdicts; absent when the checks are off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<&'a AuthResults>,
    #[serde(flatten)]
    pub message: MessageJson,
}

/// Builds the exact bytes POSTed for delivery `index` of a message;
/// `delimiter` splits the recipients' subaddresses.
pub fn payload(envelope: &Envelope, index: usize, raw: &[u8], delimiter: &Delimiter) -> Vec<u8> {
    payload_with_auth(envelope, index, raw, delimiter, None)
}

/// [`payload`] of a message with its stored verdicts: `auth` carries
/// them, and the message the payload shows (`headers`, `raw`) starts with
/// our `Authentication-Results:`, incoming ones claiming our authserv-id
/// removed ([`Record::apply`]). `envelope.size` stays the size received.
pub fn payload_with_auth(
    envelope: &Envelope,
    index: usize,
    raw: &[u8],
    delimiter: &Delimiter,
    auth: Option<&Record>,
) -> Vec<u8> {
    let shown = auth.map(|a| a.apply(raw));
    let message = shown.as_deref().unwrap_or(raw);
    let delivery = &envelope.deliveries[index];
    let opts = PayloadOptions {
        include_raw: delivery.raw,
        max_attachment_inline: delivery.max_attachment_inline,
    };
    let p = Payload {
        kind: "message.received",
        id: &envelope.id,
        received_at: &envelope.received_at,
        envelope: PayloadEnvelope {
            mail_from: &envelope.mail_from,
            rcpt_to: &delivery.rcpt_to,
            rcpt_detail: delivery
                .rcpt_to
                .iter()
                .map(|a| subaddress::split(a, delimiter))
                .collect(),
            helo: &envelope.helo,
            remote_ip: &envelope.remote_ip,
            tls: envelope.tls.as_ref(),
            authenticated_user: envelope.authenticated_user.as_deref(),
            size: raw.len(),
        },
        auth: auth.map(|a| &a.results),
        message: mail::parse_message(message, &opts),
    };
    serde_json::to_vec(&p).expect("payload serialises")
}

/// `webhook-id`: stable for one (message, delivery) across retries.
pub fn webhook_id(key: &JobKey) -> String {
    format!("msg_{}_{}", key.id, key.index)
}

/// The HTTP client for signed POSTs.
pub fn client(timeout: Duration, connect_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("Postern/", env!("CARGO_PKG_VERSION")))
        // Webhook endpoints are configured by the operator; following
        // redirects would sign and send mail to wherever they point.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client builds")
}

/// Why a signed POST got no HTTP answer.
#[derive(Debug)]
pub enum PostError {
    /// No secret to sign with: Postern never sends unsigned mail, so
    /// nothing was sent.
    NoSecret,
    /// The request failed (timeout, refused connection, TLS, …).
    Transport(reqwest::Error),
}

/// POSTs `body` to `url` as JSON with the Standard Webhooks headers:
/// `webhook-id` is `id`, `webhook-timestamp` is now, and
/// `webhook-signature` signs exactly `body` with each of `secrets`.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secrets: &[Secret],
    body: Vec<u8>,
) -> Result<reqwest::Response, PostError> {
    if secrets.is_empty() {
        return Err(PostError::NoSecret);
    }
    let mut request = client.post(url).header("content-type", "application/json");
    for (name, value) in sign::headers(secrets, id, &body) {
        request = request.header(name, value);
    }
    request
        .body(body)
        .send()
        .await
        .map_err(PostError::Transport)
}

/// A short reason for a transport failure (timeouts, refused connections).
///
/// The URL is left out: webhook URLs often carry tokens, and this text is
/// stored in the spool, logged and sent in `message.dead` events.
pub fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    debug!(%msg, "transport error");
    msg
}
