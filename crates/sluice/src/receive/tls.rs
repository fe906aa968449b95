//! The TLS acceptor for STARTTLS, the implicit-TLS port and the HTTPS
//! console: the configured certificate, or a self-signed one generated once
//! into the data directory.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Which config keys name the certificate and key (for error messages).
pub struct Keys(pub &'static str, pub &'static str);

/// The SMTP server's keys.
pub const SMTP: Keys = Keys("smtp-certificate", "smtp-key");

/// Builds the acceptor; generates `tls-cert.pem`/`tls-key.pem` under
/// `data_dir` when no certificate is configured.
pub fn acceptor(
    cert: Option<&str>,
    key: Option<&str>,
    names: Keys,
    data_dir: &Path,
    hostname: &str,
) -> Result<TlsAcceptor> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.into(), k.into()),
        _ => {
            let c = data_dir.join("tls-cert.pem");
            let k = data_dir.join("tls-key.pem");
            if !c.exists() || !k.exists() {
                generate(&c, &k, hostname)?;
            }
            (c, k)
        }
    };
    let cert_pem = std::fs::read(&cert_path).with_context(|| format!("reading {} {}", names.0, cert_path.display()))?;
    let key_pem = std::fs::read(&key_path).with_context(|| format!("reading {} {}", names.1, key_path.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", cert_path.display());
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("parsing {}", key_path.display()))?
        .with_context(|| format!("{} holds no private key", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| format!("{} and {} do not match", names.0, names.1))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn generate(cert: &Path, key: &Path, hostname: &str) -> Result<()> {
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string(), "localhost".into()])?;
    std::fs::write(cert, generated.cert.pem())?;
    write_private(key, generated.key_pair.serialize_pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for TLS");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    Ok(())
}
