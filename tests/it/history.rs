//! The message history (#14): finished messages kept for
//! `POSTERN_HISTORY_RETENTION`, listed newest first with filters and
//! cursor paging, shown with their deliveries and attempts, swept after
//! the retention. The store-level part runs against every backend
//! ([`crate::store::backends`]); the HTTP part (`/v1/messages…`) against
//! the real server.

use std::collections::HashSet;
use std::time::Duration;

use postern::spool::{
    Attempt, AttemptResult, DeliveryState, Direction, Envelope, MessageQuery, MessageStatus,
    Outbound, State, Store, Target,
};

use crate::store::{Backend, backends, claim_all, envelope};

fn content(subject: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nSubject: {subject}\r\n\r\nbody\r\n").into_bytes()
}

/// The state a delivered attempt leaves, with one recorded attempt.
fn delivered_once() -> DeliveryState {
    let mut s = DeliveryState {
        attempts: 1,
        ..DeliveryState::fresh()
    };
    s.record_attempt(Attempt {
        at: "2026-01-01T00:00:01Z".into(),
        target: Some("http://127.0.0.1:9/0".into()),
        status: Some(204),
        duration_ms: Some(12),
        outcome: Some(AttemptResult::Delivered),
        ..Default::default()
    });
    s
}

/// Commits `env` with `subject` and delivers every delivery of it (one
/// attempt each).
async fn delivered(store: &Store, env: Envelope, subject: &str) -> Envelope {
    let env = store.intake().submit(env, &content(subject)).await.unwrap();
    let n = env.deliveries.len();
    for lease in claim_all(store).await {
        store
            .finish(&lease, n, false, &delivered_once())
            .await
            .unwrap();
    }
    env
}

fn query(limit: usize) -> MessageQuery {
    MessageQuery {
        limit,
        ..Default::default()
    }
}

async fn kept(b: &Backend) -> Store {
    b.open().await.keep_history(Duration::from_secs(3600))
}

#[tokio::test]
async fn finished_messages_are_kept_with_their_attempts_and_swept() {
    for b in backends().await {
        let store = kept(&b).await;
        let name = b.name();
        let first = delivered(&store, envelope(2), "first").await;
        let mut event = envelope(1);
        event.deliveries[0].target = Target::Event {
            url: "http://127.0.0.1:9/events".into(),
        };
        let event = delivered(&store, event, "an event").await;
        let pending = store
            .intake()
            .submit(envelope(1), &content("still pending"))
            .await
            .unwrap();

        let page = store.list_messages(&query(10)).await.unwrap();
        let ids: Vec<&str> = page.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, [pending.id.as_str(), first.id.as_str()], "{name}");
        assert_eq!(page.next_cursor, None, "{name}");
        let done = &page.items[1];
        assert_eq!(done.status, MessageStatus::Delivered, "{name}");
        assert_eq!(done.subject.as_deref(), Some("first"), "{name}");
        assert_eq!(done.direction, Direction::Inbound, "{name}");
        assert_eq!(
            (done.deliveries, done.size),
            (2, content("first").len() as u64),
            "{name}"
        );
        assert_eq!(page.items[0].status, MessageStatus::Pending, "{name}");

        let detail = store.message_detail(&first.id).await.unwrap().unwrap();
        assert_eq!(detail.envelope, first, "{name}");
        assert_eq!(detail.deliveries.len(), 2, "{name}");
        for d in &detail.deliveries {
            assert_eq!(d.state.state, State::Delivered, "{name}");
            assert_eq!(d.state.attempts, 1, "{name}");
            let a = &d.state.history[0];
            assert_eq!((a.status, a.duration_ms), (Some(204), Some(12)), "{name}");
        }
        assert_eq!(detail.deliveries[1].id, format!("{}.1", first.id));
        assert_eq!(detail.deliveries[1].target, "http://127.0.0.1:9/1");
        assert_eq!(
            store.read_message(&first.id).await.unwrap(),
            content("first")
        );
        assert!(
            store.message_detail(&event.id).await.unwrap().is_none(),
            "{name}"
        );
        // Kept out of the queue: nothing to claim, nothing listed as a delivery.
        assert!(claim_all(&store).await.len() == 1, "{name}");
        let (listed, _) = store
            .list_deliveries(vec![State::Pending, State::Dead], None, 10)
            .await
            .unwrap();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");

        // Survives a restart.
        drop(store);
        let store = kept(&b).await;
        let page = store.list_messages(&query(10)).await.unwrap();
        assert_eq!(page.items.len(), 2, "{name} after a restart");
        assert_eq!(page.items[1].id, first.id);

        assert_eq!(
            store
                .sweep_history(Duration::from_secs(3600))
                .await
                .unwrap(),
            0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store.sweep_history(Duration::ZERO).await.unwrap(),
            1,
            "{name}"
        );
        assert!(
            store.message_detail(&first.id).await.unwrap().is_none(),
            "{name}"
        );
        assert!(store.read_message(&first.id).await.is_err(), "{name}");
        let page = store.list_messages(&query(10)).await.unwrap();
        assert_eq!(page.items.len(), 1, "{name}");
    }
}

