//! A throw-away CA and a server certificate for `localhost` / `127.0.0.1`.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;

/// PEM files written into the test directory, plus the CA in DER for in-process clients.
#[derive(Debug)]
pub struct TestCerts {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl TestCerts {
    pub fn generate(dir: &Path) -> Self {
        let ca_key = KeyPair::generate().expect("generate CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "bearergate e2e test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");

        let key = KeyPair::generate().expect("generate server key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().expect("DNS name")),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("sign server certificate");

        let ca_pem = dir.join("ca.crt");
        let cert_pem = dir.join("server.crt");
        let key_pem = dir.join("server.key");
        fs::write(&ca_pem, ca_cert.pem()).expect("write ca.crt");
        // Chain: leaf then CA, as a deployment would ship it.
        fs::write(&cert_pem, format!("{}{}", cert.pem(), ca_cert.pem())).expect("write server.crt");
        fs::write(&key_pem, key.serialize_pem()).expect("write server.key");

        Self {
            ca_pem,
            cert_pem,
            key_pem,
            ca_der: ca_cert.der().clone(),
        }
    }

    /// A rustls client configuration trusting only the test CA (ring provider, explicitly, so
    /// the outcome does not depend on which provider features other crates enable).
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .expect("add test CA to roots");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}
