//! AUTH (RFC 4954): the PLAIN and LOGIN exchanges over the session, the
//! per-IP failure throttle around them ([`super::throttle`]), and the
//! password check against the credential store, off the async workers.
//! Decoding the client's base64 is [`super::sasl`]'s.

use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use super::AuthMode;
use super::reply;
use super::sasl;
use super::session::{End, Next, Session};
use super::throttle::Verdict;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// AUTH PLAIN / LOGIN (RFC 4954), with the per-IP failure throttle.
    pub(super) async fn auth(&mut self, mechanism: u64, initial: String) -> Result<Next, End> {
        let sec = &self.inbound.settings.security;
        if sec.auth == AuthMode::Off {
            return Ok(self.error(reply::AUTH_DISABLED));
        }
        if self.tls.is_none() && !sec.allow_insecure_auth {
            return Ok(self.error(reply::AUTH_NEEDS_TLS));
        }
        if self.helo.is_none() {
            return Ok(self.error(reply::NEED_HELO));
        }
        if self.auth_user.is_some() {
            return Ok(self.error(reply::AUTH_ALREADY));
        }
        if self.tx.mail_from.is_some() {
            return Ok(self.error(reply::AUTH_IN_TRANSACTION));
        }
        let ip = self.peer.ip;
        if self.inbound.auth_throttle.check(ip, Instant::now()) == Verdict::Block {
            self.reply(reply::AUTH_BLOCKED);
            return Err(End::TooManyAuthFailures);
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = match initial.as_str() {
                "" => match self.challenge(reply::PLAIN_CHALLENGE).await? {
                    Some(r) => r,
                    None => return Ok(Next::Continue),
                },
                _ => initial,
            };
            sasl::decode_plain(&response)
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = match initial.as_str() {
                "" => match self
                    .challenge(&reply::challenge(sasl::LOGIN_USERNAME_PROMPT))
                    .await?
                {
                    Some(r) => r,
                    None => return Ok(Next::Continue),
                },
                _ => initial,
            };
            let password = match self
                .challenge(&reply::challenge(sasl::LOGIN_PASSWORD_PROMPT))
                .await?
            {
                Some(r) => r,
                None => return Ok(Next::Continue),
            };
            sasl::decode_line(&user).and_then(|u| Ok((u, sasl::decode_line(&password)?)))
        } else {
            return Ok(self.error(reply::AUTH_MECHANISM));
        };
        let (user, password) = match credentials {
            Ok(c) => c,
            Err(e) => {
                debug!(error = %e, "undecodable AUTH response");
                return Ok(self.error(reply::AUTH_DECODE));
            }
        };
        // The attempt counts as a failure from here until the check says
        // otherwise, so parallel sessions cannot all slip past the limit.
        let attempt = match self.inbound.auth_throttle.begin(ip, Instant::now()) {
            Ok(a) => a,
            Err(_) => {
                self.reply(reply::AUTH_BLOCKED);
                return Err(End::TooManyAuthFailures);
            }
        };
        let settings = self.inbound.settings.clone();
        let user_for_check = user.clone();
        // argon2 is deliberately slow: keep it off the async workers.
        let ok = tokio::task::spawn_blocking(move || {
            settings.security.users.verify(&user_for_check, &password)
        })
        .await
        .unwrap_or(false);
        if ok {
            info!(%user, "authenticated");
            self.inbound.auth_throttle.succeeded(attempt);
            self.auth_user = Some(user);
            self.reply(reply::AUTH_OK);
            return Ok(Next::Continue);
        }
        warn!(%user, "authentication failed");
        self.inbound.metrics.auth_failures.inc();
        match self.inbound.auth_throttle.failed(attempt, Instant::now()) {
            Verdict::Allow => {}
            Verdict::Delay(d) => tokio::time::sleep(d).await,
            Verdict::Block => {
                self.reply(reply::AUTH_FAILED);
                self.reply(reply::AUTH_BLOCKED);
                return Err(End::TooManyAuthFailures);
            }
        }
        self.reply(reply::AUTH_FAILED);
        Ok(Next::Continue)
    }

    /// Sends a `334` challenge and reads the answer; `None` when the client
    /// cancelled (`*`) or sent an over-long line (already answered).
    async fn challenge(&mut self, prompt: &str) -> Result<Option<String>, End> {
        self.reply(prompt);
        match self.read_line().await? {
            Some(line) if sasl::is_cancel(&line) => {
                self.reply(reply::AUTH_CANCELLED);
                Ok(None)
            }
            Some(line) => Ok(Some(line)),
            None => match self.error(reply::LINE_TOO_LONG) {
                Next::Close(end) => Err(end),
                _ => Ok(None),
            },
        }
    }
}
