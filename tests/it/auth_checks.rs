//! SPF, DKIM, DMARC and ARC verification of received mail
//! (`postern::auth_checks`, issue 13 item 2), the library on its own:
//! messages signed and sealed by an independent signer (dkimpy,
//! `tests/dkim_sign.py`), records served by the DNS server on loopback
//! (`tests/dns_server/server.py`). Through the server: `auth_results.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use postern::auth_checks::Verifier;
use postern::auth_checks::dkim::{DkimVerdict, Outcome};
use postern::compose::dkim::DkimKey;
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::DecodePrivateKey as _;

use crate::dns::Dns;
use crate::helpers::python_json;

pub const MESSAGE: &str = "From: Alice <alice@signer.example>\r\n\
To: bob@postern.test\r\n\
Subject: Quarterly report\r\n\
Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
Message-ID: <q1@signer.example>\r\n\
\r\n\
The numbers  are in.\r\n\
-- \r\n\
Alice\r\n";

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/dkim/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// `MESSAGE` signed by dkimpy for `domain`/`selector` with the fixture
/// key of `algorithm` (`rsa-sha256` or `ed25519-sha256`).
async fn dkimpy_signed(domain: &str, selector: &str, algorithm: &str) -> Vec<u8> {
    sign_with_dkimpy(MESSAGE, domain, selector, algorithm).await
}

pub async fn sign_with_dkimpy(
    message: &str,
    domain: &str,
    selector: &str,
    algorithm: &str,
) -> Vec<u8> {
    dkimpy(message, domain, selector, algorithm, false).await
}

/// `message` ARC-sealed by dkimpy as forwarder `domain` (RSA key).
pub async fn arc_seal_with_dkimpy(message: &str, domain: &str, selector: &str) -> Vec<u8> {
    dkimpy(message, domain, selector, "rsa-sha256", true).await
}

async fn dkimpy(
    message: &str,
    domain: &str,
    selector: &str,
    algorithm: &str,
    arc: bool,
) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("m.eml");
    std::fs::write(&msg, message).unwrap();
    let key = dir.path().join("key");
    if algorithm == "rsa-sha256" {
        // dkimpy reads PKCS#1; the fixture is PKCS#8.
        let pem = std::fs::read_to_string(fixture("rsa2048.pem")).unwrap();
        let k = rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
        std::fs::write(&key, k.to_pkcs1_pem(Default::default()).unwrap().as_bytes()).unwrap();
    } else {
        let pem = std::fs::read_to_string(fixture("ed25519.pem")).unwrap();
        let k =
            <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(
                &pem,
            )
            .unwrap();
        let seed = base64::engine::general_purpose::STANDARD.encode(k.to_bytes());
        std::fs::write(&key, seed).unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim_sign.py");
    let script = std::fs::read_to_string(script).unwrap();
    let mut args = vec![
        msg.to_str().unwrap(),
        domain,
        selector,
        key.to_str().unwrap(),
        algorithm,
    ];
    if arc {
        args.push("arc");
    }
    let out = python_json(&script, &args, 30).await;
    base64::engine::general_purpose::STANDARD
        .decode(out["signed"].as_str().unwrap())
        .unwrap()
}

/// The DNS server with the fixture keys published as `rsa1` and `ed1`
/// of signer.example (the records as `postern doctor` prints them).
pub fn publish() -> Dns {
    let mut dns = Dns::start();
    for (selector, file) in [("rsa1", "rsa2048.pem"), ("ed1", "ed25519.pem")] {
        let pem = std::fs::read(fixture(file)).unwrap();
        let key = DkimKey::load("signer.example", selector, file, &pem).unwrap();
        dns.add_txt(&key.record_name(), &key.record_text());
    }
    dns
}

fn verifier(dns: &Dns) -> Verifier {
    let addr = SocketAddr::from(([127, 0, 0, 1], dns.port));
    Verifier::with_servers(&[addr], Duration::from_secs(2)).unwrap()
}

fn verdict(result: Outcome, selector: &str) -> DkimVerdict {
    DkimVerdict {
        result,
        domain: "signer.example".into(),
        selector: selector.into(),
    }
}

