//! Helpers the tests of several crates share (dev-only): a free loopback
//! port, a clear failure when a peer is missing, and Postfix's `smtp-sink`
//! as a receiver, killed when dropped.
#![forbid(unsafe_code)]

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now, picked at random below Linux's
/// ephemeral range (32768+), so it never collides with a client's source
/// port, and rarely with another test process picking at the same time
/// (callers retry when it does).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20000 + (h.finish() % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Fails with a clear message when an external peer is missing (the README's
/// test command installs them).
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed; run the README's test command, which installs it"
    );
}

/// A peer process on a port, killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Peer {
    pub fn new(child: Child, port: u16) -> Peer {
        Peer { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `smtp-sink` on `ip` (a loopback address, IPv6 in brackets) with extra options (fault modes);
/// `dump` (when given) receives one file per message.
pub fn smtp_sink_on(ip: &str, options: &[&str], dump: Option<&Path>) -> Peer {
    for _ in 0..10 {
        if let Some(peer) = smtp_sink_at(ip, free_port(), options, dump) {
            return peer;
        }
    }
    panic!("no port for smtp-sink in ten tries");
}

/// `smtp-sink` on `ip`:`port`, or None when that port is taken.
pub fn smtp_sink_at(ip: &str, port: u16, options: &[&str], dump: Option<&Path>) -> Option<Peer> {
    require("smtp-sink");
    let mut cmd = Command::new("smtp-sink");
    cmd.args(["-u", "nobody"]).args(options);
    if let Some(dir) = dump {
        std::fs::create_dir_all(dir).unwrap();
        // smtp-sink writes as `nobody`.
        let _ = Command::new("chmod").arg("777").arg(dir).status();
        cmd.arg("-d").arg(dir.join("%H%M%S."));
    }
    let mut child = cmd
        .arg(format!("{ip}:{port}"))
        .arg("64")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let host = ip.trim_start_matches('[').trim_end_matches(']');
    loop {
        if child.try_wait().unwrap().is_some() {
            return None; // the port was taken meanwhile
        }
        if TcpStream::connect((host, port)).is_ok() {
            return Some(Peer { child, port });
        }
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `smtp-sink` on 127.0.0.1.
pub fn smtp_sink(options: &[&str]) -> Peer {
    smtp_sink_on("127.0.0.1", options, None)
}

/// A database of one test's own on the test run's PostgreSQL server
/// (`POSTGRES_TEST_ADDRESS`, which `scripts/test.sh` sets), dropped with it.
pub struct PgDatabase {
    /// `postgresql://USER:PASSWORD@HOST:PORT/NAME`.
    pub address: String,
    admin: String,
    name: String,
}

impl PgDatabase {
    /// Creates an empty database (with `psql`, the server's own client).
    pub fn create() -> PgDatabase {
        let admin = std::env::var("POSTGRES_TEST_ADDRESS").unwrap_or_default();
        assert!(
            !admin.is_empty(),
            "POSTGRES_TEST_ADDRESS is not set: run the tests with scripts/test.sh, which starts a private PostgreSQL"
        );
        require("psql");
        let name = format!("t{}_{}", std::process::id(), free_port());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
        PgDatabase {
            address: format!("{base}/{name}"),
            admin: admin.clone(),
            name,
        }
    }

    /// Runs `sql` in this database with `psql`; panics with its error when it fails.
    pub fn sql(&self, sql: &str) -> String {
        psql(&self.address, sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// Runs `sql` with `psql` at `address` (stopping at the first error); its output, unaligned.
pub fn psql(address: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([address, "-v", "ON_ERROR_STOP=1", "-qAtc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bucket of one test's own on the test run's S3-compatible server
/// (`S3_TEST_ENDPOINT`, `S3_TEST_ACCESS_KEY`, `S3_TEST_SECRET_KEY`, which
/// `scripts/test.sh` sets), made and looked into with Python's boto3.
pub struct S3Bucket {
    /// The bucket's `storage-address` (`s3://KEY:SECRET@us-east-1/NAME?endpoint=URL`).
    pub address: String,
    /// The bucket's name.
    pub name: String,
    endpoint: String,
    key: String,
    secret: String,
}

impl S3Bucket {
    /// Creates an empty bucket.
    pub fn create() -> S3Bucket {
        let var = |v: &str| std::env::var(v).unwrap_or_default();
        let (endpoint, key, secret) = (
            var("S3_TEST_ENDPOINT"),
            var("S3_TEST_ACCESS_KEY"),
            var("S3_TEST_SECRET_KEY"),
        );
        assert!(
            !endpoint.is_empty() && !key.is_empty() && !secret.is_empty(),
            "S3_TEST_ENDPOINT/_ACCESS_KEY/_SECRET_KEY are not set: run the tests with scripts/test.sh, which starts a private S3 server"
        );
        let name = format!("sluice-{}-{}", std::process::id(), free_port());
        let b = S3Bucket {
            address: format!("s3://{key}:{secret}@us-east-1/{name}?endpoint={endpoint}"),
            name,
            endpoint,
            key,
            secret,
        };
        b.boto3("s3.create_bucket(Bucket=bucket)");
        b
    }

    /// Runs Python `code` with `s3` (a boto3 client) and `bucket` (the name) defined; its output.
    pub fn boto3(&self, code: &str) -> String {
        let program = format!(
            "import boto3, json, sys\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3])\n\
             bucket = sys.argv[4]\n{code}\n"
        );
        let out = Command::new("python3")
            .args(["-c", &program, &self.endpoint, &self.key, &self.secret, &self.name])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "boto3: {code}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The bucket's objects: each key with its `x-amz-meta-*` metadata, sorted by key.
    pub fn objects(&self) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
        let out = self.boto3(
            "for o in sorted(o['Key'] for o in s3.list_objects_v2(Bucket=bucket).get('Contents', [])):\n    \
             meta = s3.head_object(Bucket=bucket, Key=o)['Metadata']\n    \
             print('\\t'.join([o] + [k + '=' + v for k, v in sorted(meta.items())]))",
        );
        let mut objects = Vec::new();
        // One line per object: its key, then name=value per metadata field, tab-separated.
        for line in out.lines() {
            let mut fields = line.split('\t');
            let Some(key) = fields.next() else { continue };
            let meta = fields
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            objects.push((key.to_string(), meta));
        }
        objects
    }
}

/// A database of one test's own on the test run's MariaDB server
/// (`MYSQL_TEST_ADDRESS`, which `scripts/test.sh` sets), dropped with it;
/// reached with the `mariadb` client.
pub struct MysqlDatabase {
    /// `mysql://USER:PASSWORD@HOST:PORT/NAME`.
    pub address: String,
    name: String,
    login: Vec<String>,
}

impl MysqlDatabase {
    /// Creates an empty database.
    pub fn create() -> MysqlDatabase {
        let admin = std::env::var("MYSQL_TEST_ADDRESS").unwrap_or_default();
        assert!(
            !admin.is_empty(),
            "MYSQL_TEST_ADDRESS is not set: run the tests with scripts/test.sh, which starts a private MariaDB"
        );
        require("mariadb");
        // mysql://user:password@host:port/db, as scripts/private-mysql.sh writes it.
        let rest = admin.trim_start_matches("mysql://");
        let (credentials, place) = rest.rsplit_once('@').expect("credentials in MYSQL_TEST_ADDRESS");
        let (user, password) = credentials.split_once(':').expect("user:password");
        let (host_port, _) = place.split_once('/').expect("a database");
        let (host, port) = host_port.split_once(':').expect("host:port");
        let login = ["--no-defaults", "-h", host, "-P", port, "-u", user]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("-p{password}")])
            .collect();
        let name = format!("t{}_{}", std::process::id(), free_port());
        let db = MysqlDatabase {
            address: format!("mysql://{credentials}@{host_port}/{name}"),
            name: name.clone(),
            login,
        };
        db.run(&format!("CREATE DATABASE {name}"), None);
        db
    }

    fn run(&self, sql: &str, database: Option<&str>) -> String {
        let out = Command::new("mariadb")
            .args(&self.login)
            .args(database)
            .args(["-N", "-B", "-e", sql])
            .output()
            .expect("mariadb runs");
        assert!(
            out.status.success(),
            "mariadb: {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `sql` in this database; its rows, tab-separated.
    pub fn sql(&self, sql: &str) -> String {
        self.run(sql, Some(&self.name))
    }
}

impl Drop for MysqlDatabase {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(&self.login)
            .args(["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)])
            .output();
    }
}
