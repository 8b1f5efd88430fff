//! The RFC 8601 `Authentication-Results:` header of a checked message,
//! and the removal of incoming ones that claim to be ours (RFC 8601 §5: a
//! sender must not be able to forge our verdict).

use std::borrow::Cow;

use super::AuthResults;

/// The header field (with CRLF) saying what `authserv_id` (our host name)
/// found. A value that is not a plain domain-like token is left out
/// rather than quoted: it came from the sender.
pub fn authentication_results(authserv_id: &str, r: &AuthResults) -> String {
    let mut parts = vec![authserv_id.to_string()];
    let prop = |name: &str, value: &str| {
        if is_token(value) {
            format!(" {name}={value}")
        } else {
            String::new()
        }
    };
    if let Some(spf) = &r.spf {
        parts.push(format!(
            "spf={}{}",
            word(&spf.result),
            prop("smtp.mailfrom", &spf.domain)
        ));
    }
    match r.dkim.as_deref() {
        None => {}
        Some([]) => parts.push("dkim=none".into()),
        Some(sigs) => {
            for d in sigs {
                parts.push(format!(
                    "dkim={}{}{}",
                    word(&d.result),
                    prop("header.d", &d.domain),
                    prop("header.s", &d.selector)
                ));
            }
        }
    }
    if let Some(dmarc) = &r.dmarc {
        parts.push(format!(
            "dmarc={}{}",
            word(&dmarc.result),
            prop("header.from", &dmarc.domain)
        ));
    }
    if let Some(arc) = &r.arc {
        parts.push(format!("arc={}", word(&arc.result)));
    }
    if parts.len() == 1 {
        // RFC 8601 §2.2: no result at all is said as "none".
        parts.push("none".into());
    }
    format!("Authentication-Results: {}\r\n", parts.join(";\r\n\t"))
}

/// The serde name of a verdict (`pass`, `softfail`, …).
pub fn word(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "permerror".into())
}

fn is_token(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `message` without the `Authentication-Results:` fields whose authserv-id
/// is `authserv_id` (compared case-insensitively); borrowed when there is
/// none. Only the header section is looked at.
pub fn strip_ours<'a>(message: &'a [u8], authserv_id: &str) -> Cow<'a, [u8]> {
    let end = header_end(message);
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Field boundaries: a line that does not start with a space or tab.
    while i < end {
        let line_end = memchr::memchr(b'\n', &message[i..end]).map_or(end, |n| i + n + 1);
        let next = line_end;
        let continues = next < end && matches!(message[next], b' ' | b'\t');
        if !continues {
            fields.push((start, next));
            start = next;
        }
        i = next;
    }
    let ours: Vec<(usize, usize)> = fields
        .into_iter()
        .filter(|&(s, e)| claims(&message[s..e], authserv_id))
        .collect();
    if ours.is_empty() {
        return Cow::Borrowed(message);
    }
    let mut out = Vec::with_capacity(message.len());
    let mut pos = 0;
    for (s, e) in ours {
        out.extend_from_slice(&message[pos..s]);
        pos = e;
    }
    out.extend_from_slice(&message[pos..]);
    Cow::Owned(out)
}

/// Where the header section ends (after its last field's line end).
fn header_end(message: &[u8]) -> usize {
    if message.starts_with(b"\r\n") || message.starts_with(b"\n") {
        return 0;
    }
    memchr::memmem::find(message, b"\n\r\n")
        .or_else(|| memchr::memmem::find(message, b"\n\n"))
        .map_or(message.len(), |n| n + 1)
}

