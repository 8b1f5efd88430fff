//! Configuration as an operator meets it: the real binary refuses a
//! configuration with a typo or an implicit open development mode, naming
//! every problem at once; `postern doctor` lists them; and every `POSTERN_*`
//! name the README, the Dockerfile and the Helm chart show is one the server
//! knows.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::helpers::free_port;

/// Runs the binary with `args` and `env` (nothing else of ours), bounded in
/// time: a server that starts instead of refusing is killed and reported.
pub async fn run(args: &[&str], env: &[(&str, String)]) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::from(crate::binary::command());
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("binary starts");
    match tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await {
        Ok(out) => {
            let out = out.expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (out.status.code(), text)
        }
        Err(_) => (None, "still running after 20 s: it started".into()),
    }
}

#[tokio::test]
async fn a_typo_on_a_public_address_refuses_to_start_naming_every_problem() {
    let smtp = free_port();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        // The red team's case: the webhook variable misspelt, SMTP on all
        // interfaces. Before, this ran an accept-anything server.
        ("POSTERN_WEBHOOK_ULR", "http://127.0.0.1:9/hook".to_string()),
        ("POSTERN_SMTP_LISTEN", format!("0.0.0.0:{smtp}")),
        ("POSTERN_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("POSTERN_SPOOL_DIR", dir.path().display().to_string()),
        ("POSTERN_MAX_ERRORS", "many".to_string()),
    ];
    let (code, out) = run(&["serve"], &env).await;
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("postern: invalid configuration (3 problems):"),
        "{out}"
    );
    for want in [
        "POSTERN_WEBHOOK_ULR: unknown variable; did you mean POSTERN_WEBHOOK_URL?",
        &format!(
            "POSTERN_SMTP_LISTEN: 0.0.0.0:{smtp} is not a loopback address and no route is configured"
        ),
        "POSTERN_DEV_MODE=true",
        "POSTERN_MAX_ERRORS: must be a whole number",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", smtp))
            .await
            .is_err(),
        "nothing listens"
    );
}

#[tokio::test]
async fn explicit_development_mode_on_a_public_address_starts() {
    let smtp = free_port();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("POSTERN_DEV_MODE", "true".to_string()),
        ("POSTERN_SMTP_LISTEN", format!("0.0.0.0:{smtp}")),
        ("POSTERN_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("POSTERN_SPOOL_DIR", dir.path().display().to_string()),
    ];
    let log = dir.path().join("log");
    let mut cmd = tokio::process::Command::from(crate::binary::command());
    // Logs go to a file, not a terminal: no colour codes, even without
    // NO_COLOR (which the launcher sets; removed here).
    cmd.arg("serve")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true);
    for (k, v) in &env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    // Up once it greets: the development-mode warnings are logged before
    // the accept loop starts (the socket is bound, and connects, earlier).
    let mut up = false;
    for _ in 0..300 {
        if let Ok(s) = tokio::net::TcpStream::connect(("127.0.0.1", smtp)).await {
            let mut r = tokio::io::BufReader::new(s);
            let mut line = String::new();
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::io::AsyncBufReadExt::read_line(&mut r, &mut line),
            )
            .await;
            if matches!(read, Ok(Ok(_))) && line.starts_with("220 ") {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill().await;
    let _ = child.wait().await;
    assert!(
        up,
        "POSTERN_DEV_MODE=true is the explicit way to run it anywhere"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEVELOPMENT MODE"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes in a log file:\n{text}"
    );
}

#[tokio::test]
async fn a_taken_port_names_the_variable_and_the_other_process() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("POSTERN_SMTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("POSTERN_HTTP_LISTEN", addr.to_string()),
        ("POSTERN_SPOOL_DIR", dir.path().display().to_string()),
    ];
    let (code, out) = run(&["serve"], &env).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "POSTERN_HTTP_LISTEN: cannot listen on {addr}: the address is in use: another process holds it"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn version_is_printed() {
    for arg in ["--version", "-V", "version"] {
        let (code, out) = run(&[arg], &[]).await;
        assert_eq!(code, Some(0), "{out}");
        assert_eq!(out, format!("postern {}\n", env!("CARGO_PKG_VERSION")));
    }
}

#[tokio::test]
async fn doctor_lists_unknown_names() {
    let env = [
        ("POSTERN_FSYNK", "false".to_string()),
        ("POSTERN_WEBHOOK_SECRETS", "x".to_string()),
    ];
    let (code, out) = run(&["doctor"], &env).await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("2 problems"), "{out}");
    assert!(
        out.contains("POSTERN_FSYNK: unknown variable; did you mean POSTERN_FSYNC?"),
        "{out}"
    );
    assert!(
        out.contains(
            "POSTERN_WEBHOOK_SECRETS: unknown variable; did you mean POSTERN_WEBHOOK_SECRET?"
        ),
        "{out}"
    );
}

/// `POSTERN_*` names in a file, except the test suite's own
/// (`POSTERN_TEST_*`, read by `tests/run.sh` and the tests, never by the
/// server, which would refuse them) and a name quoted in an example of the
/// unknown-variable error.
fn names_in(path: &Path, out: &mut BTreeSet<(String, String)>) {
    let text = std::fs::read_to_string(path).unwrap();
    let re = regex::Regex::new(r"POSTERN_[A-Z0-9_]*[A-Z0-9]").unwrap();
    for m in re.find_iter(&text) {
        let example = text[m.end()..].starts_with(": unknown variable");
        if !m.as_str().starts_with("POSTERN_TEST") && !example {
            out.insert((m.as_str().to_string(), path.display().to_string()));
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_name_in_readme_dockerfile_and_chart_is_known() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md"), root.join("Dockerfile")];
    files_under(&root.join("helm/postern"), &mut files);
    let mut found = BTreeSet::new();
    for f in &files {
        names_in(f, &mut found);
    }
    let known: BTreeSet<String> = postern::config::known_names().into_iter().collect();
    let unknown: Vec<_> = found.iter().filter(|(n, _)| !known.contains(n)).collect();
    assert!(
        unknown.is_empty(),
        "unknown names shown to users: {unknown:?}"
    );
    // The scan itself works: the chart's pod template (shared by the
    // StatefulSet and the database-mode Deployment) renders the listeners.
    assert!(
        found
            .iter()
            .any(|(n, f)| n == "POSTERN_SMTP_LISTEN" && f.ends_with("_pod.tpl"))
    );
    assert!(
        found
            .iter()
            .any(|(n, f)| n == "POSTERN_SPOOL_DIR" && f.ends_with("Dockerfile"))
    );
    // And every known name is documented in the README's table.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let undocumented: Vec<_> = known
        .iter()
        .filter(|n| !readme.contains(&format!("| `{n}` |")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "not in README's configuration table: {undocumented:?}"
    );
}
