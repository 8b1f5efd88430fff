//! `postern doctor`: checks a configuration against the world it will run
//! in, without starting the server, and prints a transcript with a verdict
//! per check.
//!
//! 1. `config`: the `POSTERN_*` environment is valid; a summary is printed
//!    with every secret left out (URLs lose their user info and query
//!    values).
//!    `dkim <selector>._domainkey.<domain>` (one per `POSTERN_DKIM_KEYS`
//!    key): the DNS TXT record to publish for it.
//! 2. `spool`: the spool directory (and its `tmp/`, `msg/`, `state/`) takes
//!    a file: a probe is created, synced and removed. Nothing else is
//!    touched, so it is safe next to a running Postern.
//!    `database`: with `POSTERN_DATABASE_URL`, a `SELECT 1` (its latency,
//!    whether TLS is on) and the schema: migrations applied versus known
//!    (behind is fine, `serve` applies them at start; a database migrated
//!    by a newer release fails). Nothing is changed.
//! 3. `tls`: the certificate and key load and match; the certificate's
//!    subject and expiry are shown; an expired certificate fails.
//! 4. `relay`: with `POSTERN_RELAY_URL`, EHLO (+STARTTLS, +AUTH) and QUIT on
//!    a fresh connection ([`Relay::check`]); no mail is sent.
//! 5. `webhook <url>` (one per distinct endpoint, and `events <url>`): a
//!    signed `postern.test` event is POSTed with the Standard Webhooks
//!    headers and the route's secrets; any 2xx passes. Routes whose URL is
//!    filled in from the recipient (`{name}`) are skipped with a note.
//!
//! Every check is bounded by [`CHECK_TIMEOUT`]. [`run`] returns `true`
//! when nothing failed (skipped checks do not fail).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::delivery::webhook::{self, PostError};
use crate::model::authority::authority;
use crate::model::secret::Secret;
use crate::relay::{Relay, RelayConfig};
use crate::smtp::AuthMode;
use crate::tls::x509::cert_info;

/// The most any one check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The `type` of the event POSTed to each endpoint.
pub const TEST_EVENT_TYPE: &str = "postern.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "SKIP",
        }
    }
}

/// The verdicts so far, printed as they come.
struct Transcript<'a> {
    out: &'a mut dyn Write,
    results: Vec<(String, Verdict)>,
}

impl Transcript<'_> {
    fn check(&mut self, name: &str, verdict: Verdict, summary: &str, details: &[String]) {
        let _ = writeln!(self.out, "[{}] {name}: {summary}", verdict.label());
        for d in details {
            let _ = writeln!(self.out, "       {d}");
        }
        let _ = self.out.flush();
        self.results.push((name.to_string(), verdict));
    }

    fn finish(self) -> bool {
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|(_, v)| *v == Verdict::Fail)
            .map(|(n, _)| n.as_str())
            .collect();
        let passed = self
            .results
            .iter()
            .filter(|(_, v)| *v == Verdict::Pass)
            .count();
        let skipped = self.results.len() - passed - failed.len();
        let _ = writeln!(self.out);
        if failed.is_empty() {
            let _ = writeln!(self.out, "verdict: OK ({passed} passed, {skipped} skipped)");
        } else {
            let _ = writeln!(
                self.out,
                "verdict: FAILED ({} failed: {}; {passed} passed, {skipped} skipped)",
                failed.len(),
                failed.join(", ")
            );
        }
        let _ = self.out.flush();
        failed.is_empty()
    }
}

/// One `dkim` line per key with the TXT record to publish (the keys were
/// loaded with the configuration, so there is nothing left to fail).
fn dkim_records(t: &mut Transcript<'_>, config: &Config) {
    let keys = &config.outbound.dkim;
    if keys.is_empty() {
        t.check(
            "dkim",
            Verdict::Skip,
            "POSTERN_DKIM_KEYS not set (API mail is sent unsigned)",
            &[],
        );
    }
    for key in keys.iter() {
        t.check(
            &format!("dkim {}", key.record_name()),
            Verdict::Pass,
            &format!("{} key loaded; publish this TXT record:", key.key_type()),
            &[key.zone_line()],
        );
    }
}

