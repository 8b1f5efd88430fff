//! Sync routes (`"mode": "sync"`): the app decides the reply to DATA.
//!
//! Where it sits: DATA (`smtp/data.rs`) commits the message, then hands it
//! here before anything is scheduled. Each delivery of a sync route is
//! POSTed now, all at once, each within its route's `sync_timeout`: the
//! same v1 payload and Standard Webhooks signature as the worker's
//! (`delivery::webhook`), and the same reading of the answer as
//! `authorize_url` ([`super::authorize::verdict_of`]). [`decide`] turns the
//! answers into the reply.
//!
//! Sync deliveries are never written to the spool: a `2xx` is the
//! delivery, anything else is the sender's to retry (we answered `451` or
//! `550`, or nothing at all if we crashed while waiting). So we never
//! retry them; the sender does, as a new message with a new `webhook-id`.
//! A refused or deferred message is withdrawn from the spool before the
//! reply, so its async deliveries never start.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::authorize::{Verdict, verdict_of};
use super::reply;
use super::session::Session;
use crate::auth_checks::record::Record;
use crate::delivery::webhook::{self, PostError};
use crate::model::secret::Secret;
use crate::spool::{self, Committed, Delivery, Envelope, JobKey};

/// A delivery of a sync route, kept out of the spooled envelope.
#[derive(Debug)]
pub(super) struct SyncTarget {
    /// Index into the route table.
    pub route: usize,
    pub delivery: Delivery,
}

/// The reply to a message, from its sync routes' answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every sync app answered `2xx` (or there was none): `250`, the
    /// async deliveries are scheduled.
    Accept,
    /// Some app answered `4xx`: `550 5.7.1` with the first such app's
    /// text (route order); the message is withdrawn.
    Refuse(Option<String>),
    /// No refusal, but some app gave no decision (`5xx`, redirect,
    /// timeout, no connection): `451 4.3.0`; the message is withdrawn.
    TempFail,
}

/// The decision table: a refusal wins over a temporary failure, which
/// wins over acceptance. A refusal is final whatever the others said, so
/// it is what the sender should hear; a temporary failure must not
/// become a `250` for the endpoints that did not take the message.
pub fn decide(answers: &[Verdict]) -> Decision {
    let mut temporary = false;
    for a in answers {
        match a {
            Verdict::Refuse(text) => return Decision::Refuse(text.clone()),
            Verdict::Unavailable | Verdict::NoAnswer => temporary = true,
            Verdict::Accept => {}
        }
    }
    if temporary {
        Decision::TempFail
    } else {
        Decision::Accept
    }
}

/// The HTTP client of sync POSTs: the worker's client, bounded by the
/// longest `sync_timeout` (each call has its own, shorter bound).
pub(super) fn client() -> reqwest::Client {
    webhook::client(crate::route::MAX_APP_TIMEOUT, crate::route::MAX_APP_TIMEOUT)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// POSTs `committed` to its sync targets and decides the reply:
    /// `Ok` gives the message back to be scheduled (withdrawn already when
    /// nothing async is left), `Err` is the refusal to send, the message
    /// withdrawn. Without sync targets this returns at once.
    pub(super) async fn call_sync_routes(
        &mut self,
        committed: Committed,
        targets: Vec<SyncTarget>,
    ) -> Result<Committed, String> {
        if targets.is_empty() {
            return Ok(committed);
        }
        let answers = match self.sync_answers(&committed, &targets).await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "cannot read the message back for its sync routes");
                self.inbound.metrics.rejected("spool_error");
                withdraw(&committed).await;
                return Err(reply::for_spool_error(&e).to_string());
            }
        };
        let settings = self.inbound.settings.clone();
        for (t, a) in targets.iter().zip(&answers) {
            let outcome = match a {
                Verdict::Accept => "accepted",
                Verdict::Refuse(_) => "refused",
                Verdict::Unavailable | Verdict::NoAnswer => "tempfail",
            };
            self.inbound.metrics.sync_answer(outcome);
            info!(route = %settings.routes[t.route].pattern, outcome, "sync route answered");
        }
        let refusal = match decide(&answers) {
            Decision::Accept => {
                if committed.envelope().deliveries.is_empty() {
                    // Delivered to every target already: nothing to keep.
                    withdraw(&committed).await;
                }
                return Ok(committed);
            }
            Decision::Refuse(text) => {
                self.inbound.metrics.rejected("sync_refused");
                reply::sync_refused(text.as_deref())
            }
            Decision::TempFail => {
                self.inbound.metrics.rejected("sync_tempfail");
                reply::SYNC_UNAVAILABLE.to_string()
            }
        };
        withdraw(&committed).await;
        info!(reply = %refusal, "message refused by its sync routes");
        Err(refusal)
    }

    /// Every sync target's answer, in the order of `targets`. A shutdown
    /// while waiting counts as no answer from those still out.
    async fn sync_answers(
        &self,
        committed: &Committed,
        targets: &[SyncTarget],
    ) -> spool::Result<Vec<Verdict>> {
        let settings = &self.inbound.settings;
        let deliveries: Vec<Delivery> = targets.iter().map(|t| t.delivery.clone()).collect();
        let delimiter = settings.recipient_delimiter.clone();
        let links = self.inbound.links.clone();
        let built = committed
            .with_content(move |env, raw, auth| {
                // The payload builder reads a delivery by its index in an
                // envelope: this one lists the sync deliveries.
                let env = Envelope {
                    deliveries,
                    ..env.clone()
                };
                // The same payload as the worker's: verdicts and links too.
                let auth = auth.and_then(|b| Record::from_bytes(&b));
                let now = spool::now_ms() / 1000;
                let raw = bytes::Bytes::from(raw);
                (0..env.deliveries.len())
                    .map(|i| {
                        let links = links.as_ref().map(|l| (l, now));
                        webhook::build(&env, i, &raw, &delimiter, links, auth.as_ref())
                    })
                    .collect::<Vec<_>>()
            })
            .await?;
        // What the links serve is kept before they are sent, as the worker
        // does; a failure to keep is trouble of ours (451).
        let mut bodies = Vec::with_capacity(built.len());
        for b in built {
            if !b.kept.is_empty() {
                committed.keep(b.kept, b.expires).await?;
            }
            bodies.push(b.body);
        }
        // Numbered after the spooled deliveries, so every webhook-id of a
        // message is distinct.
        let first = committed.envelope().deliveries.len();
        let left = self.deadline.saturating_duration_since(Instant::now());
        let mut calls = JoinSet::new();
        for (i, (t, body)) in targets.iter().zip(bodies).enumerate() {
            let route = &settings.routes[t.route];
            let spool::Target::Webhook { url, .. } = &t.delivery.target else {
                unreachable!("sync targets are webhooks");
            };
            let call = Call {
                client: self.inbound.sync_client.clone(),
                url: url.clone(),
                id: webhook::webhook_id(&JobKey {
                    id: committed.envelope().id.clone(),
                    index: first + i,
                }),
                secrets: route.secrets_or(&settings.default_secrets).to_vec(),
                // Never past the session's own deadline.
                timeout: route.sync_timeout.unwrap_or_default().min(left),
            };
            calls.spawn(async move { (i, call.run(body).await) });
        }
        let mut answers = vec![Verdict::NoAnswer; targets.len()];
        let shutdown = self.shutdown.clone();
        let collect = async {
            while let Some(done) = calls.join_next().await {
                if let Ok((i, verdict)) = done {
                    answers[i] = verdict;
                }
            }
        };
        tokio::select! {
            () = collect => {}
            () = shutdown.cancelled() => warn!("shutting down while waiting for sync routes"),
        }
        Ok(answers)
    }
}

