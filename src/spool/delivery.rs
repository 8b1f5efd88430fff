//! One delivery of a spooled message: its [`Target`] (a webhook endpoint,
//! the relay, or the events URL) and the recipients that go there.
//!
//! On disk a delivery is still the flat record every earlier version wrote
//! in the envelope line (`kind`, `route`, `url`, `rcpt_to`, `raw`,
//! `max_attachment_inline`, and `attachment_urls` only when set; no `kind`
//! means a webhook), so spools written
//! before [`Target`] existed are read, and spools written now are read by
//! them. [`DeliveryRecord`] is that record; nothing else knows its shape.

use serde::{Deserialize, Serialize};

/// One target a message goes to, with the recipients routed there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(from = "DeliveryRecord", into = "DeliveryRecord")]
pub struct Delivery {
    pub target: Target,
    pub rcpt_to: Vec<String>,
    /// Webhooks: include the raw message in the payload.
    pub raw: bool,
    /// Webhooks: attachments larger than this are sent without content
    /// (as a signed `url` when links can be made).
    pub max_attachment_inline: Option<usize>,
    /// Webhooks: every attachment is sent as a signed `url` (the route's
    /// `"attachments": "url"`).
    pub attachment_urls: bool,
}

/// Where a delivery goes, and so what delivering it means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Inbound mail → JSON payload → a webhook endpoint.
    Webhook {
        /// The route's `match` text: names the route whose secrets sign
        /// this, and whose URL applies at each attempt.
        route: String,
        /// The URL the message was accepted for.
        url: String,
    },
    /// Outbound mail → the SMTP relay (`POSTERN_RELAY_URL`).
    Relay,
    /// A delivery event (the content is the JSON body) → the events URL.
    Event {
        /// The events URL when the event was spooled.
        url: String,
    },
}

/// The kinds of delivery one queue and one scheduler serve.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Inbound mail → JSON payload → endpoint.
    #[default]
    Webhook,
    /// Outbound mail → SMTP relay.
    Relay,
    /// A delivery event (the content is the JSON body) → events URL.
    Event,
}

impl Kind {
    /// The name in the spool, the API, the CLI and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Relay => "relay",
            Kind::Event => "event",
        }
    }
}

/// The `route` recorded for relay and event deliveries, which have none;
/// the API lists them under these names.
const RELAY_ROUTE: &str = "relay";
const EVENTS_ROUTE: &str = "events";

impl Target {
    pub fn kind(&self) -> Kind {
        match self {
            Target::Webhook { .. } => Kind::Webhook,
            Target::Relay => Kind::Relay,
            Target::Event { .. } => Kind::Event,
        }
    }

    /// The route's `match` text; `relay` and `events` for the other kinds.
    pub fn route(&self) -> &str {
        match self {
            Target::Webhook { route, .. } => route,
            Target::Relay => RELAY_ROUTE,
            Target::Event { .. } => EVENTS_ROUTE,
        }
    }

    /// The URL recorded with the delivery; `None` for the relay.
    pub fn url(&self) -> Option<&str> {
        match self {
            Target::Webhook { url, .. } | Target::Event { url } => Some(url),
            Target::Relay => None,
        }
    }
}

/// A delivery as the spool writes it (see the module docs). Field order is
/// the order on disk.
#[derive(Serialize, Deserialize)]
struct DeliveryRecord {
    #[serde(default)]
    kind: Kind,
    route: String,
    url: String,
    rcpt_to: Vec<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    max_attachment_inline: Option<usize>,
    /// Written only when set, so records without it stay as earlier
    /// versions wrote (and read) them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    attachment_urls: bool,
}

impl From<DeliveryRecord> for Delivery {
    fn from(r: DeliveryRecord) -> Delivery {
        let target = match r.kind {
            Kind::Webhook => Target::Webhook {
                route: r.route,
                url: r.url,
            },
            Kind::Relay => Target::Relay,
            Kind::Event => Target::Event { url: r.url },
        };
        Delivery {
            target,
            rcpt_to: r.rcpt_to,
            raw: r.raw,
            max_attachment_inline: r.max_attachment_inline,
            attachment_urls: r.attachment_urls,
        }
    }
}