#[tokio::test]
async fn dkimpy_signatures_pass_and_changes_after_signing_fail() {
    let dns = publish();
    let v = verifier(&dns);
    for (selector, algorithm) in [("rsa1", "rsa-sha256"), ("ed1", "ed25519-sha256")] {
        let signed = dkimpy_signed("signer.example", selector, algorithm).await;
        assert_eq!(
            v.dkim(&signed).await,
            [verdict(Outcome::Pass, selector)],
            "{algorithm}"
        );
        let text = String::from_utf8(signed).unwrap();
        let header = text.replace("Subject: Quarterly report", "Subject: Quarterly rep0rt");
        let body = text.replace("The numbers  are in.", "The numbers are out.");
        for changed in [header, body] {
            assert_ne!(changed, text);
            assert_eq!(
                v.dkim(changed.as_bytes()).await,
                [verdict(Outcome::Fail, selector)],
                "{algorithm}: {changed}"
            );
        }
    }
    assert_eq!(v.dkim(MESSAGE.as_bytes()).await, [], "unsigned");
}

#[tokio::test]
async fn a_key_not_in_dns_is_permerror_and_a_silent_dns_server_temperror() {
    let dns = publish();
    let signed = dkimpy_signed("signer.example", "gone", "rsa-sha256").await;
    assert_eq!(
        verifier(&dns).dkim(&signed).await,
        [verdict(Outcome::Permerror, "gone")]
    );
    // A socket that takes queries and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let v = Verifier::with_servers(&[silent.local_addr().unwrap()], Duration::from_millis(300))
        .unwrap();
    let signed = dkimpy_signed("signer.example", "rsa1", "rsa-sha256").await;
    let started = Instant::now();
    assert_eq!(v.dkim(&signed).await, [verdict(Outcome::Temperror, "rsa1")]);
    // Bounded by the timeout (UDP, then TCP, which is refused), not hung.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn spf_results_follow_the_client_address_and_the_policy() {
    use postern::auth_checks::spf::{SpfOutcome, SpfVerdict};
    let mut dns = Dns::start();
    dns.add_txt("hard.example", "v=spf1 ip4:127.0.0.2 ip4:127.0.0.3/32 -all");
    dns.add_txt("soft.example", "v=spf1 ip4:127.0.0.2 ~all");
    dns.add_txt("neutral.example", "v=spf1 ?all");
    // An include of a domain without a policy (RFC 7208 §5.2). (Two
    // policies for one domain, §4.5, are not a permerror for mail-auth
    // 0.7: it takes the first.)
    dns.add_txt("include.example", "v=spf1 include:absent.example -all");
    dns.add_txt("mx.helo.example", "v=spf1 ip4:127.0.0.5 -all");
    // An unrelated TXT record is not a policy.
    dns.add_txt("nospf.example", "google-site-verification=abc");
    let v = verifier(&dns);
    let ip = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    let cases = [
        (2, "a@hard.example", SpfOutcome::Pass, "hard.example"),
        (3, "a@hard.example", SpfOutcome::Pass, "hard.example"),
        (9, "a@hard.example", SpfOutcome::Fail, "hard.example"),
        (2, "a@soft.example", SpfOutcome::Pass, "soft.example"),
        (9, "a@soft.example", SpfOutcome::Softfail, "soft.example"),
        (
            9,
            "a@neutral.example",
            SpfOutcome::Neutral,
            "neutral.example",
        ),
        (9, "a@nospf.example", SpfOutcome::None, "nospf.example"),
        (9, "a@absent.example", SpfOutcome::None, "absent.example"),
        (
            2,
            "a@include.example",
            SpfOutcome::Permerror,
            "include.example",
        ),
        // The null sender: the HELO name's policy.
        (5, "", SpfOutcome::Pass, "mx.helo.example"),
        (6, "", SpfOutcome::Fail, "mx.helo.example"),
    ];
    for (last, from, result, domain) in cases {
        let got = v
            .spf(ip(last), "mx.helo.example", from, "postern.test")
            .await;
        let want = SpfVerdict {
            result,
            domain: domain.into(),
        };
        assert_eq!(got, want, "127.0.0.{last} MAIL FROM:<{from}>");
    }
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let v = Verifier::with_servers(&[silent.local_addr().unwrap()], Duration::from_millis(300))
        .unwrap();
    let got = v
        .spf(ip(2), "mx.helo.example", "a@hard.example", "postern.test")
        .await;
    assert_eq!(got.result, SpfOutcome::Temperror, "{got:?}");
}

