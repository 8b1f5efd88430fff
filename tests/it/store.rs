//! The store's behaviour, through its interface (`postern::spool::Store`)
//! only: one suite, run against every backend [`backends`] lists (the file
//! spool, and the PostgreSQL store of #12 on a fresh database of the test
//! server; skipped, saying why, when `POSTERN_TEST_DATABASE_URL` is unset
//! outside CI). "Restart" reopens the store on the same durable state, as
//! a new process would.

use postern::config::DatabaseSettings;
use postern::spool::pg::{connect, migrate};
use postern::spool::{
    Change, Delivery, DeliveryState, Envelope, Error, JobKey, KeptMeta, KeptPart, RECORDS_AUTH,
    State, Store, Target, new_id, now_ms,
};

use crate::database::{fresh_database, test_database_url};

/// A backend under test: opens its store (again) on the same state.
pub enum Backend {
    File(tempfile::TempDir),
    Pg(Box<DatabaseSettings>),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::File(_) => "file",
            Backend::Pg(_) => "postgres",
        }
    }

    /// A store on this backend's state, as a freshly started process sees
    /// it (pending deliveries scheduled; the database migrated).
    pub async fn open(&self) -> Store {
        match self {
            Backend::File(dir) => Store::open_file(dir.path(), true).unwrap().0,
            Backend::Pg(settings) => {
                let pool = connect::pool(settings).unwrap();
                migrate::migrate(&pool).await.expect("store schema applies");
                Store::open_pg(pool, settings.lease)
            }
        }
    }
}

/// The file spool, and the PostgreSQL store when there is a test server.
pub async fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::File(tempfile::tempdir().unwrap())];
    if let Some(url) = test_database_url() {
        all.push(Backend::Pg(Box::new(fresh_database(&url).await)));
    }
    all
}

/// A message with `n` webhook deliveries.
pub fn envelope(n: usize) -> Envelope {
    Envelope {
        id: new_id(),
        received_at: "2026-01-01T00:00:00Z".into(),
        mail_from: "a@example.org".into(),
        rcpt_to: vec!["b@example.com".into()],
        helo: "client.test".into(),
        remote_ip: "127.0.0.1".into(),
        tls: None,
        authenticated_user: None,
        deliveries: (0..n)
            .map(|i| Delivery {
                target: Target::Webhook {
                    route: "*".into(),
                    url: format!("http://127.0.0.1:9/{i}"),
                },
                rcpt_to: vec!["b@example.com".into()],
                raw: false,
                max_attachment_inline: None,
                attachment_urls: false,
            })
            .collect(),
        outbound: None,
    }
}

/// Every key claimable now, in claim order, with their leases.
pub async fn claim_all(store: &Store) -> Vec<postern::spool::Lease> {
    let mut leases = Vec::new();
    while let Ok(lease) = store.claim(now_ms()).await {
        leases.push(lease);
    }
    leases
}

fn key(id: &str, index: usize) -> JobKey {
    JobKey {
        id: id.to_string(),
        index,
    }
}

const CONTENT: &[u8] = b"Subject: hi\r\n\r\nbody\r\n";

#[tokio::test]
async fn a_committed_message_is_claimed_loaded_and_finished() {
    for b in backends().await {
        let store = b.open().await;
        let env = store.intake().submit(envelope(2), CONTENT).await.unwrap();
        let leases = claim_all(&store).await;
        let keys: Vec<JobKey> = leases.iter().map(|l| l.key().clone()).collect();
        assert_eq!(keys, [key(&env.id, 0), key(&env.id, 1)], "{}", b.name());
        assert!(
            store.claim(now_ms()).await.is_err(),
            "{}: claimed twice",
            b.name()
        );
        let (loaded, state, raw) = store.load_with(&keys[0], |_, _, raw, _| raw).await.unwrap();
        assert_eq!((loaded, state), (env.clone(), DeliveryState::fresh()));
        assert_eq!(raw, CONTENT, "{}", b.name());
        for lease in &leases {
            store
                .finish(lease, 2, false, &DeliveryState::fresh())
                .await
                .unwrap();
        }
        assert_eq!(
            store.delivery_info(&keys[0]).await.unwrap().map(|d| d.key),
            None
        );
        let (listed, more) = store
            .list_deliveries(vec![State::Pending, State::Dead], None, 10)
            .await
            .unwrap();
        assert!(listed.is_empty() && !more, "{}", b.name());
    }
}

