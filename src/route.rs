//! Routing: which webhook endpoints a recipient goes to.
//!
//! Routes are evaluated in order; the first match wins unless the matching
//! route sets `"continue": true`, in which case later matches are added too
//! (fan-out). A recipient that matches nothing is refused at `RCPT` time by
//! the SMTP session (`550 5.1.1`): we never accept mail we cannot deliver,
//! because a later bounce would be backscatter.
//!
//! Matching is case-insensitive over the whole address, as mail systems in
//! practice treat local parts (Postfix lookup tables do the same).
//!
//! Subaddresses (RFC 5233, [`crate::model::subaddress`]): an exact route
//! for `bob@x` also takes `bob+tag@x`, unless some route names
//! `bob+tag@x` exactly (then only that one does, wherever it is in the
//! list, as Postfix looks the full address up before the base). Domain
//! and catch-all routes are unaffected; a regex sees the full address.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use crate::model::attachment_url::AttachmentMode;
use crate::model::one_or_many::OneOrMany;
use crate::model::secret::{Secret, SecretError};
use crate::model::subaddress::{self, Delimiter};

/// A route as written in `POSTERN_ROUTES` JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// `user@domain`, `*@domain`, `/regex/` or `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// Endpoint; `{name}` is filled from a regex's named capture.
    pub url: String,
    /// One `whsec_` secret or a list (rotation: sign with each).
    #[serde(default)]
    pub secret: Option<OneOrMany<String>>,
    /// Also evaluate later routes.
    #[serde(default, rename = "continue")]
    pub cont: bool,
    /// Include the raw message (base64) in the payload.
    #[serde(default)]
    pub raw: bool,
    /// Attachments larger than this (bytes) are sent without `content`
    /// (as a signed `url` when `POSTERN_PUBLIC_URL` is known).
    #[serde(default)]
    pub max_attachment_inline: Option<usize>,
    /// `"inline"` (default) or `"url"`: every attachment as a signed link.
    #[serde(default)]
    pub attachments: AttachmentMode,
    /// `"required"`: only authenticated senders reach this route.
    #[serde(default)]
    pub auth: Option<RouteAuth>,
    /// Asked at RCPT time whether to accept a recipient of this route
    /// (`smtp::authorize`).
    #[serde(default)]
    pub authorize_url: Option<String>,
    /// How long the answer may take (`"5s"`, `"500ms"`); default 5 s.
    #[serde(default)]
    pub authorize_timeout: Option<String>,
    /// `"async"` (default: spooled, POSTed by the worker with retries) or
    /// `"sync"` (POSTed during DATA; the answer is the SMTP reply,
    /// `smtp::sync`).
    #[serde(default)]
    pub mode: RouteMode,
    /// How long a sync route's answer may take (`"20s"`); default 20 s.
    #[serde(default)]
    pub sync_timeout: Option<String>,
    /// Refuse at DATA (`550 5.7.1`) a message that fails DMARC when its
    /// `From` domain's policy is `reject` (needs the `dmarc` check on).
    #[serde(default)]
    pub dmarc_reject: bool,
}

/// When a route's webhook is called.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteMode {
    #[default]
    Async,
    Sync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouteAuth {
    Required,
    Optional,
}

