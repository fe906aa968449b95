//! One outbound SMTP connection: the socket, STARTTLS and the timeouts
//! around the sans-IO [`ClientSession`]. Every way it can end is turned into
//! an [`Attempt`] with the `state` it ended in.

use super::outcome::{Attempt, Connection, ResultKind, State};
use sluice_smtp::client::{ClientConfig, ClientSession, Event, Stage, Transaction, TransactionResult};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// Waits per RFC 5321 §4.5.3.2, each capped by `delivery-timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub cap: Duration,
}

impl Timeouts {
    fn capped(&self, secs: u64) -> Duration {
        Duration::from_secs(secs).min(self.cap)
    }

    /// TCP connect (not in the RFC; a minute is what MTAs use).
    pub fn connect(&self) -> Duration {
        self.capped(60)
    }

    /// Waiting for the reply at `stage`.
    fn reply(&self, stage: Stage) -> Duration {
        match stage {
            Stage::Data => self.capped(120),
            Stage::Message => self.capped(600),
            _ => self.capped(300),
        }
    }

    /// Writing one block of the message.
    fn write(&self) -> Duration {
        self.capped(180)
    }
}

type Stream = crate::stream::OutboundStream;

/// How a transaction began.
pub enum Started {
    /// It ended before the body (a refusal), with this attempt.
    Ended(Attempt),
    /// 354: the body is wanted now.
    BodyWanted,
}

/// Where to connect and how.
pub struct Target<'a> {
    pub addr: SocketAddr,
    pub local: Option<IpAddr>,
    /// The host name (SNI and the result's `mta` until the greeting names one).
    pub host: &'a str,
}

/// An open, greeted (and maybe secured and authenticated) connection.
pub struct Client {
    stream: Stream,
    session: ClientSession,
    timeouts: Timeouts,
    info: Connection,
    buf: Vec<u8>,
    /// Bytes written on the connection, and of the current message's body.
    written: u64,
    data: u64,
}

impl Client {
    /// Connects and runs the session up to the first transaction.
    pub async fn open(
        target: Target<'_>,
        cfg: ClientConfig,
        tls: &TlsConnector,
        timeouts: Timeouts,
    ) -> Result<Client, Attempt> {
        let mut info = Connection {
            remote: Some(target.addr.ip()),
            ..Default::default()
        };
        let tcp = connect(target.addr, target.local, timeouts.connect())
            .await
            .map_err(|a| a.with_connection(Some(info.clone())))?;
        info.local = tcp.local_addr().ok().map(|a| a.ip());
        let _ = tcp.set_nodelay(true);
        let mut client = Client {
            stream: Stream::Plain(tcp),
            session: ClientSession::new(cfg, false),
            timeouts,
            info,
            buf: vec![0; 16 * 1024],
            written: 0,
            data: 0,
        };
        loop {
            match client.next_event().await? {
                Event::Ready => break,
                Event::StartTls => client.start_tls(tls, target.host).await?,
                Event::Failed { stage, reply, reason } => return Err(client.failure(stage, reply, reason)),
                Event::Done(_) | Event::Closed | Event::BodyWanted => {
                    return Err(client.attempt(
                        Stage::Intro,
                        ResultKind::Lost,
                        "connection closed during the introduction",
                    ))
                }
            }
        }
        Ok(client)
    }

    /// What the connection is, for result entries.
    /// The address this connection reached.
    pub fn remote(&self) -> Option<std::net::IpAddr> {
        self.info.remote
    }

    pub fn info(&self) -> Connection {
        let mut c = self.info.clone();
        if c.mta.is_empty() {
            c.mta = self.mta_name();
        }
        c.messages = self.session.sent;
        c.dsn = self.session.capabilities().dsn;
        c.authentication = self.session.authentication();
        c.sent = Some((self.written, self.data));
        c
    }

    /// What the server offered.
    pub fn capabilities(&self) -> &sluice_smtp::client::Capabilities {
        self.session.capabilities()
    }