/// A batch claim takes up to the number asked for, earliest first, each
/// delivery once; a delivery the endpoint gate released comes back first
/// with the same lease.
#[tokio::test]
async fn a_batch_claim_takes_what_is_due_once_and_released_ones_first() {
    for b in backends().await {
        let store = b.open().await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(
                store
                    .intake()
                    .submit(envelope(1), CONTENT)
                    .await
                    .unwrap()
                    .id,
            );
        }
        let first = store.claim_batch(now_ms(), 3).await.unwrap();
        let second = store.claim_batch(now_ms(), 3).await.unwrap();
        let keys = |ls: &[postern::spool::Lease]| -> Vec<JobKey> {
            ls.iter().map(|l| l.key().clone()).collect()
        };
        assert_eq!(keys(&first).len(), 3, "{}", b.name());
        assert_eq!(keys(&second).len(), 2, "{}: what was left", b.name());
        let mut all = keys(&first);
        all.extend(keys(&second));
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let want: Vec<JobKey> = ids.iter().map(|id| key(id, 0)).collect();
        assert_eq!(all, want, "{}: each once", b.name());
        assert!(
            store.claim_batch(now_ms(), 3).await.is_err(),
            "{}",
            b.name()
        );
        // Released (it waited for its endpoint): claimable again at once,
        // and its outcome is still accepted.
        let released = first[1].key().clone();
        store.release(released.clone());
        let again = store.claim_batch(now_ms(), 3).await.unwrap();
        assert_eq!(keys(&again), [released], "{}", b.name());
        store
            .finish(&again[0], 1, false, &DeliveryState::fresh())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", b.name()));
        assert!(
            store.claim_batch(now_ms(), 3).await.is_err(),
            "{}",
            b.name()
        );
    }
}

/// After a restart: what was committed and not delivered is due again
/// with its recorded attempts; what was never committed is not there.
#[tokio::test]
async fn a_restart_recovers_pending_work_and_nothing_uncommitted() {
    for b in backends().await {
        let store = b.open().await;
        let env = store.intake().submit(envelope(1), CONTENT).await.unwrap();
        let mut torn = store.intake().accept(envelope(1)).await.unwrap();
        torn.write(b"half a mess").await.unwrap();
        drop(torn);
        let lease = store.claim(now_ms()).await.unwrap();
        let retry = DeliveryState {
            attempts: 1,
            next_at: now_ms().saturating_sub(1),
            last_error: Some("endpoint answered 500".into()),
            ..DeliveryState::fresh()
        };
        store.write_state(&lease, &retry).await.unwrap();
        drop((lease, store));

        let store = b.open().await;
        let leases = claim_all(&store).await;
        let keys: Vec<JobKey> = leases.iter().map(|l| l.key().clone()).collect();
        assert_eq!(keys, [key(&env.id, 0)], "{}", b.name());
        let (_, state, _) = store.load_with(&keys[0], |_, _, _, _| ()).await.unwrap();
        assert_eq!(state, retry, "{}", b.name());
    }
}

