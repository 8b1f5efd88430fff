//! Every fixture through the real server and through an independent parser
//! (Python's `email`, policy=default): the body text parts in the webhook's
//! `parts` must be the ones Python finds, with the same text.
//!
//! Python parses the `raw` the webhook carries, i.e. exactly what Postern
//! stored. Where Postern deliberately decodes differently, the difference
//! is named below and checked to be the only one.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::helpers::*;

const SCRIPT: &str = include_str!("../inline_texts.py");

/// (fixture, part) whose body is undecodable base64: Postern delivers the
/// bytes as sent (flagged), Python decodes what it can out of them.
const UNDECODED: &[(&str, &str)] = &[("sloppy_mime.eml", "3")];

/// (fixture, part) with bytes invalid in the declared UTF-8: Postern reads
/// them as windows-1252 (flagged), Python replaces each with U+FFFD.
const FALLBACK: &[(&str, &str)] = &[("cp1252_fallback.eml", "1")];

fn fixtures() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    names
}

/// Python's `get_content()` gives LF line ends; the parts keep the CRLF of
/// the wire. Compare text, not line ends.
fn lines(s: &str) -> String {
    s.replace("\r\n", "\n")
}

fn masked(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii() { c } else { '\u{fffd}' })
        .collect()
}

#[tokio::test]
async fn body_parts_agree_with_python_email() {
    let names = fixtures();
    assert!(names.len() >= 15, "{names:?}");
    let rx = Receiver::start().await;
    let routes = format!(
        r#"[{{"match": "*", "url": "{}", "raw": true}}]"#,
        rx.url("/h")
    );
    let app = spawn_app(&[
        ("POSTERN_ROUTES", &routes),
        ("POSTERN_WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let (mut c, _) = Smtp::connect(app.smtp).await;
    c.cmd("EHLO client.test").await;
    for (i, name) in names.iter().enumerate() {
        let to = format!("f{i}@example.com");
        let r = c.send_raw_mail("a@b.test", &[&to], &fixture(name)).await;
        assert!(r.starts_with("250 "), "{name}: {r}");
    }
    let hits = rx.wait_for(names.len(), 30).await;
    let mut payloads: BTreeMap<usize, Value> = BTreeMap::new();
    for hit in hits {
        let p = hit.json();
        let to = p["envelope"]["rcpt_to"][0].as_str().unwrap().to_string();
        let i: usize = to
            .trim_start_matches('f')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        payloads.insert(i, p);
    }
    assert_eq!(payloads.len(), names.len());

    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, p) in &payloads {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(p["raw"].as_str().unwrap())
            .unwrap();
        let path = dir.path().join(format!("{i}.eml"));
        std::fs::write(&path, raw).unwrap();
        paths.push(path.display().to_string());
    }
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    let python = python_json(SCRIPT, &args, 60).await;
    let python = python.as_array().unwrap();

    let (mut undecoded, mut fallback) = (Vec::new(), Vec::new());
    for ((i, p), theirs) in payloads.iter().zip(python) {
        let name = names[*i].as_str();
        let ours = p["parts"].as_array().unwrap();
        let theirs = theirs.as_array().unwrap();
        let types = |v: &[Value]| -> Vec<String> {
            v.iter()
                .map(|x| x["content_type"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(
            types(ours),
            types(theirs),
            "{name}: which parts are body text"
        );
        for (o, t) in ours.iter().zip(theirs) {
            let section = o["section"].as_str().unwrap();
            let (o_body, t_body) = (
                lines(o["body"].as_str().unwrap()),
                t["body"].as_str().unwrap(),
            );
            if UNDECODED.contains(&(name, section)) {
                assert_ne!(o_body, t_body, "{name} part {section}");
                undecoded.push((name, section));
            } else if FALLBACK.contains(&(name, section)) {
                assert_ne!(o_body, t_body, "{name} part {section}");
                assert_eq!(masked(&o_body), t_body, "{name} part {section}");
                fallback.push((name, section));
            } else {
                assert_eq!(o_body, t_body, "{name} part {section}");
            }
        }
    }
    // The named differences are real, and every one was met.
    assert_eq!(undecoded, UNDECODED);
    assert_eq!(fallback, FALLBACK);
}
