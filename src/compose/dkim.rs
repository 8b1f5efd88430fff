//! DKIM signing (RFC 6376) of mail sent through the API, with mail-auth's
//! signer, so that a relay that does not sign still delivers mail that
//! passes DMARC.
//!
//! It sits after [`compose`](super::compose) (whose bytes are final) and
//! before the spool: `POST /v1/messages` signs once, at accept time, and
//! the signature is stored with the message. Every relay attempt (retries
//! included) then sends the same bytes, and a key rotated while a message
//! waits does not change what was promised in the `202`.
//!
//! What is decided here, each in a small function:
//! - [`signing_domain`]: the RFC 5322 `From` domain (what DMARC aligns on);
//!   a message whose `From` names several domains, or none, is not signed;
//! - [`DkimKeys::for_domain`]: the keys of that domain, or else of its
//!   nearest configured parent (`news.example.com` is signed with
//!   `d=example.com`, which DMARC's default relaxed alignment accepts);
//! - [`signed_headers`]: the RFC 6376 §5.4 headers present in the message,
//!   plus one more `From` (over-signing: a `From` added on the way breaks
//!   the signature instead of being shown to the reader).
//!
//! Canonicalisation is relaxed/relaxed (survives relays that re-fold
//! headers or trim trailing spaces); no `l=` (a body length would let
//! anyone append content) and no `x=` (a retry schedule of a day must not
//! outlive the signature).
//!
//! Keys are PEM files: RSA (PKCS#1 or PKCS#8, at least 1024 bits, RFC 8301)
//! or Ed25519 (PKCS#8, RFC 8463), loaded by [`DkimKey::load`] at start-up.
//! Key material is never printed: `Debug` shows the domain, selector and
//! algorithm only.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use mail_auth::common::crypto::{Algorithm, Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::{HeaderWriter, Writable};
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use rsa::traits::PublicKeyParts as _;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;

/// The headers RFC 6376 §5.4.1 recommends signing, and the MIME headers
/// that decide how the body reads. Only those present are signed (an
/// absent one listed would break when a relay or list adds it), plus
/// `From` once more.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-ID",
    "Content-Description",
    "Resent-Date",
    "Resent-From",
    "Resent-Sender",
    "Resent-To",
    "Resent-Cc",
    "Resent-Message-ID",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// Smallest RSA modulus accepted (RFC 8301 §3.2: verifiers may refuse
/// anything shorter).
const MIN_RSA_BITS: usize = 1024;

/// Why a key file cannot be used. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{0}: not a PEM private key (PKCS#1 RSA or PKCS#8 RSA/Ed25519)")]
    NotPem(String),
    #[error("{0}: unsupported key algorithm ({1}); use RSA or Ed25519")]
    Unsupported(String, String),
    #[error("{0}: invalid {1} private key")]
    Invalid(String, &'static str),
    #[error("{0}: RSA key of {1} bits; at least {MIN_RSA_BITS} are needed (2048 recommended)")]
    TooShort(String, usize),
}

/// The signing half of a key, as mail-auth takes it.
enum Private {
    Rsa(RsaKey<Sha256>),
    Ed25519(Ed25519Key),
}

/// One configured key: a domain, a selector and a private key.
#[derive(Clone)]
pub struct DkimKey {
    /// The `d=` tag: lowercase ASCII, no trailing dot.
    pub domain: String,
    /// The `s=` tag.
    pub selector: String,
    private: Arc<Private>,
    /// The `p=` value of the DNS record (base64 SubjectPublicKeyInfo for
    /// RSA, the raw 32-byte key for Ed25519).
    public: String,
}

impl fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.key_type())
            .finish()
    }
}

