//! Authentication checks through the real server (issue 13 item 2):
//! `POSTERN_AUTH_CHECKS` on, the DNS server of `tests/dns_server` on
//! loopback, clients bound to 127.0.0.x (SPF), messages signed by dkimpy;
//! the payload's `auth`, the prepended `Authentication-Results:`, a route's
//! `dmarc_reject`, a silent DNS server, and the checks off.

use std::net::IpAddr;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::auth_checks::{MESSAGE, arc_seal_with_dkimpy, publish, sign_with_dkimpy};
use crate::dns::Dns;
use crate::helpers::*;

const HOST: &str = "mx.postern.test";
const REFUSED: &str = "550 5.7.1 Email rejected per DMARC policy of the From domain";

/// The zone of these tests: signer.example signs (keys from `publish`),
/// allows 127.0.0.2 and publishes p=reject; victim.example publishes
/// p=quarantine; soft.example soft-fails others; nospf.example has none.
fn zone() -> Dns {
    let mut dns = publish();
    dns.add_txt("signer.example", "v=spf1 ip4:127.0.0.2 -all");
    dns.add_txt("_dmarc.signer.example", "v=DMARC1; p=reject");
    dns.add_txt("_dmarc.victim.example", "v=DMARC1; p=quarantine");
    dns.add_txt("soft.example", "v=spf1 ip4:127.0.0.2 ~all");
    dns.add_txt("nospf.example", "site-verification=1");
    dns
}

/// Routes: `*@reject.test` refuses DMARC rejects, everything else does
/// not; both include the raw message.
async fn app(dns_addr: &str, extra: &[(&str, &str)]) -> (App, Receiver) {
    let rx = Receiver::start().await;
    let routes = json!([
        {"match": "*@reject.test", "url": rx.url("/reject"), "secret": SECRET,
         "raw": true, "dmarc_reject": true},
        {"match": "*", "url": rx.url("/hook"), "secret": SECRET, "raw": true},
    ])
    .to_string();
    let mut vars = vec![
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_HOSTNAME", HOST),
        ("POSTERN_AUTH_CHECKS", "spf,dkim,dmarc,arc"),
        ("POSTERN_DNS_SERVERS", dns_addr),
    ];
    vars.extend_from_slice(extra);
    (spawn_app(&vars).await, rx)
}

/// One transaction from 127.0.0.`last`; the reply to the end of DATA.
async fn send_from(app: &App, last: u8, mail_from: &str, to: &[&str], raw: &[u8]) -> String {
    let mut c = Smtp::connect_from(IpAddr::from([127, 0, 0, last]), app.smtp).await;
    assert!(c.reply().await.starts_with("220"));
    assert!(c.cmd("EHLO mx.signer.example").await.starts_with("250"));
    let reply = c.send_raw_mail(mail_from, to, raw).await;
    c.cmd("QUIT").await;
    reply
}

/// (client 127.0.0.x, MAIL FROM, message, SPF result, DKIM results, DMARC).
type Case<'a> = (u8, &'a str, &'a str, &'a str, Vec<&'a str>, Value);

/// The payload of message `id` among `hits`.
fn payload_of(hits: &[Hit], id: &str) -> Value {
    hits.iter()
        .map(Hit::json)
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no payload for {id}"))
}

