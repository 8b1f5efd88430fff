//! Attachments by URL (issue 13 item 5): `POSTERN_PUBLIC_URL`,
//! `POSTERN_ATTACHMENT_URL_TTL` and `POSTERN_ATTACHMENT_URL_SECRET` →
//! [`AttachmentUrlConfig`], from which the wiring makes the delivery
//! worker's link maker and the API's link check.
//!
//! Without a public URL, development mode links to the HTTP listener
//! (the wiring knows its address); elsewhere a route with
//! `"attachments": "url"` is a configuration error, and attachments over a
//! route's `max_attachment_inline` are sent without `content` or `url`
//! (as before links existed).

use std::time::Duration;

use super::{ConfigError, Problems, RawConfig, invalid};
use crate::model::attachment_url::{AttachmentMode, LinkKey, MIN_KEY_LEN};
use crate::route::Route;

/// `POSTERN_ATTACHMENT_URL_TTL` when unset.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct AttachmentUrlConfig {
    /// The base URL written into payloads, without a trailing slash.
    pub public_url: Option<String>,
    /// How long a link works after its payload was built.
    pub ttl: Duration,
    /// The configured key; `None`: the one generated in the spool.
    pub secret: Option<LinkKey>,
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> AttachmentUrlConfig {
    let public_url = match raw.public_url.take() {
        None => None,
        Some(v) => p.or(public_url(&v).map(Some), None),
    };
    let ttl = p.duration(
        "POSTERN_ATTACHMENT_URL_TTL",
        raw.attachment_url_ttl.take(),
        DEFAULT_TTL,
    );
    if ttl.as_secs() == 0 {
        p.push(invalid(
            "POSTERN_ATTACHMENT_URL_TTL",
            "must be at least one second",
        ));
    }
    let secret = match raw.attachment_url_secret.take() {
        None => None,
        Some(v) => {
            let key = LinkKey::from_text(&v);
            if key.is_none() {
                p.push(invalid(
                    "POSTERN_ATTACHMENT_URL_SECRET",
                    format!("must be at least {MIN_KEY_LEN} bytes (e.g. postern gen-secret)"),
                ));
            }
            key
        }
    };
    AttachmentUrlConfig {
        public_url,
        ttl,
        secret,
    }
}

/// `POSTERN_PUBLIC_URL`: an absolute http(s) URL with a host, perhaps a
/// path prefix, no query or fragment (links append their own path and
/// query); the trailing slash is dropped.
fn public_url(v: &str) -> Result<String, ConfigError> {
    let var = "POSTERN_PUBLIC_URL";
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| invalid(var, "must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(invalid(var, "must name a host (and no user info)"));
    }
    if v.contains(['?', '#']) || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(invalid(
            var,
            "must be a base URL without query, fragment or spaces",
        ));
    }
    Ok(v.trim_end_matches('/').to_string())
}

/// A route that sends every attachment as a link needs a public URL,
/// except in development mode (which links to its own listener).
pub(super) fn missing_public_url(
    routes: &[Route],
    public_url: bool,
    dev_mode: bool,
) -> Option<ConfigError> {
    if public_url || dev_mode {
        return None;
    }
    let r = routes
        .iter()
        .find(|r| r.attachments == AttachmentMode::Url)?;
    Some(invalid(
        "POSTERN_PUBLIC_URL",
        format!(
            "route {:?} sends attachments as links (\"attachments\": \"url\"): set the base URL apps reach Postern's HTTP API at",
            r.pattern
        ),
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::cfg;

    const ROUTE_URL: &str = r#"[{"match": "*", "url": "http://h/", "attachments": "url"}]"#;
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn defaults_and_values() {
        let c = cfg(&[]).unwrap().attachment_urls;
        assert_eq!(c.public_url, None);
        assert_eq!(c.ttl, super::DEFAULT_TTL);
        assert!(c.secret.is_none());
        let c = cfg(&[
            ("POSTERN_PUBLIC_URL", "https://mail.example/postern/"),
            ("POSTERN_ATTACHMENT_URL_TTL", "2h"),
            ("POSTERN_ATTACHMENT_URL_SECRET", "a secret of enough bytes"),
        ])
        .unwrap()
        .attachment_urls;
        assert_eq!(
            c.public_url.as_deref(),
            Some("https://mail.example/postern")
        );
        assert_eq!(c.ttl.as_secs(), 7200);
        assert!(c.secret.is_some());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&str, &str)] = &[
            ("POSTERN_PUBLIC_URL", "mail.example"),
            ("POSTERN_PUBLIC_URL", "ftp://mail.example"),
            ("POSTERN_PUBLIC_URL", "https://"),
            ("POSTERN_PUBLIC_URL", "https://u@mail.example"),
            ("POSTERN_PUBLIC_URL", "https://mail.example/?a=b"),
            ("POSTERN_PUBLIC_URL", "https://mail.example/#x"),
            ("POSTERN_PUBLIC_URL", "https://mail.example/a b"),
            ("POSTERN_ATTACHMENT_URL_TTL", "soon"),
            ("POSTERN_ATTACHMENT_URL_TTL", "0s"),
            ("POSTERN_ATTACHMENT_URL_SECRET", "short"),
        ];
        for (var, value) in cases {
            let e = cfg(&[(var, value)]).unwrap_err().to_string();
            assert!(e.starts_with(var), "{var}={value}: {e}");
        }
    }

    #[test]
    fn url_mode_needs_a_public_url_outside_development_mode() {
        let e = cfg(&[
            ("POSTERN_ROUTES", ROUTE_URL),
            ("POSTERN_WEBHOOK_SECRET", SECRET),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("POSTERN_PUBLIC_URL: route \"*\""), "{e}");
        assert!(
            cfg(&[
                ("POSTERN_ROUTES", ROUTE_URL),
                ("POSTERN_WEBHOOK_SECRET", SECRET),
                ("POSTERN_PUBLIC_URL", "https://mail.example"),
            ])
            .is_ok()
        );
        assert!(cfg(&[("POSTERN_ROUTES", ROUTE_URL), ("POSTERN_DEV_MODE", "true"),]).is_ok());
        // The inline limit alone is no error: big ones go without content.
        let limit = r#"[{"match": "*", "url": "http://h/", "max_attachment_inline": 10}]"#;
        assert!(
            cfg(&[
                ("POSTERN_ROUTES", limit),
                ("POSTERN_WEBHOOK_SECRET", SECRET)
            ])
            .is_ok()
        );
    }
}
