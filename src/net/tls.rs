//! TLS for QUIC: a self-signed certificate kept in the scheduler's data
//! directory, and client settings that accept it.
//!
//! TLS here gives confidentiality and integrity on the wire. It does not
//! prove who the scheduler is: the executor accepts any certificate, and at
//! security level 1 identity comes from the signed join handshake, which is
//! bound to this TLS session through its exporter secret.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::rustls::{
    self, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{
        CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime, pem::PemObject,
    },
};

/// ALPN protocol id; a peer speaking anything else fails the TLS handshake.
pub const ALPN: &[u8] = b"delicate/1";
/// Server name the executor asks for; the certificate carries it.
pub const SERVER_NAME: &str = "delicate-scheduler";
/// QUIC idle timeout: a silent peer's connection closes after this.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// QUIC keep-alive, well inside the idle timeout.
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);

const CERT_FILE: &str = "quic-cert.pem";
const KEY_FILE: &str = "quic-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read or write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to generate the QUIC certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid PEM in {path}: {message}")]
    Pem { path: String, message: String },
    #[error("TLS configuration failed: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        IDLE_TIMEOUT.try_into().expect("15 s fits a QUIC varint"),
    ));
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_concurrent_uni_streams(0u8.into());
    transport.max_concurrent_bidi_streams(4u8.into());
    Arc::new(transport)
}

/// Loads the scheduler's certificate from `data_dir`, generating it on first start.
pub fn load_or_create_identity(
    data_dir: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_path = data_dir.join(CERT_FILE);
    let key_path = data_dir.join(KEY_FILE);
    if !cert_path.exists() || !key_path.exists() {
        let generated = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        write_file(&cert_path, generated.cert.pem().as_bytes(), 0o644)?;
        write_file(
            &key_path,
            generated.signing_key.serialize_pem().as_bytes(),
            0o600,
        )?;
    }
    let cert = CertificateDer::from_pem_slice(read_file(&cert_path)?.as_bytes())
        .map_err(|e| pem_error(&cert_path, e))?;
    let key = PrivatePkcs8KeyDer::from_pem_slice(read_file(&key_path)?.as_bytes())
        .map_err(|e| pem_error(&key_path, e))?;
    Ok((vec![cert], PrivateKeyDer::Pkcs8(key)))
}

fn pem_error(path: &Path, error: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn read_file(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;

    let io_error = |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error)?;
    file.write_all(bytes).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}

/// QUIC settings of the scheduler's listener.
pub fn server_config(data_dir: &Path) -> Result<quinn::ServerConfig, TlsError> {
    let (chain, key) = load_or_create_identity(data_dir)?;
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(crypto).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// QUIC settings of an executor's connection to its scheduler.
pub fn client_config() -> Result<quinn::ClientConfig, TlsError> {
    let provider = provider();
    let verifier = AnyCertificate {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(crypto).map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport());
    Ok(config)
}

/// Accepts any server certificate but still checks that the server holds
/// its key, so the TLS exporter secret is shared with whoever holds it.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