#[tokio::test]
async fn dmarc_passes_only_with_an_aligned_spf_or_dkim_pass() {
    use postern::auth_checks::Received;
    use postern::auth_checks::dmarc::{DmarcOutcome, DmarcPolicy};
    let mut dns = publish();
    dns.add_txt("_dmarc.signer.example", "v=DMARC1; p=reject");
    dns.add_txt("_dmarc.victim.example", "v=DMARC1; p=quarantine");
    dns.add_txt("signer.example", "v=spf1 ip4:127.0.0.2 -all");
    let v = verifier(&dns);
    let signed = dkimpy_signed("signer.example", "rsa1", "rsa-sha256").await;
    let spoofed = MESSAGE.replace("alice@signer.example", "alice@victim.example");
    let spoofed_signed = sign_with_dkimpy(&spoofed, "signer.example", "rsa1", "rsa-sha256").await;
    let unlisted = MESSAGE.replace("alice@signer.example", "alice@other.example");
    fn received<'a>(message: &'a [u8], last: u8, mail_from: &'a str) -> Received<'a> {
        Received {
            message,
            ip: std::net::IpAddr::from([127, 0, 0, last]),
            helo: "mx.signer.example",
            mail_from,
            hostname: "postern.test",
        }
    }
    let (spoofed, unlisted) = (spoofed.as_bytes(), unlisted.as_bytes());
    let cases = [
        // DKIM aligned (SPF fails: 127.0.0.9 is not allowed).
        (
            received(&signed, 9, "b@signer.example"),
            DmarcOutcome::Pass,
            true,
            Some(DmarcPolicy::Reject),
        ),
        // SPF aligned, no signature.
        (
            received(MESSAGE.as_bytes(), 2, "b@signer.example"),
            DmarcOutcome::Pass,
            true,
            Some(DmarcPolicy::Reject),
        ),
        // Neither: the From domain is not the one that passed.
        (
            received(&spoofed_signed, 2, "b@signer.example"),
            DmarcOutcome::Fail,
            false,
            Some(DmarcPolicy::Quarantine),
        ),
        (
            received(spoofed, 9, "b@victim.example"),
            DmarcOutcome::Fail,
            false,
            Some(DmarcPolicy::Quarantine),
        ),
        // No DMARC record.
        (
            received(unlisted, 2, "b@signer.example"),
            DmarcOutcome::None,
            false,
            None,
        ),
    ];
    for (i, (r, result, aligned, policy)) in cases.iter().enumerate() {
        let got = v.check(r).await;
        let dmarc = got.dmarc.clone().unwrap();
        assert_eq!(
            (dmarc.result, dmarc.aligned, dmarc.policy),
            (*result, *aligned, *policy),
            "case {i}: {got:?}"
        );
    }
    // The other verdicts come along.
    let got = v.check(&received(&signed, 9, "b@signer.example")).await;
    assert_eq!(got.dkim, Some(vec![verdict(Outcome::Pass, "rsa1")]));
    assert_eq!(got.spf.as_ref().unwrap().domain, "signer.example");
    assert_eq!(got.dmarc.as_ref().unwrap().domain, "signer.example");
    let header = postern::auth_checks::header::authentication_results("postern.test", &got);
    assert!(
        header.contains("dkim=pass header.d=signer.example header.s=rsa1;"),
        "{header}"
    );
    assert_eq!(serde_json::to_value(&got.spf).unwrap()["result"], "fail");
    assert_eq!(serde_json::to_value(&got.arc).unwrap()["result"], "none");
}

#[tokio::test]
async fn an_arc_seal_by_dkimpy_passes_and_a_changed_message_fails() {
    use postern::auth_checks::Received;
    use postern::auth_checks::arc::{ArcOutcome, ArcVerdict};
    let dns = publish();
    let v = verifier(&dns);
    let sealed = arc_seal_with_dkimpy(MESSAGE, "signer.example", "rsa1").await;
    let text = String::from_utf8(sealed).unwrap();
    let changed = text.replace("The numbers  are in.", "The numbers are out.");
    for (message, want) in [
        (text.as_bytes(), ArcOutcome::Pass),
        (changed.as_bytes(), ArcOutcome::Fail),
        (MESSAGE.as_bytes(), ArcOutcome::None),
    ] {
        let r = Received {
            message,
            ip: std::net::IpAddr::from([127, 0, 0, 9]),
            helo: "fwd.signer.example",
            mail_from: "b@signer.example",
            hostname: "postern.test",
        };
        assert_eq!(
            v.check(&r).await.arc,
            Some(ArcVerdict { result: want }),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}
