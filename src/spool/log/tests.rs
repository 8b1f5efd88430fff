use super::*;

fn open(dir: &Path, segment_bytes: u64) -> (Log, Recovered) {
    Log::open(
        &dir.join("segments"),
        &dir.join("corrupt"),
        true,
        segment_bytes,
    )
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn appended_messages_are_read_back_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
    let (log, rec) = open(dir.path(), SEGMENT_BYTES);
    assert!(rec.pending.is_empty());
    rt().block_on(async {
        for i in 0..5 {
            log.append(&format!("m{i}"), format!("content {i}").as_bytes())
                .await
                .unwrap();
        }
    });
    assert_eq!(log.read("m3", false).unwrap().unwrap(), b"content 3");
    assert_eq!(log.size("m3"), Some(9));
    assert!(log.finish_blocking("m1", None, false).unwrap());
    assert!(
        log.finish_blocking("m2", Some((1000, b"{\"s\":2}")), false)
            .unwrap()
    );
    assert!(
        log.finish_blocking("m4", Some((3000, b"{\"s\":4}")), false)
            .unwrap()
    );
    assert!(
        !log.finish_blocking("m1", None, false).unwrap(),
        "not twice"
    );
    assert!(
        !log.finish_blocking("m2", None, false).unwrap(),
        "kept is not pending"
    );
    assert!(log.read("m1", false).unwrap().is_none());
    assert!(
        log.read("m2", false).unwrap().is_none(),
        "kept, not pending"
    );
    assert_eq!(log.read("m2", true).unwrap().unwrap(), b"content 2");
    assert_eq!(log.sidecar("m2").unwrap().unwrap(), b"{\"s\":2}");
    drop(log);

    let (log, rec) = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(rec.pending, ["m0", "m3"]);
    assert_eq!(rec.kept, 2);
    let mut kept = log.kept();
    kept.sort();
    assert_eq!(kept, ["m2", "m4"]);
    assert_eq!(log.sidecar("m4").unwrap().unwrap(), b"{\"s\":4}");
    assert_eq!(log.read("m4", true).unwrap().unwrap(), b"content 4");
    assert_eq!(log.read("m3", false).unwrap().unwrap(), b"content 3");
    // The history sweep: m2 finished before the cut-off, m4 after.
    assert_eq!(log.expire(2000), 1);
    assert!(log.read("m2", true).unwrap().is_none());
    assert!(log.sidecar("m2").unwrap().is_none());
    assert_eq!(log.kept(), ["m4"]);
    drop(log);
    // Expiry is by time and not recorded: after a restart m2 is back
    // until the sweep looks at its time again.
    let (log, rec) = open(dir.path(), SEGMENT_BYTES);
    assert_eq!(rec.kept, 2);
    assert_eq!(log.expire(2000), 1);
    // Every start writes to a segment of its own; the later ones are empty
    // but wait behind the first (oldest first).
    assert_eq!(log.segments(), 3);
}

#[test]
fn finished_segments_are_deleted_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
    // Three records of ~1 KB per segment.
    let (log, _) = open(dir.path(), 3000);
    let body = vec![b'x'; 1000];
    rt().block_on(async {
        for i in 0..12 {
            log.append(&format!("m{i:02}"), &body).await.unwrap();
        }
    });
    let on_disk = || {
        std::fs::read_dir(dir.path().join("segments"))
            .unwrap()
            .count()
    };
    assert_eq!(on_disk(), 4);
    assert_eq!(log.segments(), 4);
    // Finishing the newer segments' messages deletes nothing: m00 holds
    // the oldest, and Done records live in later segments.
    for i in 3..12 {
        log.finish_blocking(&format!("m{i:02}"), None, false)
            .unwrap();
    }
    assert!(on_disk() >= 4);
    for i in [1, 2, 0] {
        log.finish_blocking(&format!("m{i:02}"), None, false)
            .unwrap();
    }
    assert_eq!(on_disk(), 1, "only the segment being written is left");
    drop(log);
    let (_, rec) = open(dir.path(), 3000);
    assert!(rec.pending.is_empty(), "{:?}", rec.pending);
}