/// Runs every check for the configuration in `vars` (`POSTERN_*` pairs, as
/// [`Config::from_vars`] takes them), writing the transcript to `out`.
pub async fn run(vars: Vec<(String, String)>, out: &mut dyn Write) -> bool {
    let _ = writeln!(
        out,
        "postern doctor {} (no mail is sent; each check is bounded by {} s)\n",
        env!("CARGO_PKG_VERSION"),
        CHECK_TIMEOUT.as_secs()
    );
    let mut t = Transcript {
        out,
        results: Vec::new(),
    };

    // 1. config
    let config = match Config::from_vars(vars.iter().cloned()) {
        Ok(c) => c,
        Err(errors) => {
            // Every problem on its own line (unknown names with the closest
            // known one), as `postern serve` prints them.
            let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            match lines.as_slice() {
                [one] => t.check("config", Verdict::Fail, one, &[]),
                _ => t.check(
                    "config",
                    Verdict::Fail,
                    &format!("{} problems", lines.len()),
                    &lines,
                ),
            }
            return t.finish();
        }
    };
    // Validated with the rest of the configuration; parsed again here only
    // to describe it.
    let relay_cfg = config
        .outbound
        .relay_url
        .as_deref()
        .and_then(|u| RelayConfig::parse(u).ok());
    let summary = summarize(&config, relay_cfg.as_ref());
    t.check("config", Verdict::Pass, "valid", &summary);
    dkim_records(&mut t, &config);

    // 2. spool
    let dir = config.spool_dir.clone();
    let spool = bounded_blocking(move || check_spool(&dir)).await;
    let name = "spool";
    match spool {
        Ok(detail) => t.check(name, Verdict::Pass, &detail, &[]),
        Err(e) => t.check(
            name,
            Verdict::Fail,
            &format!("{}: {e}", config.spool_dir.display()),
            &[],
        ),
    }

    // 2b. database
    match &config.database {
        None => t.check(
            "database",
            Verdict::Skip,
            "POSTERN_DATABASE_URL not set (the spool directory is the store)",
            &[],
        ),
        Some(db) => match check_database(db).await {
            Ok((summary, details)) => t.check("database", Verdict::Pass, &summary, &details),
            Err(e) => t.check("database", Verdict::Fail, &e, &[]),
        },
    }

    // 3. TLS
    match &config.security.tls_files {
        None if config.dev_mode => t.check(
            "tls",
            Verdict::Skip,
            "no certificate configured; development mode makes a self-signed one at start",
            &[],
        ),
        None => t.check(
            "tls",
            Verdict::Skip,
            "not configured (STARTTLS is not offered)",
            &[],
        ),
        Some((cert, key)) => {
            let (c, k) = (cert.clone(), key.clone());
            match bounded_blocking(move || check_tls(&c, &k)).await {
                Ok((summary, details)) => t.check("tls", Verdict::Pass, &summary, &details),
                Err(e) => t.check("tls", Verdict::Fail, &e, &[]),
            }
        }
    }

    // 4. relay
    match relay_cfg {
        None if config.dev_mode => t.check(
            "relay",
            Verdict::Skip,
            "POSTERN_RELAY_URL not set; development mode relays API mail to Postern's own SMTP listener",
            &[],
        ),
        None => t.check(
            "relay",
            Verdict::Skip,
            "POSTERN_RELAY_URL not set (the sending API answers 503 relay_not_configured)",
            &[],
        ),
        Some(cfg) => match check_relay(&cfg, &config.hostname).await {
            Ok(info) => t.check(
                "relay",
                Verdict::Pass,
                "EHLO/STARTTLS/AUTH as configured; no mail sent",
                &[info],
            ),
            Err(e) => t.check("relay", Verdict::Fail, &e, &[]),
        },
    }

    // 5. endpoints
    let (endpoints, notes) = endpoints(&config);
    for note in notes {
        t.check("webhook", Verdict::Skip, &note, &[]);
    }
    if endpoints.is_empty() && config.routes.is_empty() && config.dev_mode {
        t.check(
            "webhook",
            Verdict::Skip,
            "development mode: deliveries go to the built-in /dev/inbox",
            &[],
        );
    }
    // The client deliveries use, with the check's time bound.
    let client = webhook::client(CHECK_TIMEOUT, CHECK_TIMEOUT);
    // All POSTs at once, reported in order: the whole step takes at most
    // CHECK_TIMEOUT however many endpoints there are.
    let tasks: Vec<_> = endpoints
        .into_iter()
        .map(|e| {
            let client = client.clone();
            let handle = tokio::spawn({
                let url = e.url.clone();
                let secrets = e.secrets.clone();
                async move { post_test_event(&client, &url, &secrets).await }
            });
            (e, handle)
        })
        .collect();
    for (e, handle) in tasks {
        let name = format!("{} {}", e.label, redact_url(&e.url));
        let mut details = vec![format!(
            "{}: {}; {} signing secret{}",
            if e.label == "events" {
                "events"
            } else {
                "routes"
            },
            e.patterns.join(", "),
            e.secrets.len(),
            if e.secrets.len() == 1 { "" } else { "s" }
        )];
        let result = match handle.await {
            Ok(r) => r,
            Err(err) => Err(format!("check task failed: {err}")),
        };
        match result {
            Ok(summary) => t.check(&name, Verdict::Pass, &summary, &details),
            Err(reason) => {
                if e.secrets.is_empty() {
                    details.push("Postern never sends unsigned mail: set a secret".into());
                }
                t.check(&name, Verdict::Fail, &reason, &details)
            }
        }
    }
    t.finish()
}

