//! The delivery worker: takes due deliveries from the queue, runs one
//! attempt of each (a signed POST for webhooks and events,
//! [`super::webhook`]; an SMTP submission for relay deliveries,
//! `relay_job`) and records the outcome in the spool.
//!
//! Each attempt holds a lease on its delivery ([`spool::Lease`], taken
//! with [`Store::claim`]) and writes its outcome with it; when an operator
//! deleted or retried the delivery meanwhile the store refuses that write
//! and the attempt leaves the delivery as the operator left it.
//!
//! At-least-once: the state on disk changes only after the endpoint
//! answered, so a crash mid-POST means one more POST after restart. The
//! `webhook-id` header is stable for a (message, endpoint) pair across all
//! attempts, so receivers deduplicate on it.
//!
//! Every attempt (webhook, event or relay) first gets into its endpoint
//! ([`super::endpoint`]): one endpoint holds at most
//! `POSTERN_ENDPOINT_CONCURRENCY` of the delivery slots, and a delivery that
//! has to wait for its endpoint waits parked, without a slot, so the other
//! endpoints' mail keeps flowing.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, warn};

use super::Settings;
use super::body::Body;
use super::breaker::{self, Signal};
use super::endpoint::{Admission, Effects, Endpoint, Gate, Pass};
use super::events;
use super::outbox::InFlight;
use super::policy::{self, Action, Outcome, classify};
use super::webhook::{self, PostError, webhook_id};
use crate::auth_checks::record::Record;
use crate::model::secret::Secret;
use crate::relay::Relay;
use crate::route;
use crate::spool::{
    self, AttemptResult, Delivery, DeliveryState, Envelope, Intake, JobKey, Kind, Lease, State,
    Store, Target,
};
use crate::telemetry::Metrics;

/// Where a POST for `delivery` goes under `s`, and what signs it: the
/// events URL as configured now, or the webhook route's endpoint
/// ([`route::endpoint`]); `None` for the relay.
fn post_endpoint<'s>(s: &'s Settings, delivery: &Delivery) -> Option<(String, &'s [Secret])> {
    match &delivery.target {
        Target::Relay => None,
        Target::Event { url } => {
            let url = s.events_url.clone().unwrap_or_else(|| url.clone());
            Some((url, &s.events_secrets))
        }
        Target::Webhook { route, url } => {
            let rcpt = delivery.rcpt_to.first().map(String::as_str);
            Some(route::endpoint(
                &s.routes,
                route,
                url,
                rcpt,
                &s.default_secrets,
                &s.recipient_delimiter,
            ))
        }
    }
}

/// The endpoint a POST for `delivery` goes to under `s` (see
/// [`post_endpoint`]); `None` for the relay.
fn endpoint_of(s: &Settings, delivery: &Delivery) -> Option<Endpoint> {
    post_endpoint(s, delivery).map(|(url, _)| Endpoint::of_url(&url))
}

/// Most deliveries one claim takes: enough to fill the slots that free up
/// while one claim round trip runs, few enough that one worker does not
/// take a burst that another replica's idle slots could have shared.
const CLAIM_BATCH: usize = 16;

/// Runs deliveries until shutdown.
#[derive(Clone)]
pub struct Worker {
    pub(super) settings: Arc<Settings>,
    pub(super) store: Store,
    client: reqwest::Client,
    /// The SMTP relay for API mail, when one is configured.
    pub(super) relay: Option<Arc<Relay>>,
    /// API messages with a relay attempt in flight.
    pub(super) sending: Arc<InFlight>,
    pub(super) metrics: Arc<Metrics>,
    /// Events are spooled through it.
    intake: Intake,
    /// The delivery memory budget, in KiB units.
    memory: Arc<Semaphore>,
    /// Per-endpoint slots, parked deliveries and circuit breakers.
    gate: Arc<Mutex<Gate>>,
}

