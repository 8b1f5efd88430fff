//! SASL decoding for SMTP AUTH (RFC 4954): the PLAIN (RFC 4616) and LOGIN
//! exchanges' base64 data, their prompts and the cancel line. I/O-free, so
//! the security-sensitive parsing is unit-tested in isolation; the exchange
//! itself is the AUTH phase's ([`super::auth`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Errors from decoding client AUTH data.
///
/// Messages are safe to log and to show to the client: they name the
/// problem but never echo a password.
#[derive(Debug, thiserror::Error)]
pub enum SaslError {
    /// The client's data was not valid base64.
    #[error("invalid base64 in AUTH data")]
    InvalidBase64,
    /// The decoded data was not UTF-8; we only accept UTF-8 identities.
    #[error("AUTH data is not valid UTF-8")]
    NotUtf8,
    /// The client sent an empty response (e.g. a lone "=") where credentials
    /// were required.
    #[error("empty AUTH response")]
    EmptyResponse,
    /// A PLAIN message without exactly two NUL separators.
    #[error("malformed PLAIN response: expected authzid NUL authcid NUL password")]
    MalformedPlain,
    /// The authentication identity (user name) was empty.
    #[error("empty user name")]
    EmptyUsername,
    /// The password was empty.
    #[error("empty password")]
    EmptyPassword,
    /// A LOGIN line contained a NUL byte, which no valid identity contains.
    #[error("AUTH data contains a NUL byte")]
    ContainsNul,
    /// PLAIN authzid differs from authcid: proxy authorization is not
    /// supported, so acting as someone else is refused outright.
    #[error("authorization identity must be empty or equal to the user name")]
    AuthzidMismatch,
}

/// Base64 of `Username:`, the first LOGIN challenge.
pub const LOGIN_USERNAME_PROMPT: &str = "VXNlcm5hbWU6";
/// Base64 of `Password:`, the second LOGIN challenge.
pub const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

/// Decodes base64 client data into UTF-8; shared by PLAIN and LOGIN.
fn decode_b64_utf8(b64: &str) -> Result<String, SaslError> {
    let b64 = b64.trim();
    // RFC 4954: a lone "=" is an empty response, distinct from bad base64.
    if b64.is_empty() || b64 == "=" {
        return Err(SaslError::EmptyResponse);
    }
    let bytes = BASE64.decode(b64).map_err(|_| SaslError::InvalidBase64)?;
    String::from_utf8(bytes).map_err(|_| SaslError::NotUtf8)
}

/// Decodes a PLAIN initial response (base64 of `authzid NUL authcid NUL
/// passwd`) into `(user, password)`.
///
/// `authzid` must be empty or equal to `authcid`: proxy authorization is not
/// supported. A lone `=` (RFC 4954's empty initial response) is an error
/// because PLAIN needs credentials.
pub fn decode_plain(b64: &str) -> Result<(String, String), SaslError> {
    let text = decode_b64_utf8(b64)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::MalformedPlain);
    };
    if authcid.is_empty() {
        return Err(SaslError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(SaslError::EmptyPassword);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok((authcid.to_owned(), password.to_owned()))
}

/// Decodes one base64 line of the LOGIN exchange (user name or password).
///
/// Empty values and embedded NULs are refused: neither can be a valid
/// credential, and rejecting them early keeps them out of logs and lookups.
pub fn decode_line(b64: &str) -> Result<String, SaslError> {
    let text = decode_b64_utf8(b64)?;
    if text.is_empty() {
        return Err(SaslError::EmptyResponse);
    }
    if text.contains('\0') {
        return Err(SaslError::ContainsNul);
    }
    Ok(text)
}

/// True when the client cancelled the exchange (RFC 4954 section 4: a line
/// consisting of `*`). Surrounding whitespace (e.g. a stray CR) is tolerated.
pub fn is_cancel(line: &str) -> bool {
    line.trim() == "*"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        BASE64.encode(bytes)
    }

    #[test]
    fn decode_plain_table() {
        type Expected = Result<(&'static str, &'static str), &'static str>;
        let cases: Vec<(String, Expected)> = vec![
            (b64(b"\0alice\0secret"), Ok(("alice", "secret"))),
            (b64(b"alice\0alice\0secret"), Ok(("alice", "secret"))),
            (b64("\0jörg\0pässwörd".as_bytes()), Ok(("jörg", "pässwörd"))),
            (format!(" {} ", b64(b"\0a\0b")), Ok(("a", "b"))),
            (b64(b"bob\0alice\0secret"), Err("AuthzidMismatch")),
            (b64(b"alice secret"), Err("MalformedPlain")),
            (b64(b"alice\0secret"), Err("MalformedPlain")),
            (b64(b"\0alice\0sec\0ret"), Err("MalformedPlain")),
            (b64(b"\0\0secret"), Err("EmptyUsername")),
            (b64(b"\0alice\0"), Err("EmptyPassword")),
            ("not base64!".into(), Err("InvalidBase64")),
            ("AGFsaWNlAHNlY3JldA".into(), Err("InvalidBase64")),
            (b64(b"\0alice\0\xff\xfe"), Err("NotUtf8")),
            ("=".into(), Err("EmptyResponse")),
            ("".into(), Err("EmptyResponse")),
        ];
        for (input, expected) in cases {
            let got = decode_plain(&input);
            match (got, expected) {
                (Ok((u, p)), Ok((eu, ep))) => assert_eq!((u.as_str(), p.as_str()), (eu, ep)),
                (Err(e), Err(name)) => {
                    assert!(format!("{e:?}").starts_with(name), "{input}: {e:?}")
                }
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn decode_plain_error_does_not_echo_password() {
        let err = decode_plain(&b64(b"bob\0alice\0hunter2")).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{err:?}").contains("hunter2"));
    }

    #[test]
    fn decode_line_table() {
        let cases: Vec<(String, Result<&str, &str>)> = vec![
            (b64(b"alice"), Ok("alice")),
            ("c2VjcmV0\r\n".into(), Ok("secret")),
            (b64("pässwörd".as_bytes()), Ok("pässwörd")),
            ("=".into(), Err("EmptyResponse")),
            ("".into(), Err("EmptyResponse")),
            ("!!!".into(), Err("InvalidBase64")),
            (b64(b"\xc3\x28"), Err("NotUtf8")),
            (b64(b"ali\0ce"), Err("ContainsNul")),
        ];
        for (input, expected) in cases {
            match (decode_line(&input), expected) {
                (Ok(s), Ok(e)) => assert_eq!(s, e),
                (Err(e), Err(name)) => {
                    assert!(format!("{e:?}").starts_with(name), "{input}: {e:?}")
                }
                (got, expected) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn is_cancel_table() {
        for (line, expected) in [
            ("*", true),
            ("*\r\n", true),
            (" * ", true),
            ("**", false),
            ("", false),
            ("=", false),
            ("Kg==", false),
        ] {
            assert_eq!(is_cancel(line), expected, "{line:?}");
        }
    }

    #[test]
    fn login_prompts_are_base64_of_the_text() {
        assert_eq!(LOGIN_USERNAME_PROMPT, b64(b"Username:"));
        assert_eq!(LOGIN_PASSWORD_PROMPT, b64(b"Password:"));
    }
}