/// Runs blocking file work off the runtime, bounded by [`CHECK_TIMEOUT`].
async fn bounded_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => Err(format!("check failed: {e}")),
        Err(_) => Err(format!("no result within {} s", CHECK_TIMEOUT.as_secs())),
    }
}

/// The config summary, without secrets.
fn summarize(c: &Config, relay: Option<&RelayConfig>) -> Vec<String> {
    let mut s = Vec::new();
    let row = |k: &str, v: String| format!("{k:<14} {v}");
    s.push(row(
        "mode",
        if c.dev_mode {
            "DEVELOPMENT (accepts mail for anyone; never expose it)".into()
        } else {
            "production".into()
        },
    ));
    s.push(row("smtp listen", c.smtp_listen.to_string()));
    s.push(row(
        "smtps listen",
        c.smtps_listen.map_or("off".into(), |a| a.to_string()),
    ));
    s.push(row("http listen", c.http_listen.to_string()));
    s.push(row("hostname", c.hostname.clone()));
    s.push(row(
        "spool dir",
        format!(
            "{}{}",
            c.spool_dir.display(),
            if c.fsync {
                ""
            } else {
                " (fsync OFF: not durable)"
            }
        ),
    ));
    s.push(row("routes", c.routes.len().to_string()));
    for r in &c.routes {
        let sync = r
            .sync_timeout
            .map(|t| format!(" (sync, {})", humantime::format_duration(t)))
            .unwrap_or_default();
        s.push(format!(
            "{:<14}   - {}{sync}{}{}",
            "",
            r.pattern,
            if r.auth_required {
                " (auth required)"
            } else {
                ""
            },
            if r.secrets.is_empty() {
                ""
            } else {
                " (own secret)"
            },
        ));
    }
    s.push(row(
        "webhook secret",
        format!("{} configured", c.default_secrets.len()),
    ));
    let tls = match &c.security.tls_files {
        Some((cert, key)) => format!("on (cert {}, key {})", cert.display(), key.display()),
        None if c.dev_mode => "self-signed (development mode)".into(),
        None => "off".into(),
    };
    s.push(row("tls", tls));
    if c.security.require_tls {
        s.push(row("require tls", "yes".into()));
    }
    let sec = &c.security;
    let auth = match sec.auth {
        AuthMode::Off => "off".to_string(),
        AuthMode::Optional => "optional".to_string(),
        AuthMode::Required => "required".to_string(),
    };
    let auth = if sec.auth != AuthMode::Off && sec.allow_insecure_auth {
        format!("{auth} (also offered without TLS)")
    } else {
        auth
    };
    s.push(row("auth", auth));
    let relay = match (relay, &c.outbound.relay_url) {
        (Some(r), _) => format!(
            "{} ({}{})",
            authority(r.host(), r.port()),
            r.tls(),
            r.user()
                .map(|u| format!(", user {u:?}"))
                .unwrap_or_default()
        ),
        (None, Some(_)) => "invalid POSTERN_RELAY_URL".into(),
        (None, None) if c.dev_mode => "own SMTP listener (development mode)".into(),
        (None, None) => "not set".into(),
    };
    s.push(row("relay", relay));
    s.push(row(
        "events url",
        c.outbound
            .events_url
            .as_deref()
            .map_or("not set".into(), redact_url),
    ));
    s.push(row(
        "api keys",
        format!("{} configured", c.outbound.api_key_hashes.len()),
    ));
    let a = &c.attachment_urls;
    let links = match &a.public_url {
        Some(u) => format!("links to {}", redact_url(u)),
        None if c.dev_mode => "links to the HTTP listener (development mode)".into(),
        None => "no links (no POSTERN_PUBLIC_URL)".into(),
    };
    let key = if a.secret.is_some() {
        "POSTERN_ATTACHMENT_URL_SECRET"
    } else {
        "generated in the spool dir"
    };
    s.push(row(
        "attachments",
        format!(
            "{links}, valid {}, key {key}",
            humantime::format_duration(a.ttl)
        ),
    ));
    s
}