/// One signed POST of a sync route.
struct Call {
    client: reqwest::Client,
    url: String,
    id: String,
    secrets: Vec<Secret>,
    timeout: Duration,
}

impl Call {
    /// The app's verdict on `body`; anything but an HTTP answer in time
    /// is [`Verdict::NoAnswer`].
    async fn run(self, body: crate::delivery::body::Body) -> Verdict {
        let post = async {
            let resp = webhook::post_signed(&self.client, &self.url, &self.id, &self.secrets, body)
                .await?;
            verdict_of(resp).await.map_err(PostError::Transport)
        };
        match tokio::time::timeout(self.timeout, post).await {
            Ok(Ok(v)) => v,
            Ok(Err(PostError::NoSecret)) => {
                warn!("sync route: no secret to sign with");
                Verdict::NoAnswer
            }
            Ok(Err(PostError::Transport(e))) => {
                warn!(error = %webhook::describe(e), "sync route: request failed");
                Verdict::NoAnswer
            }
            Err(_) => {
                warn!(timeout = ?self.timeout, "sync route: no answer in time");
                Verdict::NoAnswer
            }
        }
    }
}

/// Takes a committed message back; a failure leaves it in the spool, to
/// be delivered to its async routes after all, so it is loud.
async fn withdraw(committed: &Committed) {
    if let Err(e) = committed.withdraw().await {
        error!(error = %e, "cannot remove a message refused after commit; its async routes may still get it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_table() {
        use Verdict::*;
        let no = || Refuse(None);
        let text = |t: &str| Refuse(Some(t.to_string()));
        let table: &[(&[Verdict], Decision)] = &[
            // no sync route: the message goes on as today
            (&[], Decision::Accept),
            (&[Accept], Decision::Accept),
            (&[Accept, Accept], Decision::Accept),
            (&[no()], Decision::Refuse(None)),
            (
                &[text("no such user")],
                Decision::Refuse(Some("no such user".into())),
            ),
            (&[Unavailable], Decision::TempFail),
            (&[NoAnswer], Decision::TempFail),
            // any refusal refuses the whole message, whatever the others said
            (
                &[Accept, text("full")],
                Decision::Refuse(Some("full".into())),
            ),
            (&[NoAnswer, no()], Decision::Refuse(None)),
            (
                &[Unavailable, text("b"), Accept],
                Decision::Refuse(Some("b".into())),
            ),
            // the first refusal's text, in route order
            (&[text("a"), text("b")], Decision::Refuse(Some("a".into()))),
            // else any temporary failure defers it, even after a 2xx
            (&[Accept, Unavailable], Decision::TempFail),
            (&[NoAnswer, Accept, Accept], Decision::TempFail),
        ];
        for (answers, want) in table {
            assert_eq!(decide(answers), *want, "{answers:?}");
        }
    }
}
