//! DKIM signing of API mail (issue 13 item 7), through the real binary:
//! `postern doctor` prints the TXT records, a DNS server on loopback
//! (`tests/dns_server/server.py`) serves them, the API sends to a relay
//! (aiosmtpd) and dkimpy verifies what the relay received
//! (`tests/dkim_check.py`). The keys in `tests/fixtures/dkim/` were made
//! with `openssl genpkey` for these tests only.

use std::path::Path;

use serde_json::{Value, json};

use crate::aiosmtpd::{Smtpd, data};
use crate::binary::Launch;
use crate::config::run;
use crate::dns::Dns;
use crate::helpers::*;

const API_KEY: &str = "dkim-test-key-0123456789abcdef";

fn key_file(name: &str) -> String {
    format!("{}/tests/fixtures/dkim/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs dkim_check.py on each message; one result per message.
async fn verify(dns: &Dns, messages: &[Vec<u8>]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--dns-port".to_string(), dns.port.to_string()];
    for (i, m) in messages.iter().enumerate() {
        let path = dir.path().join(format!("{i}.eml"));
        std::fs::write(&path, m).unwrap();
        args.push(path.display().to_string());
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dkim_check.py");
    let script = std::fs::read_to_string(script).unwrap();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = python_json(&script, &args, 60).await;
    out.as_array().unwrap().clone()
}

/// The first line of a header field's value in `message`.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
}

#[tokio::test]
async fn api_mail_is_signed_by_its_from_domain_and_dkimpy_verifies_it() {
    let relay = Smtpd::start(0, &[]);
    let hooks = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = json!({
        "example.com": {"selector": "rsa1", "key_file": key_file("rsa2048.pem")},
        "Ed.Example.": [{"selector": "ed1", "key_file": key_file("ed25519.pem")}],
    })
    .to_string();
    let relay_url = format!("smtp://127.0.0.1:{}?tls=none", relay.port);
    let hook_url = hooks.url("/hook");
    let spool = dir.path().join("spool");
    let env = [
        ("POSTERN_DKIM_KEYS", keys.as_str()),
        ("POSTERN_API_KEYS", API_KEY),
        ("POSTERN_RELAY_URL", relay_url.as_str()),
        ("POSTERN_WEBHOOK_URL", hook_url.as_str()),
    ];

    // doctor prints the records to publish; they go into the DNS server.
    let mut doctor_env: Vec<(&str, String)> =
        env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    doctor_env.push(("POSTERN_WEBHOOK_SECRET", SECRET.into()));
    doctor_env.push(("POSTERN_SPOOL_DIR", spool.display().to_string()));
    let (_, out) = run(&["doctor"], &doctor_env).await;
    assert!(
        out.contains("[PASS] dkim rsa1._domainkey.example.com: rsa key loaded"),
        "{out}"
    );
    assert!(
        out.contains("[PASS] dkim ed1._domainkey.ed.example: ed25519 key loaded"),
        "{out}"
    );
    let mut dns = Dns::start();
    let mut published = 0;
    for line in out.lines().map(str::trim) {
        let Some((name, strings)) = line.split_once(". IN TXT ") else {
            continue;
        };
        let text: String = strings.split('"').skip(1).step_by(2).collect();
        assert!(text.starts_with("v=DKIM1; k="), "{line}");
        dns.add_txt(name, &text);
        published += 1;
    }
    assert_eq!(published, 2, "{out}");

    let log = dir.path().join("log");
    let launch = Launch {
        domain: "dkim.test",
        spool: &spool,
        log: &log,
        env: &env,
    };
    let postern = launch.start().await;
    let client = reqwest::Client::new();
    let senders = [
        "Alice <alice@example.com>",
        "bob@ed.example",
        "news@letters.example.com",
        "carol@unsigned.example",
    ];
    for from in senders {
        let r = client
            .post(format!("http://{}/v1/messages", postern.http))
            .bearer_auth(API_KEY)
            .json(&json!({
                "from": from,
                "to": ["dest@elsewhere.example"],
                "cc": ["copy@elsewhere.example"],
                "reply_to": "replies@example.com",
                "subject": format!("Hello from {from}"),
                "text": "Signed   text,  with  spaces \r\n\r\n\r\n",
                "html": "<p>and html</p>",
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    }
    wait_until(
        30,
        || format!("4 messages at the relay: {:?}", relay.messages().len()),
        || relay.messages().len() == 4,
    )
    .await;
    let received: Vec<Vec<u8>> = relay.messages().iter().map(data).collect();
    let by_from = |needle: &str| -> Vec<u8> {
        received
            .iter()
            .find(|m| {
                header(&String::from_utf8_lossy(m), "From").is_some_and(|f| f.contains(needle))
            })
            .unwrap_or_else(|| panic!("no message from {needle}"))
            .clone()
    };
    let ordered: Vec<Vec<u8>> = ["alice@", "bob@", "news@", "carol@"]
        .iter()
        .map(|n| by_from(n))
        .collect();
    let results = verify(&dns, &ordered).await;
    let sig = |i: usize| -> &Value {
        let sigs = results[i]["signatures"].as_array().unwrap();
        assert_eq!(sigs.len(), 1, "message {i}: {results:#?}");
        &sigs[0]
    };
    // RSA (PKCS#8 key), the From domain itself.
    let rsa = sig(0);
    assert_eq!(rsa["pass"], true, "{results:#?}");
    assert_eq!(rsa["d"], "example.com");
    assert_eq!(rsa["s"], "rsa1");
    assert_eq!(rsa["a"], "rsa-sha256");
    assert_eq!(rsa["c"], "relaxed/relaxed");
    // The recommended headers that are there, From over-signed.
    let h: Vec<String> = rsa["h"]
        .as_str()
        .unwrap()
        .split(':')
        .map(|s| s.to_ascii_lowercase())
        .collect();
    for want in [
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "reply-to",
        "mime-version",
        "content-type",
    ] {
        assert!(h.contains(&want.to_string()), "{want} not in h={h:?}");
    }
    assert_eq!(h.iter().filter(|x| *x == "from").count(), 2, "h={h:?}");
    // Ed25519, configured as "Ed.Example." (normalised).
    let ed = sig(1);
    assert_eq!(ed["pass"], true, "{results:#?}");
    assert_eq!(
        (ed["d"].as_str(), ed["a"].as_str()),
        (Some("ed.example"), Some("ed25519-sha256"))
    );
    // A subdomain without a key of its own: its nearest parent's.
    let parent = sig(2);
    assert_eq!(parent["pass"], true, "{results:#?}");
    assert_eq!(parent["d"], "example.com");
    // No key for the domain: sent unsigned.
    assert_eq!(results[3]["signatures"], json!([]), "{results:#?}");
    assert!(!String::from_utf8_lossy(&ordered[3]).contains("DKIM-Signature"));

    // The signature is the first field, above our Received: line.
    let text = String::from_utf8(ordered[0].clone()).unwrap();
    assert!(text.starts_with("DKIM-Signature: "), "{text}");
    // dkimpy does refuse what was changed after signing: a header, a body
    // line, an added From.
    let tampered = [
        text.replace("Subject: Hello from", "Subject: Hullo from"),
        text.replace("and html", "and HTML"),
        text.replacen("Subject:", "From: mallory@example.com\r\nSubject:", 1),
    ];
    let bytes: Vec<Vec<u8>> = tampered.iter().map(|t| t.as_bytes().to_vec()).collect();
    assert!(bytes.iter().all(|b| *b != ordered[0]));
    for (i, r) in verify(&dns, &bytes).await.iter().enumerate() {
        assert_eq!(r["signatures"][0]["pass"], false, "tampered {i}: {r}");
    }
    postern.terminate().await;
}

#[tokio::test]
async fn bad_dkim_keys_stop_the_start_naming_the_domain_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ec = key_file("p256.pem");
    let pem = std::fs::read_to_string(&ec).unwrap();
    let key_line = pem.lines().nth(1).unwrap().to_string();
    let keys = json!({
        "ec.example": {"selector": "s1", "key_file": ec},
        "missing.example": {"selector": "s1", "key_file": dir.path().join("nope.pem")},
        "bad_domain.example": {"selector": "s1", "key_file": key_file("ed25519.pem")},
        "ok.example": {"selector": "s1", "key_file": key_file("ed25519.pem")},
    })
    .to_string();
    let env = [
        ("POSTERN_DKIM_KEYS", keys),
        ("POSTERN_SMTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("POSTERN_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("POSTERN_SPOOL_DIR", dir.path().display().to_string()),
    ];
    let (code, out) = run(&["serve"], &env).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("invalid configuration (3 problems)"), "{out}");
    for want in [
        &format!(
            "POSTERN_DKIM_KEYS: ec.example: {ec}: unsupported key algorithm (EC); use RSA or Ed25519"
        ),
        "POSTERN_DKIM_KEYS: missing.example: cannot read key_file",
        "POSTERN_DKIM_KEYS: \"bad_domain.example\": not a domain name",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains(&key_line), "key material printed:\n{out}");
}