#[test]
fn a_pending_message_holding_up_old_segments_is_named_stuck() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
    let (log, _) = open(dir.path(), 3000);
    let body = vec![b'x'; 1000];
    rt().block_on(async {
        for i in 0..18 {
            log.append(&format!("m{i:02}"), &body).await.unwrap();
        }
    });
    for i in 1..18 {
        log.finish_blocking(&format!("m{i:02}"), None, false)
            .unwrap();
    }
    assert_eq!(log.stuck(), ["m00"]);
    // Moved out (the spool writes its file first), then finished here.
    log.finish_blocking("m00", None, true).unwrap();
    assert!(log.stuck().is_empty());
    assert_eq!(log.segments(), 1);
}

/// A crash part-way through a write: whatever was cut, every message
/// acknowledged before the torn batch is recovered whole, and the torn
/// bytes are set aside and cut, so the next start is clean.
#[test]
fn a_torn_tail_keeps_every_acknowledged_message_and_is_set_aside() {
    use rand::Rng as _;
    let mut rng = rand::thread_rng();
    for round in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
        let (log, _) = open(dir.path(), SEGMENT_BYTES);
        let acked = rng.gen_range(1..20);
        rt().block_on(async {
            for i in 0..acked {
                let body = vec![b'a' + (i % 26) as u8; rng.gen_range(0..3000)];
                log.append(&format!("m{i:03}"), &body).await.unwrap();
            }
        });
        drop(log);
        let seg = dir.path().join("segments").join(segment_name(1));
        let good = std::fs::metadata(&seg).unwrap().len();
        // The torn batch: more records, then cut at a random offset in
        // them (or garbage after them).
        let mut torn = Vec::new();
        let mut ends = Vec::new();
        for i in 0..rng.gen_range(1..5) {
            record::encode(&mut torn, Kind::Message, &format!("t{i}"), &vec![b'z'; 500]);
            ends.push(torn.len());
        }
        // Never on a record boundary: a cut there tears nothing (every
        // byte left is a whole record), which is not this test's case.
        let cut = loop {
            let cut = rng.gen_range(1..torn.len());
            if !ends.contains(&cut) {
                break cut;
            }
        };
        torn.truncate(cut);
        if round % 3 == 0 {
            torn.extend((0..rng.gen_range(1..100)).map(|_| rng.r#gen::<u8>()));
        }
        {
            use std::os::unix::fs::FileExt as _;
            let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
            f.write_all_at(&torn, good).unwrap();
        }
        let (log, rec) = open(dir.path(), SEGMENT_BYTES);
        let want: Vec<String> = (0..acked).map(|i| format!("m{i:03}")).collect();
        let mut got: Vec<String> = rec
            .pending
            .iter()
            .filter(|id| id.starts_with('m'))
            .cloned()
            .collect();
        got.sort();
        assert_eq!(got, want, "round {round}");
        for id in &rec.pending {
            // Whatever is recovered is whole (a `t` record only when its
            // bytes all made it).
            let content = log.read(id, false).unwrap().unwrap();
            if id.starts_with('t') {
                assert_eq!(content, vec![b'z'; 500]);
            }
        }
        drop(log);
        // Cut back to the valid records (the acknowledged ones at least).
        let len = std::fs::metadata(&seg).unwrap().len();
        assert!(
            len >= good && len < good + torn.len() as u64,
            "round {round}: {len} bytes, {good} good, {cut} cut"
        );
        let aside = std::fs::read_dir(dir.path().join("corrupt"))
            .unwrap()
            .count();
        let (_, again) = open(dir.path(), SEGMENT_BYTES);
        assert_eq!(again.torn, 0, "cut once, clean after");
        assert_eq!(again.pending, rec.pending);
        assert_eq!(
            std::fs::read_dir(dir.path().join("corrupt"))
                .unwrap()
                .count(),
            aside
        );
    }
}
