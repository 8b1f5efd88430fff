//! `POSTERN_DKIM_KEYS` → [`DkimKeys`], which the sending API signs with
//! ([`crate::compose::dkim`]).
//!
//! The value is a JSON object from domain to a key, or to a list of keys
//! (several selectors, e.g. RSA and Ed25519 side by side, or an old and a
//! new key during a rotation: each signs):
//!
//! ```json
//! {"example.com": {"selector": "s2026", "key_file": "/keys/example.com.pem"},
//!  "example.org": [{"selector": "rsa1", "key_file": "/keys/rsa.pem"},
//!                  {"selector": "ed1", "key_file": "/keys/ed.pem"}]}
//! ```
//!
//! Every key file is read and parsed here, at start-up, so a bad key stops
//! the start (naming the domain and the file) instead of failing the first
//! message. Errors never quote the file's content.

use serde::Deserialize;

use super::{Problems, RawConfig, invalid};
use crate::compose::dkim::{DkimKey, DkimKeys};
use crate::model::one_or_many::OneOrMany;

const VAR: &str = "POSTERN_DKIM_KEYS";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    selector: String,
    key_file: String,
}

pub(super) fn parse(raw: &mut RawConfig, p: &mut Problems) -> DkimKeys {
    let Some(value) = raw.dkim_keys.take() else {
        return DkimKeys::default();
    };
    let entries: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&value) {
        Ok(m) => m,
        Err(e) => {
            p.push(invalid(
                VAR,
                format!("must be a JSON object of domain → {{\"selector\", \"key_file\"}} ({e})"),
            ));
            return DkimKeys::default();
        }
    };
    let mut keys: Vec<DkimKey> = Vec::new();
    for (domain, entry) in entries {
        let normalised = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Err(why) = check_domain_name(&normalised) {
            p.push(invalid(
                VAR,
                format!("{domain:?}: not a domain name: {why}"),
            ));
            continue;
        }
        let list: OneOrMany<KeyEntry> = match serde_json::from_value(entry) {
            Ok(l) => l,
            Err(e) => {
                p.push(invalid(
                    VAR,
                    format!(
                        "{domain}: expected {{\"selector\", \"key_file\"}} or a list of them ({e})"
                    ),
                ));
                continue;
            }
        };
        for entry in list.as_slice() {
            if let Err(why) = check_domain_name(&entry.selector) {
                p.push(invalid(
                    VAR,
                    format!(
                        "{domain}: selector {:?} is not valid: {why}",
                        entry.selector
                    ),
                ));
                continue;
            }
            if keys
                .iter()
                .any(|k| k.domain == normalised && k.selector == entry.selector)
            {
                p.push(invalid(
                    VAR,
                    format!("{domain}: selector {} is given twice", entry.selector),
                ));
                continue;
            }
            let pem = match std::fs::read(&entry.key_file) {
                Ok(pem) => pem,
                Err(e) => {
                    p.push(invalid(
                        VAR,
                        format!("{domain}: cannot read key_file {}: {e}", entry.key_file),
                    ));
                    continue;
                }
            };
            match DkimKey::load(&normalised, &entry.selector, &entry.key_file, &pem) {
                Ok(k) => keys.push(k),
                Err(e) => p.push(invalid(VAR, format!("{domain}: {e}"))),
            }
        }
    }
    DkimKeys::new(keys)
}

/// An ASCII host name (A-labels for international names): labels of
/// letters, digits and hyphens, 1–63 characters, not starting or ending
/// with a hyphen, 253 characters in all. Selectors follow the same rule
/// (RFC 6376 §3.1).
fn check_domain_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each label needs 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(
                "only letters, digits, hyphens and dots (use the xn-- form of an international name)",
            );
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label cannot start or end with a hyphen");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::cfg;
    use super::*;

    #[test]
    fn domain_names() {
        for ok in [
            "example.com",
            "a.b-c.example",
            "xn--bcher-kva.example",
            "localhost",
        ] {
            assert_eq!(check_domain_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "exa mple.com",
            "-a.com",
            "a-.com",
            "a..com",
            "bücher.example",
            "a/b",
        ] {
            assert!(check_domain_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn problems_name_the_domain() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a key at all").unwrap();
        let missing = dir.path().join("missing.pem");
        let value = serde_json::json!({
            "bad domain": {"selector": "s", "key_file": "/x"},
            "a.example": {"selector": "s", "key_file": missing},
            "b.example": {"selector": "s", "key_file": garbage},
            "c.example": {"selector": "s"},
            "d.example": {"selector": "s s", "key_file": "/x"},
        })
        .to_string();
        let e = cfg(&[("POSTERN_DKIM_KEYS", value.as_str())]).unwrap_err();
        let lines: Vec<String> = e.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 5, "{lines:#?}");
        let has = |needle: &str| {
            lines
                .iter()
                .any(|l| l.starts_with(VAR) && l.contains(needle))
        };
        assert!(has("\"bad domain\": not a domain name"), "{lines:#?}");
        assert!(has("a.example: cannot read key_file"), "{lines:#?}");
        assert!(
            has("b.example: ") && has("garbage.pem: not a PEM private key"),
            "{lines:#?}"
        );
        assert!(has("c.example: expected"), "{lines:#?}");
        assert!(
            has("d.example: selector \"s s\" is not valid"),
            "{lines:#?}"
        );
        let e = cfg(&[("POSTERN_DKIM_KEYS", "[]")]).unwrap_err().to_string();
        assert!(
            e.starts_with("POSTERN_DKIM_KEYS: must be a JSON object"),
            "{e}"
        );
    }
}