impl DkimKey {
    /// Parses the PEM text of `path` (named in errors only).
    pub fn load(domain: &str, selector: &str, path: &str, pem: &[u8]) -> Result<DkimKey, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::NotPem(path.into()))?;
        let (private, public) = match der {
            PrivateKeyDer::Pkcs1(k) => {
                let rsa = rsa::RsaPrivateKey::from_pkcs1_der_checked(k.secret_pkcs1_der())
                    .ok_or_else(|| KeyError::Invalid(path.into(), "RSA"))?;
                rsa_key(path, rsa)?
            }
            PrivateKeyDer::Pkcs8(k) => {
                let der = k.secret_pkcs8_der();
                let info = rsa::pkcs8::PrivateKeyInfo::try_from(der)
                    .map_err(|_| KeyError::NotPem(path.into()))?;
                match info.algorithm.oid.to_string().as_str() {
                    RSA_OID => {
                        let rsa = rsa::RsaPrivateKey::from_pkcs8_der(der)
                            .map_err(|_| KeyError::Invalid(path.into(), "RSA"))?;
                        rsa_key(path, rsa)?
                    }
                    ED25519_OID => {
                        let key = <ed25519_dalek::SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                            .map_err(|_| KeyError::Invalid(path.into(), "Ed25519"))?;
                        let public = B64.encode(key.verifying_key().as_bytes());
                        let private = Ed25519Key::from_bytes(&key.to_bytes())
                            .map_err(|_| KeyError::Invalid(path.into(), "Ed25519"))?;
                        (Private::Ed25519(private), public)
                    }
                    other => {
                        return Err(KeyError::Unsupported(path.into(), algorithm_name(other)));
                    }
                }
            }
            PrivateKeyDer::Sec1(_) => {
                return Err(KeyError::Unsupported(path.into(), "EC".into()));
            }
            _ => return Err(KeyError::NotPem(path.into())),
        };
        Ok(DkimKey {
            domain: domain.to_string(),
            selector: selector.to_string(),
            private: Arc::new(private),
            public,
        })
    }

    /// The `k=` tag of the DNS record.
    pub fn key_type(&self) -> &'static str {
        match *self.private {
            Private::Rsa(_) => "rsa",
            Private::Ed25519(_) => "ed25519",
        }
    }

    /// Where the DNS record goes.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// The TXT record's text: `v=DKIM1; k=…; p=…`.
    pub fn record_text(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.key_type(), self.public)
    }

    /// The record as a zone file line. A TXT string holds at most 255
    /// characters (RFC 1035 §3.3.14), so a long RSA record is split into
    /// several quoted strings, which resolvers join.
    pub fn zone_line(&self) -> String {
        let text = self.record_text();
        let strings: Vec<String> = text
            .as_bytes()
            .chunks(255)
            .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
            .collect();
        format!("{}. IN TXT {}", self.record_name(), strings.join(" "))
    }

    /// The `DKIM-Signature:` header field (with CRLF) for `message`.
    fn sign(&self, message: &[u8], headers: &[String]) -> Result<String, mail_auth::Error> {
        let signature = match &*self.private {
            Private::Rsa(k) => signer(Shared(k), &self.domain, &self.selector, headers)
                .sign(message)?
                .to_header(),
            Private::Ed25519(k) => signer(Shared(k), &self.domain, &self.selector, headers)
                .sign(message)?
                .to_header(),
        };
        Ok(signature)
    }
}

const RSA_OID: &str = "1.2.840.113549.1.1.1";
const ED25519_OID: &str = "1.3.101.112";

/// A readable name for the algorithms operators are likely to try.
fn algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.10045.2.1" => "EC".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.10040.4.1" => "DSA".into(),
        other => format!("OID {other}"),
    }
}

fn rsa_key(path: &str, rsa: rsa::RsaPrivateKey) -> Result<(Private, String), KeyError> {
    let bits = rsa.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::TooShort(path.into(), bits));
    }
    let invalid = || KeyError::Invalid(path.into(), "RSA");
    let public = rsa
        .to_public_key()
        .to_public_key_der()
        .map_err(|_| invalid())?;
    let der = rsa.to_pkcs1_der().map_err(|_| invalid())?;
    let private = RsaKey::<Sha256>::from_pkcs1_der(der.as_bytes()).map_err(|_| invalid())?;
    Ok((Private::Rsa(private), B64.encode(public.as_bytes())))
}

/// `from_pkcs1_der`, with the key's consistency checked (a truncated or
/// edited file must fail at start-up, not sign garbage).
trait CheckedPkcs1: Sized {
    fn from_pkcs1_der_checked(der: &[u8]) -> Option<Self>;
}

impl CheckedPkcs1 for rsa::RsaPrivateKey {
    fn from_pkcs1_der_checked(der: &[u8]) -> Option<Self> {
        let key =
            <rsa::RsaPrivateKey as rsa::pkcs1::DecodeRsaPrivateKey>::from_pkcs1_der(der).ok()?;
        key.validate().ok()?;
        Some(key)
    }
}

/// A borrowed key, so one loaded key signs every message (mail-auth's
/// signer owns its key).
struct Shared<'a, K>(&'a K);

impl<K: SigningKey> SigningKey for Shared<'_, K> {
    type Hasher = K::Hasher;

    fn sign(&self, input: impl Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> Algorithm {
        self.0.algorithm()
    }
}

