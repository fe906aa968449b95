//! `amqps://`: broker connections over TLS (rustls, ring). As MailerQ does,
//! the broker's certificate is checked against the system's CAs (rustls-
//! native-certs: `SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured) and the
//! host name; `rabbitmq-verify: false`, MailerQ's setting for a broker with
//! a self-signed certificate, takes any certificate — the connection is
//! still encrypted and the handshake signature still checked, but the
//! broker is not authenticated.

use lapin::tcp::RustlsConnector;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::Arc;

/// The TLS client for broker connections, made once at start.
pub(super) fn connector(verify: bool) -> Result<Arc<RustlsConnector>, String> {
    Ok(Arc::new(RustlsConnector::from(Arc::new(client_config(verify)?))))
}

/// A rustls client configuration on ring: checking certificates against
/// the system's CAs, or (`verify` false) taking any certificate, as
/// Sluice's outbound opportunistic STARTTLS also does.
pub fn client_config(verify: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // One unusable system certificate must not cost the others.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(
            "amqps://: no CA certificates found on this system (install ca-certificates, \
                    or set SSL_CERT_FILE), so the broker cannot be verified; \
                    rabbitmq-verify: false takes any certificate"
                .into(),
        );
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Any certificate is the server's; the handshake's signatures are still
/// verified with the provider's algorithms.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
