//! The `s3://` store: one object per message in a bucket of AWS S3 or of an
//! S3-compatible server, named by its key. Requests are signed by rusty-s3
//! (presigned URLs) and sent with ureq. S3 answers a PUT only once the
//! object is stored durably. An object carries its expiry as MailerQ's
//! `expire` field, in `x-amz-meta-expire` (unix seconds), with
//! `x-amz-meta-encoding`; an expired object is never handed out.
//!
//! S3 has no per-object expiry, so the sweep lists the bucket a page at a
//! time (one page per sweep, going on where the last stopped, so a large
//! bucket costs the same each minute), asks for the expiry of each object
//! older than `storage-ttl` and deletes the expired ones. Objects without
//! `x-amz-meta-expire` are not Sluice's and are left alone.

use super::{io, MAX_READ};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use std::time::Duration;

/// How long a signed request stays valid (sent at once, so only clock skew matters).
const SIGNED_FOR: Duration = Duration::from_secs(600);
/// Objects one sweep looks at.
const SWEEP_PAGE: usize = 1000;
/// The largest listing or error body read.
const MAX_LISTING: u64 = 16 << 20;
const EXPIRE: &str = "x-amz-meta-expire";
const ENCODING: &str = "x-amz-meta-encoding";

/// An S3 store.
pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
    /// Where the next sweep goes on listing from.
    cursor: std::sync::Mutex<Option<String>>,
}

/// A response that is not a success, as one line: the status and S3's error code.
fn failure(what: &str, mut r: ureq::http::Response<ureq::Body>) -> std::io::Error {
    let status = r.status();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| sluice_smtp::wire::shown(code))
        .unwrap_or_default();
    io(format!("S3 {what}: HTTP {status} {code}").trim_end())
}

/// The expiry an object's headers carry, if they carry one.
fn expire_of(headers: &ureq::http::HeaderMap) -> Option<i64> {
    headers.get(EXPIRE)?.to_str().ok()?.trim().parse().ok()
}

impl S3 {
    /// The store in `a`'s bucket, checked to exist and to take the keys;
    /// every request may take up to `timeout`.
    pub fn open(a: &super::S3Address, timeout: Duration) -> Result<S3, String> {
        let endpoint = match &a.endpoint {
            Some(e) => e.clone(),
            None => format!("https://s3.{}.amazonaws.com", a.region),
        };
        let endpoint: url::Url = endpoint.parse().map_err(|e| format!("endpoint `{endpoint}`: {e}"))?;
        // A custom server is addressed by path; AWS by bucket host name,
        // except for names with dots, which its certificate does not cover.
        let style = if a.endpoint.is_some() || a.bucket.contains('.') {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(endpoint, style, a.bucket.clone(), a.region.clone())
            .map_err(|e| format!("bucket `{}`: {e}", a.bucket))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let s3 = S3 {
            bucket,
            credentials: Credentials::new(a.access_key.clone(), a.secret_key.clone()),
            agent,
            cursor: std::sync::Mutex::new(None),
        };
        let url = s3.bucket.head_bucket(Some(&s3.credentials)).sign(SIGNED_FOR);
        let where_ = s3.bucket.base_url().to_string();
        let r = s3
            .agent
            .head(url.as_str())
            .call()
            .map_err(|e| format!("{where_}: {e}"))?;
        match r.status().as_u16() {
            200..=299 => Ok(s3),
            404 => Err(format!("{where_}: no such bucket")),
            403 => Err(format!(
                "{where_}: access denied (check the access key, the secret key and the region)"
            )),
            s => Err(format!("{where_}: HTTP {s}")),
        }
    }

    /// Stores `value` as the object `key`, expiring at `expire` (unix seconds).
    pub fn put(&self, key: &str, value: &[u8], expire: i64, encoding: &str) -> std::io::Result<()> {
        let expire = expire.to_string();
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        action.headers_mut().insert(EXPIRE, expire.clone());
        action.headers_mut().insert(ENCODING, encoding.to_string());
        let url = action.sign(SIGNED_FOR);
        let r = self
            .agent
            .put(url.as_str())
            .header(EXPIRE, &expire)
            .header(ENCODING, encoding)
            .send(value)
            .map_err(io)?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(failure("store", r))
        }
    }

    /// The stored bytes of `key` unless there is no such object or it expired before `now`.
    pub fn get(&self, key: &str, now: i64) -> std::io::Result<Option<Vec<u8>>> {
        let url = self.bucket.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let mut r = self.agent.get(url.as_str()).call().map_err(io)?;
        match r.status().as_u16() {
            404 => return Ok(None),
            200..=299 => {}
            _ => return Err(failure("read", r)),
        }
        if expire_of(r.headers()).is_some_and(|e| e < now) {
            return Ok(None);
        }
        r.body_mut()
            .with_config()
            .limit(MAX_READ)
            .read_to_vec()
            .map(Some)
            .map_err(io)
    }

