//! RCPT TO (RFC 5321 4.1.1.3): each recipient is routed now, so one
//! without a route is refused here and never bounced later (no
//! backscatter). `<Postmaster>` is always a mailbox (RFC 5321 4.5.1).

use std::borrow::Cow;

use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::info;

use super::address;
use super::reply;
use super::session::{Next, Session};
use crate::route::{self, Target};

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// `line` is the command as received: smtp-proto's parse of it cannot
    /// tell `<>` from `<Postmaster>`.
    pub(super) fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Next {
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
        self.tx.rcpts.push((addr, targets));
        self.reply(reply::RCPT_OK);
        Next::Continue
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
        if !addr.is_empty() {
            let t = route::resolve(routes, &addr, authenticated);
            return (addr, t);
        }
        let t = route::resolve(routes, "postmaster", authenticated);
        if t.as_ref().is_ok_and(|t| !t.is_empty()) {
            return ("postmaster".into(), t);
        }
        let full = format!("postmaster@{}", self.inbound.settings.hostname);
        let t = route::resolve(routes, &full, authenticated);
        (full, t)
    }
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
