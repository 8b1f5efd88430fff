//! Each stage's own settings, taken from the configuration: what the
//! wiring hands the delivery worker and the HTTP API instead of the whole
//! `Config`.

use crate::config::Config;
use crate::model::attachment_url::{LinkKey, Linker};
use crate::{api, compose, console, delivery};

/// What the delivery worker needs from the configuration.
pub(super) fn delivery(config: &Config, links: Option<Linker>) -> delivery::Settings {
    let d = &config.delivery;
    delivery::Settings {
        schedule: delivery::policy::Schedule {
            delays: d.retry_schedule.clone(),
            jitter: d.jitter,
            max_retry_after: d.max_retry_after,
        },
        timeout: d.timeout,
        connect_timeout: d.connect_timeout,
        concurrency: d.concurrency,
        memory_budget: d.memory_budget,
        endpoints: delivery::endpoint::Limits {
            concurrency: d.endpoint_concurrency,
            breaker: delivery::breaker::Policy {
                failures: d.breaker_failures,
                cooldown: d.breaker_cooldown,
            },
        },
        routes: config.routes.clone(),
        recipient_delimiter: config.recipient_delimiter.clone(),
        default_secrets: config.default_secrets.clone(),
        events_url: config.outbound.events_url.clone(),
        events_secrets: config.outbound.events_secrets.clone(),
        links,
    }
}

/// What the HTTP API needs from the configuration.
pub(super) fn api(config: &Config, link_key: LinkKey) -> api::Settings {
    api::Settings {
        keys: api::auth::Keys::new(config.outbound.api_key_hashes.clone(), config.dev_mode),
        max_body: config.outbound.api_max_bytes,
        hostname: config.hostname.clone(),
        limits: compose::Limits {
            max_recipients: config.limits.max_recipients,
            max_message_size: config.limits.max_message_size,
        },
        dkim: config.outbound.dkim.clone(),
        link_key,
    }
}

/// What the web console needs from the configuration.
pub(super) fn console(config: &Config) -> console::Settings {
    let public = config.attachment_urls.public_url.as_deref();
    let public_origin = public
        .and_then(|u| url::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization());
    let sec = &config.security;
    console::Settings {
        keys: api::auth::Keys::new(config.outbound.api_key_hashes.clone(), config.dev_mode),
        users: config.console.users.clone(),
        secure_cookie: public.is_some_and(|u| u.starts_with("https://")),
        public_origin,
        max_failures: sec.auth_max_failures,
        failure_window: sec.auth_failure_window,
        failure_delay: sec.auth_failure_delay,
        session_ttl: console::SESSION_TTL,
    }
}
