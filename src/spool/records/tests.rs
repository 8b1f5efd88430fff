use super::*;

fn open(dir: &Path, segment_bytes: u64) -> Records {
    Records::open(
        &dir.join("records"),
        &dir.join("corrupt"),
        true,
        segment_bytes,
    )
    .unwrap()
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
    dir
}

fn get(r: &Records, key: &str) -> Option<String> {
    r.get(key).unwrap().map(|b| String::from_utf8(b).unwrap())
}

#[tokio::test]
async fn the_last_put_of_a_key_is_its_value_before_and_after_a_restart() {
    let dir = setup();
    let r = open(dir.path(), SEGMENT_BYTES);
    r.put("outbox/a.json", b"queued").await.unwrap();
    r.put("outbox/b.json", b"other").await.unwrap();
    r.put("outbox/a.json", b"sent").await.unwrap();
    assert_eq!(get(&r, "outbox/a.json").as_deref(), Some("sent"));
    assert_eq!(get(&r, "outbox/b.json").as_deref(), Some("other"));
    assert_eq!(get(&r, "outbox/c.json"), None);
    assert!(r.contains("outbox/a.json") && !r.contains("idem/a.json"));
    drop(r);
    let r = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(get(&r, "outbox/a.json").as_deref(), Some("sent"));
    assert_eq!(get(&r, "outbox/b.json").as_deref(), Some("other"));
}

#[tokio::test]
async fn many_writers_at_once_each_get_their_own_value() {
    let dir = setup();
    let r = open(dir.path(), 4096);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let r = r.clone();
            tokio::spawn(async move {
                for round in 0..20 {
                    let v = format!("{i}-{round}");
                    r.put(&format!("outbox/{i}.json"), v.as_bytes())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    r.settle().await;
    for i in 0..50 {
        assert_eq!(
            get(&r, &format!("outbox/{i}.json")),
            Some(format!("{i}-19"))
        );
    }
    // 1000 Puts of ~40 bytes in 4 KB segments, 50 live: the dead ones
    // were compacted away rather than kept.
    assert!(r.segments() < 10, "{} segments", r.segments());
    drop(r);
    let r = open(dir.path(), 4096);
    for i in 0..50 {
        assert_eq!(
            get(&r, &format!("outbox/{i}.json")),
            Some(format!("{i}-19"))
        );
    }
}

#[tokio::test]
async fn compaction_never_brings_back_an_older_value() {
    let dir = setup();
    // Small segments: every few Puts roll, and compaction runs often.
    let mut r = open(dir.path(), 300);
    for round in 0..30 {
        for k in ["a", "b", "c"] {
            r.put(&format!("outbox/{k}"), format!("{k}{round}").as_bytes())
                .await
                .unwrap();
        }
        // One key written once: its segment is not sparse for long, and
        // the older segments behind it wait.
        if round == 0 {
            r.put("idem/keep", b"first").await.unwrap();
        }
        if round % 7 == 6 {
            // What a restart sees now.
            r.settle().await;
            drop(r);
            r = open(dir.path(), 300);
            for k in ["a", "b", "c"] {
                assert_eq!(get(&r, &format!("outbox/{k}")), Some(format!("{k}{round}")));
            }
            assert_eq!(get(&r, "idem/keep").as_deref(), Some("first"));
        }
    }
    r.settle().await;
    assert!(r.segments() < 12, "{} segments", r.segments());
}

#[tokio::test]
async fn expired_records_go_by_directory_and_age() {
    let dir = setup();
    let r = open(dir.path(), SEGMENT_BYTES);
    r.put("outbox/old.json", b"1").await.unwrap();
    r.put("idem/old", b"2").await.unwrap();
    let cutoff = crate::spool::now_ms() + 1;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    r.put("outbox/new.json", b"3").await.unwrap();
    assert_eq!(r.expire("outbox", cutoff), 1);
    assert_eq!(get(&r, "outbox/old.json"), None);
    assert_eq!(get(&r, "idem/old").as_deref(), Some("2"));
    assert_eq!(get(&r, "outbox/new.json").as_deref(), Some("3"));
    assert_eq!(r.expire("outbox", cutoff), 0);
    // No tombstones: after a restart the record is read again, with its
    // write time, and the start-up sweep expires it the same way.
    r.settle().await;
    drop(r);
    let r = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(r.expire("outbox", cutoff), 1);
    assert_eq!(get(&r, "outbox/new.json").as_deref(), Some("3"));
}

#[tokio::test]
async fn once_everything_expired_the_old_segments_are_deleted() {
    let dir = setup();
    let r = open(dir.path(), 200);
    for i in 0..40 {
        r.put(&format!("outbox/{i}"), &[b'x'; 50]).await.unwrap();
    }
    r.settle().await;
    assert!(r.segments() > 5);
    assert_eq!(r.expire("outbox", u64::MAX), 40);
    r.settle().await;
    assert_eq!(r.segments(), 1, "only the active segment is left");
    let files = std::fs::read_dir(dir.path().join("records"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

/// Cut the last segment anywhere: every whole record before the cut is
/// read back (the last whole Put of each key wins), nothing after it, and
/// the cut bytes are set aside.
#[tokio::test]
async fn a_torn_tail_keeps_exactly_the_whole_records() {
    let dir = setup();
    let r = open(dir.path(), SEGMENT_BYTES);
    let mut puts = Vec::new();
    for i in 0..12 {
        let key = format!("outbox/{}", i % 4);
        let value = format!("v{i}-{}", "y".repeat(i * 7));
        r.put(&key, value.as_bytes()).await.unwrap();
        puts.push((key, value));
    }
    r.settle().await;
    drop(r);
    let seg_dir = dir.path().join("records");
    let mut names: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let path = names.last().unwrap().clone();
    let whole = std::fs::read(&path).unwrap();
    // Record ends, from the framing.
    let mut ends = Vec::new();
    let mut at = MAGIC.len();
    while at < whole.len() {
        let len = u32::from_le_bytes(whole[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
        ends.push(at);
    }
    assert_eq!(ends.len(), puts.len());
    let mut state = 0x2545_f491_u64;
    for _ in 0..25 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let cut = MAGIC.len() + (state as usize) % (whole.len() - MAGIC.len());
        // Fresh directory holding the cut segment only.
        let d = setup();
        std::fs::create_dir_all(d.path().join("records")).unwrap();
        std::fs::write(
            d.path().join("records").join(path.file_name().unwrap()),
            &whole[..cut],
        )
        .unwrap();
        let r = open(d.path(), SEGMENT_BYTES);
        let kept = ends.iter().filter(|&&e| e <= cut).count();
        let mut expected = std::collections::HashMap::new();
        for (k, v) in &puts[..kept] {
            expected.insert(k.clone(), v.clone());
        }
        for i in 0..4 {
            let key = format!("outbox/{i}");
            assert_eq!(get(&r, &key), expected.get(&key).cloned(), "cut at {cut}");
        }
        let aside = d.path().join("corrupt").read_dir().unwrap().count();
        assert_eq!(aside, usize::from(!ends.contains(&cut)), "cut at {cut}");
    }
}

#[tokio::test]
async fn a_key_too_long_for_the_framing_is_refused() {
    let dir = setup();
    let r = open(dir.path(), SEGMENT_BYTES);
    let long = format!("outbox/{}", "k".repeat(300));
    assert!(key("outbox", &"k".repeat(300)).is_none());
    assert!(r.put(&long, b"x").await.is_err());
    assert!(key("outbox", "id.json").is_some());
}