fn signer<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    headers: &[String],
) -> DkimSigner<K, mail_auth::dkim::Done> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(headers.iter().cloned())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// Every configured key (`POSTERN_DKIM_KEYS`), by domain.
#[derive(Debug, Clone, Default)]
pub struct DkimKeys {
    keys: Vec<DkimKey>,
}

/// Signing failed although a key exists: the message is not taken
/// (unsigned mail from a domain that publishes `p=reject` would bounce).
#[derive(Debug, thiserror::Error)]
#[error("DKIM signing with {selector}._domainkey.{domain} failed: {reason}")]
pub struct SignError {
    domain: String,
    selector: String,
    reason: String,
}

impl DkimKeys {
    pub fn new(keys: Vec<DkimKey>) -> DkimKeys {
        DkimKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &DkimKey> {
        self.keys.iter()
    }

    /// The keys of `domain`, or else of its nearest configured parent.
    pub fn for_domain(&self, domain: &str) -> Vec<&DkimKey> {
        let mut candidate = domain;
        loop {
            let keys: Vec<&DkimKey> = self.keys.iter().filter(|k| k.domain == candidate).collect();
            if !keys.is_empty() {
                return keys;
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return Vec::new(),
            }
        }
    }

    /// The `DKIM-Signature:` fields to put in front of `message` (one per
    /// key of its `From` domain; empty when it has no key).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        if self.keys.is_empty() {
            return Ok(Vec::new());
        }
        let Some(domain) = signing_domain(message) else {
            return Ok(Vec::new());
        };
        let keys = self.for_domain(&domain);
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let headers = signed_headers(message);
        let mut out = Vec::new();
        for key in keys {
            let field = key.sign(message, &headers).map_err(|e| SignError {
                domain: key.domain.clone(),
                selector: key.selector.clone(),
                reason: e.to_string(),
            })?;
            out.extend_from_slice(field.as_bytes());
        }
        Ok(out)
    }
}

/// The one domain of the `From` addresses, lowercased and without a
/// trailing dot; `None` without a `From`, or with addresses in several
/// domains (no single domain could align them all).
pub fn signing_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let from = parsed.from()?;
    let mut domain: Option<String> = None;
    for addr in from.iter() {
        let address = addr.address()?;
        let (_, d) = address.rsplit_once('@')?;
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            return None;
        }
        match &domain {
            None => domain = Some(d),
            Some(seen) if *seen == d => {}
            Some(_) => return None,
        }
    }
    domain
}

