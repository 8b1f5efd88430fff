//! The spool's promise at the SMTP boundary: trouble writing is a
//! temporary reply, never a 250, never a crash; service resumes after.

use std::time::Duration;

use crate::helpers::*;

/// `tmp/` is where a message larger than the log's 256 KB records is
/// staged: when it cannot be written, such a message gets `451` (and a
/// small one, which goes to the log, is still taken).
#[tokio::test]
async fn unwritable_spool_is_451_then_recovers() {
    let (app, rx) = app_with_receiver(&[]).await;
    let tmp = app.spool.join("tmp");
    std::fs::remove_dir(&tmp).unwrap();
    // A file where the staging directory should be: every create fails
    // (ENOTDIR), even for root, unlike a permission change.
    std::fs::write(&tmp, b"not a directory").unwrap();
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let big = format!(
        "Subject: big\r\n\r\n{}",
        ("y".repeat(998) + "\r\n").repeat(400)
    );
    assert_eq!(
        c.send_mail("a@b.test", &["bob@example.com"], &big).await,
        "451 4.3.0 Local error in processing, try again later"
    );
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            "Subject: small\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "the log is not tmp/: {r}");
    assert_eq!(rx.wait_for(1, 10).await[0].json()["subject"], "small");
    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    // and a large one works again
    let after = big.replace("Subject: big", "Subject: after");
    let r = c.send_mail("a@b.test", &["bob@example.com"], &after).await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(2, 10).await;
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].json()["subject"], "after");
}

/// The log on a full disk: its append fails, the message gets `452`, the
/// segment is cut back to whole records, and mail flows once there is room.
#[tokio::test]
async fn a_full_disk_under_the_log_is_452_and_recovers() {
    let Some((dir, _guard)) = small_tmpfs("log full-disk test") else {
        return;
    };
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let spool = dir.path().display().to_string();
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
    ])
    .await;
    // Fill the filesystem but for ~40 KB.
    let filler = dir.path().join("filler");
    let free = || {
        let st = rustix::fs::statvfs(dir.path()).unwrap();
        st.f_bavail * st.f_frsize
    };
    std::fs::write(
        &filler,
        vec![0u8; (free() as usize).saturating_sub(40 * 1024)],
    )
    .unwrap();
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    // 120 KB: a log record, larger than the room left.
    let body = format!(
        "Subject: big\r\n\r\n{}",
        ("q".repeat(998) + "\r\n").repeat(120)
    );
    let r = c.send_mail("a@b.test", &["bob@example.com"], &body).await;
    assert_eq!(r, "452 4.3.1 Insufficient system storage, try again later");
    std::fs::remove_file(&filler).unwrap();
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            &body.replace("big", "again"),
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.hits().len(), 1, "the refused one is not delivered");
    assert_eq!(hits[0].json()["subject"], "again");
}

/// Unmounts the tmpfs even when the test fails.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A 256 KiB tmpfs on a fresh directory, or `None` (with a note) where
/// mounting needs a root this test does not have.
fn small_tmpfs(test: &str) -> Option<(tempfile::TempDir, Mount)> {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .output();
    match mounted {
        Ok(o) if o.status.success() => {
            let guard = Mount(dir.path().to_path_buf());
            Some((dir, guard))
        }
        _ => {
            eprintln!("SKIPPED {test}: cannot mount a tmpfs here (needs root)");
            None
        }
    }
}