impl RouteSpec {
    /// The `POSTERN_WEBHOOK_URL` shorthand.
    pub fn catch_all(url: String) -> RouteSpec {
        RouteSpec {
            pattern: "*".into(),
            url,
            secret: None,
            cont: false,
            raw: false,
            max_attachment_inline: None,
            attachments: AttachmentMode::Inline,
            auth: None,
            authorize_url: None,
            authorize_timeout: None,
            mode: RouteMode::Async,
            sync_timeout: None,
            dmarc_reject: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("bad regex in \"match\": {0}")]
    Regex(#[from] regex::Error),
    #[error("\"match\" must be an address, *@domain, /regex/ or *: {0:?}")]
    Pattern(String),
    #[error("\"url\" must start with http:// or https://: {0:?}")]
    Url(String),
    #[error("\"url\" uses {{{0}}} but the regex has no such named group")]
    Placeholder(String),
    #[error("\"url\" has {{{0}}} in its scheme or host; placeholders belong in the path or query")]
    PlaceholderInHost(String),
    #[error("\"secret\": {0}")]
    Secret(#[from] SecretError),
    #[error("\"authorize_url\" must start with http:// or https://: {0:?}")]
    AuthorizeUrl(String),
    #[error("\"authorize_url\" cannot hold {{placeholders}}: the request body names the recipient")]
    AuthorizePlaceholder,
    #[error("\"authorize_timeout\" must be a duration from 1ms to 60s, like \"5s\": {0:?}")]
    AuthorizeTimeout(String),
    #[error("\"authorize_timeout\" without \"authorize_url\"")]
    TimeoutWithoutAuthorize,
    #[error("\"sync_timeout\" must be a duration from 1ms to 60s, like \"20s\": {0:?}")]
    SyncTimeout(String),
    #[error("\"sync_timeout\" without \"mode\": \"sync\"")]
    TimeoutWithoutSync,
    #[error("\"sync_timeout\" ({timeout}) must be shorter than POSTERN_SMTP_IDLE_TIMEOUT ({idle})")]
    SyncTimeoutTooLong { timeout: String, idle: String },
}

/// `authorize_timeout` when a route gives none: well below the 5 minutes
/// a client waits for a RCPT reply (RFC 5321 4.5.3.2), short enough that a
/// hung app delays each recipient only a little.
pub const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(5);

/// `sync_timeout` when a sync route gives none: the issue's 20 s, well
/// under the 10 minutes a client waits for the reply to DATA (RFC 5321
/// 4.5.3.2.6) and under our own idle timeout.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest `authorize_timeout` or `sync_timeout`: an SMTP client
/// should not wait on an app for more than a minute.
pub const MAX_APP_TIMEOUT: Duration = Duration::from_secs(60);

/// A duration from 1 ms to [`MAX_APP_TIMEOUT`], or `None`.
fn app_timeout(text: &str) -> Option<Duration> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|d| *d >= Duration::from_millis(1) && *d <= MAX_APP_TIMEOUT)
}

/// `mode` and `sync_timeout`, checked: the timeout of a sync route.
fn sync_mode(mode: RouteMode, timeout: Option<String>) -> Result<Option<Duration>, RouteError> {
    match (mode, timeout) {
        (RouteMode::Async, None) => Ok(None),
        (RouteMode::Async, Some(_)) => Err(RouteError::TimeoutWithoutSync),
        (RouteMode::Sync, None) => Ok(Some(DEFAULT_SYNC_TIMEOUT)),
        (RouteMode::Sync, Some(t)) => app_timeout(&t).map(Some).ok_or(RouteError::SyncTimeout(t)),
    }
}

/// A route's RCPT-time authorization endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorize {
    pub url: String,
    pub timeout: Duration,
}

/// `authorize_url` and `authorize_timeout`, checked.
fn authorize(
    url: Option<String>,
    timeout: Option<String>,
) -> Result<Option<Authorize>, RouteError> {
    let Some(url) = url else {
        return match timeout {
            Some(_) => Err(RouteError::TimeoutWithoutAuthorize),
            None => Ok(None),
        };
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(RouteError::AuthorizeUrl(url));
    }
    if placeholders(&url).next().is_some() {
        return Err(RouteError::AuthorizePlaceholder);
    }
    let timeout = match timeout {
        None => DEFAULT_AUTHORIZE_TIMEOUT,
        Some(t) => app_timeout(&t).ok_or(RouteError::AuthorizeTimeout(t))?,
    };
    Ok(Some(Authorize { url, timeout }))
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact(String),
    Domain(String),
    Regex(Regex),
    Any,
}

/// Why a recipient that matches a route cannot go to it: its address would
/// change the shape of the route's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("{{{0}}} would hold a path separator")]
    Separator(String),
    #[error("{{{0}}} would make a dot segment")]
    DotSegment(String),
}

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The `match` text, kept to name the route in logs and on disk.
    pub pattern: String,
    matcher: Matcher,
    url: String,
    pub secrets: Vec<Secret>,
    pub cont: bool,
    pub raw: bool,
    pub max_attachment_inline: Option<usize>,
    pub attachments: AttachmentMode,
    /// Skipped for senders that have not authenticated.
    pub auth_required: bool,
    /// Asked at RCPT time before a recipient of this route is accepted.
    pub authorize: Option<Authorize>,
    /// `"mode": "sync"`: POSTed during DATA, within this long; the answer
    /// is the SMTP reply and nothing is spooled for this route.
    pub sync_timeout: Option<Duration>,
    /// Refuse mail failing DMARC under a `reject` policy.
    pub dmarc_reject: bool,
}

