//! Receivers and a DNS server for delivery tests: Postfix's `smtp-sink` and
//! `dnsmasq` serving a test zone, each on loopback, killed when dropped.

use super::{free_port, require};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
pub struct Peer {
    child: Child,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `smtp-sink` on `ip` (a loopback address) with extra options (fault modes);
/// `dump` (when given) receives one file per message.
pub fn smtp_sink_on(ip: &str, options: &[&str], dump: Option<&Path>) -> Peer {
    require("smtp-sink");
    for _ in 0..10 {
        let port = free_port();
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
        loop {
            if child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: try another
            }
            if TcpStream::connect((ip, port)).is_ok() {
                return Peer { child, port };
            }
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no port for smtp-sink in ten tries");
}

pub fn smtp_sink(options: &[&str]) -> Peer {
    smtp_sink_on("127.0.0.1", options, None)
}

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
        return Peer { child, port };
    }
    panic!("dnsmasq did not start in ten tries");
}
