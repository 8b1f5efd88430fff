//! Certificate and key files (PEM) into a rustls `CertifiedKey`, and the
//! development mode's self-signed certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::InconsistentKeys;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use super::{CERT_VAR, KEY_VAR, TlsError, provider};

/// Loads a PEM cert chain (full chain) + private key (PKCS#8, PKCS#1 or SEC1)
/// into a `CertifiedKey` using the ring provider.
///
/// The certificate file must hold the end-entity certificate first, then any
/// intermediates; other sections (such as a private key in a combined file)
/// are skipped. The key file's first private key is used. The key is checked
/// against the certificate's public key so that a mismatched rotation (new
/// certificate, old key) is refused instead of breaking every handshake.
pub fn load_certified_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<CertifiedKey>, TlsError> {
    // Each file is read once and parsed from memory so the chain and the key
    // each come from one consistent snapshot of their file.
    let cert_pem = read_file(CERT_VAR, cert_path)?;
    let key_pem = read_file(KEY_VAR, key_path)?;

    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(CERT_VAR, cert_path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }

    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoPrivateKey {
                path: key_path.to_owned(),
            });
        }
        Err(e) => return Err(pem_error(KEY_VAR, key_path, &e)),
    };
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|source| TlsError::InvalidKey {
            path: key_path.to_owned(),
            source,
        })?;

    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            })
        }
        // Unlike `CertifiedKey::from_der`, an unverifiable key is refused:
        // ring's keys can always produce their public half, so this only
        // happens for something we could not vouch for during a rotation.
        Err(source @ rustls::Error::InconsistentKeys(_)) => Err(TlsError::InvalidKey {
            path: key_path.to_owned(),
            source,
        }),
        Err(source) => Err(TlsError::InvalidCertificate {
            path: cert_path.to_owned(),
            source,
        }),
    }
}

fn read_file(var: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        var,
        path: path.to_owned(),
        source,
    })
}

/// Turns a PEM parse error into a message an operator can act on; the
/// library's own `Display` prints markers and lines as byte arrays.
fn pem_error(var: &'static str, path: &Path, err: &pem::Error) -> TlsError {
    let detail = match err {
        pem::Error::MissingSectionEnd { end_marker } => format!(
            "no \"-----END {}-----\" line (file truncated?)",
            String::from_utf8_lossy(end_marker).trim()
        ),
        pem::Error::IllegalSectionStart { line } => format!(
            "malformed BEGIN line {:?}",
            String::from_utf8_lossy(line).trim()
        ),
        other => other.to_string(),
    };
    TlsError::Pem {
        var,
        path: path.to_owned(),
        detail,
    }
}