/// A URL fit for printing: user info and query values replaced by `***`,
/// no fragment.
pub fn redact_url(input: &str) -> String {
    let Ok(mut url) = url::Url::parse(input) else {
        return "<unparseable URL>".into();
    };
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_password(None);
        let _ = url.set_username("***");
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        let q = keys
            .iter()
            .map(|k| format!("{k}=***"))
            .collect::<Vec<_>>()
            .join("&");
        url.set_query(Some(&q));
    }
    url.set_fragment(None);
    url.to_string()
}

/// Probes `dir` and the layout directories that exist under it. A spool
/// directory that does not exist yet passes when its nearest existing
/// ancestor is writable (Postern creates it at start).
fn check_spool(dir: &Path) -> Result<String, String> {
    if !dir.exists() {
        let mut ancestor = dir.parent();
        while let Some(a) = ancestor {
            let a = if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            };
            if a.is_dir() {
                probe(a).map_err(|e| {
                    format!(
                        "does not exist, and {} (where it would be created) is not writable: {e}",
                        a.display()
                    )
                })?;
                return Ok(format!(
                    "{} does not exist yet; Postern creates it at start ({} is writable)",
                    dir.display(),
                    a.display()
                ));
            }
            ancestor = a.parent();
        }
        return Err("does not exist and has no existing parent".into());
    }
    if !dir.is_dir() {
        return Err("not a directory".into());
    }
    probe(dir).map_err(|e| format!("not writable: {e}"))?;
    let mut probed = vec![dir.display().to_string()];
    for sub in ["tmp", "msg", "state", "segments"] {
        let p = dir.join(sub);
        if !p.exists() {
            continue;
        }
        if !p.is_dir() {
            return Err(format!("{} is not a directory", p.display()));
        }
        probe(&p).map_err(|e| format!("{} is not writable: {e}", p.display()))?;
        probed.push(format!("{sub}/"));
    }
    let messages = crate::spool::pending_on_disk(dir).map_or(0, |ids| ids.len());
    Ok(format!(
        "writable ({}); {messages} message{} spooled",
        probed.join(", "),
        if messages == 1 { "" } else { "s" }
    ))
}

