//! The webhook request: the v1 payload of an inbound message, and the one
//! signed POST (Standard Webhooks headers over the exact bytes sent) that
//! webhook and event deliveries and `postern doctor`'s test event all use.
//!
//! Where it sits: the worker ([`super::worker`]) loads a message, builds its
//! body here, POSTs it here, and hands the answer to [`super::policy`].

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tracing::debug;

use super::body::Body;
use crate::auth_checks::AuthResults;
use crate::auth_checks::record::Record;
use crate::mail::{self, MessageJson, PayloadOptions};
use crate::model::attachment_url::{AttachmentMode, Linker};
use crate::model::secret::Secret;
use crate::model::sign;
use crate::model::subaddress::{self, Delimiter, Parts};
use crate::spool::{Envelope, JobKey, KeptMeta, KeptPart, TlsInfo};

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
/// `delimiter` splits the recipients' subaddresses. Without links:
/// attachments over the route's limit go without `content` or `url`.
pub fn payload(envelope: &Envelope, index: usize, raw: &[u8], delimiter: &Delimiter) -> Vec<u8> {
    let raw = Bytes::copy_from_slice(raw);
    build(envelope, index, &raw, delimiter, None, None)
        .body
        .into_vec()
}

/// A webhook body, and the attachments its links need kept (all linked
/// until `expires`, unix s) before it is sent.
#[derive(Debug)]
pub struct Built {
    pub body: Body,
    pub kept: Vec<KeptPart>,
    pub expires: u64,
}

/// [`payload`], with the attachments that are not inlined sent as signed
/// links made by `links` at its time (unix s): their bytes come back in
/// [`Built::kept`] for the caller to keep before sending. With the
/// message's stored verdicts (`auth`), the payload carries them, and the
/// message it shows (`headers`, `raw`) starts with our
/// `Authentication-Results:`, incoming ones claiming our authserv-id
/// removed ([`Record::apply`]); `envelope.size` stays the size received.
///
/// Large base64 values are deferred: the body holds (a reference to) the
/// message and encodes them as it is sent ([`Body`]).
pub fn build(
    envelope: &Envelope,
    index: usize,
    raw: &Bytes,
    delimiter: &Delimiter,
    links: Option<(&Linker, u64)>,
    auth: Option<&Record>,
) -> Built {
    let shown = match auth {
        Some(a) => Bytes::from(a.apply(raw)),
        None => raw.clone(),
    };
    let delivery = &envelope.deliveries[index];
    let opts = PayloadOptions {
        include_raw: delivery.raw,
        max_attachment_inline: delivery.max_attachment_inline,
        attachments: if delivery.attachment_urls {
            AttachmentMode::Url
        } else {
            AttachmentMode::Inline
        },
        linkable: links.is_some(),
        defer: true,
    };
    let mut message = mail::parse_message(&shown, &opts);
    let deferred = std::mem::take(&mut message.deferred);
    let mut kept = Vec::new();
    let mut expires = 0;
    if let Some((linker, now)) = links {
        for part in std::mem::take(&mut message.linked) {
            let link = linker.link(&envelope.id, part.index, now);
            let a = &mut message.attachments[part.index];
            a.url = Some(link.url);
            a.url_expires_at = Some(rfc3339(link.expires));
            expires = link.expires;
            kept.push(KeptPart {
                index: part.index,
                meta: KeptMeta {
                    content_type: a.content_type.clone(),
                    filename: a.filename.clone(),
                    sha256: a.sha256.clone(),
                    size: part.bytes.len() as u64,
                    expires: link.expires,
                },
                bytes: part.bytes,
            });
        }
    }
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
        message,
    };
    let json = serde_json::to_vec(&p).expect("payload serialises");
    Built {
        body: Body::splice(json, deferred, shown),
        kept,
        expires,
    }
}