    /// Looks at the next page of the bucket and deletes what expired before
    /// `now`; the number deleted. An object cannot expire sooner than `ttl`
    /// after it was written, so younger ones are not asked about.
    pub fn sweep(&self, now: i64, ttl: Duration) -> std::io::Result<usize> {
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = self.bucket.list_objects_v2(Some(&self.credentials));
        list.with_max_keys(SWEEP_PAGE);
        if let Some(token) = cursor.clone() {
            list.with_continuation_token(token);
        }
        let url = list.sign(SIGNED_FOR);
        let mut r = self.agent.get(url.as_str()).call().map_err(io)?;
        if !r.status().is_success() {
            return Err(failure("list", r));
        }
        let body = r
            .body_mut()
            .with_config()
            .limit(MAX_LISTING)
            .read_to_string()
            .map_err(io)?;
        let page = rusty_s3::actions::ListObjectsV2::parse_response(&body).map_err(io)?;
        *cursor = page.next_continuation_token;
        drop(cursor);
        let young = now.saturating_sub(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
        let mut removed = 0;
        for object in page.contents {
            let written = object
                .last_modified
                .as_deref()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp());
            if written.is_some_and(|w| w > young) {
                continue;
            }
            let url = self
                .bucket
                .head_object(Some(&self.credentials), &object.key)
                .sign(SIGNED_FOR);
            let r = self.agent.head(url.as_str()).call().map_err(io)?;
            if !r.status().is_success() || expire_of(r.headers()).is_none_or(|e| e >= now) {
                continue;
            }
            let url = self
                .bucket
                .delete_object(Some(&self.credentials), &object.key)
                .sign(SIGNED_FOR);
            let r = self.agent.delete(url.as_str()).call().map_err(io)?;
            if r.status().is_success() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::far;
    use super::super::{MessageStore, Options, Policy};
    use sluice_test_support::S3Bucket;

    #[test]
    fn objects_carry_mailerq_fields_and_expired_ones_are_neither_read_nor_kept() {
        let bucket = S3Bucket::create();
        let s = MessageStore::open(
            &format!("{}&compression=gzip", bucket.address),
            Options::new(Policy::All),
        )
        .unwrap();
        s.put("m-1", b"Subject: x\r\n\r\nin a bucket\r\n", far()).unwrap();
        s.put("old", b"Subject: y\r\n\r\nlong gone\r\n", 1_000).unwrap();
        assert_eq!(s.get("m-1").unwrap().unwrap(), b"Subject: x\r\n\r\nin a bucket\r\n");
        assert_eq!(s.get("old").unwrap(), None, "expired objects are not handed out");
        assert_eq!(s.get("never-stored").unwrap(), None);
        // Not Sluice's: no expiry of its own, so the sweep leaves it alone.
        bucket.boto3("s3.put_object(Bucket=bucket, Key='foreign', Body=b'x')");
        let objects = bucket.objects();
        let keys: Vec<&str> = objects.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["foreign", "m-1", "old"]);
        let m1 = &objects[1].1;
        assert_eq!(m1.get("encoding").map(String::as_str), Some("gzip"));
        assert_eq!(m1.get("expire"), Some(&(far() / 1000).to_string()));
        assert_eq!(s.sweep().unwrap(), 1);
        let keys: Vec<String> = bucket.objects().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["foreign", "m-1"]);
        // Stored compressed, read back whatever `compression=` says now.
        let plain = MessageStore::open(&bucket.address, Options::new(Policy::None)).unwrap();
        assert_eq!(plain.get("m-1").unwrap().unwrap(), b"Subject: x\r\n\r\nin a bucket\r\n");
    }

    #[test]
    fn a_wrong_secret_or_bucket_is_refused_at_open_without_repeating_the_secret() {
        let bucket = S3Bucket::create();
        let (head, tail) = bucket.address.split_once('@').unwrap();
        let (key, _) = head.rsplit_once(':').unwrap();
        let wrong = format!("{key}:not-the-secret@{tail}");
        let e = MessageStore::open(&wrong, Options::new(Policy::All)).err().unwrap();
        assert!(e.contains("access denied") && !e.contains("not-the-secret"), "{e}");
        let missing = bucket.address.replace(&bucket.name, "no-such-bucket-here");
        let e = MessageStore::open(&missing, Options::new(Policy::All)).err().unwrap();
        assert!(e.contains("no such bucket"), "{e}");
        let port = sluice_test_support::free_port();
        let nobody = format!("s3://k:s@us-east-1/b-1?endpoint=http://127.0.0.1:{port}");
        let e = MessageStore::open(&nobody, Options::new(Policy::All)).err().unwrap();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