impl Route {
    pub fn compile(spec: RouteSpec) -> Result<Route, RouteError> {
        let p = spec.pattern.trim();
        let matcher = if p == "*" {
            Matcher::Any
        } else if p.len() >= 2 && p.starts_with('/') && p.ends_with('/') {
            // Case-insensitive like the other kinds, unless the author says otherwise.
            Matcher::Regex(Regex::new(&format!("(?i){}", &p[1..p.len() - 1]))?)
        } else if let Some(domain) = p.strip_prefix("*@") {
            if domain.is_empty() || domain.contains('@') {
                return Err(RouteError::Pattern(p.into()));
            }
            Matcher::Domain(domain.to_ascii_lowercase())
        } else if !p.is_empty() && !p.contains(char::is_whitespace) && p.matches('@').count() <= 1 {
            Matcher::Exact(p.to_lowercase())
        } else {
            return Err(RouteError::Pattern(p.into()));
        };
        if !(spec.url.starts_with("http://") || spec.url.starts_with("https://")) {
            return Err(RouteError::Url(spec.url));
        }
        let path_start = authority_end(&spec.url);
        for (at, name) in placeholders(&spec.url) {
            let known = match &matcher {
                Matcher::Regex(re) => re.capture_names().flatten().any(|n| n == name),
                _ => false,
            };
            if !known {
                return Err(RouteError::Placeholder(name.to_string()));
            }
            if at < path_start {
                return Err(RouteError::PlaceholderInHost(name.to_string()));
            }
        }
        let authorize = authorize(spec.authorize_url, spec.authorize_timeout)?;
        let sync_timeout = sync_mode(spec.mode, spec.sync_timeout)?;
        let secrets = match &spec.secret {
            None => Vec::new(),
            Some(list) => list
                .as_slice()
                .iter()
                .map(|s| Secret::parse(s))
                .collect::<Result<_, _>>()?,
        };
        Ok(Route {
            pattern: p.to_string(),
            matcher,
            url: spec.url,
            secrets,
            cont: spec.cont,
            raw: spec.raw,
            max_attachment_inline: spec.max_attachment_inline,
            attachments: spec.attachments,
            auth_required: spec.auth == Some(RouteAuth::Required),
            authorize,
            sync_timeout,
            dmarc_reject: spec.dmarc_reject,
        })
    }

    /// The secrets this route signs with: its own, or else `default`
    /// (`POSTERN_WEBHOOK_SECRET`).
    pub fn secrets_or<'a>(&'a self, default: &'a [Secret]) -> &'a [Secret] {
        if self.secrets.is_empty() {
            default
        } else {
            &self.secrets
        }
    }

    /// The `url` as configured, placeholders included.
    pub fn url_template(&self) -> &str {
        &self.url
    }

    /// The endpoint URL for `addr`, or `None` when the route does not match
    /// (or matches but its URL cannot be filled safely, see [`Route::target_for`]).
    /// An exact route also matches `base`, the address without its detail.
    pub fn url_for(&self, addr: &str, base: Option<&str>) -> Option<String> {
        self.target_for(addr, base).ok().flatten()
    }

    /// Whether this is an exact route for the whole of `addr`.
    fn names(&self, addr: &str) -> bool {
        matches!(&self.matcher, Matcher::Exact(a) if *a == addr.to_lowercase())
    }

    /// The endpoint URL for `addr`: `Ok(None)` when the route does not
    /// match, `Err` when it matches but a capture would escape its place in
    /// the URL. An exact route matches `addr` or `base` (the address
    /// without its subaddress detail); the others only look at `addr`.
    pub fn target_for(&self, addr: &str, base: Option<&str>) -> Result<Option<String>, Unsafe> {
        let lower = addr.to_lowercase();
        Ok(match &self.matcher {
            Matcher::Any => Some(self.url.clone()),
            Matcher::Exact(a) => {
                let hit = *a == lower || base.is_some_and(|b| *a == b.to_lowercase());
                hit.then(|| self.url.clone())
            }
            Matcher::Domain(d) => {
                let Some((_, domain)) = lower.rsplit_once('@') else {
                    return Ok(None);
                };
                (domain == d).then(|| self.url.clone())
            }
            Matcher::Regex(re) => {
                let Some(caps) = re.captures(addr) else {
                    return Ok(None);
                };
                Some(fill(&self.url, |name| {
                    caps.name(name).map_or("", |m| m.as_str())
                })?)
            }
        })
    }
}

/// Where the authority of `url` ends (the path, query or fragment starts).
fn authority_end(url: &str) -> usize {
    let start = url.find("://").map_or(0, |i| i + 3);
    url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i)
}

