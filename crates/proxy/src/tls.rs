//! TLS set-up: the server certificate for listeners and the client configuration for each
//! backend. One crypto provider (ring) for the whole process keeps the build small.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A TLS set-up problem, named with the file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the material.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
    /// A backend name cannot be used for certificate checks.
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring::default_provider())
}

fn pem_error(path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::Pem {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let file = std::fs::File::open(path).map_err(|e| pem_error(path, e))?;
    let certs = CertificateDer::pem_reader_iter(BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Builds the acceptor for client connections from a PEM chain and key.
pub fn server_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsSetupError> {
    let chain = read_certs(cert)?;
    let key_file = std::fs::File::open(key).map_err(|e| pem_error(key, e))?;
    let key_der =
        PrivateKeyDer::from_pem_reader(BufReader::new(key_file)).map_err(|e| pem_error(key, e))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How to reach one backend over TLS.
#[derive(Clone)]
pub struct BackendTlsClient {
    /// Connector with the backend's trust settings.
    pub connector: TlsConnector,
    /// Name sent as SNI and checked against the certificate.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for BackendTlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTlsClient")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Builds the client side for a backend: public roots or `ca_file`, or no verification at
/// all when the admin turned `tls_verify` off.
pub fn backend_client(
    server_name: &str,
    verify: bool,
    ca_file: Option<&Path>,
) -> Result<BackendTlsClient, TlsSetupError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = if verify {
        let mut roots = RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in read_certs(path)? {
                    roots.add(cert)?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(insecure::AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    };
    let server_name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| TlsSetupError::ServerName(server_name.to_owned()))?;
    Ok(BackendTlsClient {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// `tls_verify = false`: the admin has said the network to the backend is trusted. The
/// handshake signatures are still checked, only the certificate's identity is not.
mod insecure {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    pub struct AcceptAnyCertificate(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
