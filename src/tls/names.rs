//! Names of what a handshake negotiated, as `Received:` and the payload show them.

use rustls::server::ServerConnection;
use rustls::{CipherSuite, ProtocolVersion};

/// What goes into the `Received:` header and the payload's `envelope.tls`:
/// the protocol version like `"TLSv1.3"` / `"TLSv1.2"` and the IANA cipher
/// suite name like `"TLS_AES_256_GCM_SHA384"` or
/// `"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"`.
///
/// `None` until the handshake has negotiated both.
pub fn session_info(conn: &ServerConnection) -> Option<(String, String)> {
    let version = conn.protocol_version()?;
    let suite = conn.negotiated_cipher_suite()?.suite();
    Some((protocol_name(version), cipher_suite_name(suite)))
}

/// The protocol names OpenSSL and Postfix print, which is what readers of
/// `Received:` headers are used to.
pub(crate) fn protocol_name(version: ProtocolVersion) -> String {
    match version {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        ProtocolVersion::TLSv1_1 => "TLSv1.1".to_owned(),
        ProtocolVersion::TLSv1_0 => "TLSv1".to_owned(),
        other => format!("{other:?}"),
    }
}

/// The IANA registry name of a cipher suite. rustls spells the TLS 1.3 suites
/// `TLS13_*` to keep them apart from TLS 1.2 ones; IANA names them `TLS_*`.
/// The TLS 1.2 names already match IANA's.
pub(crate) fn cipher_suite_name(suite: CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        },
        // A suite rustls has no name for can only come from a custom
        // provider; its code point is still unambiguous.
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_and_protocol_names_follow_iana_and_openssl() {
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS13_CHACHA20_POLY1305_SHA256),
            "TLS_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(
            cipher_suite_name(CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(cipher_suite_name(CipherSuite::from(0xfafa)), "0xFAFA");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_3), "TLSv1.3");
        assert_eq!(protocol_name(ProtocolVersion::TLSv1_2), "TLSv1.2");
    }
}