/// An operator's delete or retry while an attempt is in flight stands:
/// the attempt's outcome is refused.
#[tokio::test]
async fn an_outcome_is_refused_after_an_operator_change() {
    for b in backends().await {
        let store = b.open().await;
        let env = store.intake().submit(envelope(2), CONTENT).await.unwrap();
        let leases = claim_all(&store).await;
        assert!(store.holds(&leases[0]).await, "{}", b.name());
        let change = store
            .discard(leases[0].key(), &[State::Pending, State::Dead])
            .await
            .unwrap();
        assert_eq!(
            change,
            Change::Done {
                message_removed: false
            },
            "{}",
            b.name()
        );
        assert!(!store.holds(&leases[0]).await, "{}: still held", b.name());
        assert!(store.holds(&leases[1]).await, "{}", b.name());
        let retry = DeliveryState {
            attempts: 1,
            next_at: now_ms() + 60_000,
            ..DeliveryState::fresh()
        };
        let refused = store.write_state(&leases[0], &retry).await;
        assert!(
            matches!(refused, Err(Error::LeaseLost(..))),
            "{}: {refused:?}",
            b.name()
        );
        let info = store
            .delivery_info(&key(&env.id, 0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(info.state.state, State::Delivered, "{}", b.name());

        // Dead, retried by the operator while a (stale) attempt ends: the
        // retry stands, the delivery is pending with no attempts.
        let dead = DeliveryState {
            state: State::Dead,
            attempts: 3,
            ..DeliveryState::fresh()
        };
        store.write_state(&leases[1], &dead).await.unwrap();
        let stale = store.claim(now_ms()).await;
        assert!(
            stale.is_err(),
            "{}: a dead delivery was claimable",
            b.name()
        );
        let k1 = key(&env.id, 1);
        assert_eq!(
            store.retry_dead(&k1).await.unwrap(),
            Change::Done {
                message_removed: false
            },
            "{}",
            b.name()
        );
        let refused = store
            .finish(&leases[1], 2, true, &DeliveryState::fresh())
            .await;
        assert!(
            matches!(refused, Err(Error::LeaseLost(..))),
            "{}: {refused:?}",
            b.name()
        );
        let info = store.delivery_info(&k1).await.unwrap().unwrap();
        assert_eq!(info.state, DeliveryState::fresh(), "{}", b.name());
    }
}

/// A message counts as committed (what an idempotency record is checked
/// against) from its commit, and while its status record is kept after
/// it was delivered.
#[tokio::test]
async fn committed_means_the_message_or_its_status_record_exists() {
    for b in backends().await {
        let store = b.open().await;
        let receiving = envelope(1);
        let receiving_id = receiving.id.clone();
        let mut incoming = store.intake().accept(receiving).await.unwrap();
        incoming.write(CONTENT).await.unwrap();
        let id = store
            .intake()
            .submit(envelope(1), CONTENT)
            .await
            .unwrap()
            .id;
        assert!(
            !store.is_committed(&receiving_id).await.unwrap(),
            "{}",
            b.name()
        );
        assert!(
            !store.is_committed(&new_id()).await.unwrap(),
            "{}",
            b.name()
        );
        assert!(store.is_committed(&id).await.unwrap(), "{}", b.name());
        let lease = store.claim(now_ms()).await.unwrap();
        store
            .finish(&lease, 1, false, &DeliveryState::fresh())
            .await
            .unwrap();
        assert!(!store.is_committed(&id).await.unwrap(), "{}", b.name());
        store
            .write_record(
                postern::spool::RECORDS_OUTBOX,
                &format!("{id}.json"),
                b"{}".to_vec(),
            )
            .await
            .unwrap();
        assert!(store.is_committed(&id).await.unwrap(), "{}", b.name());
        for bad in ["", "../x", "0192F0C5C5A87B5E9D1D6D6F1C1E2A3B"] {
            assert!(!store.is_committed(bad).await.unwrap(), "{bad:?}");
        }
        drop(incoming);
    }
}

/// A message larger than any buffer is streamed in and comes back byte
/// for byte; dropped before its commit, a large one leaves nothing.
#[tokio::test]
async fn a_large_message_is_streamed_in_and_read_back_whole() {
    let big: Vec<u8> = (0..1_300_000u32).map(|i| (i % 251) as u8).collect();
    for b in backends().await {
        let store = b.open().await;
        let mut torn = store.intake().accept(envelope(1)).await.unwrap();
        torn.write(&big).await.unwrap();
        drop(torn);
        let mut incoming = store.intake().accept(envelope(1)).await.unwrap();
        for piece in big.chunks(64 * 1024 + 7) {
            incoming.write(piece).await.unwrap();
        }
        let env = incoming.commit().await.unwrap().schedule();
        // The file spool counts its envelope line too.
        let size = store.message_size(&env.id).await.unwrap() as usize;
        assert!(size >= big.len(), "{}: {size}", b.name());
        let leases = claim_all(&store).await;
        let keys: Vec<JobKey> = leases.iter().map(|l| l.key().clone()).collect();
        assert_eq!(keys, [key(&env.id, 0)], "{}", b.name());
        let (_, _, raw) = store.load_with(&keys[0], |_, _, raw, _| raw).await.unwrap();
        assert!(raw == big, "{}: content differs", b.name());
    }
}

/// A message's verdicts record (issue 13's authentication checks) comes
/// back with its content, and a message withdrawn after its commit (a sync
/// route or DMARC refused it) leaves nothing: no content, no verdicts, no
/// work, also after a restart.
#[tokio::test]
async fn verdicts_come_with_their_message_and_a_withdrawn_message_leaves_nothing() {
    for b in backends().await {
        let store = b.open().await;
        let mut incoming = store.intake().accept(envelope(1)).await.unwrap();
        incoming.write(CONTENT).await.unwrap();
        let committed = incoming.commit().await.unwrap();
        let id = committed.envelope().id.clone();
        committed
            .attach(RECORDS_AUTH, b"{\"verdicts\":1}".to_vec())
            .await
            .unwrap();
        let (raw, auth) = committed
            .with_content(|_, raw, auth| (raw, auth))
            .await
            .unwrap();
        assert_eq!(raw, CONTENT, "{}", b.name());
        assert_eq!(
            auth.as_deref(),
            Some(&b"{\"verdicts\":1}"[..]),
            "{}",
            b.name()
        );
        assert_eq!(committed.content().await.unwrap(), CONTENT, "{}", b.name());

        committed.withdraw().await.unwrap();
        assert!(!store.is_committed(&id).await.unwrap(), "{}", b.name());
        assert!(store.read_message(&id).await.is_err(), "{}", b.name());
        let name = format!("{id}.json");
        assert_eq!(
            store.read_record(RECORDS_AUTH, &name).await.unwrap(),
            None,
            "{}: verdicts outlived their message",
            b.name()
        );
        let store = b.open().await;
        assert!(claim_all(&store).await.is_empty(), "{}", b.name());
    }
}

/// Kept attachments (the bytes behind signed links) outlive their
/// message, serve byte ranges, keep the later expiry when kept again, and
/// go at the sweep after it.
#[tokio::test]
async fn kept_parts_outlive_their_message_serve_ranges_and_expire() {
    use tokio::io::AsyncReadExt as _;
    for b in backends().await {
        let store = b.open().await;
        let env = store.intake().submit(envelope(1), CONTENT).await.unwrap();
        let part = |expires| KeptPart {
            index: 1,
            meta: KeptMeta {
                content_type: "application/pdf".into(),
                filename: Some("r\u{e9}sum\u{e9}.pdf".into()),
                sha256: "ab".repeat(32),
                size: 10,
                expires,
            },
            bytes: b"0123456789".to_vec(),
        };
        store.keep(&env.id, vec![part(1000)], 1000).await.unwrap();
        // The message is delivered and removed: the part stays.
        for lease in claim_all(&store).await {
            store
                .finish(&lease, 1, false, &DeliveryState::fresh())
                .await
                .unwrap();
        }
        let kept = store.open_kept(&env.id, 1).await.unwrap().expect("kept");
        assert_eq!(kept.meta, part(1000).meta, "{}", b.name());
        let mut slice = Vec::new();
        kept.range(2, 5)
            .await
            .unwrap()
            .read_to_end(&mut slice)
            .await
            .unwrap();
        assert_eq!(slice, b"23456", "{}", b.name());
        assert!(store.open_kept(&env.id, 0).await.unwrap().is_none());

        // Linked again later: the later expiry holds.
        store.keep(&env.id, vec![part(2000)], 2000).await.unwrap();
        let store = b.open().await;
        assert_eq!(store.sweep_kept(1500).await.unwrap(), 0, "{}", b.name());
        let kept = store.open_kept(&env.id, 1).await.unwrap().expect("kept");
        assert_eq!(kept.meta.expires, 2000, "{}", b.name());
        assert_eq!(store.sweep_kept(2000).await.unwrap(), 1, "{}", b.name());
        assert!(
            store.open_kept(&env.id, 1).await.unwrap().is_none(),
            "{}",
            b.name()
        );
    }
}