/// Fills the `{name}` placeholders of a URL template with `value(name)`.
///
/// Every value is percent-encoded as data (only RFC 3986 unreserved
/// characters stay), so it can never add a segment, a query parameter or a
/// fragment. In the path, a value must also not hold `/` or `\\` (some
/// servers decode `%2F` or treat `\\` as a separator), and the segment it
/// lands in must not become `.` or `..`: URL normalisation would resolve
/// that to another path (a quoted local part `".."` is a valid address).
pub fn fill<'a>(template: &str, value: impl Fn(&str) -> &'a str) -> Result<String, Unsafe> {
    let path_end = {
        let start = authority_end(template);
        template[start..]
            .find(['?', '#'])
            .map_or(template.len(), |i| start + i)
    };
    let (path, rest) = template.split_at(path_end);
    let mut out = String::with_capacity(template.len() + 16);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let start = out.len();
        let mut last = None;
        substitute(segment, &value, &mut out, |name, v| {
            last = Some(name.to_string());
            if v.contains(['/', '\\']) {
                return Err(Unsafe::Separator(name.to_string()));
            }
            Ok(())
        })?;
        if let Some(name) = last
            && matches!(&out[start..], "." | "..")
        {
            return Err(Unsafe::DotSegment(name));
        }
    }
    substitute(rest, &value, &mut out, |_, _| Ok(()))?;
    Ok(out)
}

/// Appends `text` to `out` with each `{name}` replaced by the
/// percent-encoded `value(name)`, after `check(name, value)` agrees.
fn substitute<'a>(
    text: &str,
    value: &impl Fn(&str) -> &'a str,
    out: &mut String,
    mut check: impl FnMut(&str, &str) -> Result<(), Unsafe>,
) -> Result<(), Unsafe> {
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('{') {
        let Some((name, tail)) = after.split_once('}') else {
            break;
        };
        out.push_str(before);
        let v = value(name);
        check(name, v)?;
        out.push_str(&percent_encode(v));
        rest = tail;
    }
    out.push_str(rest);
    Ok(())
}

/// `{name}` placeholders in a URL template, with their byte offsets.
fn placeholders(url: &str) -> impl Iterator<Item = (usize, &str)> {
    url.match_indices('{')
        .filter_map(move |(at, _)| url[at + 1..].split_once('}').map(|(n, _)| (at, n)))
}

/// Captured text goes into a URL: encode everything but RFC 3986 unreserved
/// characters, so an address cannot add path segments or query parameters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One endpoint a recipient was routed to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Index into the route table.
    pub route: usize,
    pub url: String,
}

/// All targets of `addr`, in route order (first match, plus fan-out).
/// Routes with `"auth": "required"` exist only for authenticated senders.
/// A match whose URL cannot be filled safely refuses the recipient.
///
/// Exact routes match the address without its detail too, unless a route
/// names the whole address: that one takes it, even for a sender it is
/// not open to (such a sender is refused, not sent to the base's route).
pub fn resolve(
    routes: &[Route],
    addr: &str,
    authenticated: bool,
    delimiter: &Delimiter,
) -> Result<Vec<Target>, Unsafe> {
    let base = subaddress::split(addr, delimiter)
        .base()
        .filter(|_| !routes.iter().any(|r| r.names(addr)));
    let mut out = Vec::new();
    for (i, r) in routes.iter().enumerate() {
        if r.auth_required && !authenticated {
            continue;
        }
        if let Some(url) = r.target_for(addr, base.as_deref())? {
            out.push(Target { route: i, url });
            if !r.cont {
                break;
            }
        }
    }
    Ok(out)
}

/// Groups accepted recipients by target, so each endpoint gets one delivery
/// listing only the recipients routed to it.
pub fn split(recipients: &[(String, Vec<Target>)]) -> Vec<(Target, Vec<String>)> {
    let mut by_target: BTreeMap<Target, Vec<String>> = BTreeMap::new();
    for (rcpt, targets) in recipients {
        for t in targets {
            let list = by_target.entry(t.clone()).or_default();
            if !list.contains(rcpt) {
                list.push(rcpt.clone());
            }
        }
    }
    by_target.into_iter().collect()
}

