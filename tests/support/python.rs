//! The test Python and the MIME check run through it, shared by the
//! library's unit tests (`src/compose/test_support.rs`) and the integration
//! tests (`tests/it/helpers.rs`), which cannot otherwise share code: both
//! include this file with `#[path]`. Only std and serde_json, which both
//! sides have.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The test Python, a virtualenv set by tests/run.sh (the Standard
/// Webhooks reference library, aiosmtpd, dkimpy, dnslib, …).
pub fn python() -> String {
    std::env::var("POSTERN_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-venv/bin/python");
        if std::path::Path::new(venv).exists() {
            venv.to_string()
        } else {
            panic!("POSTERN_TEST_PYTHON is not set: run the tests through tests/run.sh")
        }
    })
}

/// What Python's `email` package (`policy=default`) reads in each message,
/// given base64-encoded (tests/mime_check.py): one report per message with
/// its defects, subject, display names and parts.
pub fn mime_reports(messages_b64: &[String]) -> Vec<Value> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mime_check.py");
    let input = serde_json::to_string(messages_b64).expect("a list of strings");
    let mut child = Command::new(python())
        .arg(script)
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python starts");
    // The script reads all of its input before it writes anything.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("python reads the messages");
    let out = child.wait_with_output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mime_check.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}
