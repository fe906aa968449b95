//! `storage-address` read as MailerQ writes it.

use std::path::PathBuf;

/// A `storage-address`, read.
#[derive(Debug, PartialEq, Eq)]
pub enum Address {
    Dir {
        root: PathBuf,
        depth: usize,
    },
    Sqlite(PathBuf),
    /// The address without Sluice's own options, as the driver takes it.
    Postgres(String),
    /// `mysql://user:password@host[:port]/database`, as the driver takes it.
    Mysql(String),
    S3(S3Address),
}

/// `s3://accesskey:secretkey@region/bucket[?endpoint=URL]`.
#[derive(PartialEq, Eq)]
pub struct S3Address {
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub bucket: String,
    /// An S3-compatible server instead of AWS (`?endpoint=http://host:port`,
    /// Sluice's addition): addressed by path, not by bucket host name.
    pub endpoint: Option<String>,
}

impl std::fmt::Debug for S3Address {
    // Never the secret key, wherever an address is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Address")
            .field("access_key", &self.access_key)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// `storage-address` read as MailerQ writes it, and whether to compress;
/// an error says why it cannot be used (never repeating a password).
pub fn parse_address(address: &str) -> Result<(Address, bool), String> {
    let (scheme, rest) = address.split_once("://").ok_or_else(|| {
        "not a storage address (dir:///path, sqlite:///file, postgresql://…, mysql://…, s3://…)".to_string()
    })?;
    let scheme = scheme.to_ascii_lowercase();
    if matches!(scheme.as_str(), "mongodb" | "mongo" | "couchbase") {
        return Err(format!(
            "{scheme}:// message stores are not supported yet; dir://, sqlite://, postgresql://, mysql:// and s3:// are"
        ));
    }
    // Both SQL servers' drivers take the options Sluice does not.
    let sql_server = matches!(scheme.as_str(), "postgresql" | "postgres" | "mysql");
    let s3 = scheme == "s3";
    // Options follow the credentials, which end at the last `@`: a
    // password may hold `?`, and is never read (or repeated) as an option.
    let options_from = rest.rfind('@').map_or(0, |at| at + 1);
    let (main, query) = match rest[options_from..].split_once('?') {
        Some((before, query)) => (&rest[..options_from + before.len()], query),
        None => (rest, ""),
    };
    let (mut depth, mut gzip, mut endpoint) = (4usize, false, None);
    let mut passed_on = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("depth", d)) if !sql_server && !s3 => {
                depth = d
                    .parse()
                    .ok()
                    .filter(|d| *d <= 8)
                    .ok_or_else(|| format!("depth `{d}` must be 0 to 8"))?
            }
            Some(("endpoint", e)) if s3 => endpoint = Some(endpoint_url(e)?),
            Some(("compression", "gzip")) => gzip = true,
            Some(("compression", "none" | "identity")) => gzip = false,
            _ if sql_server => passed_on.push(pair),
            _ => {
                let options = if s3 {
                    "endpoint, compression=gzip"
                } else {
                    "depth, compression=gzip"
                };
                return Err(format!("`{pair}` is not a {scheme} store option ({options})"));
            }
        }
    }
    let address = match scheme.as_str() {
        "dir" | "directory" | "sqlite" if !main.starts_with('/') => {
            return Err(format!("the path must be absolute ({scheme}:///path)"))
        }
        "dir" | "directory" => Address::Dir {
            root: PathBuf::from(main),
            depth,
        },
        "sqlite" => Address::Sqlite(PathBuf::from(main)),
        "s3" => Address::S3(s3_address(main, endpoint)?),
        _ if sql_server => {
            let server = if scheme == "mysql" { "mysql" } else { "postgresql" };
            let mut a = format!("{server}://{main}");
            if !passed_on.is_empty() {
                a.push('?');
                a.push_str(&passed_on.join("&"));
            }
            if scheme == "mysql" {
                Address::Mysql(a)
            } else {
                Address::Postgres(a)
            }
        }
        other => return Err(format!("`{other}` is not a storage backend")),
    };
    Ok((address, gzip))
}