/// URL and secrets of a spooled webhook delivery under the routes
/// configured now, looked up by the `match` text it was accepted under
/// (`pattern`) and filled for its first recipient again: so fixing a wrong
/// URL (the usual reason an endpoint is "down") and restarting redirects
/// mail already spooled. Secrets are never stored in the spool. When no
/// route has that `match` any more, the URL the message was accepted for
/// (`accepted_url`) and `default_secrets` apply.
pub fn endpoint<'a>(
    routes: &'a [Route],
    pattern: &str,
    accepted_url: &str,
    rcpt: Option<&str>,
    default_secrets: &'a [Secret],
    delimiter: &Delimiter,
) -> (String, &'a [Secret]) {
    // The route is chosen by its `match` already: an exact one matches
    // the recipient's base address as it did at RCPT.
    let base = rcpt.and_then(|a| subaddress::split(a, delimiter).base());
    let base = base.as_deref();
    // Several routes may share a `match` (fan-out to two endpoints):
    // prefer the one that still yields the URL this was accepted for.
    let same = || routes.iter().filter(|r| r.pattern == pattern);
    let route = same()
        .find(|r| r.url_for(rcpt.unwrap_or(""), base).as_deref() == Some(accepted_url))
        .or_else(|| same().next());
    let url = route
        .and_then(|r| r.url_for(rcpt?, base))
        .unwrap_or_else(|| accepted_url.to_string());
    let secrets = route.map_or(default_secrets, |r| r.secrets_or(default_secrets));
    (url, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(json: &str) -> Vec<Route> {
        let specs: Vec<RouteSpec> = serde_json::from_str(json).unwrap();
        specs
            .into_iter()
            .map(|s| Route::compile(s).unwrap())
            .collect()
    }

    fn urls(routes: &[Route], addr: &str) -> Vec<String> {
        resolve(routes, addr, false, &Delimiter::default())
            .unwrap()
            .into_iter()
            .map(|t| t.url)
            .collect()
    }

    #[test]
    fn match_kinds_in_order() {
        let r = routes(
            r#"[
            {"match": "support@example.com", "url": "http://h/support"},
            {"match": "*@example.com", "url": "http://h/all", "continue": true},
            {"match": "/^(?P<user>[^+]+)\\+(?P<tag>.+)@example\\.com$/", "url": "http://h/in/{user}?tag={tag}"},
            {"match": "*@other.org", "url": "http://h/other"},
            {"match": "postmaster", "url": "http://h/pm"}
        ]"#,
        );
        let table: &[(&str, &[&str])] = &[
            ("support@example.com", &["http://h/support"]),
            ("Support@EXAMPLE.com", &["http://h/support"]),
            ("bob@example.com", &["http://h/all"]),
            (
                "bob+news@example.com",
                &["http://h/all", "http://h/in/bob?tag=news"],
            ),
            (
                "bob+a/b?c@example.com",
                &["http://h/all", "http://h/in/bob?tag=a%2Fb%3Fc"],
            ),
            ("x@other.org", &["http://h/other"]),
            ("x@sub.other.org", &[]),
            ("x@nowhere.net", &[]),
            ("postmaster", &["http://h/pm"]),
        ];
        for (addr, want) in table {
            assert_eq!(urls(&r, addr), *want, "{addr}");
        }
    }

    #[test]
    fn subaddresses_match_the_exact_route_of_their_base() {
        let r = routes(
            r#"[
            {"match": "bob@x.test", "url": "http://h/bob"},
            {"match": "ann+vip@x.test", "url": "http://h/ann-vip"},
            {"match": "ann@x.test", "url": "http://h/ann"},
            {"match": "carl+vip@x.test", "url": "http://h/carl-vip", "auth": "required"},
            {"match": "carl@x.test", "url": "http://h/carl"},
            {"match": "/^(?P<u>[^@]+)@re[.]test$/", "url": "http://h/re?u={u}"},
            {"match": "*@d.test", "url": "http://h/d"}
        ]"#,
        );
        let plus = Delimiter::default();
        let several = Delimiter::parse("+-").unwrap();
        let off = Delimiter::off();
        let table: &[(&str, &Delimiter, &[&str])] = &[
            ("bob@x.test", &plus, &["http://h/bob"]),
            ("bob+news@x.test", &plus, &["http://h/bob"]),
            ("BOB+News@X.test", &plus, &["http://h/bob"]),
            ("bob+@x.test", &plus, &["http://h/bob"]),
            ("bob+a+b@x.test", &plus, &["http://h/bob"]),
            ("bob-news@x.test", &plus, &[]),
            ("bob-news@x.test", &several, &["http://h/bob"]),
            ("bob+news@x.test", &off, &[]),
            ("+bob@x.test", &plus, &[]),
            ("\"bob+x y\"@x.test", &plus, &[]),
            // the route naming the detail wins over the base's, in any order
            ("ann+vip@x.test", &plus, &["http://h/ann-vip"]),
            ("ann+other@x.test", &plus, &["http://h/ann"]),
            // ...also for a sender it is closed to: no fallback to the base
            ("carl+vip@x.test", &plus, &[]),
            ("carl+other@x.test", &plus, &["http://h/carl"]),
            // a regex sees the whole address
            ("bob+news@re.test", &plus, &["http://h/re?u=bob%2Bnews"]),
            ("bob+news@d.test", &plus, &["http://h/d"]),
        ];
        for (addr, delim, want) in table {
            let got: Vec<String> = resolve(&r, addr, false, delim)
                .unwrap()
                .into_iter()
                .map(|t| t.url)
                .collect();
            assert_eq!(got, *want, "{addr} {delim:?}");
        }
        let authed = resolve(&r, "carl+vip@x.test", true, &plus).unwrap();
        assert_eq!(authed[0].url, "http://h/carl-vip");
    }

    #[test]
    fn auth_required_routes_only_for_authenticated_senders() {
        let r = routes(
            r#"[
            {"match": "*@app.test", "url": "http://h/submit", "auth": "required"},
            {"match": "*", "url": "http://h/public"}
        ]"#,
        );
        let got = |auth| {
            resolve(&r, "x@app.test", auth, &Delimiter::default())
                .unwrap()
                .into_iter()
                .map(|t| t.url)
                .collect::<Vec<_>>()
        };
        assert_eq!(got(true), ["http://h/submit"]);
        assert_eq!(got(false), ["http://h/public"]);
        assert!(
            serde_json::from_str::<RouteSpec>(
                r#"{"match": "*", "url": "http://h/", "auth": "maybe"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn catch_all_matches_everything() {
        let r = routes(r#"[{"match": "*", "url": "http://h/x"}]"#);
        assert_eq!(urls(&r, "anyone@anywhere"), ["http://h/x"]);
        assert_eq!(urls(&r, "postmaster"), ["http://h/x"]);
    }

    #[test]
    fn bad_routes_are_refused() {
        let bad = [
            r#"{"match": "/(unclosed/", "url": "http://h/"}"#,
            r#"{"match": "a b@c", "url": "http://h/"}"#,
            r#"{"match": "*@", "url": "http://h/"}"#,
            r#"{"match": "*", "url": "ftp://h/"}"#,
            r#"{"match": "*", "url": "http://h/{user}"}"#,
            r#"{"match": "*", "url": "http://h/", "secret": "plain"}"#,
        ];
        let table: &[(&str, &str)] = &[
            (
                r#"{"match": "*", "url": "http://h/", "authorize_url": "ftp://a/"}"#,
                "\"authorize_url\" must start with http:// or https://: \"ftp://a/\"",
            ),
            (
                r#"{"match": "/^(?P<u>.+)$/", "url": "http://h/", "authorize_url": "http://a/{u}"}"#,
                "\"authorize_url\" cannot hold {placeholders}: the request body names the recipient",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "authorize_url": "http://a/", "authorize_timeout": "2m"}"#,
                "\"authorize_timeout\" must be a duration from 1ms to 60s, like \"5s\": \"2m\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "authorize_url": "http://a/", "authorize_timeout": "soon"}"#,
                "\"authorize_timeout\" must be a duration from 1ms to 60s, like \"5s\": \"soon\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "authorize_timeout": "1s"}"#,
                "\"authorize_timeout\" without \"authorize_url\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "mode": "sync", "sync_timeout": "61s"}"#,
                "\"sync_timeout\" must be a duration from 1ms to 60s, like \"20s\": \"61s\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "mode": "sync", "sync_timeout": "0s"}"#,
                "\"sync_timeout\" must be a duration from 1ms to 60s, like \"20s\": \"0s\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "mode": "sync", "sync_timeout": "later"}"#,
                "\"sync_timeout\" must be a duration from 1ms to 60s, like \"20s\": \"later\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "sync_timeout": "5s"}"#,
                "\"sync_timeout\" without \"mode\": \"sync\"",
            ),
            (
                r#"{"match": "*", "url": "http://h/", "mode": "async", "sync_timeout": "5s"}"#,
                "\"sync_timeout\" without \"mode\": \"sync\"",
            ),
        ];
        for (json, want) in table {
            let spec: RouteSpec = serde_json::from_str(json).unwrap();
            assert_eq!(
                Route::compile(spec).unwrap_err().to_string(),
                *want,
                "{json}"
            );
        }
        let ok: RouteSpec = serde_json::from_str(
            r#"{"match": "*", "url": "http://h/", "authorize_url": "https://a/ok", "authorize_timeout": "750ms"}"#,
        )
        .unwrap();
        assert_eq!(
            Route::compile(ok).unwrap().authorize,
            Some(Authorize {
                url: "https://a/ok".into(),
                timeout: Duration::from_millis(750)
            })
        );
        let timeout = |json: &str| {
            Route::compile(serde_json::from_str(json).unwrap())
                .unwrap()
                .sync_timeout
        };
        assert_eq!(timeout(r#"{"match": "*", "url": "http://h/"}"#), None);
        assert_eq!(
            timeout(r#"{"match": "*", "url": "http://h/", "mode": "async"}"#),
            None
        );
        assert_eq!(
            timeout(r#"{"match": "*", "url": "http://h/", "mode": "sync"}"#),
            Some(DEFAULT_SYNC_TIMEOUT)
        );
        assert_eq!(
            timeout(
                r#"{"match": "*", "url": "http://h/", "mode": "sync", "sync_timeout": "1500ms"}"#
            ),
            Some(Duration::from_millis(1500))
        );
        for mode in [r#""spool""#, r#""SYNC""#, "true"] {
            let json = format!(r#"{{"match": "*", "url": "http://h/", "mode": {mode}}}"#);
            assert!(serde_json::from_str::<RouteSpec>(&json).is_err(), "{json}");
        }
        for b in bad {
            let spec: RouteSpec = serde_json::from_str(b).unwrap();
            assert!(Route::compile(spec).is_err(), "{b}");
        }
        assert!(
            serde_json::from_str::<RouteSpec>(
                r#"{"match": "*", "url": "http://h/", "sekret": "x"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn split_gives_each_endpoint_only_its_recipients() {
        let r = routes(
            r#"[
            {"match": "a@x.org", "url": "http://h/a"},
            {"match": "*@x.org", "url": "http://h/x", "continue": true},
            {"match": "*", "url": "http://h/rest"}
        ]"#,
        );
        let rcpts: Vec<(String, Vec<Target>)> = ["a@x.org", "b@x.org", "c@y.org", "b@x.org"]
            .iter()
            .map(|a| {
                (
                    a.to_string(),
                    resolve(&r, a, false, &Delimiter::default()).unwrap(),
                )
            })
            .collect();
        let got: Vec<(String, Vec<String>)> =
            split(&rcpts).into_iter().map(|(t, l)| (t.url, l)).collect();
        assert_eq!(
            got,
            vec![
                ("http://h/a".to_string(), vec!["a@x.org".to_string()]),
                ("http://h/x".to_string(), vec!["b@x.org".to_string()]),
                (
                    "http://h/rest".to_string(),
                    vec!["b@x.org".to_string(), "c@y.org".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn captures_stay_inside_their_path_segment() {
        let r = routes(
            r#"[{"match": "/^(?P<user>.+)@example\\.com$/",
                 "url": "https://app.test/in/{user}/mail?u={user}#{user}"}]"#,
        );
        let table: &[(&str, Result<&str, Unsafe>)] = &[
            (
                "bob@example.com",
                Ok("https://app.test/in/bob/mail?u=bob#bob"),
            ),
            (
                "\"john doe\"@example.com",
                Ok("https://app.test/in/%22john%20doe%22/mail?u=%22john%20doe%22#%22john%20doe%22"),
            ),
            (
                "\"..\"@example.com",
                Ok("https://app.test/in/%22..%22/mail?u=%22..%22#%22..%22"),
            ),
            ("..@example.com", Err(Unsafe::DotSegment("user".into()))),
            (".@example.com", Err(Unsafe::DotSegment("user".into()))),
            ("a/b@example.com", Err(Unsafe::Separator("user".into()))),
            ("a\\b@example.com", Err(Unsafe::Separator("user".into()))),
            (
                "a?b#c&d@example.com",
                Ok("https://app.test/in/a%3Fb%23c%26d/mail?u=a%3Fb%23c%26d#a%3Fb%23c%26d"),
            ),
        ];
        for (addr, want) in table {
            let got = resolve(&r, addr, false, &Delimiter::default()).map(|t| t[0].url.clone());
            assert_eq!(got, want.clone().map(String::from), "{addr}");
        }
    }

    #[test]
    fn dot_segments_are_judged_on_the_whole_segment() {
        let r = routes(
            r#"[{"match": "/^(?P<a>[^.@]*)\\.(?P<b>[^@]*)@x\\.test$/",
                 "url": "https://app.test/{a}.{b}/u-{a}?q={a}.{b}"}]"#,
        );
        // "." would be a dot segment once both sides are empty...
        assert_eq!(
            resolve(&r, ".@x.test", false, &Delimiter::default()),
            Err(Unsafe::DotSegment("b".into()))
        );
        // ...while dots inside a longer segment or in the query are data.
        let ok = resolve(&r, "a.b@x.test", false, &Delimiter::default()).unwrap();
        assert_eq!(ok[0].url, "https://app.test/a.b/u-a?q=a.b");
        // A dot segment in the query is not a path.
        let q = routes(
            r#"[{"match": "/^(?P<u>[^@]*)@x\\.test$/", "url": "https://app.test/in?u={u}"}]"#,
        );
        assert_eq!(
            resolve(&q, "..@x.test", false, &Delimiter::default()).unwrap()[0].url,
            "https://app.test/in?u=.."
        );
        assert_eq!(
            resolve(&q, "a/b@x.test", false, &Delimiter::default()).unwrap()[0].url,
            "https://app.test/in?u=a%2Fb"
        );
    }

    #[test]
    fn placeholders_in_the_host_are_refused() {
        for url in [
            "https://{u}.app.test/in",
            "https://app.test:{u}/in",
            "http://{u}",
        ] {
            let spec: RouteSpec = serde_json::from_str(&format!(
                r#"{{"match": "/^(?P<u>[^@]+)@x$/", "url": "{url}"}}"#
            ))
            .unwrap();
            assert!(
                matches!(Route::compile(spec), Err(RouteError::PlaceholderInHost(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn endpoint_of_a_spooled_delivery_follows_its_route() {
        const OWN: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let r = routes(&format!(
            r#"[
            {{"match": "a@x.test", "url": "http://new/a", "secret": "{OWN}"}},
            {{"match": "*@x.test", "url": "http://one/all", "continue": true}},
            {{"match": "*@x.test", "url": "http://two/all"}},
            {{"match": "/^(?P<user>[a-z]+)@re[.]test$/", "url": "http://new/in/{{user}}"}}
        ]"#
        ));
        let own = [Secret::parse(OWN).unwrap()];
        let default = [Secret::generate()];
        // (match, accepted URL, first recipient) → (URL, secrets)
        type Row<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a [Secret]);
        let table: &[Row] = &[
            // a fixed URL: spooled mail goes to the new one, signed with the route's secret
            (
                "a@x.test",
                "http://old/a",
                Some("a@x.test"),
                "http://new/a",
                &own,
            ),
            // two routes share a `match`: each delivery keeps its own
            (
                "*@x.test",
                "http://two/all",
                Some("b@x.test"),
                "http://two/all",
                &default,
            ),
            (
                "*@x.test",
                "http://one/all",
                Some("b@x.test"),
                "http://one/all",
                &default,
            ),
            // neither URL is the one accepted: the first route with that `match`
            (
                "*@x.test",
                "http://gone/all",
                Some("b@x.test"),
                "http://one/all",
                &default,
            ),
            // a regex route is filled for the recipient again
            (
                "/^(?P<user>[a-z]+)@re[.]test$/",
                "http://old/in/bob",
                Some("bob@re.test"),
                "http://new/in/bob",
                &default,
            ),
            // the route is gone: the accepted URL, the default secrets
            (
                "gone@x.test",
                "http://old/gone",
                Some("gone@x.test"),
                "http://old/gone",
                &default,
            ),
            // no recipient to fill a URL for: the accepted URL
            ("a@x.test", "http://old/a", None, "http://old/a", &own),
            // a subaddress of an exact route follows it too
            (
                "a@x.test",
                "http://old/a",
                Some("a+tag@x.test"),
                "http://new/a",
                &own,
            ),
        ];
        for (pattern, accepted, rcpt, url, secrets) in table {
            let got = endpoint(
                &r,
                pattern,
                accepted,
                *rcpt,
                &default,
                &Delimiter::default(),
            );
            assert_eq!(
                (got.0.as_str(), got.1),
                (*url, *secrets),
                "{pattern} {accepted}"
            );
        }
    }
}