/// Creates, writes, syncs and removes a probe file in `dir`.
fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!("doctor-probe-{}", crate::spool::new_id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        f.write_all(b"postern doctor probe")?;
        f.sync_all()
    })();
    let removed = std::fs::remove_file(&path);
    result?;
    removed
}

/// Loads the pair as the server would, then describes the certificate.
/// Reachable, how fast, with TLS or not, and the schema's version.
async fn check_database(
    db: &crate::config::DatabaseSettings,
) -> Result<(String, Vec<String>), String> {
    use crate::spool::pg::{connect, migrate};
    let pool = connect::pool(db).map_err(|e| e.to_string())?;
    let health = connect::check(&pool, CHECK_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let status = tokio::time::timeout(CHECK_TIMEOUT, migrate::status(&pool, migrate::MIGRATIONS))
        .await
        .map_err(|_| format!("no answer within {} s", CHECK_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let schema = schema_verdict(status.applied, status.known)?;
    let summary = format!(
        "reachable in {:.1} ms, {}",
        health.latency.as_secs_f64() * 1000.0,
        if health.tls { "TLS" } else { "no TLS" }
    );
    Ok((summary, vec![schema]))
}

/// Pure: what the schema's version means for `serve`.
fn schema_verdict(applied: Option<i64>, known: Option<i64>) -> Result<String, String> {
    let show = |v: Option<i64>| v.map_or("none".to_string(), |v| v.to_string());
    match (applied, known) {
        (a, k) if a == k => Ok(format!("schema current (version {})", show(a))),
        (a, k) if a < k => Ok(format!(
            "schema at version {}, this binary knows {}: applied at start",
            show(a),
            show(k)
        )),
        (a, k) => Err(format!(
            "the database is at schema version {}, newer than this binary knows ({}); run a newer Postern",
            show(a),
            show(k)
        )),
    }
}

fn check_tls(cert: &Path, key: &Path) -> Result<(String, Vec<String>), String> {
    let certified = crate::tls::load_certified_key(cert, key).map_err(|e| e.to_string())?;
    let mut details = vec![format!(
        "{} certificate{} in the chain; key matches",
        certified.cert.len(),
        if certified.cert.len() == 1 { "" } else { "s" }
    )];
    let Some(info) = certified.cert.first().and_then(|c| cert_info(c.as_ref())) else {
        details.push("(could not read the subject and expiry)".into());
        return Ok(("certificate and key load".into(), details));
    };
    details.insert(0, format!("subject {}", info.subject));
    let now = time::OffsetDateTime::now_utc();
    let days = (info.not_after - now).whole_days();
    let expiry = info.not_after.date().to_string();
    if info.not_after <= now {
        return Err(format!("certificate {} expired on {expiry}", info.subject));
    }
    let summary = if days < 14 {
        format!("loads; expires {expiry} (in {days} days: renew it soon)")
    } else {
        format!("loads; expires {expiry} (in {days} days)")
    };
    if info.not_before > now {
        details.push(format!(
            "not valid before {} (clients will refuse it until then)",
            info.not_before
        ));
    }
    Ok((summary, details))
}

async fn check_relay(cfg: &RelayConfig, hostname: &str) -> Result<String, String> {
    let relay = Relay::new(cfg, hostname).map_err(|e| e.to_string())?;
    match tokio::time::timeout(CHECK_TIMEOUT, relay.check()).await {
        Ok(r) => r.map_err(|e| {
            let e = e.to_string();
            let hint = certificate_hint(&e).map_or(String::new(), |h| format!(" — {h}"));
            format!(
                "{} ({}): {e}{hint}",
                authority(cfg.host(), cfg.port()),
                cfg.tls()
            )
        }),
        Err(_) => Err(format!(
            "{}: no answer within {} s",
            authority(cfg.host(), cfg.port()),
            CHECK_TIMEOUT.as_secs()
        )),
    }
}

/// What to do about a certificate the relay's TLS handshake refused, from
/// the words rustls (webpki) uses for it.
fn certificate_hint(error: &str) -> Option<&'static str> {
    if error.contains("CaUsedAsEndEntity") {
        Some(
            "the relay presents a CA certificate (basicConstraints CA:TRUE) as its own, which rustls refuses: \
             give the relay a certificate issued by that CA (or a self-signed one with CA:FALSE) and name \
             the CA in ?ca=",
        )
    } else if error.contains("UnknownIssuer") {
        Some(
            "the relay's certificate is not signed by a trusted CA: name its CA with ?ca=/path/ca.pem",
        )
    } else if error.contains("NotValidForName") {
        Some("the relay's certificate does not name the host in POSTERN_RELAY_URL")
    } else if error.contains("Expired") {
        Some("the relay's certificate has expired")
    } else {
        None
    }
}

/// One distinct endpoint to POST to.
struct Endpoint {
    /// `webhook` or `events`.
    label: &'static str,
    url: String,
    /// Every secret any route to this URL signs with (deduplicated).
    secrets: Vec<Secret>,
    /// The routes (their `match`) that send here.
    patterns: Vec<String>,
}

/// The endpoints to check, deduplicated by URL, and notes on routes that
/// cannot be checked.
fn endpoints(config: &Config) -> (Vec<Endpoint>, Vec<String>) {
    let mut notes = Vec::new();
    let mut out: Vec<Endpoint> = Vec::new();
    let mut add = |label: &'static str, url: &str, secrets: &[Secret], pattern: &str| {
        if let Some(e) = out.iter_mut().find(|e| e.url == url) {
            for s in secrets {
                if !e.secrets.contains(s) {
                    e.secrets.push(s.clone());
                }
            }
            e.patterns.push(pattern.to_string());
        } else {
            out.push(Endpoint {
                label,
                url: url.to_string(),
                secrets: secrets.to_vec(),
                patterns: vec![pattern.to_string()],
            });
        }
    };
    for route in &config.routes {
        let url = route.url_template();
        if url.contains('{') {
            notes.push(format!(
                "route {}: URL {} is filled in from the recipient; not checked",
                route.pattern,
                redact_url(url)
            ));
            continue;
        }
        // A route's own secrets replace the default, as at delivery.
        let secrets = route.secrets_or(&config.default_secrets);
        add("webhook", url, secrets, &route.pattern);
    }
    if let Some(url) = &config.outbound.events_url {
        add(
            "events",
            url,
            &config.outbound.events_secrets,
            "POSTERN_EVENTS_URL",
        );
    }
    (out, notes)
}

/// POSTs a signed `postern.test` event, exactly as deliveries are POSTed;
/// `Ok` for any 2xx.
async fn post_test_event(
    client: &reqwest::Client,
    url: &str,
    secrets: &[Secret],
) -> Result<String, String> {
    let id = crate::spool::new_id();
    let body = serde_json::to_vec(&serde_json::json!({
        "type": TEST_EVENT_TYPE,
        "id": id,
        "created_at": crate::model::clock::rfc3339_now(),
    }))
    .expect("JSON serialises");
    let webhook_id = format!("msg_test_{id}");
    let started = Instant::now();
    let response = match webhook::post_signed(client, url, &webhook_id, secrets, body).await {
        Ok(r) => Ok(r),
        Err(PostError::NoSecret) => return Err("no signing secret".into()),
        Err(PostError::Transport(e)) => Err(e),
    };
    let ms = started.elapsed().as_millis();
    match response {
        Ok(r) if r.status().is_success() => Ok(format!("HTTP {} in {ms} ms", r.status())),
        Ok(r) => {
            let status = r.status();
            let hint = if status.is_redirection() {
                " (redirects are not followed: configure the final URL)".to_string()
            } else {
                String::new()
            };
            let text: String = tokio::time::timeout(Duration::from_secs(2), r.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let text = text.trim();
            Err(if text.is_empty() {
                format!("HTTP {status} in {ms} ms{hint}")
            } else {
                format!("HTTP {status} in {ms} ms{hint}: {text}")
            })
        }
        Err(e) if e.is_timeout() => Err(format!("no answer within {} s", CHECK_TIMEOUT.as_secs())),
        Err(e) => {
            // The URL may carry a token in its query: the transcript names
            // the endpoint (redacted) already.
            let e = e.without_url();
            let mut msg = if e.is_connect() {
                "connection failed".to_string()
            } else {
                "request failed".to_string()
            };
            let mut src: Option<&dyn std::error::Error> = Some(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            Err(format!("{msg} (after {ms} ms)"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_behind_passes_and_a_newer_one_fails() {
        assert_eq!(
            schema_verdict(Some(1), Some(1)).unwrap(),
            "schema current (version 1)"
        );
        assert!(
            schema_verdict(None, Some(1))
                .unwrap()
                .contains("applied at start")
        );
        assert!(schema_verdict(Some(1), Some(2)).is_ok());
        assert!(
            schema_verdict(Some(3), Some(2))
                .unwrap_err()
                .contains("newer")
        );
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://user:pw@app.example/hook?token=abc&x=1#f"),
            "https://***@app.example/hook?token=***&x=***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9/hook"),
            "http://127.0.0.1:9/hook"
        );
    }

    #[test]
    fn summary_names_sync_routes_and_their_timeout() {
        let c = Config::from_vars([
            (
                "POSTERN_ROUTES",
                r#"[{"match": "a@x.test", "url": "http://127.0.0.1:9/a", "mode": "sync", "sync_timeout": "1500ms"},
                    {"match": "*", "url": "http://127.0.0.1:9/b"}]"#,
            ),
            (
                "POSTERN_WEBHOOK_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ])
        .unwrap();
        let s = summarize(&c, None);
        assert!(
            s.iter().any(|l| l.ends_with("- a@x.test (sync, 1s 500ms)")),
            "{s:?}"
        );
        assert!(s.iter().any(|l| l.ends_with("- *")), "{s:?}");
    }

    #[tokio::test]
    async fn config_error_fails_and_names_the_variable() {
        let mut out = Vec::new();
        let ok = run(
            vec![(
                "POSTERN_WEBHOOK_URL".to_string(),
                "http://127.0.0.1:9/".to_string(),
            )],
            &mut out,
        )
        .await;
        let text = String::from_utf8(out).unwrap();
        assert!(!ok);
        assert!(
            text.contains("[FAIL] config: POSTERN_WEBHOOK_SECRET"),
            "{text}"
        );
    }

    #[test]
    fn the_summary_says_where_attachment_links_point() {
        let summary = |vars: &[(&str, &str)]| {
            let c = Config::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .unwrap();
            summarize(&c, None)
                .into_iter()
                .find(|l| l.starts_with("attachments "))
                .unwrap()
        };
        assert_eq!(
            summary(&[]),
            "attachments    links to the HTTP listener (development mode), valid 7days, key generated in the spool dir"
        );
        assert_eq!(
            summary(&[
                ("POSTERN_PUBLIC_URL", "https://mail.example"),
                ("POSTERN_ATTACHMENT_URL_TTL", "1h"),
                ("POSTERN_ATTACHMENT_URL_SECRET", "a secret of enough bytes"),
            ]),
            "attachments    links to https://mail.example/, valid 1h, key POSTERN_ATTACHMENT_URL_SECRET"
        );
    }
}