/// The `Authentication-Results` header values of a payload, in order.
fn results_headers(p: &Value) -> Vec<String> {
    p["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| {
            h["name"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("authentication-results")
        })
        .map(|h| h["value"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn verdicts_reach_the_payload_and_our_header_replaces_forged_ones() {
    let dns = zone();
    let (app, rx) = app(&dns.addr(), &[]).await;
    let signed =
        String::from_utf8(sign_with_dkimpy(MESSAGE, "signer.example", "rsa1", "rsa-sha256").await)
            .unwrap();
    let header_changed = signed.replace("Subject: Quarterly report", "Subject: Quarterly rep0rt");
    let body_changed = signed.replace("The numbers  are in.", "The numbers are out.");
    let spoofed = MESSAGE.replace("alice@signer.example", "alice@victim.example");
    // Sealed by a forwarder (ARC), not DKIM-signed, relayed from a client
    // SPF refuses: only the chain passes.
    let sealed =
        String::from_utf8(arc_seal_with_dkimpy(MESSAGE, "signer.example", "rsa1").await).unwrap();
    let forged = format!(
        "Authentication-Results: {}; dkim=pass header.d=signer.example\r\n\
         Authentication-Results: mx.other.example; spf=pass\r\n{MESSAGE}",
        HOST.to_uppercase()
    );
    // (client, MAIL FROM, message) → spf, dkim results, dmarc (result, policy, aligned)
    let cases: Vec<Case> = vec![
        (
            2,
            "b@signer.example",
            &signed,
            "pass",
            vec!["pass"],
            json!({"result": "pass", "policy": "reject", "aligned": true}),
        ),
        (
            9,
            "b@signer.example",
            &signed,
            "fail",
            vec!["pass"],
            json!({"result": "pass", "policy": "reject", "aligned": true}),
        ),
        (
            9,
            "b@signer.example",
            &header_changed,
            "fail",
            vec!["fail"],
            json!({"result": "fail", "policy": "reject", "aligned": false}),
        ),
        (
            9,
            "b@signer.example",
            &body_changed,
            "fail",
            vec!["fail"],
            json!({"result": "fail", "policy": "reject", "aligned": false}),
        ),
        (
            9,
            "b@soft.example",
            MESSAGE,
            "softfail",
            vec![],
            json!({"result": "fail", "policy": "reject", "aligned": false}),
        ),
        (
            9,
            "b@nospf.example",
            MESSAGE,
            "none",
            vec![],
            json!({"result": "fail", "policy": "reject", "aligned": false}),
        ),
        // SPF passes, but for another domain than From's: not aligned.
        (
            2,
            "b@signer.example",
            &spoofed,
            "pass",
            vec![],
            json!({"result": "fail", "policy": "quarantine", "aligned": false}),
        ),
        (
            2,
            "b@signer.example",
            &forged,
            "pass",
            vec![],
            json!({"result": "pass", "policy": "reject", "aligned": true}),
        ),
        (
            9,
            "b@signer.example",
            &sealed,
            "fail",
            vec![],
            json!({"result": "fail", "policy": "reject", "aligned": false}),
        ),
    ];
    const SEALED: usize = 8;
    let mut ids = Vec::new();
    for (last, from, message, ..) in &cases {
        let reply = send_from(&app, *last, from, &["bob@postern.test"], message.as_bytes()).await;
        ids.push(queue_id(&reply));
    }
    let hits = rx.wait_for(cases.len(), 30).await;
    for (i, ((last, from, _, spf, dkim, dmarc), id)) in cases.iter().zip(&ids).enumerate() {
        let p = payload_of(&hits, id);
        let what = format!("127.0.0.{last} {from}: {}", p["auth"]);
        let auth = &p["auth"];
        assert_eq!(auth["spf"]["result"], *spf, "{what}");
        assert_eq!(
            auth["spf"]["domain"],
            from.split('@').nth(1).unwrap(),
            "{what}"
        );
        let got: Vec<&str> = auth["dkim"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                assert_eq!(d["domain"], "signer.example");
                assert_eq!(d["selector"], "rsa1");
                d["result"].as_str().unwrap()
            })
            .collect();
        assert_eq!(got, *dkim, "{what}");
        for k in ["result", "policy", "aligned"] {
            assert_eq!(auth["dmarc"][k], dmarc[k], "{k}: {what}");
        }
        let arc = if i == SEALED { "pass" } else { "none" };
        assert_eq!(auth["arc"], json!({ "result": arc }), "{what}");
        // Our header comes first, in the headers and in raw, and says the same.
        let first = &p["headers"][0];
        assert_eq!(first["name"], "Authentication-Results", "{what}");
        let ours = first["value"].as_str().unwrap();
        assert!(ours.starts_with(HOST), "{ours}");
        assert!(ours.contains(&format!("spf={spf}")), "{ours}");
        assert!(
            ours.contains(&format!("dmarc={}", dmarc["result"].as_str().unwrap())),
            "{ours}"
        );
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p["raw"].as_str().unwrap())
            .unwrap();
        assert!(raw.starts_with(format!("Authentication-Results: {HOST};").as_bytes()));
    }
    // The forged header claiming our id is gone; another host's stays.
    let forged_payload = payload_of(&hits, &ids[7]);
    let headers = results_headers(&forged_payload);
    assert_eq!(headers.len(), 2, "{headers:?}");
    assert!(
        headers[0].starts_with(HOST) && headers[0].contains("dkim=none"),
        "{headers:?}"
    );
    assert!(
        headers[1].starts_with("mx.other.example; spf=pass"),
        "{headers:?}"
    );
    assert!(!dns.queries().is_empty());
    // Every verdict is counted.
    let metrics = metrics(&app).await;
    let n = sample(
        &metrics,
        r#"postern_auth_results_total{check="dkim",result="fail"}"#,
    );
    assert_eq!(n, Some(2.0), "{metrics}");
    assert_eq!(
        sample(&metrics, "postern_auth_check_duration_seconds_count"),
        Some(cases.len() as f64)
    );
    app.stop().await;
}

#[tokio::test]
async fn dmarc_reject_refuses_a_reject_policy_failure_and_nothing_else() {
    let dns = zone();
    let (app, rx) = app(&dns.addr(), &[]).await;
    let spoofed = MESSAGE.replace("alice@signer.example", "alice@victim.example");
    // From signer.example (p=reject), unsigned, from a client SPF refuses.
    let failing = MESSAGE.as_bytes();
    let cases: &[(&[&str], &[u8], &str)] = &[
        (&["bob@reject.test"], failing, REFUSED),
        // One recipient on a rejecting route refuses the whole message.
        (&["bob@postern.test", "bob@reject.test"], failing, REFUSED),
        // Routes without the option take it, with the verdict.
        (&["bob@postern.test"], failing, "250 "),
        // p=quarantine is not reject.
        (&["bob@reject.test"], spoofed.as_bytes(), "250 "),
    ];
    let mut accepted = Vec::new();
    for (to, message, want) in cases {
        let reply = send_from(&app, 9, "b@signer.example", to, message).await;
        assert!(reply.starts_with(want), "{to:?}: {reply}");
        if reply.starts_with("250") {
            accepted.push(queue_id(&reply));
        } else {
            assert_eq!(reply, REFUSED);
        }
    }
    let hits = rx.wait_for(accepted.len(), 30).await;
    assert_eq!(hits.len(), accepted.len());
    let p = payload_of(&hits, &accepted[0]);
    assert_eq!(p["auth"]["dmarc"]["result"], "fail");
    assert_eq!(p["auth"]["dmarc"]["policy"], "reject");
    // Refused messages left nothing behind; delivered ones took their
    // verdicts with them.
    // (The record goes just after the message: wait for both.)
    wait_until(
        10,
        || {
            let (msg, auth) = (pending(&app.spool), listing(&app.spool, "auth"));
            format!("spool emptied: {msg:?} {auth:?}")
        },
        || spooled(&app.spool) + count(&app.spool, "auth") == 0,
    )
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_silent_dns_server_gives_temperror_without_refusing_or_hanging() {
    // Takes queries, never answers (and nothing listens on its TCP port).
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (app, rx) = app(&addr, &[("POSTERN_DNS_TIMEOUT", "300ms")]).await;
    let signed = sign_with_dkimpy(MESSAGE, "signer.example", "rsa1", "rsa-sha256").await;
    // read_reply gives up after 10 s; the checks' budget is 1.5 s.
    let reply = send_from(&app, 9, "b@signer.example", &["bob@reject.test"], &signed).await;
    let id = queue_id(&reply);
    let hits = rx.wait_for(1, 30).await;
    let auth = &payload_of(&hits, &id)["auth"];
    assert_eq!(auth["spf"]["result"], "temperror", "{auth}");
    assert_eq!(auth["dkim"][0]["result"], "temperror", "{auth}");
    assert_eq!(auth["dmarc"]["result"], "temperror", "{auth}");
    app.stop().await;
}

#[tokio::test]
async fn checks_off_ask_no_dns_and_add_nothing() {
    let dns = zone();
    let (app, rx) = app_with_receiver(&[("POSTERN_HOSTNAME", HOST)]).await;
    let forged = format!("Authentication-Results: {HOST}; dkim=pass\r\n{MESSAGE}");
    let reply = send_from(
        &app,
        2,
        "b@signer.example",
        &["bob@postern.test"],
        forged.as_bytes(),
    )
    .await;
    let id = queue_id(&reply);
    let hits = rx.wait_for(1, 30).await;
    let p = payload_of(&hits, &id);
    assert!(p.get("auth").is_none(), "{}", p["auth"]);
    // Nothing checked, nothing added or removed: the message as received.
    assert_eq!(results_headers(&p), [format!("{HOST}; dkim=pass")]);
    assert_eq!(dns.queries(), Vec::<String>::new());
    assert_eq!(count(&app.spool, "auth"), 0);
    app.stop().await;
}

/// A sync route's payload (POSTed during DATA, before the reply) carries
/// the verdicts and our `Authentication-Results:` like the worker's: the
/// checks run first.
#[tokio::test]
async fn a_sync_routes_payload_carries_the_verdicts() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let rx = Receiver::start().await;
    let routes = json!([
        {"match": "*", "url": rx.url("/sync"), "secret": SECRET, "mode": "sync"},
    ])
    .to_string();
    let app = spawn_app(&[
        ("POSTERN_ROUTES", routes.as_str()),
        ("POSTERN_HOSTNAME", HOST),
        ("POSTERN_AUTH_CHECKS", "spf,dkim,dmarc"),
        ("POSTERN_DNS_SERVERS", addr.as_str()),
        ("POSTERN_DNS_TIMEOUT", "200ms"),
    ])
    .await;
    let reply = send_from(
        &app,
        9,
        "b@signer.example",
        &["bob@x.test"],
        MESSAGE.as_bytes(),
    )
    .await;
    assert!(reply.starts_with("250 "), "{reply}");
    // Asked before the 250: the POST is there already.
    let hits = rx.hits();
    assert_eq!(hits.len(), 1);
    let p = hits[0].json();
    assert_eq!(p["auth"]["spf"]["result"], "temperror", "{p}");
    let ours = results_headers(&p);
    assert!(ours[0].starts_with(HOST), "{ours:?}");
    app.stop().await;
}