/// Retention 0: a message leaves the store when done, as before #14.
#[tokio::test]
async fn without_retention_a_finished_message_is_gone() {
    for b in backends().await {
        let store = b.open().await.keep_history(Duration::ZERO);
        let env = delivered(&store, envelope(1), "gone").await;
        assert!(store.read_message(&env.id).await.is_err(), "{}", b.name());
        assert!(store.message_detail(&env.id).await.unwrap().is_none());
        assert!(!store.is_committed(&env.id).await.unwrap());
        assert!(
            store
                .list_messages(&query(10))
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
}

#[tokio::test]
async fn the_list_filters_and_pages_without_gaps_or_duplicates() {
    for b in backends().await {
        let store = kept(&b).await;
        let name = b.name();
        let mut all = Vec::new();
        for i in 0..7 {
            let mut env = envelope(1);
            env.mail_from = format!("sender{i}@Example.org");
            if i % 3 == 0 {
                env.outbound = Some(Outbound::default());
                env.deliveries[0].target = Target::Relay;
            }
            let env = delivered(&store, env, &format!("Report {i}")).await;
            all.push(env.id);
        }
        all.reverse();
        let mut seen = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let q = MessageQuery {
                cursor: cursor.clone(),
                ..query(3)
            };
            let page = store.list_messages(&q).await.unwrap();
            assert!(page.items.len() <= 3);
            seen.extend(page.items.into_iter().map(|m| m.id));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(seen, all, "{name}: walked in order, each once");
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

        let count = |q: MessageQuery| {
            let store = store.clone();
            async move { store.list_messages(&q).await.unwrap().items.len() }
        };
        let q = |f: fn(&mut MessageQuery)| {
            let mut q = query(50);
            f(&mut q);
            q
        };
        assert_eq!(
            count(q(|q| q.direction = Some(Direction::Outbound))).await,
            3,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.direction = Some(Direction::Inbound))).await,
            4,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.address = Some("SENDER4@".into()))).await,
            1,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.address = Some("b@example.COM".into()))).await,
            7,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.text = Some("report 5".into()))).await,
            1,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.text = Some("100%".into()))).await,
            0,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.status = Some(MessageStatus::Pending))).await,
            0,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.status = Some(MessageStatus::Delivered))).await,
            7,
            "{name}"
        );
        assert_eq!(
            count(q(|q| q.since_ms = Some(u64::MAX / 2))).await,
            0,
            "{name}"
        );
        assert_eq!(count(q(|q| q.until_ms = Some(1))).await, 0, "{name}");
        assert_eq!(count(q(|q| q.since_ms = Some(1))).await, 7, "{name}");
    }
}
