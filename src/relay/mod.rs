//! Outbound SMTP: hands messages that Postern accepted over HTTP to an SMTP
//! relay (smarthost), configured by `POSTERN_RELAY_URL`.
//!
//! The SMTP client is lettre's [`AsyncSmtpConnection`] on Tokio with rustls
//! (ring), on TCP connections Postern opens itself. This module adds what
//! Postern needs on top of it:
//!
//! * [`RelayConfig`]: parsing and validation of `POSTERN_RELAY_URL`, with the
//!   password kept out of every `Debug` output and error message.
//! * [`Relay::send`]: one [`RcptOutcome`] per recipient. lettre aborts the
//!   whole transaction on the first refused `RCPT`, so when the relay refuses
//!   something in a multi-recipient transaction each recipient is retried in
//!   a transaction of its own to learn which ones the relay really refuses.
//! * A pool of idle connections, reused without a probe (see
//!   [`Relay::with_pool_size`]), and `TCP_NODELAY` on every connection.
//! * A whole-transaction deadline, because lettre bounds no network wait.
//! * [`Relay::check`] for `postern doctor`: EHLO, STARTTLS and AUTH without
//!   sending mail.
//!
//! Delivery policy (`policy::classify`):
//!
//! | relay says / what happened                           | outcome    |
//! |------------------------------------------------------|------------|
//! | 2xx after `DATA`                                     | `Sent`     |
//! | 4xx, connection refused/reset, TLS failure, timeout  | `Deferred` |
//! | 530/534/535/538 (authentication problems)            | `Deferred` |
//! | no STARTTLS although required, no usable AUTH        | `Deferred` |
//! | other 5xx; 8-bit body and relay lacks 8BITMIME       | `Failed`   |
//! | non-ASCII address and relay lacks SMTPUTF8           | `Failed`   |
//!
//! A refusal that may concern single recipients (4xx except 421/454, 5xx
//! except authentication) in a multi-recipient transaction is followed by
//! one transaction per recipient; see [`Relay::send`].
//!
//! Authentication and TLS problems are `Deferred` rather than `Failed`: they
//! are fixed by an operator (credentials, certificates), not by the sender,
//! and the mail must survive until then.
//!
//! Message bytes: bare LF and bare CR are turned into CRLF before sending.
//! SMTP forbids them, and relays that accept them are the ones open to SMTP
//! smuggling (`<LF>.<CR><LF>`). A CRLF-terminated message arrives byte for
//! byte; one without a final CRLF gets one, since SMTP data is made of lines.
//! A message with 8-bit bytes needs a relay announcing 8BITMIME.
//!
//! Addresses are passed through as given (UTF-8 included). lettre only sends
//! non-ASCII addresses to a relay announcing SMTPUTF8; otherwise the affected
//! recipient is `Failed` with a reason saying so, since retrying cannot help.
//!
//! [`Relay::send`] and [`Relay::check`] must run inside a Tokio runtime (the
//! pool spawns its idle-connection reaper there).
//!
//! # Layout
//!
//! - `url`: `POSTERN_RELAY_URL` → [`RelayConfig`] (pure).
//! - `policy`: what an attempt's result means per recipient, what the relay
//!   cannot take at all, the transaction deadline (pure, table-tested).
//! - `failure`: lettre's errors reduced to what the policy needs.
//! - `envelope`, `body`: sender, recipients and message bytes as lettre
//!   takes them.
//! - `pool`: idle connections and the one retry on a dropped idle one.
//! - `conn`, `socket`, `tls`: opening one connection (`TCP_NODELAY`,
//!   STARTTLS or implicit TLS, AUTH).
//! - this file: [`Relay`], the API the delivery worker and `postern doctor`
//!   use.
//! - `fake` (unit tests only): a fake relay that hangs up where told to.
//!
//! [`AsyncSmtpConnection`]: lettre::transport::smtp::client::AsyncSmtpConnection

