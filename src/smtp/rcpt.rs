//! RCPT TO (RFC 5321 4.1.1.3): each recipient is routed now, so one
//! without a route is refused here and never bounced later (no
//! backscatter). `<Postmaster>` is always a mailbox (RFC 5321 4.5.1).
//! A routed recipient is then put to the `authorize_url` of its routes
//! ([`super::authorize`]), in order: replies stay in command order under
//! PIPELINING because each RCPT is answered before the next is read.

use std::borrow::Cow;
use std::time::Instant;

use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::address;
use super::authorize::{Request, Verdict};
use super::reply;
use super::session::{Next, Session};
use crate::model::subaddress;
use crate::route::{self, Target};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `line` is the command as received: smtp-proto's parse of it cannot
    /// tell `<>` from `<Postmaster>`.
    pub(super) async fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Next {
        if self.tx.mail_from.is_none() {
            return self.error(reply::NEED_MAIL);
        }
        if self.tx.rcpts.len() >= self.inbound.settings.limits.max_recipients {
            self.reply(reply::TOO_MANY_RCPTS);
            return Next::Continue;
        }
        let Ok(addr) = address::canonical(&to.address) else {
            return self.error(reply::BAD_RCPT);
        };
        let addr = addr.into_owned();
        // smtp-proto gives `<>` and `<Postmaster>` alike as an empty
        // address; only the latter is a mailbox.
        if addr.is_empty() && !contains_ignore_case(line, b"<postmaster>") {
            return self.error(reply::BAD_RCPT);
        }
        let (addr, targets) = self.route(addr, self.auth_user.is_some());
        let targets = match targets {
            Ok(t) => t,
            Err(e) => {
                info!(rcpt = %addr, reason = %e, "recipient refused: unsafe in its route's URL");
                self.reply(reply::RCPT_UNSAFE_FOR_ROUTE);
                return Next::Continue;
            }
        };
        if targets.is_empty()
            && self.auth_user.is_none()
            && self
                .route(addr.clone(), true)
                .1
                .is_ok_and(|t| !t.is_empty())
        {
            info!(rcpt = %addr, "recipient refused: its route needs AUTH");
            self.reply(reply::AUTH_REQUIRED);
            return Next::Continue;
        }
        if targets.is_empty() {
            info!(rcpt = %addr, "recipient refused: no route");
            self.reply(reply::NO_ROUTE);
            return Next::Continue;
        }
        if let Some(refusal) = self.authorize(&addr, &targets).await {
            self.reply(&refusal);
            return Next::Continue;
        }
        self.tx.rcpts.push((addr, targets));
        self.reply(reply::RCPT_OK);
        Next::Continue
    }

    /// Asks each distinct `authorize_url` among the routes of `addr`, in
    /// route order; the first that does not accept decides the reply
    /// (a recipient is accepted only if every app asked accepts it).
    /// `None`: accepted.
    async fn authorize(&mut self, addr: &str, targets: &[Target]) -> Option<String> {
        let settings = self.inbound.settings.clone();
        let mut asked: Vec<&str> = Vec::new();
        for t in targets {
            let r = &settings.routes[t.route];
            let Some(a) = &r.authorize else {
                continue;
            };
            if asked.contains(&a.url.as_str()) {
                continue;
            }
            asked.push(&a.url);
            if self.authorize_down.contains(&a.url) {
                info!(rcpt = %addr, "recipient deferred: authorize_url failed earlier in this session");
                return Some(reply::AUTHORIZE_UNAVAILABLE.into());
            }
            let request = Request {
                kind: "recipient.authorize",
                mail_from: self.tx.mail_from.as_deref().unwrap_or_default(),
                rcpt_to: addr,
                rcpt_detail: subaddress::split(addr, &settings.recipient_delimiter),
                remote_ip: self.peer.ip.to_string(),
                helo: self.helo.as_deref().unwrap_or_default(),
                tls: self.tls.as_ref(),
                authenticated_user: self.auth_user.as_deref(),
                size: self.tx.size,
            };
            // Never past the session's own deadline.
            let timeout = a
                .timeout
                .min(self.deadline.saturating_duration_since(Instant::now()));
            let secrets = r.secrets_or(&settings.default_secrets);
            match self
                .inbound
                .authorizer
                .ask(&a.url, timeout, secrets, &request)
                .await
            {
                Verdict::Accept => {}
                Verdict::Refuse(text) => {
                    info!(rcpt = %addr, reason = text.as_deref().unwrap_or(""), "recipient refused by authorize_url");
                    return Some(reply::authorize_refused(text.as_deref()));
                }
                Verdict::Unavailable => {
                    info!(rcpt = %addr, "recipient deferred: authorize_url gave no decision");
                    return Some(reply::AUTHORIZE_UNAVAILABLE.into());
                }
                Verdict::NoAnswer => {
                    info!(rcpt = %addr, "recipient deferred: authorize_url did not answer");
                    self.authorize_down.push(a.url.clone());
                    return Some(reply::AUTHORIZE_UNAVAILABLE.into());
                }
            }
        }
        None
    }

    /// Routes a recipient. smtp-proto turns `<Postmaster>` (no domain,
    /// which RFC 5321 4.5.1 says we must accept) into an empty address:
    /// it is routed as `postmaster`, then as `postmaster@<our hostname>`.
    fn route(
        &self,
        addr: String,
        authenticated: bool,
    ) -> (String, Result<Vec<Target>, route::Unsafe>) {
        let routes = &self.inbound.settings.routes;
        let delimiter = &self.inbound.settings.recipient_delimiter;
        if !addr.is_empty() {
            let t = route::resolve(routes, &addr, authenticated, delimiter);
            return (addr, t);
        }
        let t = route::resolve(routes, "postmaster", authenticated, delimiter);
        if t.as_ref().is_ok_and(|t| !t.is_empty()) {
            return ("postmaster".into(), t);
        }
        let full = format!("postmaster@{}", self.inbound.settings.hostname);
        let t = route::resolve(routes, &full, authenticated, delimiter);
        (full, t)
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
