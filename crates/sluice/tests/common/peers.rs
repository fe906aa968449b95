//! Receivers and a DNS server for delivery tests: Postfix's `smtp-sink` and
//! `dnsmasq` serving a test zone, each on loopback, killed when dropped.

use super::{free_port, require};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// Each test binary uses its own subset of these.
#[allow(unused_imports)]
pub use sluice_test_support::{smtp_sink, smtp_sink_at, smtp_sink_on, Peer};

/// dnsmasq answering only from `records` (dnsmasq options such as
/// `--mx-host=...`, `--host-record=...`); every other name under `test` is
/// NXDOMAIN. Nothing is forwarded anywhere.
pub fn dns(records: &[String]) -> Peer {
    require("dnsmasq");
    for _ in 0..10 {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        let mut child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--no-poll",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--local-ttl=60",
                "--pid-file=",
                "--user=root",
                "--log-facility=-",
            ])
            .arg(format!("--port={port}"))
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        if child.try_wait().unwrap().is_some() {
            continue;
        }
        return Peer::new(child, port);
    }
    panic!("dnsmasq did not start in ten tries");
}

/// A private Postfix instance on loopback delivering every recipient of
/// `pf.test` into one Maildir, offering STARTTLS with a throwaway certificate.
pub struct Postfix {
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Postfix {
    pub fn start() -> Postfix {
        require("postfix");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Postfix's daemons run as `postfix` and `nobody`: they must reach these directories.
        let _ = Command::new("chmod").arg("755").arg(root).status();
        for sub in ["etc", "spool", "data", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let _ = Command::new("chmod").arg("1777").arg(root.join("mail")).status();
        let _ = Command::new("chown").arg("postfix").arg(root.join("data")).status();
        self_signed(&root.join("etc"), "pf.test");
        let port = free_port();
        let r = root.display();
        std::fs::write(
            root.join("etc/main.cf"),
            format!(
                "compatibility_level = 3.6\nqueue_directory = {r}/spool\ndata_directory = {r}/data\n\
                 myhostname = pf.test\nmydestination =\ninet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
                 mynetworks = 127.0.0.0/8\nsmtpd_recipient_restrictions = permit_mynetworks, reject\n\
                 virtual_mailbox_domains = pf.test\nvirtual_mailbox_base = {r}/mail\n\
                 virtual_mailbox_maps = static:inbox/\nvirtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n\
                 maillog_file = {r}/maillog\nmaillog_file_prefixes = {r}\n\
                 smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {r}/etc/key.pem, {r}/etc/cert.pem\n\
                 smtp_tls_security_level = none\n"
            ),
        )
        .unwrap();
        let services = [
            format!("127.0.0.1:{port} inet n - n - - smtpd"),
            "pickup unix n - n 60 1 pickup".into(),
            "cleanup unix n - n - 0 cleanup".into(),
            "qmgr unix n - n 300 1 qmgr".into(),
            "rewrite unix - - n - - trivial-rewrite".into(),
            "bounce unix - - n - 0 bounce".into(),
            "defer unix - - n - 0 bounce".into(),
            "trace unix - - n - 0 bounce".into(),
            "verify unix - - n - 1 verify".into(),
            "proxymap unix - - n - - proxymap".into(),
            "smtp unix - - n - - smtp".into(),
            "showq unix n - n - - showq".into(),
            "error unix - - n - - error".into(),
            "retry unix - - n - - error".into(),
            "discard unix - - n - - discard".into(),
            "virtual unix - n n - - virtual".into(),
            "anvil unix - - n - 1 anvil".into(),
            "scache unix - - n - 1 scache".into(),
            "postlog unix-dgram n - n - 1 postlogd".into(),
            "tlsmgr unix - - n 1000? 1 tlsmgr".into(),
        ];
        std::fs::write(root.join("etc/master.cf"), services.join("\n") + "\n").unwrap();
        let started = Command::new("postfix")
            .arg("-c")
            .arg(root.join("etc"))
            .arg("start")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        let p = Postfix { dir, port };
        assert!(started.success(), "postfix did not start: {}", p.log());
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "postfix does not listen: {}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        p
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }

    /// The delivered messages (Maildir files), waiting up to `within` for `n`.
    pub fn mailbox(&self, n: usize, within: Duration) -> Vec<String> {
        let new = self.dir.path().join("mail/inbox/new");
        let deadline = Instant::now() + within;
        loop {
            let files: Vec<String> = std::fs::read_dir(&new)
                .map(|d| d.filter_map(|f| std::fs::read_to_string(f.ok()?.path()).ok()).collect())
                .unwrap_or_default();
            if files.len() >= n || Instant::now() >= deadline {
                return files;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(self.dir.path().join("etc"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A throwaway certificate for `name`: DIR/cert.pem and DIR/key.pem.
pub fn self_signed(dir: &Path, name: &str) {
    require("openssl");
    let ok = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
        .arg(format!("/CN={name}"))
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl could not make a certificate");
}

/// A relay (Python's aiosmtpd) that requires STARTTLS, then AUTH as
/// `user`/`password`; what it accepts lands in `out` as JSON files.
pub fn auth_relay(user: &str, password: &str, out: &Path) -> Peer {
    std::fs::create_dir_all(out).unwrap();
    self_signed(out, "relay.test");
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    python_peer("auth_server.py", "the aiosmtpd relay", |port| {
        vec![
            port.to_string().into(),
            cert.clone().into(),
            key.clone().into(),
            user.into(),
            password.into(),
            out.into(),
        ]
    })
}

/// Starts the Python peer `script` (in tests/peers) on a free port, its
/// arguments after the script from `args(port)`, until it accepts
/// connections (ten ports tried, ten seconds each).
fn python_peer(script: &str, what: &str, args: impl Fn(u16) -> Vec<std::ffi::OsString>) -> Peer {
    let script = format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"));
    for _ in 0..10 {
        let port = free_port();
        let mut child = Command::new("python3")
            .arg(&script)
            .args(args(port))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Peer::new(child, port);
            }
            assert!(Instant::now() < deadline, "{what} did not start (pip install aiosmtpd)");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("{what} did not start in ten tries");
}

/// The messages an [`auth_relay`] saved.
pub fn relayed(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(out)
        .unwrap()
        .filter_map(|f| {
            let p = f.ok()?.path();
            (p.extension()? == "json").then(|| serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok())?
        })
        .collect()
}

/// A receiver that records every message's arrival (time, connection, peer,
/// EHLO name, connections open) as JSON lines in `out`; `refuse` =
/// (domain, count, reply) answers that domain's first `count` messages with
/// `reply`.
pub fn recorder(out: &Path, refuse: Option<(&str, usize, &str)>) -> Peer {
    python_peer("recorder.py", "the recording receiver", |port| {
        let mut args = vec![port.to_string().into(), out.into()];
        if let Some((domain, count, reply)) = refuse {
            args.extend([domain.into(), count.to_string().into(), reply.into()]);
        }
        args
    })
}

/// What a [`recorder`] saw, one JSON object per message, in arrival order.
pub fn recorded(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
