//! The relay's delivery policy as pure functions: what one attempt's result
//! means for its recipients ([`classify`]), what the relay cannot take at all
//! judging from its EHLO reply ([`unsupported`]), and how long one
//! transaction may take ([`transaction_deadline`]). The table is in the
//! [module docs of `relay`](super).

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::extension::{Extension, ServerInfo};
use lettre::transport::smtp::response::Response;

use super::failure::{Failure, is_auth_code};

/// One recipient's outcome.
#[derive(Debug, Clone, PartialEq)]
pub enum RcptOutcome {
    /// The relay took responsibility for the message (2xx after `DATA`).
    Sent {
        /// The relay's final reply, e.g. `250 2.0.0 Ok: queued as X`.
        reply: String,
    },
    /// Try again later; nothing was lost.
    Deferred {
        /// The relay's reply or what went wrong.
        reply: String,
    },
    /// The relay refused this recipient for good (or it can never be sent).
    Failed {
        /// The relay's reply or what went wrong.
        reply: String,
    },
}

/// Whether the relay answered an attempt: see
/// [`Relay::send_reporting`](super::Relay::send_reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contact {
    /// The relay replied, whatever it said.
    Answered,
    /// No reply: no connection, a timeout, a lost connection, TLS failed.
    Unreachable,
    /// Nothing was tried (no valid sender or recipient).
    None,
}

/// Whether the relay answered `first`, the attempt with every recipient
/// (the delivery worker's circuit breaker counts the attempts it did not).
/// Any refusal is an answer, also one Postern makes itself from the relay's
/// EHLO reply.
pub(super) fn contact(first: &Result<Response, Failure>) -> Contact {
    match first {
        Err(failure) if failure.is_silence() => Contact::Unreachable,
        _ => Contact::Answered,
    }
}

/// What one attempt means for its recipients.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Verdict {
    /// The outcome for every recipient of the attempt.
    pub outcome: RcptOutcome,
    /// Whether recipients of a multi-recipient attempt may fare differently
    /// on their own (a refused RCPT aborts the whole lettre transaction), so
    /// that they are worth a transaction each.
    pub split: bool,
}

/// The delivery policy, as a pure function of one attempt's result.
pub(super) fn classify(result: &Result<Response, Failure>) -> Verdict {
    let failure = match result {
        Ok(response) => {
            return Verdict {
                outcome: RcptOutcome::Sent {
                    reply: reply_text(response),
                },
                split: false,
            };
        }
        Err(failure) => failure,
    };
    let reply = failure.to_string();
    let (outcome, split) = match failure {
        // Operator problems: the relay will take the mail once fixed.
        Failure::Reply { code, .. } if is_auth_code(*code) => {
            (RcptOutcome::Deferred { reply }, false)
        }
        // 421: the relay is closing the channel; 454: TLS or AUTH temporarily
        // unavailable. Neither depends on the recipient.
        Failure::Reply {
            code: 421 | 454, ..
        } => (RcptOutcome::Deferred { reply }, false),
        // Other 4xx may be one RCPT (451 greylisting, 452 too many
        // recipients): the other recipients should not wait for it.
        Failure::Reply {
            code: 400..=499, ..
        } => (RcptOutcome::Deferred { reply }, true),
        Failure::Reply {
            code: 500..=599, ..
        } => (RcptOutcome::Failed { reply }, true),
        // A 1xx/2xx/3xx where a 2xx was due, or no code at all: a confused
        // relay, which is no reason to drop mail.
        Failure::Reply { .. } => (RcptOutcome::Deferred { reply }, false),
        // May concern one recipient's address only.
        Failure::SmtpUtf8Unsupported => (RcptOutcome::Failed { reply }, true),
        // Concerns the message itself, for every recipient alike.
        Failure::EightBitUnsupported => (RcptOutcome::Failed { reply }, false),
        Failure::Network(_)
        | Failure::Tls(_)
        | Failure::Timeout(_)
        | Failure::StartTlsUnavailable
        | Failure::NoAuthMechanism
        | Failure::Other(_) => (RcptOutcome::Deferred { reply }, false),
    };
    Verdict { outcome, split }
}

/// `250 2.0.0 Ok: queued as X` from lettre's code + lines.
fn reply_text(response: &Response) -> String {
    let mut text = response.code().to_string();
    for line in response.message() {
        text.push(' ');
        text.push_str(line);
    }
    text
}