/// `accesskey:secretkey@region/bucket`. A secret key may hold `/` and `+`
/// as AWS makes them, so the credentials end at the last `@`; either part
/// may be percent-encoded. Without credentials, `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY` are used.
fn s3_address(main: &str, endpoint: Option<String>) -> Result<S3Address, String> {
    let (credentials, place) = match main.rsplit_once('@') {
        Some((c, p)) => (Some(c), p),
        None => (None, main),
    };
    let (access_key, secret_key) = match credentials {
        Some(c) => {
            let (k, s) = c
                .split_once(':')
                .ok_or("the credentials must be accesskey:secretkey (s3://accesskey:secretkey@region/bucket)")?;
            (decoded(k)?, decoded(s)?)
        }
        None => (
            std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
        ),
    };
    if access_key.is_empty() || secret_key.is_empty() {
        return Err("no credentials: write s3://accesskey:secretkey@region/bucket \
                    (or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            .into());
    }
    let (region, bucket) = place
        .split_once('/')
        .ok_or("no bucket (s3://accesskey:secretkey@region/bucket)")?;
    let bucket = bucket.trim_end_matches('/');
    if region.is_empty()
        || region.len() > 40
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!("`{}` is not an S3 region", region.escape_debug()));
    }
    // S3's bucket naming rules: 3 to 63 of a-z, 0-9, `.`, `-`, starting and
    // ending with a letter or digit.
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !(3..=63).contains(&bucket.len())
        || !bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        || !edge_ok(bucket.bytes().next())
        || !edge_ok(bucket.bytes().last())
    {
        return Err(format!("`{}` is not an S3 bucket name", bucket.escape_debug()));
    }
    Ok(S3Address {
        access_key,
        secret_key,
        region: region.to_string(),
        bucket: bucket.to_string(),
        endpoint,
    })
}

/// A percent-decoded credential.
fn decoded(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "the credentials are not UTF-8 once percent-decoded".to_string())
}

/// The `endpoint` option: an http(s) URL with a host and nothing else.
fn endpoint_url(e: &str) -> Result<String, String> {
    let e = percent_encoding::percent_decode_str(e).decode_utf8_lossy().into_owned();
    let ok = url::Url::parse(&e).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.query().is_none()
            && u.path() == "/"
    });
    if !ok {
        return Err(format!(
            "endpoint `{}` must be http://host[:port] or https://host[:port]",
            e.escape_debug()
        ));
    }
    Ok(e.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_mailerq_writes_them() {
        let (a, gzip) = parse_address("directory:///var/lib/mailerq/storage?compression=gzip").unwrap();
        assert!(gzip && matches!(a, Address::Dir { depth: 4, .. }));
        assert!(matches!(
            parse_address("dir:///s?depth=3").unwrap().0,
            Address::Dir { depth: 3, .. }
        ));
        assert_eq!(
            parse_address("sqlite:///var/db.sqlite").unwrap().0,
            Address::Sqlite("/var/db.sqlite".into())
        );
        assert_eq!(
            parse_address("postgresql://u:p@h/db?compression=gzip&connect_timeout=5").unwrap(),
            (
                Address::Postgres("postgresql://u:p@h/db?connect_timeout=5".into()),
                true
            )
        );
        assert!(parse_address("dir://relative").is_err());
        assert!(parse_address("dir:///s?depth=99").is_err());
        assert_eq!(
            parse_address("mysql://u:p@h/db?compression=gzip").unwrap(),
            (Address::Mysql("mysql://u:p@h/db".into()), true)
        );
        let e = parse_address("mongodb://h/db/coll").unwrap_err();
        assert!(e.contains("not supported yet"), "{e}");
    }

    #[test]
    fn s3_addresses_with_aws_keys() {
        // AWS secret keys hold `/` and `+`: the credentials end at the last `@`.
        let (a, gzip) =
            parse_address("s3://AKIAEXAMPLE:wJalr/K7MDENG+bPxRfi@eu-west-1/mail-store?compression=gzip").unwrap();
        let Address::S3(a) = a else { panic!("{a:?}") };
        assert!(gzip);
        assert_eq!(
            (
                a.access_key.as_str(),
                a.secret_key.as_str(),
                a.region.as_str(),
                a.bucket.as_str()
            ),
            ("AKIAEXAMPLE", "wJalr/K7MDENG+bPxRfi", "eu-west-1", "mail-store")
        );
        assert_eq!(a.endpoint, None);
        assert!(!format!("{a:?}").contains("wJalr"), "Debug hides the secret");
        let Address::S3(a) = parse_address("s3://k:s%40cret@us-east-1/b.with.dots?endpoint=http://127.0.0.1:9000")
            .unwrap()
            .0
        else {
            panic!()
        };
        assert_eq!(a.secret_key, "s@cret");
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        // A `?` inside the secret is the secret's, not the start of options.
        let (Address::S3(a), true) = parse_address("s3://k:se?cr/et@us-east-1/box?compression=gzip").unwrap() else {
            panic!()
        };
        assert_eq!((a.secret_key.as_str(), a.bucket.as_str()), ("se?cr/et", "box"));
        for bad in [
            "s3://k:s@eu-west-1/",
            "s3://k:s@eu-west-1/UPPER",
            "s3://k:s@eu-west-1/-dash",
            "s3://k:s@EU/bucket",
            "s3://k:s@eu-west-1/bucket?endpoint=ftp://h",
            "s3://k:s@eu-west-1/bucket?endpoint=http://u:p@h/",
            "s3://k:s@eu-west-1/bucket?depth=2",
            "s3://nocolon@eu-west-1/bucket",
        ] {
            let e = parse_address(bad).unwrap_err();
            assert!(!e.contains(":s@"), "{bad}: {e}");
        }
    }
}
