//! The TLS side of outbound STARTTLS. Opportunistic TLS (RFC 7435) encrypts
//! without authenticating: an MX certificate is rarely valid for the MX name,
//! and refusing it would only push the mail back to clear text. So any
//! certificate is accepted (its signature over the handshake still has to
//! verify) and described in the result (subject, issuer, validity, names,
//! fingerprint), as MailerQ's results do.

use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use tokio_rustls::TlsConnector;

/// A connector that encrypts with whatever certificate the server shows.
pub fn connector() -> Result<TlsConnector, String> {
    let config = sluice_queue::rabbitmq::tls::client_config(false)?;
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The SNI/verification name for a host (an IP when the host is one).
pub fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_string()).unwrap_or_else(|_| ServerName::try_from("localhost").expect("valid name"))
}

/// `sha256:<hex>` of the server's leaf certificate.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The negotiated cipher as MailerQ's results describe it:
/// `{name, bits, algbits, version, id}`.
pub fn cipher_info(conn: &rustls::ClientConnection) -> Option<serde_json::Value> {
    let suite = conn.negotiated_cipher_suite()?.suite();
    let name = format!("{suite:?}");
    // The bulk cipher's key size, read from the suite's name.
    let bits = if name.contains("AES_128") {
        128
    } else if name.contains("AES_256") || name.contains("CHACHA20") {
        256
    } else {
        0
    };
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "unknown",
    };
    Some(serde_json::json!({
        "name": name,
        "bits": bits,
        "algbits": bits,
        "version": version,
        "id": u16::from(suite),
    }))
}

/// At most this many names of a certificate are reported (a server chooses them).
const MAX_ALTNAMES: usize = 100;

/// The server's certificate as MailerQ's results describe it: validity,
/// subject, issuer, altnames; `verified` is false (opportunistic TLS checks
/// no chain), and `fingerprint` is Sluice's addition. A certificate that
/// does not parse is reported by its fingerprint alone.
pub fn certificate_info(cert: &CertificateDer<'_>) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut info = json!({
        "fingerprint": fingerprint(cert),
        "verified": false,
        "result": "not verified (opportunistic TLS)",
    });
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return info;
    };
    let time = |t: &x509_parser::time::ASN1Time| {
        super::outgoing::format_time(u64::try_from(t.timestamp()).unwrap_or(0) * 1000)
    };
    let name = |n: &x509_parser::x509::X509Name<'_>| {
        let first = |mut it: Box<dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>> + '_>| {
            it.next().and_then(|a| a.as_str().ok()).map(text)
        };
        let mut o = serde_json::Map::new();
        for (key, value) in [
            ("common", first(Box::new(n.iter_common_name()))),
            ("country", first(Box::new(n.iter_country()))),
            ("locality", first(Box::new(n.iter_locality()))),
            ("state", first(Box::new(n.iter_state_or_province()))),
            ("organization", first(Box::new(n.iter_organization()))),
        ] {
            if let Some(v) = value {
                o.insert(key.into(), v.into());
            }
        }
        Value::Object(o)
    };
    let validity = parsed.validity();
    info["notbefore"] = time(&validity.not_before).into();
    info["notafter"] = time(&validity.not_after).into();
    info["version"] = (parsed.version().0 + 1).into();
    info["self-signed"] = (parsed.subject() == parsed.issuer()).into();
    info["subject"] = name(parsed.subject());
    info["issuer"] = name(parsed.issuer());
    if let Ok(Some(alt)) = parsed.subject_alternative_name() {
        let names: Vec<Value> = alt
            .value
            .general_names
            .iter()
            .filter_map(|g| match g {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(text(d).into()),
                _ => None,
            })
            .take(MAX_ALTNAMES)
            .collect();
        info["altnames"] = Value::Array(names);
    }
    info
}

/// A certificate's text as it may go into results and logs: printable, at most 255 characters.
fn text(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(255).collect()
}