/// Whether one raw header field is an `Authentication-Results` of ours.
fn claims(field: &[u8], authserv_id: &str) -> bool {
    let Some(colon) = memchr::memchr(b':', field) else {
        return false;
    };
    if !field[..colon]
        .trim_ascii()
        .eq_ignore_ascii_case(b"authentication-results")
    {
        return false;
    }
    let value = String::from_utf8_lossy(&field[colon + 1..]);
    // The authserv-id is the first token; drop comments in parentheses.
    let mut depth = 0usize;
    let mut plain = String::new();
    for c in value.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let id = plain
        .split([';', ' ', '\t', '\r', '\n'])
        .find(|t| !t.is_empty())
        .unwrap_or("");
    id.trim_matches('"').eq_ignore_ascii_case(authserv_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth_checks::arc::{ArcOutcome, ArcVerdict};
    use crate::auth_checks::dkim::{DkimVerdict, Outcome};
    use crate::auth_checks::dmarc::{DmarcOutcome, DmarcPolicy, DmarcVerdict};
    use crate::auth_checks::spf::{SpfOutcome, SpfVerdict};

    #[test]
    fn the_header_names_each_verdict() {
        let r = AuthResults {
            spf: Some(SpfVerdict {
                result: SpfOutcome::Softfail,
                domain: "bounce.example".into(),
            }),
            dkim: Some(vec![
                DkimVerdict {
                    result: Outcome::Pass,
                    domain: "example.com".into(),
                    selector: "s1".into(),
                },
                DkimVerdict {
                    result: Outcome::Fail,
                    domain: "evil; dmarc=pass".into(),
                    selector: "x".into(),
                },
            ]),
            dmarc: Some(DmarcVerdict {
                result: DmarcOutcome::Pass,
                policy: Some(DmarcPolicy::Reject),
                aligned: true,
                domain: "example.com".into(),
            }),
            arc: Some(ArcVerdict {
                result: ArcOutcome::None,
            }),
        };
        assert_eq!(
            authentication_results("mx.postern.test", &r),
            "Authentication-Results: mx.postern.test;\r\n\
             \tspf=softfail smtp.mailfrom=bounce.example;\r\n\
             \tdkim=pass header.d=example.com header.s=s1;\r\n\
             \tdkim=fail header.s=x;\r\n\
             \tdmarc=pass header.from=example.com;\r\n\
             \tarc=none\r\n"
        );
        // Checks that are off are left out; none at all is "none".
        let only_dkim = AuthResults {
            spf: None,
            dkim: Some(Vec::new()),
            dmarc: None,
            arc: None,
        };
        assert_eq!(
            authentication_results("mx", &only_dkim),
            "Authentication-Results: mx;\r\n\tdkim=none\r\n"
        );
        let nothing = AuthResults {
            dkim: None,
            ..only_dkim
        };
        assert_eq!(
            authentication_results("mx", &nothing),
            "Authentication-Results: mx;\r\n\tnone\r\n"
        );
    }

    #[test]
    fn only_results_claiming_our_id_are_removed() {
        let cases: &[(&str, &str)] = &[
            (
                "Authentication-Results: mx.postern.test; dkim=pass\r\nFrom: a@b\r\n\r\nbody\r\n",
                "From: a@b\r\n\r\nbody\r\n",
            ),
            (
                "From: a@b\r\nauthentication-results : (c) MX.Postern.Test;\r\n\tspf=pass\r\nSubject: s\r\n\r\nx\r\n",
                "From: a@b\r\nSubject: s\r\n\r\nx\r\n",
            ),
            (
                "Authentication-Results: mx.google.com; dkim=pass\r\nFrom: a@b\r\n\r\n",
                "Authentication-Results: mx.google.com; dkim=pass\r\nFrom: a@b\r\n\r\n",
            ),
            (
                "Authentication-Results: mx.postern.test.evil; dkim=pass\r\n\r\n",
                "Authentication-Results: mx.postern.test.evil; dkim=pass\r\n\r\n",
            ),
            // In the body it is text, not a header.
            (
                "From: a@b\r\n\r\nAuthentication-Results: mx.postern.test; dkim=pass\r\n",
                "From: a@b\r\n\r\nAuthentication-Results: mx.postern.test; dkim=pass\r\n",
            ),
        ];
        for (input, want) in cases {
            let got = strip_ours(input.as_bytes(), "mx.postern.test");
            assert_eq!(String::from_utf8_lossy(&got), *want, "{input:?}");
        }
    }
}
