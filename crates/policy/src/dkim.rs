//! `dkim_keys` and `dkim_patterns`: signing keys kept in the database and
//! the From addresses each signs for. A key row is checked when read (a PEM
//! RSA or Ed25519 private key that parses), so a bad one is a reported row,
//! not a failure on every message. The private key never leaves this type
//! but through [`DkimKey::pem`]; its `Debug` does not show it.

use crate::load::{parse_time, read, Problem};
use crate::schema::{DKIM_KEYS, DKIM_PATTERNS};
use crate::store::{shown, DbError, Row, Store};
use sluice_shaping::flood::Matcher;
use std::collections::HashMap;
use std::sync::Arc;

/// The largest PEM text accepted (an RSA 8192 key is about 6.5 KB).
const MAX_PEM: usize = 16 * 1024;
/// The most extra header names one key may add.
const MAX_HEADERS: usize = 32;

/// One usable row of `dkim_keys`.
#[derive(Clone)]
pub struct DkimKey {
    pub id: i64,
    pub domain: String,
    pub selector: String,
    /// `rsa` or `ed25519`.
    pub algorithm: &'static str,
    /// `sha256:` and the hex SHA-256 of the public key (PKCS#1 RSAPublicKey, or Ed25519's 32 bytes).
    pub fingerprint: String,
    /// Header names signed besides the default list.
    pub headers: Vec<String>,
    /// Unix milliseconds after which the key signs nothing; `None` = never.
    pub expire_ms: Option<u64>,
    pem: String,
}

impl DkimKey {
    /// The private key, PEM: for signing only, never for an answer or a log.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

impl std::fmt::Debug for DkimKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimKey")
            .field("id", &self.id)
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The keys and the patterns that pick them.
#[derive(Debug, Clone, Default)]
pub struct DkimKeys {
    keys: Vec<Arc<DkimKey>>,
    patterns: Vec<(Matcher, Arc<DkimKey>)>,
}

impl DkimKeys {
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Every usable key, by id.
    pub fn keys(&self) -> &[Arc<DkimKey>] {
        &self.keys
    }

    /// The keys that sign mail from `from` (the From header's address), each once, in pattern order.
    pub fn for_from(&self, from: &str) -> Vec<Arc<DkimKey>> {
        let mut out: Vec<Arc<DkimKey>> = Vec::new();
        for (m, key) in &self.patterns {
            if m.matches(from) && !out.iter().any(|k| k.id == key.id) {
                out.push(key.clone());
            }
        }
        out
    }
}

/// Whether `name` is a DNS name of letters, digits, `-` and `_` labels (a selector may hold `_`).
fn dns_name(name: &str, underscore: bool) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        })
}

/// The algorithm and public key of a PEM private key, when it is an RSA or Ed25519 one.
fn public_key(pem: &str) -> Option<(&'static str, Vec<u8>)> {
    use ring::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
    use rustls_pemfile::Item;
    match rustls_pemfile::read_one_from_slice(pem.as_bytes()).ok()?? {
        (Item::Pkcs1Key(der), _) => RsaKeyPair::from_der(der.secret_pkcs1_der())
            .ok()
            .map(|k| ("rsa", k.public().as_ref().to_vec())),
        (Item::Pkcs8Key(der), _) => {
            let der = der.secret_pkcs8_der();
            if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
                return Some(("rsa", k.public().as_ref().to_vec()));
            }
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .ok()
                .map(|k| ("ed25519", k.public_key().as_ref().to_vec()))
        }
        _ => None,
    }
}

pub(crate) fn key_row(row: &Row) -> Result<DkimKey, String> {
    let domain = row.text("domain")?.ok_or("domain: missing")?.to_ascii_lowercase();
    if !dns_name(&domain, false) {
        return Err(format!("domain: `{}` is not a domain name", shown(&domain)));
    }
    let selector = row.text("selector")?.ok_or("selector: missing")?;
    if !dns_name(&selector, true) {
        return Err(format!("selector: `{}` is not a DNS label", shown(&selector)));
    }
    let pem = row.text("privatekey")?.ok_or("privatekey: missing")?;
    if pem.len() > MAX_PEM {
        return Err(format!("privatekey: longer than {MAX_PEM} bytes"));
    }
    // The text itself is never quoted: it is a secret.
    let (algorithm, public) = public_key(&pem).ok_or("privatekey: not a PEM RSA or Ed25519 private key")?;
    let headers: Vec<String> = row
        .text("headers")?
        .map(|h| {
            h.split([',', ':', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if headers.len() > MAX_HEADERS {
        return Err(format!("headers: more than {MAX_HEADERS} names"));
    }
    if let Some(bad) = headers
        .iter()
        .find(|h| h.len() > 76 || !h.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
    {
        return Err(format!("headers: `{}` is not a header name", shown(bad)));
    }
    let expire_ms = row
        .text("expire")?
        .map(|t| parse_time(&t).ok_or_else(|| format!("expire: `{}` is not YYYY-MM-DD HH:MM:SS", shown(&t))))
        .transpose()?;
    let digest = ring::digest::digest(&ring::digest::SHA256, &public);
    let fingerprint = format!(
        "sha256:{}",
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    Ok(DkimKey {
        id: row.id,
        domain,
        selector,
        algorithm,
        fingerprint,
        headers,
        expire_ms,
        pem,
    })
}

/// A `dkim_keys` row as a key, or why it is not one (what the API shows of a key).
pub fn key_from_row(row: &Row) -> Result<DkimKey, String> {
    key_row(row)
}

pub(crate) fn pattern_row(row: &Row) -> Result<(Matcher, i64), String> {
    let kind = row
        .text("type")?
        .ok_or("type: missing (exact, substr, fnmatch or regex)")?;
    let pattern = row.text("pattern")?.ok_or("pattern: missing")?;
    let m = Matcher::new(&kind, &pattern).map_err(|e| format!("pattern: {e}"))?;
    let key = row.int("key")?.ok_or("key: missing (a dkim_keys id)")?;
    Ok((m, key))
}

/// Reads both tables; a pattern naming no usable key is a problem of its own.
pub fn dkim(store: &mut dyn Store, problems: &mut Vec<Problem>) -> Result<DkimKeys, DbError> {
    let keys: Vec<Arc<DkimKey>> = read(store, &DKIM_KEYS, key_row, problems)?
        .into_iter()
        .map(Arc::new)
        .collect();
    let by_id: HashMap<i64, Arc<DkimKey>> = keys.iter().map(|k| (k.id, k.clone())).collect();
    let mut patterns = Vec::new();
    for row in store.rows(&DKIM_PATTERNS)? {
        match pattern_row(&row).and_then(|(m, id)| {
            by_id
                .get(&id)
                .map(|k| (m, k.clone()))
                .ok_or_else(|| format!("key: no usable dkim_keys row {id}"))
        }) {
            Ok(p) => patterns.push(p),
            Err(why) => problems.push(Problem {
                table: DKIM_PATTERNS.name,
                id: row.id,
                why,
            }),
        }
    }
    Ok(DkimKeys { keys, patterns })
}