    /// Sends one message. `Err` means the connection is unusable afterwards.
    pub async fn send(&mut self, tx: Transaction) -> Result<Attempt, Attempt> {
        match self.begin(tx, false).await? {
            Started::Ended(a) => Ok(a),
            Started::BodyWanted => self.finish().await,
        }
    }

    /// Starts a transaction; with `held`, stops at 354 for the body
    /// ([`Client::body`], then [`Client::finish`]).
    pub async fn begin(&mut self, tx: Transaction, held: bool) -> Result<Started, Attempt> {
        self.data = tx.body.len() as u64;
        if held {
            self.session.send_held(tx);
        } else {
            self.session.send(tx);
        }
        match self.next_event().await? {
            Event::BodyWanted => Ok(Started::BodyWanted),
            Event::Done(r) => Ok(Started::Ended(self.judge(r))),
            Event::Failed { stage, reply, reason } => Err(self.failure(stage, reply, reason)),
            Event::Ready | Event::StartTls | Event::Closed => Err(self.attempt(
                Stage::Message,
                ResultKind::Lost,
                "connection ended during the transaction",
            )),
        }
    }

    /// Writes the body of a held transaction and its final dot.
    pub async fn body(&mut self, body: &[u8]) -> Result<(), Attempt> {
        self.data = body.len() as u64;
        self.session.send_body(body);
        self.flush(Stage::Message).await
    }

    /// Waits for the reply to the message.
    pub async fn finish(&mut self) -> Result<Attempt, Attempt> {
        match self.next_event().await? {
            Event::Done(r) => Ok(self.judge(r)),
            Event::Failed { stage, reply, reason } => Err(self.failure(stage, reply, reason)),
            _ => Err(self.attempt(
                Stage::Message,
                ResultKind::Lost,
                "connection ended during the transaction",
            )),
        }
    }

