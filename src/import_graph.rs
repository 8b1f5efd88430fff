//! A test of the layout (issue #11): every `crate::` path in `src/` is an
//! edge from one stage to another, and only the edges listed here may
//! exist, so no stage can start importing a higher one unnoticed.

use std::collections::BTreeSet;
use std::path::Path;

/// Stage → the stages it may name. Stages are the top-level modules (a
/// folder or a file of `src/`). Lower stages never name higher ones:
/// `model` names nothing; `delivery` never names `smtp` or `api`.
const ALLOWED: &[(&str, &[&str])] = &[
    // The history's attachment downloads find parts as the payload does.
    ("api", &["compose", "delivery", "mail", "model", "spool"]),
    // DKIM, SPF and DMARC read the message through mail-parser helpers.
    ("auth_checks", &["mail"]),
    // The wiring: it builds every stage.
    (
        "app",
        &[
            "api",
            "auth_checks",
            "compose",
            "config",
            "console",
            "delivery",
            "http",
            "model",
            "relay",
            "route",
            "smtp",
            "spool",
            "telemetry",
            "tls",
        ],
    ),
    // The binary's edge: it reaches the library as `postern::`, not `crate::`.
    ("cli", &[]),
    ("compose", &["model"]),
    // The web console logs in with the API's keys and shows the store.
    ("console", &["api", "mail", "model", "spool"]),
    // config builds each stage's settings, so it names their settings types.
    (
        "config",
        &[
            "auth_checks",
            "compose",
            "http",
            "model",
            "relay",
            "route",
            "smtp",
            "spool",
        ],
    ),
    // The worker turns a message's stored verdicts into the payload's
    // `auth` and our Authentication-Results header.
    (
        "delivery",
        &[
            "auth_checks",
            "mail",
            "model",
            "relay",
            "route",
            "spool",
            "telemetry",
        ],
    ),
    (
        "doctor",
        &[
            "config", "delivery", "model", "relay", "smtp", "spool", "tls",
        ],
    ),
    ("http", &["api", "delivery", "model", "spool", "telemetry"]),
    ("mail", &["model"]),
    ("model", &[]),
    ("relay", &["model", "tls"]),
    ("route", &["model"]),
    // delivery: a sync route is POSTed during DATA with the worker's
    // payload and signed POST (smtp/sync.rs), not a second copy of them.
    // auth_checks: DATA runs the authentication checks on a committed
    // message.
    (
        "smtp",
        &[
            "auth_checks",
            "delivery",
            "model",
            "route",
            "spool",
            "telemetry",
            "tls",
        ],
    ),
    ("spool", &[]),
    // The one exception: metrics label replies by `smtp::reply::class`, the
    // single definition of a reply class (not worth a module of its own).
    ("telemetry", &["smtp"]),
    ("tls", &[]),
];

/// The stages named by `crate::` paths in `text` (comments skipped),
/// including the ones inside a `crate::{a, b::c}` group.
fn named_stages(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                if let Some(name) = item.trim().split("::").next().filter(|n| !n.is_empty()) {
                    out.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src/ is readable") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            walk(&p, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            files.push(p);
        }
    }
}

#[test]
fn named_stages_reads_paths_and_groups() {
    let text = "use crate::smtp::reply;\nuse crate::{api, compose::Limits};\n// crate::nope\nlet x = crate::model::clock::now();";
    let got: Vec<_> = named_stages(text).into_iter().collect();
    assert_eq!(got, ["api", "compose", "model", "smtp"]);
}

#[test]
fn no_stage_imports_one_it_may_not() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src/");
        let first = rel.components().next().expect("non-empty");
        let stage = first.as_os_str().to_string_lossy();
        let stage = stage.trim_end_matches(".rs");
        if matches!(stage, "lib" | "main" | "import_graph") {
            continue;
        }
        let allowed = ALLOWED
            .iter()
            .find(|(s, _)| *s == stage)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("stage {stage} missing from ALLOWED"));
        let text = std::fs::read_to_string(f).expect("readable");
        for to in named_stages(&text) {
            if to != stage && !allowed.contains(&to.as_str()) {
                bad.push(format!("{} -> {to}", rel.display()));
            }
        }
    }
    assert!(bad.is_empty(), "edges not in ALLOWED:\n{}", bad.join("\n"));
}
