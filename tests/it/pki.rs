//! A test PKI made with rcgen: one CA, leaves for localhost/127.0.0.1,
//! PEM files in a tempdir.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::CertificateDer;

pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

pub struct Leaf {
    /// Leaf then CA, as a full-chain file.
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A leaf for localhost and 127.0.0.1 with its own key and serial.
    pub fn leaf(&self, serial: u8) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("postern test leaf {serial}"));
        // A leading byte below 0x80 keeps the DER INTEGER positive.
        params.serial_number = Some(SerialNumber::from(vec![0x0a, serial]));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// The CA, the first leaf (serial 1) and the files the server reads.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca: TestCa,
    pub leaf: Leaf,
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (ca_file, cert_file, key_file) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
        let ca = TestCa::new("Postern integration test CA");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let leaf = ca.leaf(1);
        let pki = Pki {
            _dir: dir,
            ca,
            leaf,
            ca_file,
            cert_file,
            key_file,
        };
        pki.install(&pki.leaf);
        pki
    }

    /// Writes aside and renames over, as a careful rotation does.
    pub fn install(&self, leaf: &Leaf) {
        replace(Path::new(&self.cert_file), &leaf.chain_pem);
        replace(Path::new(&self.key_file), &leaf.key_pem);
    }

    pub fn vars(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("POSTERN_TLS_CERT", self.cert_file.as_str()),
            ("POSTERN_TLS_KEY", self.key_file.as_str()),
        ]
    }
}

fn replace(path: &Path, contents: &str) {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