    /// The socket, for plugins (`MQ_fileDescriptor`).
    pub fn fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        match &self.stream {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(s) => s.get_ref().0.as_raw_fd(),
            Stream::Gone => -1,
        }
    }

    pub fn is_secure(&self) -> bool {
        self.session.is_secure()
    }

    /// Ends the session politely; errors no longer matter.
    pub async fn quit(mut self) {
        self.session.quit();
        let _ = timeout(Duration::from_secs(5), async {
            let _ = self.next_event().await;
        })
        .await;
    }

    /// The attempt a transaction's replies add up to.
    fn judge(&self, r: TransactionResult) -> Attempt {
        let info = Some(self.info());
        if !r.mail.is_positive() {
            return Attempt::reply(Stage::MailFrom, r.mail, info);
        }
        if let Some(bad) = r.rcpts.iter().find(|rc| !rc.is_positive()) {
            return Attempt::reply(Stage::RcptTo, bad.clone(), info);
        }
        match (r.data, r.message) {
            (Some(d), _) if d.code != 354 => Attempt::reply(Stage::Data, d, info),
            (_, Some(m)) => Attempt::reply(Stage::Message, m, info),
            _ => Attempt::failed(Stage::Message, ResultKind::Lost, "no reply to the message", false)
                .with_connection(info),
        }
    }

    fn attempt(&self, stage: Stage, kind: ResultKind, description: impl Into<String>) -> Attempt {
        Attempt::failed(stage, kind, description, false).with_connection(Some(self.info()))
    }

    fn failure(&self, stage: Stage, reply: Option<sluice_smtp::Reply>, reason: String) -> Attempt {
        match reply {
            Some(r) => {
                let mut a = Attempt::reply(stage, r, Some(self.info()));
                if a.description.is_empty() {
                    a.description = reason;
                }
                // A refused login is a configuration problem, not the message's:
                // retry instead of bouncing everything (Postfix's smtp_sasl_auth_soft_bounce).
                if matches!(
                    stage,
                    Stage::AuthPlain | Stage::AuthLogin | Stage::AuthUsername | Stage::AuthPassword
                ) {
                    a.permanent = false;
                }
                a
            }
            // No reply: a policy failure (TLS required) or a reply we cannot read.
            None if stage == Stage::StartTls => {
                Attempt::failed(stage, ResultKind::Error, reason, false).with_connection(Some(self.info()))
            }
            None => self.attempt(stage, ResultKind::Invalid, reason),
        }
    }

    /// The greeting's first word names the remote MTA.
    fn mta_name(&self) -> String {
        self.session
            .greeting()
            .and_then(|g| g.lines.first())
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_default()
            .to_string()
    }

    /// Writes pending commands, reads until the session has an event.
    async fn next_event(&mut self) -> Result<Event, Attempt> {
        loop {
            if let Some(ev) = self.session.next_event() {
                return Ok(ev);
            }
            let stage = self.session.stage();
            self.flush(stage).await?;
            let wait = self.timeouts.reply(stage);
            match timeout(wait, self.stream.read(&mut self.buf)).await {
                Ok(Ok(0)) => return Err(self.attempt(stage, ResultKind::Lost, "connection closed by the server")),
                Ok(Ok(n)) => self.session.feed(&self.buf[..n]),
                Ok(Err(e)) => return Err(self.attempt(stage, ResultKind::Lost, format!("read failed: {e}"))),
                Err(_) => {
                    return Err(self.attempt(
                        stage,
                        ResultKind::Timeout,
                        format!("no reply within {} s", wait.as_secs()),
                    ))
                }
            }
        }
    }

    /// Writes what the session has queued.
    async fn flush(&mut self, stage: Stage) -> Result<(), Attempt> {
        if self.session.output().is_empty() {
            return Ok(());
        }
        let out = std::mem::take(self.session.output());
        self.written += out.len() as u64;
        match timeout(self.timeouts.write(), self.stream.write_all(&out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.attempt(stage, ResultKind::Lost, format!("write failed: {e}"))),
            Err(_) => Err(self.attempt(stage, ResultKind::Timeout, "timed out writing to the server")),
        }
    }

    async fn start_tls(&mut self, tls: &TlsConnector, host: &str) -> Result<(), Attempt> {
        let Some(tcp) = self.stream.take_plain() else {
            return Err(self.attempt(Stage::StartTls, ResultKind::Error, "STARTTLS on a secured connection"));
        };
        let handshake = tls.connect(super::tls::server_name(host), tcp);
        let done = timeout(self.timeouts.reply(Stage::StartTls), handshake).await;
        crate::metrics::handshake("outbound", matches!(done, Ok(Ok(_))));
        let stream = match done {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(self.attempt(Stage::StartTls, ResultKind::Error, format!("TLS handshake failed: {e}")))
            }
            Err(_) => return Err(self.attempt(Stage::StartTls, ResultKind::Timeout, "TLS handshake timed out")),
        };
        let (_, conn) = stream.get_ref();
        self.info.cipher = super::tls::cipher_info(conn);
        self.info.certificate = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(super::tls::certificate_info);
        self.stream = Stream::Tls(Box::new(stream));
        self.session.tls_established();
        Ok(())
    }
}

/// A TCP connection from `local` (when given) with a timeout.
async fn connect(addr: SocketAddr, local: Option<IpAddr>, wait: Duration) -> Result<TcpStream, Attempt> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    };
    let socket =
        socket.map_err(|e| Attempt::failed(State::Connect, ResultKind::Error, format!("socket: {e}"), false))?;
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0)).map_err(|e| {
            Attempt::failed(
                State::Bind,
                ResultKind::Error,
                format!("cannot send from {ip}: {e}"),
                false,
            )
        })?;
    }
    match timeout(wait, socket.connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(Attempt::failed(
            State::Connect,
            ResultKind::Error,
            format!("connect to {addr}: {e}"),
            false,
        )),
        Err(_) => Err(Attempt::failed(
            State::Connect,
            ResultKind::Timeout,
            format!("connect to {addr}: no answer within {} s", wait.as_secs()),
            false,
        )),
    }
}