/// A self-signed cert for `hostname` (plus "localhost", 127.0.0.1, ::1 as
/// SANs) via rcgen, for development mode.
///
/// Returns the key and the certificate PEM, so the caller can log it and a
/// client (or a test) can trust it. The key is a fresh ECDSA P-256 key, so
/// every start gets a new certificate.
pub fn self_signed(hostname: &str) -> Result<(Arc<CertifiedKey>, String), TlsError> {
    let failed = |detail: String| TlsError::SelfSigned {
        hostname: hostname.to_owned(),
        detail,
    };
    let hostname = hostname.trim();

    let mut names: Vec<String> = Vec::new();
    for name in [hostname, "localhost", "127.0.0.1", "::1"] {
        // An empty hostname would become an empty (invalid) SAN, and a
        // duplicate SAN is pointless; both are skipped.
        if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    let common_name = names[0].clone();

    // `CertificateParams::new` turns IP-address strings into IP SANs, which
    // clients need for connecting by address.
    let mut params = rcgen::CertificateParams::new(names).map_err(|e| failed(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let key_pair = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| failed(e.to_string()))?;

    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let signing_key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| failed(e.to_string()))?;
    let certified = CertifiedKey::new(vec![cert.der().clone()], signing_key);
    Ok((Arc::new(certified), cert.pem()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::test_support::*;
    use crate::tls::{ReloadingResolver, acceptor};

    #[test]
    fn a_key_from_another_certificate_is_refused() {
        let ca = TestCa::new();
        let (a, b) = (ca.leaf("a.test", 1), ca.leaf("b.test", 2));
        let files = Files::new();
        replace(&files.cert, &a.chain_pem);
        replace(&files.key, &b.key_pem);

        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&files.cert.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains(&files.key.display().to_string()),
            "{message}"
        );
    }

    #[test]
    fn unreadable_files_are_reported_with_their_path() {
        let ca = TestCa::new();
        let leaf = ca.leaf("mx.test", 1);
        let files = Files::new();

        // Missing certificate file.
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "POSTERN_TLS_CERT {}: cannot read",
                files.cert.display()
            )),
            "{err}"
        );

        // Text with no PEM section at all.
        replace(&files.cert, "this is not a certificate\n");
        replace(&files.key, &leaf.key_pem);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "POSTERN_TLS_CERT {}: no certificate found",
                files.cert.display()
            )
        );

        // A certificate cut short, as seen mid-rotation.
        let half = &leaf.chain_pem[..leaf.chain_pem.len() / 4];
        replace(&files.cert, half);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with(&format!(
                "POSTERN_TLS_CERT {}: invalid PEM",
                files.cert.display()
            )),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with("no \"-----END CERTIFICATE-----\" line (file truncated?)"),
            "{err}"
        );

        // Base64 garbage inside a well-formed section.
        replace(
            &files.cert,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::Pem { .. }), "{err:?}");

        // A key file holding only a certificate.
        replace(&files.cert, &leaf.chain_pem);
        replace(&files.key, &leaf.chain_pem);
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "POSTERN_TLS_KEY {}: no private key found",
                files.key.display()
            )
        );

        // A key section whose contents are not a key.
        replace(
            &files.key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        );
        let err = load_certified_key(&files.cert, &files.key).unwrap_err();
        assert!(matches!(err, TlsError::InvalidKey { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("POSTERN_TLS_KEY {}:", files.key.display())),
            "{err}"
        );
    }

    /// One DER TLV: (tag, contents, rest).
    fn der_tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
        crate::tls::x509::der_next(input).expect("a DER TLV")
    }

    #[test]
    fn a_sec1_ec_private_key_is_accepted() {
        let ca = TestCa::new();
        let leaf = ca.leaf("mx.test", 1);
        // PKCS#8 is SEQUENCE { version, algorithm, OCTET STRING { ECPrivateKey } };
        // the inner ECPrivateKey is exactly what `BEGIN EC PRIVATE KEY` holds.
        let (tag, pkcs8, _) = der_tlv(&leaf.pkcs8);
        assert_eq!(tag, 0x30);
        let (_, _, rest) = der_tlv(pkcs8); // version
        let (_, _, rest) = der_tlv(rest); // algorithm
        let (tag, sec1, _) = der_tlv(rest);
        assert_eq!(tag, 0x04);
        let pem = format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sec1)
        );
        assert!(matches!(
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
            PrivateKeyDer::Sec1(_)
        ));

        let files = Files::new();
        replace(&files.cert, &leaf.chain_pem);
        replace(&files.key, &pem);
        let key = load_certified_key(&files.cert, &files.key).unwrap();
        assert_eq!(key.cert[0], leaf.der);
    }

    #[tokio::test]
    async fn self_signed_is_trusted_through_its_pem() {
        bounded(async {
            let (key, pem) = self_signed("mx.example.test").unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
            assert_eq!(key.cert.len(), 1);
            key.keys_match().unwrap();
            let addr = serve(acceptor(ReloadingResolver::new(key))).await;

            for name in ["mx.example.test", "localhost", "127.0.0.1", "::1"] {
                let mut client = connect(addr, &pem, name, ALL_VERSIONS)
                    .await
                    .unwrap_or_else(|e| panic!("handshake as {name}: {e}"));
                assert_eq!(client.server_info.0, "TLSv1.3");
                assert_eq!(client.echo(name).await.unwrap(), name);
            }

            // A name that is not in the certificate is rejected by the client.
            let err = connect(addr, &pem, "other.example.test", ALL_VERSIONS).await;
            assert!(err.is_err());

            // "localhost" as the hostname is not listed twice.
            let (key, _) = self_signed("localhost").unwrap();
            key.keys_match().unwrap();
        })
        .await;
    }
}