/// The `h=` list for `message`: each [`SIGNED_HEADERS`] name it has (in
/// that order, spelled as in the list; mail-auth signs every instance of a
/// listed name), then `From` again to over-sign it.
pub fn signed_headers(message: &[u8]) -> Vec<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message);
    let present: Vec<&str> = parsed
        .as_ref()
        .map(|m| m.headers().iter().map(|h| h.name()).collect())
        .unwrap_or_default();
    let mut headers: Vec<String> = SIGNED_HEADERS
        .iter()
        .filter(|h| present.iter().any(|p| p.eq_ignore_ascii_case(h)))
        .map(|h| h.to_string())
        .collect();
    headers.push("From".to_string());
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1024-bit RSA key (PKCS#1) made for these tests only.
    fn rsa_key_pem() -> String {
        let mut rng = rand::thread_rng();
        let key = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
            .unwrap()
            .to_string()
    }

    fn ed25519_pem() -> String {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        key.to_pkcs8_pem(Default::default()).unwrap().to_string()
    }

    #[test]
    fn from_domain_is_the_single_from_domain() {
        let cases: &[(&str, Option<&str>)] = &[
            ("From: a@Example.COM\r\n\r\nx", Some("example.com")),
            ("From: A <a@example.com.>\r\n\r\nx", Some("example.com")),
            (
                "From: a@example.com, b@EXAMPLE.com\r\n\r\nx",
                Some("example.com"),
            ),
            ("From: a@example.com, b@other.org\r\n\r\nx", None),
            ("To: a@example.com\r\n\r\nx", None),
            ("From: nobody\r\n\r\nx", None),
        ];
        for (msg, want) in cases {
            assert_eq!(signing_domain(msg.as_bytes()).as_deref(), *want, "{msg}");
        }
    }

    #[test]
    fn nearest_configured_parent_signs() {
        let pem = ed25519_pem();
        let key = |d: &str, s: &str| DkimKey::load(d, s, "k.pem", pem.as_bytes()).unwrap();
        let keys = DkimKeys::new(vec![
            key("example.com", "a"),
            key("example.com", "b"),
            key("mail.example.com", "c"),
        ]);
        let sel = |d: &str| -> Vec<String> {
            keys.for_domain(d)
                .iter()
                .map(|k| format!("{}:{}", k.domain, k.selector))
                .collect()
        };
        assert_eq!(sel("example.com"), ["example.com:a", "example.com:b"]);
        assert_eq!(sel("news.example.com"), ["example.com:a", "example.com:b"]);
        assert_eq!(sel("mail.example.com"), ["mail.example.com:c"]);
        assert_eq!(sel("x.mail.example.com"), ["mail.example.com:c"]);
        assert!(sel("example.org").is_empty());
        assert!(sel("notexample.com").is_empty());
        assert!(sel("com").is_empty());
    }

    #[test]
    fn present_recommended_headers_are_signed_and_from_oversigned() {
        let msg = b"From: a@example.com\r\nX-Mailer: y\r\nsubject: s\r\nTo: b@x\r\nTo: c@x\r\nDate: d\r\n\r\nbody";
        assert_eq!(
            signed_headers(msg),
            ["From", "Subject", "Date", "To", "From"]
        );
    }

    #[test]
    fn keys_load_and_bad_ones_say_why() {
        let rsa = DkimKey::load("example.com", "s", "r.pem", rsa_key_pem().as_bytes()).unwrap();
        assert_eq!(rsa.key_type(), "rsa");
        assert!(rsa.record_text().starts_with("v=DKIM1; k=rsa; p=MI"));
        let ed = DkimKey::load("example.com", "s", "e.pem", ed25519_pem().as_bytes()).unwrap();
        assert_eq!(
            ed.record_text(),
            format!(
                "v=DKIM1; k=ed25519; p={}",
                B64.encode(
                    ed25519_dalek::SigningKey::from_bytes(&[7u8; 32])
                        .verifying_key()
                        .as_bytes()
                )
            )
        );
        assert!(!format!("{ed:?}").contains("p="));
        assert_eq!(
            DkimKey::load("d", "s", "x.pem", b"hello").unwrap_err(),
            KeyError::NotPem("x.pem".into())
        );
        let ec = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIDx2\n-----END EC PRIVATE KEY-----\n";
        assert_eq!(
            DkimKey::load("d", "s", "ec.pem", ec.as_bytes()).unwrap_err(),
            KeyError::Unsupported("ec.pem".into(), "EC".into())
        );
        let short = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 512).unwrap();
        let short = short.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        assert_eq!(
            DkimKey::load("d", "s", "short.pem", short.as_bytes()).unwrap_err(),
            KeyError::TooShort("short.pem".into(), 512)
        );
        let broken = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(
            DkimKey::load("d", "s", "b.pem", broken.as_bytes()).unwrap_err(),
            KeyError::Invalid("b.pem".into(), "RSA")
        );
    }

    #[test]
    fn long_records_are_split_into_255_character_strings() {
        let rsa = DkimKey::load("example.com", "s", "r.pem", rsa_key_pem().as_bytes()).unwrap();
        let line = rsa.zone_line();
        assert!(line.starts_with("s._domainkey.example.com. IN TXT \"v=DKIM1; k=rsa; p="));
        let strings: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        assert!(strings.iter().all(|s| s.len() <= 255));
        assert_eq!(strings.concat(), rsa.record_text());
    }

    #[test]
    fn only_mail_from_a_configured_domain_is_signed() {
        let pem = ed25519_pem();
        let keys = DkimKeys::new(vec![
            DkimKey::load("example.com", "s1", "k", pem.as_bytes()).unwrap(),
        ]);
        let signed = keys
            .sign(b"From: a@news.example.com\r\nSubject: hi\r\n\r\nbody\r\n")
            .unwrap();
        let header = String::from_utf8(signed).unwrap();
        assert!(
            header.starts_with("DKIM-Signature: v=1; a=ed25519-sha256;"),
            "{header}"
        );
        assert!(
            header.contains("d=example.com;") && header.contains("s=s1;"),
            "{header}"
        );
        assert!(header.contains("c=relaxed/relaxed"), "{header}");
        assert!(header.ends_with("\r\n"));
        assert!(
            keys.sign(b"From: a@example.org\r\n\r\nbody\r\n")
                .unwrap()
                .is_empty()
        );
    }
}
