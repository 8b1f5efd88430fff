//! Outbox bookkeeping of API mail: the status record that
//! `GET /v1/messages/{id}` reports, the messages with a relay attempt in
//! flight, and how one relay attempt changes the recipients' state. The
//! relay attempt itself is `relay_job`.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::policy::gave_up;
use crate::relay::RcptOutcome;
use crate::spool::{
    self, Attempt, AttemptOutcome, DeliveryState, Envelope, RECORDS_OUTBOX, RcptState, RcptStatus,
    Store,
};

/// Where an API message stands, as `GET /v1/messages/{id}` reports it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted, not tried yet.
    Queued,
    /// A relay attempt is in flight (never stored: see [`Status::while_sending`]).
    Sending,
    /// Every recipient was accepted by the relay.
    Sent,
    /// Some recipients wait for another attempt.
    Deferred,
    /// Done, and at least one recipient was refused (or gave up).
    Failed,
}

impl Status {
    /// The word on disk and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Deferred => "deferred",
            Status::Failed => "failed",
        }
    }

    /// What a stored status shows while a relay attempt is in flight: a
    /// message waiting for its attempt is `sending`; a finished one keeps
    /// its status.
    pub fn while_sending(self) -> Status {
        match self {
            Status::Queued | Status::Deferred => Status::Sending,
            done => done,
        }
    }
}

/// The status record of one API message, kept in `outbox/<id>.json` for
/// `POSTERN_STATUS_RETENTION` after it is done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxRecord {
    pub id: String,
    pub status: Status,
    pub created_at: String,
    pub updated_at: String,
    pub message_id: String,
    pub mail_from: String,
    pub recipients: Vec<RcptState>,
    pub attempts: Vec<Attempt>,
    pub tags: Vec<String>,
    pub metadata: serde_json::Map<String, Value>,
}

impl OutboxRecord {
    /// The record of a message just accepted.
    pub fn queued(envelope: &Envelope) -> OutboxRecord {
        let ob = envelope.outbound.clone().unwrap_or_default();
        OutboxRecord {
            id: envelope.id.clone(),
            status: Status::Queued,
            created_at: envelope.received_at.clone(),
            updated_at: envelope.received_at.clone(),
            message_id: ob.message_id,
            mail_from: envelope.mail_from.clone(),
            recipients: envelope
                .rcpt_to
                .iter()
                .map(|a| RcptState {
                    address: a.clone(),
                    status: RcptStatus::Pending,
                    reply: None,
                })
                .collect(),
            attempts: Vec::new(),
            tags: ob.tags,
            metadata: ob.metadata,
        }
    }
}

/// The overall status from the recipients: any still pending → `queued`
/// before the first attempt, `deferred` after; all sent → `sent`; all done
/// with at least one refused → `failed` (the per-recipient list says which).
pub fn overall_status(recipients: &[RcptState], attempted: bool) -> Status {
    if recipients.iter().any(|r| r.status == RcptStatus::Pending) {
        if attempted {
            Status::Deferred
        } else {
            Status::Queued
        }
    } else if recipients.iter().all(|r| r.status == RcptStatus::Sent) {
        Status::Sent
    } else {
        Status::Failed
    }
}

/// The recipients still to try (all of them before the first attempt).
pub fn pending(envelope: &Envelope, state: &DeliveryState) -> Vec<String> {
    if state.recipients.is_empty() {
        return envelope.rcpt_to.clone();
    }
    state
        .recipients
        .iter()
        .filter(|r| r.status == RcptStatus::Pending)
        .map(|r| r.address.clone())
        .collect()
}

/// Records one attempt: `tried[i]` got `outcomes[i]`.
pub fn apply_attempt(
    envelope: &Envelope,
    state: &mut DeliveryState,
    tried: &[String],
    outcomes: &[RcptOutcome],
    at: String,
) {
    if state.recipients.is_empty() {
        state.recipients = envelope
            .rcpt_to
            .iter()
            .map(|a| RcptState {
                address: a.clone(),
                status: RcptStatus::Pending,
                reply: None,
            })
            .collect();
    }
    let mut attempt = Attempt {
        at,
        recipients: tried.to_vec(),
        outcomes: Vec::new(),
        replies: Vec::new(),
        ..Default::default()
    };
    for (addr, outcome) in tried.iter().zip(outcomes) {
        let (status, word, reply) = match outcome {
            RcptOutcome::Sent { reply } => (RcptStatus::Sent, AttemptOutcome::Sent, reply),
            RcptOutcome::Deferred { reply } => {
                (RcptStatus::Pending, AttemptOutcome::Deferred, reply)
            }
            RcptOutcome::Failed { reply } => (RcptStatus::Failed, AttemptOutcome::Failed, reply),
        };
        if let Some(r) = state.recipients.iter_mut().find(|r| &r.address == addr) {
            r.status = status;
            r.reply = Some(reply.clone());
        }
        attempt.outcomes.push(word);
        attempt.replies.push(reply.clone());
    }
    state.attempts += 1;
    state.record_attempt(attempt);
}

/// The schedule is used up: whoever is still pending has failed.
pub fn give_up(state: &mut DeliveryState) {
    let attempts = state.attempts;
    for r in state
        .recipients
        .iter_mut()
        .filter(|r| r.status == RcptStatus::Pending)
    {
        let last = r.reply.clone().unwrap_or_default();
        r.status = RcptStatus::Failed;
        r.reply = Some(gave_up(attempts, &last));
    }
}

