//! RabbitMQ for tests: the broker `scripts/test.sh` started (its address in
//! `RABBITMQ_TEST_ADDRESS`), or a private one started here, and Python's
//! `pika` (a client no one here wrote) to publish and read.

use super::{free_port, json_lines, require};
use serde_json::Value;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PIKA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/amqp.py");

/// A broker: shared (from the environment) or private (stopped on drop).
pub struct Broker {
    pub address: String,
    pub port: u16,
    private: Option<Private>,
}

struct Private {
    node: String,
    dir: tempfile::TempDir,
    server: std::sync::Mutex<Option<std::process::Child>>,
}

impl Broker {
    /// The test run's broker, or a private one when there is none.
    pub fn shared() -> Broker {
        match std::env::var("RABBITMQ_TEST_ADDRESS") {
            Ok(address) if !address.is_empty() => {
                let port = address
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .expect("RABBITMQ_TEST_ADDRESS has a port");
                Broker {
                    address,
                    port,
                    private: None,
                }
            }
            _ => Broker::private(),
        }
    }

    /// A broker of this test's own (for stopping and starting it).
    pub fn private() -> Broker {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let node = format!("sluice-{port}@localhost");
        let b = Broker {
            address: format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            port,
            private: Some(Private {
                node,
                dir,
                server: std::sync::Mutex::new(None),
            }),
        };
        b.start();
        b
    }

    /// Whether the broker accepts connections.
    pub fn up(&self) -> bool {
        TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// (Re)starts a private broker on its port and data, waiting until it is up.
    pub fn start(&self) {
        require("rabbitmq-server");
        let p = self.private.as_ref().expect("only a private broker is started here");
        let root = p.dir.path();
        for sub in ["mnesia", "log"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("plugins"), "[].").unwrap();
        let _ = Command::new("chmod").arg("755").arg(root).status();
        let _ = Command::new("chown").args(["-R", "rabbitmq"]).arg(root).status();
        let child = Command::new("rabbitmq-server")
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rabbitmq-server");
        *p.server.lock().unwrap() = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.up() {
            assert!(Instant::now() < deadline, "rabbitmq-server did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops a private broker and waits until it is gone.
    pub fn stop(&self) {
        let p = self.private.as_ref().expect("only a private broker is stopped here");
        // Bounded like everything here: a hung CLI or node fails the test, not the run.
        let _ = Command::new("timeout")
            .args(["60", "rabbitmqctl", "-n", &p.node, "stop"])
            .envs(self.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.up() {
            assert!(Instant::now() < deadline, "rabbitmq-server did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(mut child) = p.server.lock().unwrap().take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("rabbitmq-server did not exit within 60 s of rabbitmqctl stop");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let p = self.private.as_ref().expect("private");
        let root = p.dir.path().display().to_string();
        vec![
            ("RABBITMQ_NODENAME".into(), p.node.clone()),
            ("RABBITMQ_NODE_IP_ADDRESS".into(), "127.0.0.1".into()),
            ("RABBITMQ_NODE_PORT".into(), self.port.to_string()),
            ("RABBITMQ_DIST_PORT".into(), (self.port + 10000).to_string()),
            ("RABBITMQ_MNESIA_BASE".into(), format!("{root}/mnesia")),
            ("RABBITMQ_LOG_BASE".into(), format!("{root}/log")),
            ("RABBITMQ_ENABLED_PLUGINS_FILE".into(), format!("{root}/plugins")),
        ]
    }

    /// Config lines for a daemon on this broker, every queue name prefixed
    /// with `prefix` so tests sharing the broker do not see each other's mail.
    pub fn config(&self, prefix: &str) -> String {
        let mut text = format!("rabbitmq-address: {}\n", self.address);
        for (key, name) in [
            ("rabbitmq-outbox", "outbox"),
            ("rabbitmq-results", "results"),
            ("rabbitmq-success", "success"),
            ("rabbitmq-failure", "failure"),
            ("rabbitmq-retry", "retry"),
        ] {
            text.push_str(&format!("{key}: {prefix}{name}\n"));
        }
        text
    }

    /// Publishes `bodies` to `queue` with pika (persistent, confirmed).
    pub fn publish(&self, queue: &str, bodies: &[String]) {
        self.pipe("publish", queue, bodies);
    }

    /// Runs pika's `command` with `arg`, one line of `lines` at a time on its input.
    fn pipe(&self, command: &str, arg: &str, lines: &[String]) {
        let mut child = pika(&[command, &self.address, arg])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
        drop(stdin);
        assert!(child.wait().unwrap().success(), "pika {command} failed");
    }

    /// Takes (and acks) up to `n` messages of `queue` with pika, waiting up to
    /// `within` for them; bodies that are JSON come back parsed.
    pub fn get(&self, queue: &str, n: usize, within: Duration) -> Vec<Value> {
        let out = pika(&[
            "get",
            &self.address,
            queue,
            &n.to_string(),
            &within.as_secs_f64().to_string(),
        ])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "pika get failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.to_string())))
            .collect()
    }

    /// Publishes one message per `{"body", "priority", "encoding", "compress"}` with pika.
    pub fn publish_each(&self, queue: &str, messages: &[Value]) {
        self.pipe(
            "publish-each",
            queue,
            &messages.iter().map(Value::to_string).collect::<Vec<_>>(),
        );
    }

    /// Like [`Broker::get`], each message as `{"priority", "encoding", "body"}`
    /// (the body gunzipped by pika when the encoding says gzip, as text).
    pub fn get_props(&self, queue: &str, n: usize, within: Duration) -> Vec<Value> {
        let out = pika(&[
            "get-props",
            &self.address,
            queue,
            &n.to_string(),
            &within.as_secs_f64().to_string(),
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    }

    /// "same" when `queue` was declared with exactly `arguments`, else "different: WHY".
    pub fn same_arguments(&self, queue: &str, arguments: &Value) -> String {
        let out = pika(&["same-arguments", &self.address, queue, &arguments.to_string()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether `queue` exists.
    pub fn exists(&self, queue: &str) -> bool {
        let out = pika(&["exists", &self.address, queue]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    }

    /// Messages ready in `queue` (pika's passive declare).
    pub fn count(&self, queue: &str) -> u64 {
        let out = pika(&["count", &self.address, queue]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0)
    }

    /// Publishes `cards` to the cluster exchange as instance `id`.
    pub fn announce(&self, id: &str, cards: &[String]) {
        self.pipe("announce", id, cards);
    }

    /// Waits until `queue` has `n` consumers.
    pub fn wait_consumers(&self, queue: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = pika(&["consumers", &self.address, queue]).output().unwrap();
            if String::from_utf8_lossy(&out.stdout).trim().parse::<u64>().unwrap_or(0) >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{queue} never had {n} consumers");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if self.private.is_some() && self.up() {
            self.stop();
        }
    }
}

fn pika(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(PIKA).args(args).stderr(Stdio::piped());
    c
}

/// A queue-name prefix no other test uses.
pub fn prefix() -> String {
    format!("t{}-", free_port())
}
