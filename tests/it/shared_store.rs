//! Postern on the shared PostgreSQL store (#12), in-process: mail flows
//! through the database, and an outage of the database is a temporary
//! failure (`451 4.3.0`, `/readyz` 503), never a `250`, until it returns.

use std::time::Duration;

use crate::database::{Cluster, fresh_database_url};
use crate::helpers::{Smtp, app_with_receiver};

async fn readyz(http: std::net::SocketAddr) -> u16 {
    reqwest::get(format!("http://{http}/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// One message with `subject` on a new session; the reply to its DATA.
pub async fn send(smtp: std::net::SocketAddr, subject: &str) -> String {
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.test").await;
    c.send_mail(
        "a@example.org",
        &["b@example.com"],
        &format!("Subject: {subject}\r\nMessage-ID: <{subject}@test>\r\n\r\nhi\r\n"),
    )
    .await
}

#[tokio::test]
async fn mail_flows_through_the_database_and_an_outage_is_a_451() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = fresh_database_url(&cluster.url()).await;
    let (app, rx) = app_with_receiver(&[("POSTERN_DATABASE_URL", url.as_str())]).await;
    let reply = send(app.smtp, "one").await;
    assert!(reply.starts_with("250 "), "{reply}");
    rx.wait_for(1, 10).await;
    assert_eq!(readyz(app.http).await, 200);

    cluster.down();
    let reply = send(app.smtp, "two").await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    assert_eq!(readyz(app.http).await, 503);

    cluster.up();
    // Mail flows again on its own, on fresh connections.
    let mut accepted = false;
    for _ in 0..50 {
        let reply = send(app.smtp, "three").await;
        if reply.starts_with("250 ") {
            accepted = true;
            break;
        }
        assert!(reply.starts_with("451 4.3.0"), "{reply}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(accepted, "no 250 after the database came back");
    let hits = rx.wait_for(2, 10).await;
    let subjects: Vec<String> = hits
        .iter()
        .map(|h| h.json()["subject"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        subjects,
        ["one", "three"],
        "the 451'd message was delivered"
    );
    assert_eq!(readyz(app.http).await, 200);
    app.stop().await;
}