impl Worker {
    /// A worker over `spool` and its schedule `queue`; `relay` delivers
    /// API mail, `sending` is shared with the API (status `sending`).
    pub fn new(
        settings: Settings,
        store: Store,
        relay: Option<Arc<Relay>>,
        metrics: Arc<Metrics>,
        sending: Arc<InFlight>,
    ) -> Worker {
        let client = webhook::client(settings.timeout, settings.connect_timeout);
        let memory = Arc::new(Semaphore::new(budget_units(settings.memory_budget)));
        let gate = Gate::new(settings.endpoints);
        Worker {
            intake: store.intake(),
            memory,
            gate: Arc::new(Mutex::new(gate)),
            settings: Arc::new(settings),
            store,
            client,
            relay,
            sending,
            metrics,
        }
    }

    /// The dispatcher: waits for a free slot and a due job, runs it in
    /// `tracker`. Returns when `shutdown` is cancelled; attempts already
    /// running finish in the tracker.
    pub async fn run(self, tracker: TaskTracker, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.settings.concurrency));
        loop {
            let first = tokio::select! {
                p = slots.clone().acquire_owned() => p.expect("semaphore open"),
                _ = shutdown.cancelled() => return,
            };
            // Every slot free now is filled by one claim (one round trip
            // to the shared store for all of them).
            let mut permits = vec![first];
            while permits.len() < CLAIM_BATCH {
                match slots.clone().try_acquire_owned() {
                    Ok(p) => permits.push(p),
                    Err(_) => break,
                }
            }
            let leases = loop {
                let now = spool::now_ms();
                // Cool-downs that ended let their probes out first.
                let released = self.gate().tick(now);
                self.release(released);
                let started = std::time::Instant::now();
                let claimed = self.store.claim_batch(now, permits.len()).await;
                self.metrics
                    .claim_latency
                    .observe(started.elapsed().as_secs_f64());
                match claimed {
                    Ok(leases) => break leases,
                    Err(next) => {
                        let cooldown_end = self.gate().next_cooldown_end();
                        let next = match (next, cooldown_end) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                        let wait = next.map_or(Duration::from_secs(3600), |due| {
                            Duration::from_millis(due.saturating_sub(spool::now_ms()))
                        });
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.store.changed() => {}
                            _ = shutdown.cancelled() => return,
                        }
                    }
                }
            };
            // Slots the claim found no work for are given back as the
            // permits left over drop.
            for (lease, permit) in leases.into_iter().zip(permits) {
                let this = self.clone();
                let key = lease.key();
                let span =
                    tracing::info_span!("delivery", message_id = %key.id, delivery = key.index);
                tracker.spawn(
                    async move {
                        this.attempt(lease).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// One attempt of the delivery `lease` holds, with its outcome
    /// recorded.
    pub async fn attempt(&self, lease: Lease) {
        let key = lease.key().clone();
        // A delivery that waited for its endpoint is known to the gate:
        // let it in (or park it again) before reading its message again.
        let hold = match self.enter_released(&key) {
            Some(Some(hold)) => Some(hold),
            Some(None) => return,
            None => None,
        };
        // A claim that read the delivery lets it wait for its endpoint
        // before its message is read and its payload built: otherwise a
        // backlog behind a busy endpoint is read and built twice (once
        // before it is parked, once after).
        let hold = match (hold, lease.delivery_hint()) {
            (None, Some(delivery)) => match endpoint_of(&self.settings, delivery) {
                Some(endpoint) => match self.admitted(&key, None, endpoint) {
                    Some(hold) => Some(hold),
                    None => return,
                },
                None => None,
            },
            (hold, _) => hold,
        };
        // Reserve memory before loading: see `Settings::memory_budget`.
        let size = match lease.size_hint() {
            Some(size) => size,
            None => self.store.message_size(&key.id).await.unwrap_or(0),
        };
        let _memory = self
            .memory
            .acquire_many(memory_units(size, self.settings.memory_budget))
            .await;
        // Webhook deliveries get their JSON body built on the blocking
        // thread that reads the file; other kinds need the content as is.
        // One that has not been admitted at its endpoint yet is admitted
        // there first, now that its envelope is read: one parked is not
        // built (it is built once, when its endpoint has room).
        let index = key.index;
        let settings = self.settings.clone();
        let gate = self.gate.clone();
        let admit = hold.is_none().then(|| key.clone());
        let prepare =
            move |env: &Envelope, state: &DeliveryState, raw: Vec<u8>, auth: Option<Vec<u8>>| {
                let delivery = env.deliveries.get(index);
                let is_webhook = delivery.map(|d| d.target.kind()) == Some(Kind::Webhook);
                let pending = state.state == State::Pending;
                let admission = match (admit, delivery) {
                    (Some(key), Some(delivery)) if pending => {
                        endpoint_of(&settings, delivery).map(|endpoint| {
                            let mut gate = gate.lock().unwrap_or_else(|e| e.into_inner());
                            let (admission, effects) = gate.admit(endpoint, &key, spool::now_ms());
                            (admission, effects, gate.parked())
                        })
                    }
                    _ => None,
                };
                if matches!(admission, Some((Admission::Parked, ..))) {
                    return (admission, None);
                }
                let built = if is_webhook && pending {
                    let now = spool::now_ms() / 1000;
                    let auth = auth.and_then(|b| Record::from_bytes(&b));
                    // Shared, not copied: a large payload's body reads
                    // its attachments from it while it is sent.
                    let raw = bytes::Bytes::from(raw);
                    webhook::build(
                        env,
                        index,
                        &raw,
                        &settings.recipient_delimiter,
                        settings.links.as_ref().map(|l| (l, now)),
                        auth.as_ref(),
                    )
                } else {
                    webhook::Built {
                        body: raw.into(),
                        kept: Vec::new(),
                        expires: 0,
                    }
                };
                (admission, Some(built))
            };
        let (envelope, state, (admission, built)) = match self.store.load_with(&key, prepare).await
        {
            Ok(m) => m,
            Err(spool::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                error!(error = %e, "cannot load message; retrying in 60s");
                self.store.schedule(key, spool::now_ms() + 60_000);
                return;
            }
        };
        let hold = match admission {
            Some((admission, effects, parked)) => {
                match self.admission(admission, effects, parked) {
                    Some(hold) => Some(hold),
                    None => return,
                }
            }
            None => hold,
        };
        let Some(built) = built else { return };
        let Some(delivery) = envelope.deliveries.get(key.index).cloned() else {
            error!("delivery index out of range; ignoring");
            return;
        };
        if state.state != State::Pending {
            return;
        }
        // The links in the payload work from the moment it is sent: what
        // they serve is kept first, or nothing is sent.
        let content = built.body;
        if !built.kept.is_empty()
            && let Err(e) = self.store.keep(&key.id, built.kept, built.expires).await
        {
            error!(error = %e, "cannot keep the attachments the payload links; retrying in 60s");
            self.store.schedule(key, spool::now_ms() + 60_000);
            return;
        }
        let Some((url, secrets)) = self.post_endpoint(&delivery) else {
            return self
                .relay_attempt(lease, envelope, content.into_vec(), state, hold)
                .await;
        };
        let job = Job {
            key,
            lease,
            envelope,
            delivery,
            state,
        };
        self.post_attempt(job, content, (url, secrets), hold).await;
    }

    /// Where a POST for `delivery` goes, and what signs it: the events URL
    /// as configured now, or the webhook route's endpoint
    /// ([`route::endpoint`]); `None` for the relay.
    fn post_endpoint(&self, delivery: &Delivery) -> Option<(String, &[Secret])> {
        post_endpoint(&self.settings, delivery)
    }

    /// A webhook or event attempt: the signed POST of `body`, then its
    /// outcome.
    async fn post_attempt(
        &self,
        job: Job,
        body: Body,
        (url, secrets): (String, &[Secret]),
        hold: Option<Hold<'_>>,
    ) {
        let key = &job.key;
        let Some(mut hold) = self.admitted(key, hold, Endpoint::of_url(&url)) else {
            return;
        };
        let started = std::time::Instant::now();
        let at = crate::model::clock::rfc3339_now();
        let sent = webhook::post_signed(&self.client, &url, &webhook_id(key), secrets, body).await;
        hold.signal = signal_of(&sent);
        let status = sent.as_ref().ok().map(|r| r.status().as_u16());
        // The endpoint's slot is free once it answered (or did not).
        drop(hold);
        let outcome = match sent {
            Ok(r) => {
                let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok());
                classify(r.status().as_u16(), retry_after)
            }
            Err(e) => Outcome::Retry {
                reason: match e {
                    // Possible only when the route was removed from the
                    // config and no default secret exists: never send
                    // unsigned mail, keep it.
                    PostError::NoSecret => {
                        let route = job.delivery.target.route();
                        format!("no signing secret for route {route:?}")
                    }
                    PostError::Transport(e) => webhook::describe(e),
                },
                retry_after: None,
            },
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let attempt = spool::Attempt {
            at,
            target: Some(spool::history::safe_target(&url)),
            status,
            duration_ms: Some(elapsed_ms),
            ..Default::default()
        };
        self.settle(job, &url, outcome, attempt).await;
    }

    /// Applies the policy's decision on `outcome` to a webhook or event
    /// delivery: done, pending again, or dead.
    async fn settle(&self, job: Job, url: &str, outcome: Outcome, attempt: spool::Attempt) {
        let elapsed_ms = attempt.duration_ms.unwrap_or(0);
        let Job {
            key,
            lease,
            envelope,
            delivery,
            state,
        } = job;
        let attempts = state.attempts + 1;
        let deliveries = envelope.deliveries.len();
        let unit = rand::random::<f64>();
        let action = policy::decide(outcome, attempts, &self.settings.schedule, unit);
        self.metrics
            .attempt(delivery.target.kind().as_str(), action.label());
        let (reason, why) = match action {
            Action::Done => {
                if delivery.target.kind() == Kind::Webhook
                    && let Some(age) = age_of(&envelope.received_at)
                {
                    self.metrics.delivery_latency.observe(age);
                }
                info!(url = %url, attempts, elapsed_ms, "delivered");
                let done = attempted(&state, attempt, AttemptResult::Delivered, None);
                match self
                    .store
                    .finish(&lease, deliveries, state.has_record(), &done)
                    .await
                {
                    Ok(()) => {}
                    Err(e @ spool::Error::LeaseLost(..)) => {
                        info!(error = %e, "delivered; the delivery was changed by an operator meanwhile")
                    }
                    Err(e) => {
                        error!(error = %e, "delivered, but could not record it; it may be sent again after a restart")
                    }
                }
                return;
            }
            Action::Retry { delay, reason } => {
                let next_at = spool::now_ms() + delay.as_millis() as u64;
                warn!(url = %url, attempts, %reason, retry_in_ms = delay.as_millis() as u64, "delivery failed; will retry");
                let s = attempted(&state, attempt, AttemptResult::Retry, Some(reason));
                if self.record(&lease, State::Pending, next_at, s).await {
                    self.store.schedule(key, next_at);
                }
                return;
            }
            Action::Reject { reason } => (reason, "endpoint rejected the message; dead"),
            Action::GiveUp { reason } => (reason, "delivery failed; no retries left, dead"),
        };
        warn!(url = %url, attempts, %reason, "{why}");
        if !self.store.holds(&lease).await {
            info!("the delivery was changed by an operator during its attempt; not marked dead");
            return;
        }
        self.metrics.dead.inc();
        self.dead_event(&envelope, &delivery, &key, url, attempts, &reason)
            .await;
        let s = attempted(&state, attempt, AttemptResult::Dead, Some(reason));
        self.record(&lease, State::Dead, 0, s).await;
    }

    /// `message.dead` for an inbound delivery that gave up (never for
    /// events themselves: a dead events endpoint must not feed itself).
    async fn dead_event(
        &self,
        envelope: &Envelope,
        delivery: &Delivery,
        key: &JobKey,
        url: &str,
        attempts: u32,
        reason: &str,
    ) {
        if delivery.target.kind() != Kind::Webhook {
            return;
        }
        let state = DeliveryState {
            state: State::Dead,
            attempts,
            last_error: Some(reason.to_string()),
            ..DeliveryState::fresh()
        };
        let body = events::dead_event(envelope, key.index, url, &state);
        if let Err(e) = self.emit(&body).await {
            error!(error = %e, "could not spool the message.dead event");
        }
    }

    /// Spools an event for the events URL (see [`events::emit`]).
    pub(super) async fn emit(&self, body: &serde_json::Value) -> spool::Result<()> {
        let url = self.settings.events_url.as_deref();
        events::emit(&self.intake, url, body).await
    }

    /// Writes an attempt's outcome (`s`, from [`attempted`]) as `state`,
    /// next due at `next_at`; `false` when the store refused it because
    /// the lease was revoked (the operator's change stands, so nothing is
    /// to be scheduled).
    async fn record(&self, lease: &Lease, state: State, next_at: u64, s: DeliveryState) -> bool {
        let s = DeliveryState {
            state,
            next_at,
            ..s
        };
        self.write_outcome(lease, &s).await
    }

    /// [`Store::write_state`] for an attempt's outcome; `false` when the
    /// lease was revoked.
    pub(super) async fn write_outcome(&self, lease: &Lease, state: &DeliveryState) -> bool {
        match self.store.write_state(lease, state).await {
            Ok(()) => true,
            Err(e @ spool::Error::LeaseLost(..)) => {
                info!(error = %e, "the delivery was changed by an operator during its attempt");
                false
            }
            Err(e) => {
                // The message stays pending on disk; a restart retries it.
                error!(error = %e, "could not record delivery state");
                true
            }
        }
    }
}

/// Pure: the state after one more attempt of a webhook or event delivery:
/// counted, `attempt` recorded with its result and `reason` (the error and
/// `last_error`), the history bounded ([`DeliveryState::record_attempt`]).
fn attempted(
    before: &DeliveryState,
    mut attempt: spool::Attempt,
    result: AttemptResult,
    reason: Option<String>,
) -> DeliveryState {
    attempt.outcome = Some(result);
    attempt.error.clone_from(&reason);
    let mut s = DeliveryState {
        attempts: before.attempts + 1,
        last_error: reason,
        history: before.history.clone(),
        ..DeliveryState::fresh()
    };
    s.record_attempt(attempt);
    s
}

/// A pending delivery, loaded for its attempt.
struct Job {
    key: JobKey,
    lease: Lease,
    envelope: Envelope,
    delivery: Delivery,
    state: DeliveryState,
}

/// Endpoint admission (see [`super::endpoint`]).
impl Worker {
    fn gate(&self) -> MutexGuard<'_, Gate> {
        // The gate's data stays consistent between its methods, which do
        // not panic midway; a poisoned lock is still usable.
        self.gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(admitted or parked)` for a delivery the gate released;
    /// `None` for any other.
    fn enter_released(&self, key: &JobKey) -> Option<Option<Hold<'_>>> {
        let mut gate = self.gate();
        let (admission, effects) = gate.admit_released(key, spool::now_ms())?;
        let parked = gate.parked();
        drop(gate);
        Some(self.admission(admission, effects, parked))
    }

    /// The attempt's hold on `endpoint`: the one it came in with (a
    /// released delivery), or a new one; `None` when it was parked.
    pub(super) fn admitted<'a>(
        &'a self,
        key: &JobKey,
        hold: Option<Hold<'a>>,
        endpoint: Endpoint,
    ) -> Option<Hold<'a>> {
        if hold.is_some() {
            return hold;
        }
        let mut gate = self.gate();
        let (admission, effects) = gate.admit(endpoint, key, spool::now_ms());
        let parked = gate.parked();
        drop(gate);
        self.admission(admission, effects, parked)
    }

    fn admission(&self, admission: Admission, effects: Effects, parked: usize) -> Option<Hold<'_>> {
        match admission {
            Admission::Go(pass) => {
                self.apply(&pass.endpoint, effects, parked);
                Some(Hold {
                    worker: self,
                    pass: Some(pass),
                    signal: Signal::NoContact,
                })
            }
            Admission::Parked => {
                self.metrics.endpoint_parked.set(parked as i64);
                debug!("endpoint at its limit or its circuit breaker open; parked");
                None
            }
        }
    }

    /// Schedules what the gate released, and reports breaker changes.
    fn apply(&self, endpoint: &Endpoint, effects: Effects, parked: usize) {
        self.metrics.endpoint_parked.set(parked as i64);
        if let Some(state) = effects.breaker {
            match state {
                breaker::State::Open { .. } => warn!(
                    endpoint = %endpoint,
                    cooldown_s = self.settings.endpoints.breaker.cooldown.as_secs(),
                    "endpoint not answering; circuit breaker open, its deliveries wait"
                ),
                breaker::State::HalfOpen { probing: true } => {
                    info!(endpoint = %endpoint, "cool-down over; one probe attempt")
                }
                breaker::State::Closed { .. } => {
                    info!(endpoint = %endpoint, "endpoint answers again; circuit breaker closed")
                }
                breaker::State::HalfOpen { probing: false } => {}
            }
            self.metrics
                .breaker(endpoint.as_str(), state.gauge(), effects.opened);
        }
        self.release(effects.release);
    }

    /// Parked deliveries go back into the schedule, due now.
    fn release(&self, keys: Vec<JobKey>) {
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.store.release(key);
        }
        let parked = self.gate().parked();
        self.metrics.endpoint_parked.set(parked as i64);
    }
}

/// An admitted attempt's claim on its endpoint. Dropping it gives the slot
/// back and tells the breaker `signal` (`NoContact` unless the attempt set
/// it), however the attempt ends.
pub(super) struct Hold<'a> {
    worker: &'a Worker,
    pass: Option<Pass>,
    pub(super) signal: Signal,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        let Some(pass) = self.pass.take() else { return };
        let endpoint = pass.endpoint.clone();
        let mut gate = self.worker.gate();
        let effects = gate.finish(pass, self.signal, spool::now_ms());
        let parked = gate.parked();
        drop(gate);
        self.worker.apply(&endpoint, effects, parked);
    }
}

/// What an attempt's POST tells the endpoint's circuit breaker.
fn signal_of(sent: &Result<reqwest::Response, PostError>) -> Signal {
    match sent {
        Ok(_) => Signal::Answered,
        // Nothing was sent without a secret, and a request that could not
        // even be built reached no one.
        Err(PostError::NoSecret) => Signal::NoContact,
        Err(PostError::Transport(e)) if e.is_builder() => Signal::NoContact,
        Err(PostError::Transport(_)) => Signal::Unreachable,
    }
}

/// The budget's unit: small messages reserve what they use, not a MiB.
const UNIT: u64 = 1024;

fn budget_units(budget: u64) -> usize {
    (budget / UNIT).clamp(1, u32::MAX as u64) as usize
}

/// Units one attempt reserves: twice the message (the message, and the
/// copy with our `Authentication-Results:` when the checks are on; a large
/// payload's attachments are encoded as it is sent, see
/// `delivery::body`), at least one, at most the whole budget (so a huge
/// message still goes, alone).
fn memory_units(size: u64, budget: u64) -> u32 {
    (size.saturating_mul(2) / UNIT).clamp(1, budget_units(budget) as u64) as u32
}

/// Seconds since an RFC 3339 timestamp.
fn age_of(rfc3339: &str) -> Option<f64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()?;
    Some(
        (time::OffsetDateTime::now_utc() - t)
            .as_seconds_f64()
            .max(0.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reservation_scales_with_size_within_the_budget() {
        // POSTERN_DELIVERY_MEMORY=64M
        const MIB: u64 = 1024 * 1024;
        let budget = 64 * MIB;
        assert_eq!(budget_units(budget), 65536);
        assert_eq!(memory_units(0, budget), 1);
        assert_eq!(memory_units(300, budget), 1);
        assert_eq!(memory_units(20 * 1024, budget), 40);
        assert_eq!(memory_units(MIB, budget), 2048);
        assert_eq!(memory_units(10 * MIB, budget), 20480);
        // larger than the whole budget: it still goes, alone
        assert_eq!(memory_units(40 * MIB, budget), 65536);
    }
}