impl From<Delivery> for DeliveryRecord {
    fn from(d: Delivery) -> DeliveryRecord {
        let kind = d.target.kind();
        let route = d.target.route().to_string();
        let url = d.target.url().unwrap_or_default().to_string();
        DeliveryRecord {
            kind,
            route,
            url,
            rcpt_to: d.rcpt_to,
            raw: d.raw,
            max_attachment_inline: d.max_attachment_inline,
            attachment_urls: d.attachment_urls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(target: Target, rcpt_to: &[&str], raw: bool) -> Delivery {
        Delivery {
            target,
            rcpt_to: rcpt_to.iter().map(|s| s.to_string()).collect(),
            raw,
            max_attachment_inline: None,
            attachment_urls: false,
        }
    }

    /// Each kind, as the version before [`Target`] wrote it (lines from
    /// tests/fixtures/spool-v1): read into the right target, and written
    /// back byte for byte.
    #[test]
    fn records_of_every_kind_round_trip_byte_for_byte() {
        let table = [
            (
                r#"{"kind":"webhook","route":"*@in.test","url":"http://127.0.0.1:33507/later","rcpt_to":["later@in.test"],"raw":false,"max_attachment_inline":null}"#,
                delivery(
                    Target::Webhook {
                        route: "*@in.test".into(),
                        url: "http://127.0.0.1:33507/later".into(),
                    },
                    &["later@in.test"],
                    false,
                ),
            ),
            (
                r#"{"kind":"relay","route":"relay","url":"","rcpt_to":["carol@example.net","dave@example.net"],"raw":false,"max_attachment_inline":null}"#,
                delivery(
                    Target::Relay,
                    &["carol@example.net", "dave@example.net"],
                    false,
                ),
            ),
            (
                r#"{"kind":"event","route":"events","url":"http://127.0.0.1:41011/events","rcpt_to":[],"raw":false,"max_attachment_inline":null}"#,
                delivery(
                    Target::Event {
                        url: "http://127.0.0.1:41011/events".into(),
                    },
                    &[],
                    false,
                ),
            ),
            (
                r#"{"kind":"webhook","route":"/^(?P<user>[^+]+)\\+(?P<tag>.+)@tag\\.test$/","url":"http://127.0.0.1:33507/in/bob?tag=news","rcpt_to":["bob+news@tag.test"],"raw":true,"max_attachment_inline":8}"#,
                Delivery {
                    max_attachment_inline: Some(8),
                    ..delivery(
                        Target::Webhook {
                            route: r"/^(?P<user>[^+]+)\+(?P<tag>.+)@tag\.test$/".into(),
                            url: "http://127.0.0.1:33507/in/bob?tag=news".into(),
                        },
                        &["bob+news@tag.test"],
                        true,
                    )
                },
            ),
        ];
        let urls = (
            r#"{"kind":"webhook","route":"*","url":"http://h/","rcpt_to":["a@b"],"raw":false,"max_attachment_inline":null,"attachment_urls":true}"#,
            Delivery {
                attachment_urls: true,
                ..delivery(
                    Target::Webhook {
                        route: "*".into(),
                        url: "http://h/".into(),
                    },
                    &["a@b"],
                    false,
                )
            },
        );
        for (line, want) in table.into_iter().chain([urls]) {
            let got: Delivery = serde_json::from_str(line).unwrap();
            assert_eq!(got, want, "{line}");
            assert_eq!(serde_json::to_string(&got).unwrap(), line);
        }
    }

    /// Records written before `kind` existed are webhooks.
    #[test]
    fn a_record_without_kind_is_a_webhook() {
        let d: Delivery =
            serde_json::from_str(r#"{"route":"*","url":"http://h/","rcpt_to":["a@b"]}"#).unwrap();
        assert_eq!(
            d,
            delivery(
                Target::Webhook {
                    route: "*".into(),
                    url: "http://h/".into()
                },
                &["a@b"],
                false
            )
        );
    }

    #[test]
    fn names_of_targets() {
        let webhook = Target::Webhook {
            route: "*@x.test".into(),
            url: "http://h/".into(),
        };
        let event = Target::Event {
            url: "http://e/".into(),
        };
        let table = [
            (
                &webhook,
                Kind::Webhook,
                "webhook",
                "*@x.test",
                Some("http://h/"),
            ),
            (&Target::Relay, Kind::Relay, "relay", "relay", None),
            (&event, Kind::Event, "event", "events", Some("http://e/")),
        ];
        for (target, kind, name, route, url) in table {
            assert_eq!(target.kind(), kind);
            assert_eq!(kind.as_str(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
            assert_eq!(target.route(), route);
            assert_eq!(target.url(), url);
        }
    }
}
