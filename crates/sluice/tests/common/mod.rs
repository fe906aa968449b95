//! Test harness: runs the real `sluice` binary on free loopback ports with its
//! own data directory, and talks to it like a client would.
#![allow(dead_code)]

pub mod peers;
pub mod policy;
pub mod rabbit;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

pub use sluice_test_support::{free_port, require};

/// A running daemon.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub smtp: u16,
    pub www: u16,
    pub config: PathBuf,
    child: Option<Child>,
    /// Extra environment for the daemon (plugins read their own settings).
    env: Vec<(String, String)>,
    /// A file `config` is layered over (MailerQ's `--config-file`), for
    /// the daemon and the command line alike.
    pub base: Option<PathBuf>,
}

impl Daemon {
    /// Starts sluice with `extra` config lines after the test defaults.
    pub fn start(extra: &str) -> Daemon {
        Self::start_with_env(extra, &[])
    }

    /// As [`Daemon::start`], with extra environment variables for the daemon.
    pub fn start_with_env(extra: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_layered(None, extra, env)
    }

    /// Starts sluice on `base` (`--config`) with the test defaults and
    /// `extra` in a second file over it (`--config-file`), as a MailerQ
    /// instance runs on a shared file and its own.
    pub fn start_over(base: &Path, extra: &str) -> Daemon {
        Self::start_layered(Some(base), extra, &[])
    }

    fn start_layered(base: Option<&Path>, extra: &str, env: &[(&str, &str)]) -> Daemon {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        for _ in 0..5 {
            match Self::try_start(base, extra, env.clone()) {
                Ok(d) => return d,
                Err(log) if log.contains("cannot listen on") => continue, // a port race with another test
                Err(log) => panic!("sluice exited at start:\n{log}"),
            }
        }
        panic!("sluice could not find free ports in five tries");
    }

    fn try_start(base: Option<&Path>, extra: &str, env: Vec<(String, String)>) -> Result<Daemon, String> {
        let dir = tempfile::tempdir().unwrap();
        let (smtp, www) = (free_port(), free_port());
        let config = dir.path().join("config.txt");
        let defaults = format!(
            "smtp-port: {smtp}\nwww-port: {www}\ndata-directory: {}\nsmtp-threads: 2\nsmtp-hostname: mx.test\nlog-level: debug\ndelivery-enabled: false\n",
            dir.path().join("data").display()
        );
        // A key given in `extra` replaces the harness default.
        let key = |l: &str| l.split(':').next().unwrap_or("").trim().to_string();
        let overridden: Vec<String> = extra.lines().map(key).collect();
        let mut text: String = defaults
            .lines()
            .filter(|l| !overridden.contains(&key(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        let mut d = Daemon {
            dir,
            smtp,
            www,
            config,
            child: None,
            env,
            base: base.map(Path::to_path_buf),
        };
        d.try_spawn()?;
        Ok(d)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sluice.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of the log (for failures of long-running tests).
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// (Re)starts the process on the same config and data, waiting until it serves.
    pub fn spawn(&mut self) {
        if let Err(log) = self.try_spawn() {
            panic!("sluice exited at start:\n{log}");
        }
    }

    fn try_spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(BIN)
            .arg("run")
            .args(self.config_args())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sluice");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status}) {}", self.log()));
            }
            // Ready means the API answers: that happens only after every worker
            // initialised (plugin contexts included). Probing SMTP instead would
            // leave a session that counts against smtp-connections.
            if health_ok(self.www) {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "sluice did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            assert!(Instant::now() < deadline, "sluice did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `--config FILE`, or `--config BASE --config-file FILE`.
    fn config_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["--config".into()];
        match &self.base {
            Some(base) => args.extend([base.into(), "--config-file".into(), (&self.config).into()]),
            None => args.push((&self.config).into()),
        }
        args
    }

    /// Runs a `sluice` CLI command against this daemon.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        cli_run(&self.config_args(), args, stdin)
    }