/// Unix seconds as RFC 3339.
fn rfc3339(unix: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix.min(i64::MAX as u64) as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
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
/// `webhook-signature` signs exactly `body` with each of `secrets`. A
/// spliced body is produced twice, for the signature and onto the
/// connection, and sent with its `content-length`.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    secrets: &[Secret],
    body: impl Into<Body>,
) -> Result<reqwest::Response, PostError> {
    let body = body.into();
    if secrets.is_empty() {
        return Err(PostError::NoSecret);
    }
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("content-length", body.len());
    for (name, value) in sign::headers_pieces(secrets, id, |f| body.for_each(f)) {
        request = request.header(name, value);
    }
    request
        .body(body.into_request_body())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::attachment_url::{self, LinkKey};
    use crate::spool::{Delivery, Target};

    const MIME: &[u8] = b"From: a@b.test\r\nSubject: x\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
        --b\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=small.txt\r\n\r\nsmall\r\n\
        --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=big.pdf\r\n\r\n%PDF a much longer body\r\n\
        --b--\r\n";

    fn envelope(max: Option<usize>, urls: bool) -> Envelope {
        Envelope {
            id: "0192f0c5c5a87b5e9d1d6d6f1c1e2a3b".into(),
            received_at: "2026-01-01T00:00:00Z".into(),
            mail_from: "a@b.test".into(),
            rcpt_to: vec!["c@d.test".into()],
            helo: "h".into(),
            remote_ip: "127.0.0.1".into(),
            tls: None,
            authenticated_user: None,
            deliveries: vec![Delivery {
                target: Target::Webhook {
                    route: "*".into(),
                    url: "http://h/".into(),
                },
                rcpt_to: vec!["c@d.test".into()],
                raw: false,
                max_attachment_inline: max,
                attachment_urls: urls,
            }],
            outbound: None,
        }
    }

    fn key() -> LinkKey {
        LinkKey::from_text("a key for the tests of build").unwrap()
    }

    #[test]
    fn attachments_over_the_limit_become_signed_links_and_are_kept() {
        let linker = Linker::new("https://mail.example", key(), Duration::from_secs(100));
        let d = Delimiter::default();
        let env = envelope(Some(8), false);
        let built = build(
            &env,
            0,
            &Bytes::from_static(MIME),
            &d,
            Some((&linker, 1000)),
            None,
        );
        let p: serde_json::Value = serde_json::from_slice(&built.body.to_vec()).unwrap();
        let (small, big) = (&p["attachments"][0], &p["attachments"][1]);
        assert_eq!(small["content"], "c21hbGw=");
        assert!(small["url"].is_null());
        assert!(big["content"].is_null());
        let url = big["url"].as_str().unwrap();
        let prefix = "https://mail.example/v1/attachments/0192f0c5c5a87b5e9d1d6d6f1c1e2a3b/1?expires=1100&sig=";
        assert!(url.starts_with(prefix), "{url}");
        let sig = &url[prefix.len()..];
        assert_eq!(
            attachment_url::verify(&key(), &env.id, "1", Some("1100"), Some(sig), 1000),
            Ok(1)
        );
        assert_eq!(big["url_expires_at"], "1970-01-01T00:18:20Z");
        assert_eq!(built.expires, 1100);
        assert_eq!(built.kept.len(), 1);
        let kept = &built.kept[0];
        assert_eq!(kept.index, 1);
        assert_eq!(kept.bytes, b"%PDF a much longer body");
        assert_eq!(kept.meta.size, 23);
        assert_eq!(kept.meta.content_type, "application/pdf");
        assert_eq!(kept.meta.filename.as_deref(), Some("big.pdf"));
        assert_eq!(kept.meta.sha256, big["sha256"].as_str().unwrap());

        // "url" mode links every one; without a linker nothing is linked.
        let all = build(
            &envelope(None, true),
            0,
            &Bytes::from_static(MIME),
            &d,
            Some((&linker, 1000)),
            None,
        );
        assert_eq!(all.kept.len(), 2);
        let none = build(&env, 0, &Bytes::from_static(MIME), &d, None, None);
        let p: serde_json::Value = serde_json::from_slice(&none.body.to_vec()).unwrap();
        assert!(none.kept.is_empty());
        assert!(p["attachments"][1]["content"].is_null());
        assert!(p["attachments"][1]["url"].is_null());
        assert_eq!(none.body.to_vec(), payload(&env, 0, MIME, &d));
    }

    #[test]
    fn a_large_payload_is_spliced_and_says_what_one_built_whole_says() {
        use base64::Engine as _;
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 253) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let mut raw = b"From: a@b.test\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\n\
            Content-Type: text/plain\r\n\r\nhi\r\n--X\r\n\
            Content-Type: application/pdf; name=a.pdf\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        for line in b64.as_bytes().chunks(76) {
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"--X--\r\n");
        let mut env = envelope(None, false);
        env.deliveries[0].raw = true;
        let built = build(
            &env,
            0,
            &Bytes::from(raw.clone()),
            &Delimiter::default(),
            None,
            None,
        );
        assert!(built.body.is_spliced());
        let sent = built.body.to_vec();
        assert_eq!(sent.len(), built.body.len());
        let p: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        let whole = mail::parse_message(
            &raw,
            &PayloadOptions {
                include_raw: true,
                ..Default::default()
            },
        );
        for (key, value) in serde_json::to_value(&whole).unwrap().as_object().unwrap() {
            assert_eq!(&p[key], value, "{key}");
        }
        assert_eq!(p["attachments"][0]["content"], b64.as_str());
    }
}
