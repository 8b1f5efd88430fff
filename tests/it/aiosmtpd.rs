//! `tests/smtp_server/server.py` (aiosmtpd) as a child process: a real SMTP
//! server on 127.0.0.1 for the relay to talk to, recording what it gets.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{announced_port, mime_reports, python};
use crate::pki::Pki;

/// Runs server.py with its `port=0` bind replaced by argv[1] when that is
/// not 0, so that a relay can come up (again) on a port Postern already
/// points at. server.py itself stays unchanged.
const PORT_WRAPPER: &str = r#"
import asyncio, runpy, sys
port = int(sys.argv[1])
script = sys.argv[2]
create_server = asyncio.BaseEventLoop.create_server
async def on_port(self, *args, **kwargs):
    if port and kwargs.get("port") == 0:
        kwargs["port"] = port
    return await create_server(self, *args, **kwargs)
asyncio.BaseEventLoop.create_server = on_port
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"#;

/// server.py as a child process; killed by PID on drop.
pub struct Smtpd {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    /// The certificate it serves, when started with [`Smtpd::start_tls`].
    pki: Option<Pki>,
}

impl Smtpd {
    /// Starts on `port` (0: any free port) with more server.py flags in
    /// `extra`. A fixed port is retried for a while, in case the kernel
    /// has not released it yet.
    pub fn start(port: u16, extra: &[&str]) -> Smtpd {
        let mut last = String::new();
        for _ in 0..20 {
            match Smtpd::try_start(port, extra) {
                Ok(s) => return s,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("server.py did not start on port {port}: {last}");
    }

    /// Starts on any free port with `--tls` `tls` ("none", "starttls" or
    /// "implicit") and a certificate for localhost/127.0.0.1 signed by a
    /// test CA ([`Smtpd::ca`]); `extra`: more server.py flags.
    pub fn start_tls(tls: &str, extra: &[&str]) -> Smtpd {
        let pki = Pki::new();
        let mut args = vec![
            "--tls",
            tls,
            "--cert",
            pki.cert_file.as_str(),
            "--key",
            pki.key_file.as_str(),
        ];
        args.extend_from_slice(extra);
        let mut s = Smtpd::start(0, &args);
        s.pki = Some(pki);
        s
    }

    fn try_start(port: u16, extra: &[&str]) -> Result<Smtpd, String> {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server/server.py");
        let stderr = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
        let mut child = Command::new(python())
            .arg("-c")
            .arg(PORT_WRAPPER)
            .arg(port.to_string())
            .arg(script)
            .arg("--log")
            .arg(dir.path().join("events.jsonl"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start server.py");
        match announced_port(&mut child) {
            Ok(p) if port == 0 || p == port => Ok(Smtpd {
                child,
                port: p,
                dir,
                pki: None,
            }),
            got => {
                let _ = child.kill();
                let _ = child.wait();
                let err =
                    std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
                Err(format!("no port reported ({got:?}); stderr:\n{err}"))
            }
        }
    }

    /// The test CA's PEM file (servers started with [`Smtpd::start_tls`]).
    pub fn ca(&self) -> String {
        self.pki.as_ref().expect("a TLS server").ca_file.clone()
    }

    /// Log entries of one kind. A last line without its newline is still
    /// being written and skipped; every complete line must be JSON.
    pub fn log(&self, kind: &str) -> Vec<Value> {
        let text =
            std::fs::read_to_string(self.dir.path().join("events.jsonl")).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .unwrap_or_else(|e| panic!("server.py log line {l:?}: {e}"))
            })
            .filter(|e| e["event"] == kind)
            .collect()
    }

    pub fn messages(&self) -> Vec<Value> {
        self.log("message")
    }

    pub fn connections(&self) -> usize {
        self.log("connect").len()
    }

    /// SIGKILL and reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes the server received (DATA, dot-unstuffed).
pub fn data(message: &Value) -> Vec<u8> {
    let hex = message["data_hex"].as_str().unwrap();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Python's `email` package (`policy=default`, tests/mime_check.py) reads
/// every message the server received without a defect: what the sending
/// API composes must open in a strict parser too (issue 10).
pub fn assert_mime_clean(messages: &[Value]) {
    let input: Vec<String> = messages
        .iter()
        .map(|m| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data(m)))
        .collect();
    let reports = mime_reports(&input);
    for (message, report) in messages.iter().zip(&reports) {
        let defects = report["defects"].as_array().unwrap();
        assert!(
            defects.is_empty(),
            "Python reports {defects:?} in:\n{}",
            String::from_utf8_lossy(&data(message))
        );
    }
}
