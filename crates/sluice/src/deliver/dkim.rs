//! DKIM signing (RFC 6376, relaxed/relaxed) with the keys of a message's
//! `dkim` property (one key or an array, each `{domain, selector, key (PEM),
//! headers?, expire?}`) and those the settings database's `dkim_patterns`
//! pick for its From address. RSA (PKCS#1 or PKCS#8 PEM) and Ed25519 (PKCS#8 PEM).

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::PrivateKeyDer;
use serde_json::Value;

/// Headers signed when present (RFC 6376 §5.4.1's list, less trace fields).
const SIGNED: &[&str] = &[
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// Why one key could not sign. `.0` names the key: `dkim entry N` of the
/// message's property, or `dkim_keys row N`.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("{0}: `{1}` is missing")]
    Missing(String, &'static str),
    #[error("{0} ({1}): the key is not a PEM RSA or Ed25519 private key")]
    BadKey(String, String),
    #[error("{0} ({1}): signing failed: {2}")]
    Sign(String, String, String),
}

/// One key to sign with, wherever it came from.
pub struct Key<'a> {
    /// Names it in errors.
    pub who: String,
    pub domain: &'a str,
    pub selector: &'a str,
    pub pem: &'a str,
    /// Header names signed besides [`SIGNED`].
    pub headers: Vec<&'a str>,
    /// Unix milliseconds after which it signs nothing.
    pub expire_ms: Option<u64>,
}

/// The keys of a message's `dkim` property; an entry without a field it needs is an error.
pub fn property_keys(dkim: &Value) -> (Vec<Key<'_>>, Vec<DkimError>) {
    let entries: Vec<&Value> = match dkim {
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![dkim],
        _ => Vec::new(),
    };
    let (mut keys, mut errors) = (Vec::new(), Vec::new());
    for (i, entry) in entries.into_iter().enumerate() {
        let who = format!("dkim entry {i}");
        let field = |k: &'static str| {
            entry
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| DkimError::Missing(who.clone(), k))
        };
        let fields = (|| Ok::<_, DkimError>((field("domain")?, field("selector")?, field("key")?)))();
        let (domain, selector, pem) = match fields {
            Ok(f) => f,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        let headers = match entry.get("headers") {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(s)) => s.split([':', ',', ' ']).filter(|s| !s.is_empty()).collect(),
            _ => Vec::new(),
        };
        let expire_ms = entry
            .get("expire")
            .and_then(Value::as_str)
            .and_then(super::outgoing::parse_time);
        keys.push(Key {
            who,
            domain,
            selector,
            pem,
            headers,
            expire_ms,
        });
    }
    (keys, errors)
}

/// A `dkim_keys` row as a key to sign with.
pub fn table_key(k: &sluice_policy::DkimKey) -> Key<'_> {
    Key {
        who: format!("dkim_keys row {}", k.id),
        domain: &k.domain,
        selector: &k.selector,
        pem: k.pem(),
        headers: k.headers.iter().map(String::as_str).collect(),
        expire_ms: k.expire_ms,
    }
}

/// The DKIM-Signature headers for `message` (CRLF line ends), one per usable
/// key, to be put in front of it; keys past their expiry are skipped. Errors
/// name the key and leave it out.
pub fn sign(keys: &[Key], message: &[u8], now_ms: u64) -> (String, Vec<DkimError>) {
    let mut headers = String::new();
    let mut errors = Vec::new();
    for key in keys.iter().filter(|k| k.expire_ms.is_none_or(|t| t >= now_ms)) {
        match sign_one(key, message) {
            Ok(h) => headers.push_str(&h),
            Err(e) => errors.push(e),
        }
    }
    (headers, errors)
}

fn sign_one(key: &Key, message: &[u8]) -> Result<String, DkimError> {
    let (domain, selector, pem) = (key.domain, key.selector, key.pem);
    let name = format!("{selector}._domainkey.{domain}");
    let mut names: Vec<String> = SIGNED.iter().map(|s| s.to_string()).collect();
    for h in &key.headers {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.to_string());
        }
    }
    let i = key.who.clone();
    let bad_key = || DkimError::BadKey(i.clone(), name.clone());
    let der = private_key(pem).ok_or_else(bad_key)?;
    let fail = |e: mail_auth::Error| DkimError::Sign(i.clone(), name.clone(), e.to_string());
    let rsa = match &der {
        PrivateKeyDer::Pkcs1(_) | PrivateKeyDer::Pkcs8(_) => RsaKey::<Sha256>::from_key_der(der.clone_key()).ok(),
        _ => None,
    };
    let signature = if let Some(key) = rsa {
        relaxed(key, domain, selector, names, message)
    } else {
        let PrivateKeyDer::Pkcs8(p8) = &der else {
            return Err(bad_key());
        };
        let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der()).map_err(|_| bad_key())?;
        relaxed(key, domain, selector, names, message)
    }
    .map_err(fail)?;
    Ok(tidy(signature.to_header()))
}

/// A relaxed/relaxed signature of `message` with `key`.
fn relaxed<K: SigningKey>(
    key: K,
    domain: &str,
    selector: &str,
    headers: Vec<String>,
    message: &[u8],
) -> mail_auth::Result<mail_auth::dkim::Signature> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(headers)
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
}

/// mail-auth folds a `b=` value that ends exactly at the wrap column as
/// `…==\r\n\t;`. Verifiers that empty only the value then see `b= ;`
/// where `b=;` was signed (dkimpy does), so the fold is taken out.
fn tidy(header: String) -> String {
    match header.strip_suffix("\r\n\t;\r\n") {
        Some(head) => format!("{head};\r\n"),
        None => header,
    }
}

/// The first private key in a PEM text (PKCS#1, PKCS#8 or SEC1).
fn private_key(pem: &str) -> Option<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes()).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fold_before_the_final_semicolon_is_removed() {
        assert_eq!(
            tidy("DKIM-Signature: b=abc==\r\n\t;\r\n".into()),
            "DKIM-Signature: b=abc==;\r\n"
        );
        assert_eq!(
            tidy("DKIM-Signature: b=abc==;\r\n".into()),
            "DKIM-Signature: b=abc==;\r\n"
        );
    }

    #[test]
    fn bad_entries_name_themselves() {
        let dkim = serde_json::json!([{"domain": "x.test", "selector": "s", "key": "not a key"}, {"domain": "x.test"}]);
        let (keys, missing) = property_keys(&dkim);
        let (h, errors) = sign(&keys, b"From: a@x.test\r\n\r\nhi\r\n", 0);
        assert!(h.is_empty());
        assert_eq!((errors.len(), missing.len()), (1, 1));
        assert_eq!(
            errors[0].to_string(),
            "dkim entry 0 (s._domainkey.x.test): the key is not a PEM RSA or Ed25519 private key"
        );
        assert_eq!(missing[0].to_string(), "dkim entry 1: `selector` is missing");
    }

    #[test]
    fn expired_keys_are_skipped() {
        let dkim =
            serde_json::json!({"domain": "x.test", "selector": "s", "key": "bad", "expire": "2001-01-01 00:00:00"});
        let (keys, _) = property_keys(&dkim);
        let (h, errors) = sign(&keys, b"From: a@x.test\r\n\r\nhi\r\n", 1_000_000_000_000);
        assert!(h.is_empty() && errors.is_empty());
    }
}