    /// Pops every message of `queue` as JSON.
    pub fn pop_all(&self, queue: &str) -> Vec<Value> {
        let out = self.cli(&["queue", "pop", queue, "-n", "1000000"], b"");
        assert!(
            out.status.success(),
            "pop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out.stdout)
    }

    /// Pops from `queue` until `n` messages came or `within` passed; returns what came.
    pub fn collect(&self, queue: &str, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            let more = self.pop_all(queue);
            if more.is_empty() {
                std::thread::sleep(Duration::from_millis(100));
            }
            got.extend(more);
        }
        got
    }

    /// POSTs `body` to the HTTP API; returns the status line and the body.
    pub fn post(&self, path: &str, body: &[u8]) -> (String, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.www)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = format!(
            "POST {path} HTTP/1.0\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (head.lines().next().unwrap_or("").to_string(), body.to_string())
    }

    pub fn connect(&self) -> Smtp {
        Smtp::connect(self.smtp)
    }

    /// A connection past the greeting and `EHLO client.test`.
    pub fn session(&self) -> Smtp {
        let mut c = self.connect();
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "greeting: {greeting}");
        let ehlo = c.cmd("EHLO client.test");
        assert!(ehlo.starts_with("250 "), "EHLO: {ehlo}");
        c
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- sluice log ---\n{}", self.log());
        }
    }
}

/// True when `GET /health` gets an HTTP answer (401 too, with www-username set).
fn health_ok(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: t\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 9];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.")
}

pub fn cli_with(config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    cli_run(&["--config".into(), config.into()], args, stdin)
}

/// Runs `sluice ARGS CONFIG_ARGS` with `stdin` on its input.
fn cli_run(config_args: &[std::ffi::OsString], args: &[&str], stdin: &[u8]) -> Output {
    let mut c = Command::new(BIN)
        .args(args)
        .args(config_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

pub fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A raw SMTP client that reads whole (multi-line) replies.
pub struct Smtp {
    pub reader: BufReader<TcpStream>,
}

impl Smtp {
    pub fn connect(port: u16) -> Smtp {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Commands are written piecewise; without this, Nagle waits for the server's delayed ACK.
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Smtp {
            reader: BufReader::new(s),
        }
    }

    /// Reads one reply; returns its last line (`250 2.0.0 Ok`), or "" on EOF.
    pub fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return String::new();
            }
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return line.trim_end().to_string();
            }
        }
    }

    /// Sends a command line and returns every line of the reply (EHLO's, say).
    pub fn cmd_full(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        let mut all = String::new();
        loop {
            let mut l = String::new();
            if self.reader.read_line(&mut l).unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    pub fn send(&mut self, data: &[u8]) {
        self.reader.get_mut().write_all(data).unwrap();
    }

    /// Sends a command line and returns the reply's last line.
    pub fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// The reply code of a command.
    pub fn code(&mut self, line: &str) -> String {
        self.cmd(line).chars().take(3).collect()
    }

    /// True when the server closed the connection (a reset counts: the
    /// server may close with unread client bytes in its buffer).
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.reader.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    /// A complete transaction; returns the final reply.
    pub fn mail(&mut self, from: &str, to: &[&str], body: &str) -> String {
        assert!(self.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
        for r in to {
            assert!(self.cmd(&format!("RCPT TO:<{r}>")).starts_with("250"));
        }
        assert!(self.cmd("DATA").starts_with("354"));
        self.send(body.as_bytes());
        self.cmd(".")
    }
}

/// Runs `sluice run` on `config`, expecting start-up to fail; returns stderr.
pub fn start_fails(config: &Path) -> String {
    let out = Command::new(BIN)
        .arg("run")
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "sluice started, but should have refused");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One swaks transaction to the daemon; returns success and the transcript.
pub fn swaks(d: &Daemon, from: &str, to: &str, extra: &[&str]) -> (bool, String) {
    require("swaks");
    let server = format!("127.0.0.1:{}", d.smtp);
    let out = run(Command::new("swaks")
        .args(["--server", &server, "--from", from, "--to", to])
        .args(extra));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command with a time limit, returning its output.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run external tool");
    out
}