/// How long one transaction (connect, EHLO, STARTTLS, AUTH, MAIL, RCPTs,
/// DATA, final reply) may take: twice the network timeout plus one second per
/// 64 KiB of message. Only the TCP connect has a timeout of its own, so
/// without this a relay that accepts and then stalls would hold a sender
/// forever.
pub(super) fn transaction_deadline(timeout: Duration, message_len: usize) -> Duration {
    timeout * 2 + Duration::from_secs((message_len / (64 * 1024)) as u64)
}

/// Why the relay cannot take this envelope or message at all, judged from
/// its EHLO reply as lettre would (SMTPUTF8 first, then 8BITMIME).
pub(super) fn unsupported(info: &ServerInfo, envelope: &Envelope, body: &[u8]) -> Option<Failure> {
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii && !info.supports_feature(Extension::SmtpUtfEight) {
        return Some(Failure::SmtpUtf8Unsupported);
    }
    if !body.is_ascii() && !info.supports_feature(Extension::EightBitMime) {
        return Some(Failure::EightBitUnsupported);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::transport::smtp::response::{Category, Code, Detail, Severity};

    fn response(code: [u8; 3], lines: &[&str]) -> Response {
        let severity = match code[0] {
            2 => Severity::PositiveCompletion,
            3 => Severity::PositiveIntermediate,
            4 => Severity::TransientNegativeCompletion,
            _ => Severity::PermanentNegativeCompletion,
        };
        let category = match code[1] {
            0 => Category::Syntax,
            1 => Category::Information,
            2 => Category::Connections,
            3 => Category::Unspecified3,
            4 => Category::Unspecified4,
            _ => Category::MailSystem,
        };
        let detail = match code[2] {
            0 => Detail::Zero,
            1 => Detail::One,
            _ => Detail::Two,
        };
        Response::new(
            Code::new(severity, category, detail),
            lines.iter().map(|l| (*l).to_owned()).collect(),
        )
    }

    fn reply(code: u16, text: &str) -> Result<Response, Failure> {
        Err(Failure::Reply {
            code,
            text: text.to_owned(),
        })
    }

    #[test]
    fn policy_table() {
        use Failure as F;
        let auth = "relay authentication failed: ";
        // (attempt, expected outcome: 'S'ent / 'D'eferred / 'F'ailed, reply, split)
        #[rustfmt::skip]
        let cases: Vec<(Result<Response, Failure>, char, String, bool)> = vec![
            (Ok(response([2, 5, 0], &["2.0.0 Ok: queued as X"])), 'S', "250 2.0.0 Ok: queued as X".into(), false),
            (Ok(response([2, 5, 0], &[])), 'S', "250".into(), false),
            (reply(451, "4.3.0 try later"), 'D', "451 4.3.0 try later".into(), true),
            (reply(452, "4.5.3 too many"), 'D', "452 4.5.3 too many".into(), true),
            (reply(421, "4.3.2 busy"), 'D', "421 4.3.2 busy".into(), false),
            (reply(454, "4.7.0 no TLS now"), 'D', "454 4.7.0 no TLS now".into(), false),
            (reply(550, "5.1.1 no such user"), 'F', "550 5.1.1 no such user".into(), true),
            (reply(554, "5.7.1 rejected"), 'F', "554 5.7.1 rejected".into(), true),
            (reply(535, "5.7.8 invalid"), 'D', format!("{auth}535 5.7.8 invalid"), false),
            (reply(530, "5.7.0 required"), 'D', format!("{auth}530 5.7.0 required"), false),
            (reply(534, "5.7.9 weak"), 'D', format!("{auth}534 5.7.9 weak"), false),
            (reply(538, "5.7.11 encrypt"), 'D', format!("{auth}538 5.7.11 encrypt"), false),
            (reply(354, "go on"), 'D', "354 go on".into(), false),
            (Err(F::Network("refused".into())), 'D', "cannot talk to the relay: refused".into(), false),
            (Err(F::Tls("bad cert".into())), 'D', "TLS with the relay failed: bad cert".into(), false),
            (Err(F::Timeout("60 s".into())), 'D', "relay timed out: 60 s".into(), false),
            (Err(F::StartTlsUnavailable), 'D', F::StartTlsUnavailable.to_string(), false),
            (Err(F::NoAuthMechanism), 'D', F::NoAuthMechanism.to_string(), false),
            (Err(F::SmtpUtf8Unsupported), 'F', F::SmtpUtf8Unsupported.to_string(), true),
            (Err(F::EightBitUnsupported), 'F', F::EightBitUnsupported.to_string(), false),
            (Err(F::Other("weird".into())), 'D', "relay error: weird".into(), false),
        ];
        for (input, kind, reply, split) in cases {
            let outcome = match kind {
                'S' => RcptOutcome::Sent { reply },
                'D' => RcptOutcome::Deferred { reply },
                _ => RcptOutcome::Failed { reply },
            };
            assert_eq!(
                classify(&input),
                Verdict { outcome, split },
                "for {input:?}"
            );
        }
    }

    #[test]
    fn contact_table() {
        use Contact::{Answered, Unreachable};
        use Failure as F;
        #[rustfmt::skip]
        let cases: Vec<(Result<Response, Failure>, Contact)> = vec![
            (Ok(response([2, 5, 0], &["ok"])), Answered),
            (reply(550, "5.1.1 no such user"), Answered),
            (reply(421, "4.3.2 busy"), Answered),
            (reply(535, "5.7.8 invalid"), Answered),
            (Err(F::Network("refused".into())), Unreachable),
            (Err(F::Tls("bad cert".into())), Unreachable),
            (Err(F::Timeout("60 s".into())), Unreachable),
            (Err(F::StartTlsUnavailable), Answered),
            (Err(F::NoAuthMechanism), Answered),
            (Err(F::SmtpUtf8Unsupported), Answered),
            (Err(F::EightBitUnsupported), Answered),
            (Err(F::Other("weird".into())), Answered),
        ];
        for (input, want) in cases {
            assert_eq!(contact(&input), want, "for {input:?}");
        }
    }

    #[test]
    fn unsupported_follows_the_ehlo_reply() {
        use Failure::{EightBitUnsupported as EightBit, SmtpUtf8Unsupported as Utf8};
        let address = |a: &str| a.parse::<lettre::Address>().unwrap();
        let envelope =
            |from: &str, to: &str| Envelope::new(Some(address(from)), vec![address(to)]).unwrap();
        let ascii = envelope("a@example.com", "b@example.com");
        let utf8_rcpt = envelope("a@example.com", "zoë@example.com");
        let utf8_sender = envelope("zoë@example.com", "b@example.com");
        let eight_bit = "caf\u{e9}\r\n".as_bytes();
        // (EHLO extensions, envelope, message, expected refusal)
        type Case<'a> = (&'a [&'a str], &'a Envelope, &'a [u8], Option<Failure>);
        #[rustfmt::skip]
        let cases: &[Case] = &[
            (&[], &ascii, b"x\r\n", None),
            (&[], &utf8_rcpt, b"x\r\n", Some(Utf8)),
            (&[], &utf8_sender, b"x\r\n", Some(Utf8)),
            (&["SMTPUTF8"], &utf8_rcpt, b"x\r\n", None),
            (&[], &ascii, eight_bit, Some(EightBit)),
            (&["8BITMIME"], &ascii, eight_bit, None),
            // As lettre judges: the addresses first.
            (&[], &utf8_rcpt, eight_bit, Some(Utf8)),
            (&["8BITMIME"], &utf8_rcpt, eight_bit, Some(Utf8)),
            (&["SMTPUTF8"], &utf8_rcpt, eight_bit, Some(EightBit)),
            (&["8BITMIME", "SMTPUTF8"], &utf8_sender, eight_bit, None),
        ];
        for (extensions, envelope, body, want) in cases {
            let lines: Vec<&str> = ["relay.example"]
                .iter()
                .chain(*extensions)
                .copied()
                .collect();
            let info = ServerInfo::from_response(&response([2, 5, 0], &lines)).unwrap();
            assert_eq!(
                unsupported(&info, envelope, body),
                *want,
                "{extensions:?} {envelope:?} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn deadline_grows_with_size() {
        let t = Duration::from_secs(30);
        assert_eq!(transaction_deadline(t, 0), Duration::from_secs(60));
        assert_eq!(
            transaction_deadline(t, 10 * 1024 * 1024),
            Duration::from_secs(220)
        );
    }
}