mod body;
mod conn;
mod envelope;
mod failure;
#[cfg(test)]
mod fake;
mod policy;
mod pool;
mod socket;
mod tls;
mod url;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lettre::Address;
use lettre::address::Envelope;
use lettre::transport::smtp::response::Response;

use self::body::smtp_body;
use self::conn::Connector;
use self::envelope::{parse_recipient, parse_sender};
use self::failure::Failure;
pub use self::policy::{Contact, RcptOutcome};
use self::policy::{classify, contact, transaction_deadline};
use self::pool::Pool;
pub use self::url::{RelayConfig, RelayConfigError, TlsMode};
use crate::model::authority::authority;

/// Async SMTP client on lettre's [`AsyncSmtpConnection`], with connections
/// Postern opens itself (`TCP_NODELAY`) and a pool of idle ones (see
/// [`Relay::with_pool_size`]); AUTH PLAIN/LOGIN when credentials are given;
/// 30 s connect timeout by default and a whole-transaction deadline that
/// grows with the message size.
///
/// [`AsyncSmtpConnection`]: lettre::transport::smtp::client::AsyncSmtpConnection
pub struct Relay {
    pool: Arc<Pool>,
}

impl fmt::Debug for Relay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.pool.connector;
        f.debug_struct("Relay")
            .field("host", &s.host)
            .field("port", &s.port)
            .field("tls", &s.tls_mode)
            .field("user", &s.user)
            .field("hello", &s.hello)
            .field("pool_size", &self.pool.size.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Builds the client with an empty pool (see [`Relay::with_pool_size`]).
    /// Reads the `?ca=` file. Connects to nothing yet.
    ///
    /// `helo_name` is used for EHLO unless the URL has `?helo=`.
    pub fn new(cfg: &RelayConfig, helo_name: &str) -> Result<Relay, RelayConfigError> {
        Ok(Relay {
            pool: Arc::new(Pool::new(Connector::new(cfg, helo_name)?)),
        })
    }

    /// Keeps up to `n` idle connections for reuse (0: none). Connections in
    /// use are not limited: every concurrent [`Relay::send`] has its own, so
    /// `n` is best the number of concurrent senders. An idle connection is
    /// reused for up to 60 s, then closed with `QUIT`.
    #[must_use]
    pub fn with_pool_size(self, n: usize) -> Relay {
        self.pool.size.store(n, Ordering::Relaxed);
        self
    }

    /// Submits `message` (raw RFC 5322 bytes) for `mail_from` (`""` for the
    /// null sender) to `rcpt_to`, returning one outcome per recipient in the
    /// same order. Never panics on relay behaviour; see the
    /// [module docs](self) for the policy. Syntactically invalid addresses are `Failed` without asking
    /// the relay.
    ///
    /// When a multi-recipient transaction is refused in a way that may be
    /// per-recipient (4xx other than 421/454, 5xx other than authentication),
    /// each recipient is retried alone, one after another, and reported on
    /// its own. Nothing was delivered by the refused transaction, so this
    /// cannot duplicate mail.
    ///
    /// A timed-out attempt reports `Deferred`; as always with SMTP, a relay
    /// that stalled after receiving the data may still deliver it.
    pub async fn send(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> Vec<RcptOutcome> {
        self.send_reporting(mail_from, rcpt_to, message).await.0
    }

    /// [`Relay::send`], also telling whether the relay answered at all (the
    /// delivery worker's circuit breaker counts the attempts that did not).
    pub async fn send_reporting(
        &self,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> (Vec<RcptOutcome>, Contact) {
        let sender = match parse_sender(mail_from) {
            Ok(sender) => sender,
            Err(reply) => {
                return (
                    vec![RcptOutcome::Failed { reply }; rcpt_to.len()],
                    Contact::None,
                );
            }
        };
        let mut outcomes = Vec::with_capacity(rcpt_to.len());
        let mut valid = Vec::with_capacity(rcpt_to.len());
        for (index, rcpt) in rcpt_to.iter().enumerate() {
            match parse_recipient(rcpt) {
                Ok(address) => {
                    valid.push((index, address));
                    // Placeholder, overwritten below for every valid index.
                    outcomes.push(RcptOutcome::Deferred {
                        reply: String::new(),
                    });
                }
                Err(reply) => outcomes.push(RcptOutcome::Failed { reply }),
            }
        }
        if valid.is_empty() {
            return (outcomes, Contact::None);
        }

        let body: Arc<[u8]> = smtp_body(message).into();
        let everyone = valid.iter().map(|(_, a)| a.clone()).collect();
        let first = self
            .attempt(sender.clone(), everyone, Arc::clone(&body))
            .await;
        let contact = contact(&first);
        let verdict = classify(&first);
        if verdict.split && valid.len() > 1 {
            tracing::debug!(
                reply = ?verdict.outcome,
                recipients = valid.len(),
                "relay refused the transaction; retrying each recipient alone"
            );
            for (index, address) in valid {
                let alone = self
                    .attempt(sender.clone(), vec![address], Arc::clone(&body))
                    .await;
                outcomes[index] = classify(&alone).outcome;
            }
        } else {
            for (index, _) in valid {
                outcomes[index] = verdict.outcome.clone();
            }
        }
        (outcomes, contact)
    }

    /// Scheme (`smtp` or `smtps`), host and port: the relay's endpoint name
    /// for the delivery worker's per-endpoint limit.
    pub fn origin(&self) -> (&'static str, &str, u16) {
        let c = &self.pool.connector;
        (c.tls_mode.scheme(), &c.host, c.port)
    }

    /// One SMTP transaction, under the deadline (see [`Pool::transact`]).
    ///
    /// Runs as its own task so that a caller who stops waiting (a dropped
    /// HTTP request) does not cut a transaction short at an arbitrary point.
    /// At the deadline the transaction is dropped, and with it its
    /// connection, which is mid-command and must not be reused.
    async fn attempt(
        &self,
        from: Option<Address>,
        to: Vec<Address>,
        body: Arc<[u8]>,
    ) -> Result<Response, Failure> {
        let envelope = Envelope::new(from, to).map_err(|e| Failure::Other(e.to_string()))?;
        let pool = Arc::clone(&self.pool);
        let deadline = transaction_deadline(pool.connector.timeout, body.len());
        let task = tokio::spawn(async move {
            within(
                deadline,
                "transaction not finished",
                pool.transact(&envelope, &body),
            )
            .await
        });
        task.await
            .unwrap_or_else(|e| Err(Failure::Other(format!("relay task failed: {e}"))))
    }

    /// EHLO (+STARTTLS, +AUTH) on a fresh connection outside the pool,
    /// without sending mail, for `postern doctor`. `Ok` holds a one-line
    /// summary (address, TLS, authenticated user, EHLO name and extensions);
    /// `Err` holds the reason, worded as in [`RcptOutcome::Deferred`].
    pub async fn check(&self) -> Result<String, String> {
        let s = &self.pool.connector;
        let probe = async {
            let mut conn = s.open().await?;
            let info = conn.info.to_string();
            // The check already succeeded; a relay hanging up early on QUIT
            // changes nothing.
            let _ = conn.smtp.quit().await;
            Ok::<_, Failure>(info)
        };
        let auth = match &s.user {
            Some(user) => format!(", authenticated as {user:?}"),
            None => String::new(),
        };
        // A transaction without a message: the same deadline as any.
        let deadline = transaction_deadline(s.timeout, 0);
        match within(deadline, "no answer", probe).await {
            Ok(info) => Ok(format!(
                "{} ({}{auth}): {info}",
                authority(&s.host, s.port),
                s.tls_mode
            )),
            Err(failure) => Err(failure.to_string()),
        }
    }
}

/// `work`, or a [`Failure::Timeout`] saying `what` did not happen by the
/// `deadline`: lettre bounds no network wait of its own.
async fn within<T>(
    deadline: Duration,
    what: &str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(Failure::Timeout(format!(
                "{what} within {} s",
                deadline.as_secs()
            )))
        })
}