/// Ids of API messages with a relay attempt in flight, shared by the
/// worker and the API (which shows them as `sending`).
#[derive(Debug, Default)]
pub struct InFlight(Mutex<HashSet<String>>);

impl InFlight {
    /// Marks `id` as in flight until the returned guard is dropped,
    /// however the attempt ends.
    pub fn mark(&self, id: &str) -> Marked<'_> {
        self.set().insert(id.to_string());
        Marked {
            set: self,
            id: id.to_string(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.set().contains(id)
    }

    fn set(&self) -> MutexGuard<'_, HashSet<String>> {
        // A set of ids stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// See [`InFlight::mark`].
pub struct Marked<'a> {
    set: &'a InFlight,
    id: String,
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        self.set.set().remove(&self.id);
    }
}

/// Rewrites the status record `GET /v1/messages/{id}` shows.
pub async fn store(spool: &Store, record: &OutboxRecord) -> spool::Result<()> {
    let bytes = serde_json::to_vec(record).expect("record serialises");
    spool
        .write_record(RECORDS_OUTBOX, &format!("{}.json", record.id), bytes)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: "m".into(),
            received_at: "t".into(),
            mail_from: "app@x.test".into(),
            rcpt_to: vec!["a@x.test".into(), "b@x.test".into(), "c@x.test".into()],
            helo: String::new(),
            remote_ip: String::new(),
            tls: None,
            authenticated_user: None,
            deliveries: Vec::new(),
            outbound: None,
        }
    }

    fn r(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn attempts_move_recipients_and_status() {
        let env = envelope();
        let mut st = DeliveryState::fresh();
        assert_eq!(pending(&env, &st), env.rcpt_to);
        let tried = pending(&env, &st);
        apply_attempt(
            &env,
            &mut st,
            &tried,
            &[
                RcptOutcome::Sent { reply: r("250 ok") },
                RcptOutcome::Failed { reply: r("550 no") },
                RcptOutcome::Deferred {
                    reply: r("451 later"),
                },
            ],
            r("t1"),
        );
        assert_eq!(pending(&env, &st), vec![r("c@x.test")]);
        assert_eq!(overall_status(&st.recipients, true), Status::Deferred);
        let tried = pending(&env, &st);
        apply_attempt(
            &env,
            &mut st,
            &tried,
            &[RcptOutcome::Sent { reply: r("250 ok") }],
            r("t2"),
        );
        assert!(pending(&env, &st).is_empty());
        assert_eq!(overall_status(&st.recipients, true), Status::Failed);
        assert_eq!(st.attempts, 2);
        assert_eq!(st.history.len(), 2);
        use AttemptOutcome as O;
        assert_eq!(st.history[0].outcomes, [O::Sent, O::Failed, O::Deferred]);
    }

    #[test]
    fn give_up_fails_the_pending_ones_only() {
        let env = envelope();
        let mut st = DeliveryState::fresh();
        let tried = pending(&env, &st);
        apply_attempt(
            &env,
            &mut st,
            &tried,
            &[
                RcptOutcome::Sent { reply: r("250 ok") },
                RcptOutcome::Deferred {
                    reply: r("421 busy"),
                },
                RcptOutcome::Deferred {
                    reply: r("421 busy"),
                },
            ],
            r("t"),
        );
        give_up(&mut st);
        let statuses: Vec<_> = st.recipients.iter().map(|r| r.status).collect();
        assert_eq!(
            statuses,
            [RcptStatus::Sent, RcptStatus::Failed, RcptStatus::Failed]
        );
        assert_eq!(
            st.recipients[1].reply.as_deref(),
            Some("gave up after 1 attempts: 421 busy")
        );
    }

    #[test]
    fn overall_status_table() {
        let rs = |v: &[RcptStatus]| {
            v.iter()
                .map(|s| RcptState {
                    address: r("a"),
                    status: *s,
                    reply: None,
                })
                .collect::<Vec<_>>()
        };
        use RcptStatus::*;
        assert_eq!(overall_status(&rs(&[Pending]), false), Status::Queued);
        assert_eq!(
            overall_status(&rs(&[Pending, Sent]), true),
            Status::Deferred
        );
        assert_eq!(overall_status(&rs(&[Sent, Sent]), true), Status::Sent);
        assert_eq!(overall_status(&rs(&[Sent, Failed]), true), Status::Failed);
        assert_eq!(overall_status(&rs(&[Failed]), true), Status::Failed);
    }

    /// The words of `GET /v1/messages/{id}` and of `outbox/` records.
    #[test]
    fn status_words_and_what_shows_while_sending() {
        use Status::*;
        let table = [
            (Queued, "queued", Sending),
            (Sending, "sending", Sending),
            (Sent, "sent", Sent),
            (Deferred, "deferred", Sending),
            (Failed, "failed", Failed),
        ];
        for (status, word, shown) in table {
            assert_eq!(serde_json::to_value(status).unwrap(), word);
            assert_eq!(status.as_str(), word);
            assert_eq!(
                serde_json::from_value::<Status>(word.into()).unwrap(),
                status
            );
            assert_eq!(status.while_sending(), shown, "{word}");
        }
    }

    #[test]
    fn in_flight_marks_end_with_their_guard() {
        let set = InFlight::default();
        let mark = set.mark("m1");
        assert!(set.contains("m1") && !set.contains("m2"));
        drop(mark);
        assert!(!set.contains("m1"));
    }
}