#[tokio::test]
async fn full_disk_is_452_and_nothing_partial_is_delivered() {
    let Some((dir, _guard)) = small_tmpfs("full_disk test") else {
        return;
    };
    let rx = Receiver::start().await;
    let url = rx.url("/hook");
    let spool = dir.path().display().to_string();
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_RETRY_SCHEDULE", "50ms"),
    ])
    .await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    // 512 KB into a 256 KB filesystem
    let body = format!(
        "Subject: big\r\n\r\n{}",
        ("z".repeat(998) + "\r\n").repeat(520)
    );
    let r = c.send_mail("a@b.test", &["bob@example.com"], &body).await;
    assert_eq!(r, "452 4.3.1 Insufficient system storage, try again later");
    // the partial file is gone, so space is back, and small mail flows again
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            "Subject: small\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hits = rx.wait_for(1, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let subjects: Vec<_> = rx
        .hits()
        .iter()
        .map(|h| h.json()["subject"].clone())
        .collect();
    assert_eq!(
        subjects,
        vec![serde_json::json!("small")],
        "only the complete message arrives"
    );
    assert_eq!(hits.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn readyz_fails_while_the_spool_has_less_room_than_one_message() {
    let Some((dir, _guard)) = small_tmpfs("readyz free-space test") else {
        return;
    };
    let spool = dir.path().display().to_string();
    let ready = |app: &App| {
        let url = format!("http://{}/readyz", app.http);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    // 256 KB free, messages up to 1 MB: every DATA would get 452.
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_MAX_MESSAGE_SIZE", "1M"),
    ])
    .await;
    let (code, body) = ready(&app).await;
    assert_eq!(code, 503, "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("spool free space (")
            && reason.ends_with("bytes) is below the maximum message size (1048576 bytes)"),
        "{reason}"
    );
    app.stop().await;
    // Messages that fit: ready.
    let app = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", "http://127.0.0.1:9/hook"),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_MAX_MESSAGE_SIZE", "64K"),
    ])
    .await;
    assert_eq!(
        ready(&app).await,
        (200, serde_json::json!({"status": "ready"}))
    );
    app.stop().await;
}

#[tokio::test]
async fn idle_client_is_timed_out() {
    let (app, _rx) = app_with_receiver(&[("POSTERN_SMTP_IDLE_TIMEOUT", "300ms")]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    assert_eq!(c.cmd("EHLO client.test").await.lines().count(), 6);
    let started = std::time::Instant::now();
    assert_eq!(
        c.reply().await,
        "421 4.4.2 Idle timeout, closing connection"
    );
    assert!(c.closed().await);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn development_mode_delivers_to_the_built_in_inbox() {
    let app = spawn_app(&[]).await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail(
            "alice@example.org",
            &["anyone@anywhere.test"],
            "Subject: dev\r\n\r\nhello\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let url = format!("http://{}/dev/inbox", app.http);
    let mut inbox = serde_json::Value::Null;
    for _ in 0..200 {
        inbox = reqwest::get(&url).await.unwrap().json().await.unwrap();
        if inbox["count"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(inbox["count"], 1, "{inbox}");
    assert_eq!(inbox["messages"][0]["verified"], true);
    assert_eq!(inbox["messages"][0]["payload"]["subject"], "dev");
    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", app.http))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    // a forged request to the dev inbox is refused
    let forged = reqwest::Client::new()
        .post(&url)
        .header("webhook-id", "msg_x")
        .header(
            "webhook-timestamp",
            time::OffsetDateTime::now_utc().unix_timestamp().to_string(),
        )
        .header("webhook-signature", "v1,AAAA")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

/// Fixing a wrong webhook URL and restarting redirects mail already in the
/// spool: the endpoint is resolved from the route at each attempt.
#[tokio::test]
async fn restart_with_a_fixed_url_redirects_spooled_mail() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().display().to_string();
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/nobody-home", probe.local_addr().unwrap());
    drop(probe);
    let first = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &dead_url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_RETRY_SCHEDULE", "1h"),
    ])
    .await;
    let (mut c, _) = Smtp::connect(first.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_mail(
            "a@b.test",
            &["bob@example.com"],
            "Subject: redirected\r\n\r\nx\r\n",
        )
        .await;
    assert!(r.starts_with("250 "), "{r}");
    // wait for the failed first attempt to be recorded
    for _ in 0..250 {
        if std::fs::read_dir(dir.path().join("state")).unwrap().count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.stop().await;

    let rx = Receiver::start().await;
    let url = rx.url("/fixed");
    let second = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
        ("POSTERN_RETRY_SCHEDULE", "1h"),
    ])
    .await;
    // the retry is an hour away: a restart alone does not hurry it...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.hits().is_empty());
    second.stop().await;
    // ...so make it due now, as an operator replaying it would
    for e in std::fs::read_dir(dir.path().join("state")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let third = spawn_app(&[
        ("POSTERN_WEBHOOK_URL", &url),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_SPOOL_DIR", &spool),
    ])
    .await;
    let hits = rx.wait_for(1, 10).await;
    assert_eq!(hits[0].path, "/fixed");
    assert_eq!(hits[0].json()["subject"], "redirected");
    assert!(hits[0].verify());
    third.stop().await;
}
