//! A large message through the real server (issue 15): its payload is
//! parsed from an elided copy and its attachments are base64-encoded while
//! the body is sent. The receiver must get what a payload built whole would
//! say, signed over exactly the bytes sent, with a `content-length`; and
//! Python's `email` must find the same attachment bytes in `raw`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::helpers::*;

fn data(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(seed).wrapping_add(i >> 7) % 251) as u8)
        .collect()
}

fn lines76(s: &str) -> String {
    s.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A message of about 4.5 MB: two texts, a 3 MB base64 attachment, a
/// quoted-printable one, an unencoded one and one whose base64 is broken.
fn message(big: &[u8]) -> Vec<u8> {
    let qp: String = (0..4000)
        .map(|i| {
            format!("Zeile {i}: Gr=C3=BC=C3=9Fe aus K=C3=B6ln, und so weiter und so fort=\r\n\r\n")
        })
        .collect();
    let plain: String = (0..3000).map(|i| format!("record {i};ok\r\n")).collect();
    let broken = lines76(&B64.encode(data(90_000, 5))).replacen("AAAA", "AA!A", 1);
    let broken = if broken.contains('!') {
        broken
    } else {
        format!("{broken}!!!!\r\n")
    };
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.com\r\nSubject: large\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n\
         --XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello, see attached\r\n\
         --XX\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hello</p>\r\n\
         --XX\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\
         --XX\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n{qp}\
         --XX\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"plain.dat\"\r\n\r\n{plain}\
         --XX\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"broken.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{broken}\
         --XX--\r\n",
        lines76(&B64.encode(big))
    )
    .into_bytes()
}

const PYTHON: &str = r#"
import base64, email, email.policy, hashlib, json, sys
raw = base64.b64decode(open(sys.argv[1]).read())
m = email.message_from_bytes(raw, policy=email.policy.default)
out = {}
for part in m.iter_attachments():
    out[part.get_filename()] = hashlib.sha256(part.get_payload(decode=True)).hexdigest()
print(json.dumps(out))
"#;

#[tokio::test]
async fn a_large_message_is_delivered_whole_and_signed_over_what_was_sent() {
    let big = data(3_000_000, 7);
    let raw = message(&big);
    assert!(raw.len() > 4_000_000);
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "*", "url": "{}", "raw": true}}]"#,
        rx.url("/hook")
    );
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
        ("POSTERN_MAX_MESSAGE_SIZE", "32M"),
    ])
    .await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    let r = c
        .send_raw_mail("alice@example.org", &["bob@example.com"], &raw)
        .await;
    assert!(r.starts_with("250 "), "{r}");
    let hit = rx.wait_for(1, 30).await.remove(0);

    // Signed over the bytes received, sent with their length.
    assert!(hit.verify(), "signature");
    assert_eq!(hit.header("content-length"), hit.body.len().to_string());
    assert_eq!(hit.header("transfer-encoding"), "");
    let p = hit.json();

    let stored = B64.decode(p["raw"].as_str().unwrap()).unwrap();
    assert!(stored.ends_with(&raw), "raw is the message as received");
    let by_name = |name: &str| -> &serde_json::Value {
        p["attachments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["filename"] == name)
            .unwrap_or_else(|| panic!("{name} in {}", p["attachments"]))
    };
    let content = |name: &str| {
        B64.decode(by_name(name)["content"].as_str().unwrap())
            .unwrap()
    };
    let a = by_name("big.bin");
    assert_eq!(a["size"], big.len());
    assert_eq!(a["sha256"], hex(&big));
    assert_eq!(content("big.bin"), big);
    for name in ["notes.txt", "plain.dat", "broken.bin"] {
        let bytes = content(name);
        assert_eq!(by_name(name)["size"], bytes.len(), "{name}");
        assert_eq!(by_name(name)["sha256"], hex(&bytes), "{name}");
    }
    assert!(
        String::from_utf8(content("notes.txt"))
            .unwrap()
            .contains("Grüße aus Köln")
    );
    // Broken base64 is delivered as sent, and said so.
    assert!(content("broken.bin").contains(&b'!'));
    assert_eq!(p["lossy"], true);
    assert!(
        p["lossy_reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "transfer_encoding"),
        "{}",
        p["lossy_reasons"]
    );

    // The same message fields as the payload built whole in memory.
    let whole = postern::mail::parse_message(
        &stored,
        &postern::mail::PayloadOptions {
            include_raw: true,
            ..Default::default()
        },
    );
    let whole = serde_json::to_value(&whole).unwrap();
    for (key, value) in whole.as_object().unwrap() {
        assert_eq!(&p[key], value, "{key}");
    }

    // An independent parser finds the same attachment bytes in `raw`.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), p["raw"].as_str().unwrap()).unwrap();
    let python = python_json(PYTHON, &[file.path().to_str().unwrap()], 60).await;
    assert_eq!(python["big.bin"], hex(&big));
    assert_eq!(python["plain.dat"], by_name("plain.dat")["sha256"]);
    app.stop().await;
}
