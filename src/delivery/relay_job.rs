//! The relay attempt of an API message: the recipients still pending are
//! submitted to the relay in one SMTP transaction; each one's outcome is
//! recorded ([`super::outbox`]), the events follow ([`super::events`]),
//! then the status record and the delivery's state.
//!
//! The relay is one endpoint like any webhook ([`super::endpoint`]): a
//! stalled relay holds no more delivery slots than a stalled webhook.

use tracing::{error, info, warn};

use super::breaker::Signal;
use super::endpoint::Endpoint;
use super::events;
use super::outbox::{self, OutboxRecord, Status};
use super::policy::{self, Action, Outcome};
use super::worker::{Hold, Worker};
use crate::model::clock::rfc3339_now;
use crate::relay::Contact;
use crate::spool::{
    self, AttemptResult, DeliveryState, Envelope, Kind, Lease, RcptState, RcptStatus,
};

impl Worker {
    /// One relay attempt for an API message: the recipients still pending
    /// are submitted; each one's outcome is recorded; the status record and
    /// the events follow.
    pub(super) async fn relay_attempt(
        &self,
        lease: Lease,
        envelope: Envelope,
        raw: Vec<u8>,
        mut state: DeliveryState,
        hold: Option<Hold<'_>>,
    ) {
        let key = lease.key().clone();
        let Some(relay) = self.relay.clone() else {
            error!("an API message is spooled but no relay is configured; retrying in 60s");
            self.store.schedule(key, spool::now_ms() + 60_000);
            return;
        };
        // The relay is one endpoint like any webhook: a stalled relay holds
        // no more slots than a stalled webhook endpoint.
        let (scheme, host, port) = relay.origin();
        let Some(mut hold) = self.admitted(&key, hold, Endpoint::named(scheme, host, port)) else {
            return;
        };
        let tried = outbox::pending(&envelope, &state);
        let target = format!("{host}:{port}");
        let started = std::time::Instant::now();
        let in_flight = self.sending.mark(&key.id);
        let (outcomes, contact) = relay
            .send_reporting(&envelope.mail_from, &tried, &raw)
            .await;
        drop(in_flight);
        hold.signal = match contact {
            Contact::Answered => Signal::Answered,
            Contact::Unreachable => Signal::Unreachable,
            Contact::None => Signal::NoContact,
        };
        drop(hold);
        outbox::apply_attempt(&envelope, &mut state, &tried, &outcomes, rfc3339_now());
        let status_of = |addr: &String| {
            state
                .recipients
                .iter()
                .find(|r| &r.address == addr)
                .cloned()
        };
        let sent: Vec<RcptState> = tried
            .iter()
            .filter_map(status_of)
            .filter(|r| r.status == RcptStatus::Sent)
            .collect();
        let mut failed: Vec<RcptState> = tried
            .iter()
            .filter_map(status_of)
            .filter(|r| r.status == RcptStatus::Failed)
            .collect();
        let mut remaining = outbox::pending(&envelope, &state);
        let mut deferred = Vec::new();
        // Still pending after this attempt: the delivery as a whole is
        // retried, or the schedule is used up and the rest fail.
        let outcome = if remaining.is_empty() {
            Outcome::Delivered
        } else {
            Outcome::Retry {
                reason: format!("{} recipients deferred", remaining.len()),
                retry_after: None,
            }
        };
        let unit = rand::random::<f64>();
        let action = policy::decide(outcome, state.attempts, &self.settings.schedule, unit);
        // Counted as the policy decided: a delivery that ran out of retries
        // is finished below like a delivered one, but it is not delivered.
        let label = action.label();
        let result = match (&action, failed.is_empty() && remaining.is_empty()) {
            (Action::Retry { .. }, _) => AttemptResult::Retry,
            (_, true) => AttemptResult::Delivered,
            (_, false) => AttemptResult::Dead,
        };
        if let Some(last) = state.history.last_mut() {
            last.target = Some(target);
            last.duration_ms = Some(started.elapsed().as_millis() as u64);
            last.outcome = Some(result);
        }
        match action {
            Action::Done => {}
            Action::Retry { delay, .. } => {
                state.next_at = spool::now_ms() + delay.as_millis() as u64;
                deferred = state
                    .recipients
                    .iter()
                    .filter(|r| r.status == RcptStatus::Pending)
                    .cloned()
                    .collect();
                warn!(
                    pending = remaining.len(),
                    attempts = state.attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    "relay deferred; will retry"
                );
            }
            Action::Reject { .. } | Action::GiveUp { .. } => {
                outbox::give_up(&mut state);
                failed.extend(
                    state
                        .recipients
                        .iter()
                        .filter(|r| remaining.contains(&r.address))
                        .cloned(),
                );
                warn!(
                    attempts = state.attempts,
                    "relay still deferring; no retries left"
                );
                remaining.clear();
            }
        }
        self.metrics.relay("sent", sent.len() as u64);
        self.metrics.relay("failed", failed.len() as u64);
        self.metrics.relay("deferred", deferred.len() as u64);
        self.metrics.attempt(Kind::Relay.as_str(), label);
        let status = outbox::overall_status(&state.recipients, true);
        info!(
            status = status.as_str(),
            sent = sent.len(),
            failed = failed.len(),
            pending = remaining.len(),
            "relay attempt done"
        );
        // Events first: they are spooled durably, so a crash after this
        // repeats them at worst; a crash before the state update below
        // repeats the attempt (at least once), never loses an event.
        for (kind, list) in [
            (events::SENT, &sent),
            (events::DEFERRED, &deferred),
            (events::FAILED, &failed),
        ] {
            if list.is_empty() {
                continue;
            }
            let body = events::relay_event(kind, &envelope, list);
            if let Err(e) = self.emit(&body).await {
                error!(error = %e, event = kind, "could not spool the event");
            }
        }
        self.update_outbox(&envelope, &state, status).await;
        if remaining.is_empty() {
            match self.store.finish(&lease, 1, true, &state).await {
                Ok(()) => {}
                Err(e @ spool::Error::LeaseLost(..)) => {
                    info!(error = %e, "sent; the delivery was changed by an operator meanwhile")
                }
                Err(e) => {
                    error!(error = %e, "sent, but could not record it; it may be sent again after a restart")
                }
            }
        } else if self.write_outcome(&lease, &state).await {
            self.store.schedule(key, state.next_at);
        }
    }

    /// Rewrites the `GET /v1/messages/{id}` record after an attempt.
    async fn update_outbox(&self, envelope: &Envelope, state: &DeliveryState, status: Status) {
        let mut record = OutboxRecord::queued(envelope);
        record.status = status;
        record.updated_at = rfc3339_now();
        record.recipients = state.recipients.clone();
        record.attempts = state.history.clone();
        if let Err(e) = outbox::store(&self.store, &record).await {
            error!(error = %e, "could not update the status record");
        }
    }
}
