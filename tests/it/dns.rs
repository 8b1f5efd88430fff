//! `tests/dns_server/server.py` (dnslib) as a child process: a DNS server
//! on 127.0.0.1 (UDP and TCP) answering TXT queries from a zone the test
//! writes, so that DKIM, SPF and DMARC lookups never leave loopback; it
//! logs every query, so a test can count them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::helpers::{announced_port, python};

/// server.py as a child process; killed by PID on drop.
pub struct Dns {
    child: Child,
    pub port: u16,
    zone: PathBuf,
    log: PathBuf,
    records: BTreeMap<String, Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Dns {
    /// Starts with an empty zone (every name is NXDOMAIN).
    pub fn start() -> Dns {
        let dir = tempfile::tempdir().unwrap();
        let zone = dir.path().join("zone.json");
        std::fs::write(&zone, "{}").unwrap();
        let log = dir.path().join("queries.log");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dns_server/server.py");
        let stderr = std::fs::File::create(dir.path().join("stderr.txt")).unwrap();
        let mut child = Command::new(python())
            .arg(script)
            .arg("--zone")
            .arg(&zone)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start dns server.py");
        let port = announced_port(&mut child).unwrap_or_else(|line| {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(dir.path().join("stderr.txt")).unwrap_or_default();
            panic!("dns server.py did not start ({line:?}):\n{err}");
        });
        Dns {
            child,
            port,
            zone,
            log,
            records: BTreeMap::new(),
            _dir: dir,
        }
    }

    /// The queries answered so far, as `name. TYPE` lines.
    pub fn queries(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `127.0.0.1:<port>`, as `POSTERN_DNS_SERVERS` takes it.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Adds a TXT record of `name` (served from the next query on).
    pub fn add_txt(&mut self, name: &str, text: &str) {
        self.records
            .entry(name.trim_end_matches('.').to_ascii_lowercase())
            .or_default()
            .push(text.to_string());
        let zone: serde_json::Map<String, serde_json::Value> = self
            .records
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!({ "TXT": v })))
            .collect();
        // Written aside and renamed: a query never reads half a file.
        let tmp = self.zone.with_extension("tmp");
        std::fs::write(&tmp, serde_json::Value::Object(zone).to_string()).unwrap();
        std::fs::rename(&tmp, &self.zone).unwrap();
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
