//! The inbound SMTP session as a state machine: bytes in, events and reply
//! bytes out. It decides everything the protocol decides (syntax, sequence,
//! limits); policy (relay, credentials, storage) is asked of the caller
//! through [`Event`]s, which are answered with [`ServerSession::accept`] or
//! [`ServerSession::respond`].

use crate::body::{Bare, BodyReader, BodyStatus};
use crate::command::{self, Command, MailFrom, RcptTo};
use crate::reply::Reply;
use base64::Engine as _;

/// Longest command line (including CRLF) before it is refused.
pub const MAX_COMMAND_LINE: usize = 1000;

/// Longest AUTH command or response line (RFC 4954 §4: 12,288 octets).
pub const MAX_AUTH_LINE: usize = 12288;

/// What the session needs to know about its server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name used in the greeting and EHLO reply.
    pub hostname: String,
    /// Largest message accepted (SIZE); 0 = no limit (RFC 1870).
    pub max_size: u64,
    /// Most recipients in one transaction.
    pub max_recipients: usize,
    /// Negative replies before the session is closed with 421.
    pub max_errors: u32,
    /// STARTTLS can be offered (a certificate is configured).
    pub tls_available: bool,
    /// AUTH is configured (by credentials or plugins).
    pub auth_enabled: bool,
    /// AUTH may be used without TLS (loopback peers).
    pub auth_in_clear: bool,
}

impl ServerConfig {
    /// The message size limit in effect (`max_size` 0 means none).
    fn size_limit(&self) -> u64 {
        if self.max_size == 0 {
            u64::MAX
        } else {
            self.max_size
        }
    }
}

/// The mail transaction handed over when the message is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail: MailFrom,
    pub rcpts: Vec<RcptTo>,
    /// The message as received, dot-unstuffed, CRLF line endings kept.
    pub body: Vec<u8>,
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A valid MAIL FROM: answer with accept (250) or respond.
    Mail(MailFrom),
    /// A valid RCPT TO: answer with accept (250) or respond.
    Rcpt(RcptTo),
    /// Credentials from AUTH: accept (235) or respond (e.g. 535).
    Auth {
        mechanism: String,
        login: String,
        password: String,
        /// PLAIN's authorization identity when it differs from `login`
        /// (RFC 4616 §2): refuse unless the caller can authorize it.
        authzid: Option<String>,
    },
    /// The 220 for STARTTLS is in the output: flush it, run the handshake,
    /// then call [`ServerSession::tls_established`].
    StartTls,
    /// A complete message: respond with the reply (250 queued as …, or an error).
    Message(Envelope),
    /// Flush the output and close the connection.
    Close,
}

#[derive(Debug)]
enum Pending {
    Mail(MailFrom),
    Rcpt(RcptTo),
    Auth,
    Message,
}

#[derive(Debug)]
enum AuthStep {
    PlainResponse,
    LoginUser,
    LoginPassword(String),
}

#[derive(Debug)]
enum Phase {
    Command,
    /// Discarding the rest of an over-long command line.
    DiscardLine,
    Data(BodyReader),
    /// Reading a BDAT chunk: bytes left, LAST given, chunk accepted.
    Bdat {
        left: u64,
        last: bool,
        ok: bool,
    },
    Auth(AuthStep),
    Waiting(Pending),
    Closed,
}

#[derive(Debug, Default)]
struct Transaction {
    mail: Option<MailFrom>,
    rcpts: Vec<RcptTo>,
    body: Vec<u8>,
    /// BDAT was used (DATA is then not allowed, RFC 3030).
    chunked: bool,
    /// The caller refused the body being read ([`ServerSession::refuse_body`]):
    /// its bytes are discarded and this is the reply at its end.
    refused: Option<Reply>,
}

/// One inbound SMTP session.
#[derive(Debug)]
pub struct ServerSession {
    cfg: ServerConfig,
    phase: Phase,
    input: Vec<u8>,
    consumed: usize,
    output: Vec<u8>,
    helo: Option<String>,
    esmtp: bool,
    secure: bool,
    authenticated: Option<String>,
    errors: u32,
    tx: Transaction,
    /// Command lines and body transfers completed (for the caller's deadlines).
    progress: u64,
    /// Set by the caller while no new body may start (out of memory for receptions).
    no_new_bodies: Option<Reply>,
}

impl ServerSession {
    /// A session that has not yet greeted.
    pub fn new(cfg: ServerConfig) -> Self {
        ServerSession {
            cfg,
            phase: Phase::Command,
            input: Vec::new(),
            consumed: 0,
            output: Vec::new(),
            helo: None,
            esmtp: false,
            secure: false,
            authenticated: None,
            errors: 0,
            tx: Transaction::default(),
            progress: 0,
            no_new_bodies: None,
        }
    }

    /// While set, DATA and BDAT are answered with `reply` (and a BDAT
    /// chunk's bytes discarded) instead of starting a body.
    pub fn refuse_new_bodies(&mut self, reply: Option<Reply>) {
        self.no_new_bodies = reply;
    }

    /// True while a DATA or BDAT body is being read.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Data(_) | Phase::Bdat { .. })
    }

    /// Bytes of message body held for the current transaction.
    pub fn body_len(&self) -> usize {
        self.tx.body.len()
    }

    /// Grows each time a command line or a body transfer is complete; a
    /// caller that sees it stand still too long can time the client out.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// Refuses the body being read (e.g. the server is out of memory for
    /// receptions): its buffer is freed, the rest of its bytes are read and
    /// discarded, and `reply` answers it at its end.
    pub fn refuse_body(&mut self, reply: Reply) {
        if self.in_body() && self.tx.refused.is_none() {
            self.tx.body = Vec::new();
            self.tx.refused = Some(reply);
        }
    }

    /// Queues the 220 greeting.
    pub fn greet(&mut self) {
        let r = Reply::plain(220, format!("{} ESMTP Sluice", self.cfg.hostname));
        self.reply(r);
    }

    /// Queues a greeting of the caller's choosing (a plugin's, say).
    pub fn greet_with(&mut self, reply: Reply) {
        self.reply(reply);
    }

    /// Refuses the connection (access, limits, talking before the greeting).
    pub fn refuse(&mut self, reply: Reply) {
        reply.write_to(&mut self.output);
        self.phase = Phase::Closed;
    }

    /// The client was silent too long.
    pub fn timeout(&mut self) {
        self.refuse(Reply::new(
            421,
            "4.4.2",
            format!("{} Error: timeout exceeded", self.cfg.hostname),
        ));
    }

    /// The server is shutting down.
    pub fn shutdown(&mut self) {
        self.refuse(Reply::new(
            421,
            "4.3.2",
            format!("{} Service shutting down", self.cfg.hostname),
        ));
    }

    /// Marks the session as secure from the start (implicit TLS).
    pub fn set_secure(&mut self) {
        self.secure = true;
    }

    /// The TLS handshake after STARTTLS finished: the session starts over (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        self.secure = true;
        self.helo = None;
        self.esmtp = false;
        self.tx = Transaction::default();
        self.phase = Phase::Command;
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// True between transactions: nothing would be lost by closing now.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Command) && self.tx.mail.is_none() && !self.has_input()
    }

    /// True while the session waits for the caller to answer an event.
    pub fn is_waiting(&self) -> bool {
        matches!(self.phase, Phase::Waiting(_))
    }

    /// The authenticated login, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The EHLO/HELO name, if given.
    pub fn helo(&self) -> Option<&str> {
        self.helo.as_deref()
    }

    /// Reply bytes waiting to be written; the caller drains them.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// True when unprocessed input is buffered.
    pub fn has_input(&self) -> bool {
        self.consumed < self.input.len()
    }

    /// Adds received bytes.
    pub fn feed(&mut self, data: &[u8]) {
        if self.consumed > 0 && self.consumed == self.input.len() {
            self.input.clear();
            self.consumed = 0;
        } else if self.consumed > 64 * 1024 {
            self.input.drain(..self.consumed);
            self.consumed = 0;
        }
        self.input.extend_from_slice(data);
    }

    /// Accepts the pending event with its normal positive reply.
    pub fn accept(&mut self) {
        let reply = match &self.phase {
            Phase::Waiting(Pending::Mail(_)) => Reply::new(250, "2.1.0", "Ok"),
            Phase::Waiting(Pending::Rcpt(_)) => Reply::new(250, "2.1.5", "Ok"),
            Phase::Waiting(Pending::Auth) => Reply::new(235, "2.7.0", "Authentication successful"),
            Phase::Waiting(Pending::Message) => Reply::new(250, "2.0.0", "Ok: queued"),
            _ => return,
        };
        self.respond(reply);
    }

    /// Answers the pending event; a 2xx reply accepts it, anything else refuses it.
    pub fn respond(&mut self, reply: Reply) {
        let Phase::Waiting(pending) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        let ok = reply.is_positive();
        match pending {
            Pending::Mail(mail) if ok => self.tx.mail = Some(mail),
            Pending::Rcpt(rcpt) if ok => self.tx.rcpts.push(rcpt),
            Pending::Auth if ok => {}
            Pending::Auth => self.authenticated = None,
            Pending::Message => self.tx = Transaction::default(),
            _ => {}
        }
        self.reply(reply);
    }

    /// Records the authenticated login; call before accepting an Auth event.
    pub fn set_authenticated(&mut self, login: &str) {
        self.authenticated = Some(login.to_string());
    }

    /// Writes a reply, counting errors and closing after too many.
    fn reply(&mut self, reply: Reply) {
        let negative = reply.code >= 400;
        reply.write_to(&mut self.output);
        if negative {
            self.errors += 1;
            if self.errors >= self.cfg.max_errors && !self.is_closed() {
                self.refuse(Reply::new(
                    421,
                    "4.7.0",
                    format!("{} Error: too many errors", self.cfg.hostname),
                ));
            }
        }
    }

    fn error(&mut self, code: u16, status: &str, text: &str) {
        self.reply(Reply::new(code, status, text));
    }

    /// Processes buffered input until an event needs the caller or more input
    /// is needed (then `None`; flush the output and read).
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            match &mut self.phase {
                Phase::Closed => return Some(Event::Close),
                Phase::Waiting(_) => return None,
                Phase::Data(reader) => {
                    let data = &self.input[self.consumed..];
                    let limit = if self.tx.refused.is_some() {
                        0
                    } else {
                        self.cfg.size_limit()
                    };
                    let room = limit.saturating_sub(self.tx.body.len() as u64).min(usize::MAX as u64) as usize;
                    let (used, status) = reader.read(data, &mut self.tx.body, room);
                    self.consumed += used;
                    match status {
                        BodyStatus::NeedMore => return None,
                        BodyStatus::Done { too_big, bare } => {
                            self.phase = Phase::Command;
                            self.progress += 1;
                            let tx = std::mem::take(&mut self.tx);
                            if let Some(reply) = tx.refused {
                                self.reply(reply);
                            } else if too_big {
                                self.error(552, "5.3.4", "Error: message size exceeds fixed limit");
                            } else if let Some(bare) = bare {
                                let what = match bare {
                                    Bare::Lf => "Error: bare <LF> received; lines must end with CRLF",
                                    Bare::Cr => "Error: bare <CR> received; lines must end with CRLF",
                                };
                                self.error(550, "5.5.2", what);
                            } else {
                                self.tx = tx;
                                return Some(self.message_event());
                            }
                        }
                    }
                }
                Phase::Bdat { left, last, ok } => {
                    let (left_now, last, ok) = (*left, *last, *ok);
                    let avail = self.input.len() - self.consumed;
                    let take = (left_now.min(avail as u64)) as usize;
                    if ok && self.tx.refused.is_none() {
                        // The size was checked when the chunk was announced.
                        self.tx
                            .body
                            .extend_from_slice(&self.input[self.consumed..self.consumed + take]);
                    }
                    self.consumed += take;
                    let left_after = left_now - take as u64;
                    if left_after > 0 {
                        self.phase = Phase::Bdat {
                            left: left_after,
                            last,
                            ok,
                        };
                        return None;
                    }
                    self.phase = Phase::Command;
                    self.progress += 1;
                    if !ok {
                        // The reply was already given when the BDAT command was refused.
                    } else if let Some(reply) = self.tx.refused.take() {
                        self.tx = Transaction::default();
                        self.reply(reply);
                    } else if last {
                        return Some(self.message_event());
                    } else {
                        let n = self.tx.body.len();
                        self.reply(Reply::new(250, "2.0.0", format!("{n} octets received")));
                    }
                }
                Phase::DiscardLine => {
                    let data = &self.input[self.consumed..];
                    match memchr::memchr(b'\n', data) {
                        Some(i) => {
                            self.consumed += i + 1;
                            self.progress += 1;
                            self.phase = Phase::Command;
                        }
                        None => {
                            self.consumed = self.input.len();
                            return None;
                        }
                    }
                }
                Phase::Command | Phase::Auth(_) => {
                    let data = &self.input[self.consumed..];
                    let auth = matches!(self.phase, Phase::Auth(_))
                        || data.get(..5).is_some_and(|v| v.eq_ignore_ascii_case(b"AUTH "));
                    let max_line = if auth { MAX_AUTH_LINE } else { MAX_COMMAND_LINE };
                    let Some(i) = memchr::memchr(b'\n', data) else {
                        if data.len() >= max_line {
                            self.consumed = self.input.len();
                            self.phase = Phase::DiscardLine;
                            self.error(500, "5.5.2", "Error: line too long");
                        }
                        return None;
                    };
                    let start = self.consumed;
                    self.consumed += i + 1;
                    self.progress += 1;
                    if i + 1 > max_line {
                        self.phase = Phase::Command;
                        self.error(500, "5.5.2", "Error: line too long");
                        continue;
                    }
                    let mut end = start + i;
                    if end > start && self.input[end - 1] == b'\r' {
                        end -= 1;
                    }
                    let line = self.input[start..end].to_vec();
                    if let Some(ev) = if matches!(self.phase, Phase::Auth(_)) {
                        self.auth_line(&line)
                    } else {
                        self.command_line(&line)
                    } {
                        return Some(ev);
                    }
                }
            }
        }
    }

    fn message_event(&mut self) -> Event {
        self.phase = Phase::Waiting(Pending::Message);
        let tx = std::mem::take(&mut self.tx);
        Event::Message(Envelope {
            mail: tx.mail.unwrap_or_default(),
            rcpts: tx.rcpts,
            body: tx.body,
        })
    }

    fn wait(&mut self, pending: Pending) {
        self.phase = Phase::Waiting(pending);
    }

    fn ehlo_reply(&self, name: &str) -> Reply {
        let mut lines = vec![
            format!("{} Hello {}", self.cfg.hostname, name),
            "PIPELINING".into(),
            format!("SIZE {}", self.cfg.max_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.cfg.tls_available && !self.secure {
            lines.push("STARTTLS".into());
        }
        if self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("CHUNKING".into());
        lines.push("DSN".into());
        Reply::multi(250, lines)
    }

    fn auth_allowed(&self) -> bool {
        self.cfg.auth_enabled && (self.secure || self.cfg.auth_in_clear)
    }

    fn command_line(&mut self, line: &[u8]) -> Option<Event> {
        let utf8 = self.tx.mail.as_ref().is_some_and(|m| m.smtputf8);
        let cmd = match command::parse(line, utf8) {
            Ok(c) => c,
            Err(e) => {
                self.reply(e.reply());
                return None;
            }
        };
        match cmd {
            Command::Ehlo(name) => {
                let r = self.ehlo_reply(&name);
                self.helo = Some(name);
                self.esmtp = true;
                self.tx = Transaction::default();
                self.reply(r);
                None
            }
            Command::Helo(name) => {
                let r = Reply::plain(250, self.cfg.hostname.clone());
                self.helo = Some(name);
                self.esmtp = false;
                self.tx = Transaction::default();
                self.reply(r);
                None
            }
            Command::Mail(mail) => {
                if self.helo.is_none() {
                    self.error(503, "5.5.1", "Error: send HELO/EHLO first");
                } else if self.tx.mail.is_some() {
                    self.error(503, "5.5.1", "Error: nested MAIL command");
                } else if mail.size.is_some_and(|s| s > self.cfg.size_limit()) {
                    self.error(552, "5.3.4", "Error: message size exceeds fixed limit");
                } else {
                    self.wait(Pending::Mail(mail.clone()));
                    return Some(Event::Mail(mail));
                }
                None
            }
            Command::Rcpt(rcpt) => {
                if self.tx.mail.is_none() {
                    self.error(503, "5.5.1", "Error: need MAIL command");
                } else if self.tx.rcpts.len() >= self.cfg.max_recipients {
                    // Not an error (RFC 5321 §4.5.3.1.10): the client goes on
                    // with the recipients accepted so far.
                    Reply::new(452, "4.5.3", "Error: too many recipients").write_to(&mut self.output);
                } else {
                    self.wait(Pending::Rcpt(rcpt.clone()));
                    return Some(Event::Rcpt(rcpt));
                }
                None
            }
            Command::Data => {
                if let Some(reply) = self.body_refusal() {
                    self.reply(reply);
                } else if self.tx.chunked {
                    self.error(503, "5.5.1", "Error: DATA after BDAT");
                } else {
                    self.reply(Reply::plain(354, "End data with <CR><LF>.<CR><LF>"));
                    self.phase = Phase::Data(BodyReader::new());
                }
                None
            }
            Command::Bdat { size, last } => {
                let too_big = (self.tx.body.len() as u64).saturating_add(size) > self.cfg.size_limit();
                let ok = match self.body_refusal() {
                    Some(reply) => {
                        self.reply(reply);
                        false
                    }
                    None if too_big => {
                        // Refused now, not after 2^64 bytes: the message is over
                        // and the chunk's bytes are discarded as they come.
                        self.tx = Transaction::default();
                        self.error(552, "5.3.4", "Error: message size exceeds fixed limit");
                        false
                    }
                    None => true,
                };
                self.tx.chunked |= ok;
                self.phase = Phase::Bdat { left: size, last, ok };
                None
            }
            Command::Rset => {
                self.tx = Transaction::default();
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            Command::Noop => {
                self.reply(Reply::new(250, "2.0.0", "Ok"));
                None
            }
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                self.phase = Phase::Closed;
                Some(Event::Close)
            }
            Command::Vrfy => {
                self.reply(Reply::new(
                    252,
                    "2.1.5",
                    "Cannot VRFY user, but will accept message and attempt delivery",
                ));
                None
            }
            Command::Expn => {
                self.error(502, "5.5.1", "Error: EXPN not supported");
                None
            }
            Command::Help => {
                self.reply(Reply::new(
                    214,
                    "2.0.0",
                    "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH",
                ));
                None
            }
            Command::StartTls => {
                if self.secure {
                    self.error(503, "5.5.1", "Error: TLS already active");
                } else if !self.cfg.tls_available {
                    self.error(454, "4.7.0", "Error: TLS not available");
                } else if self.tx.mail.is_some() {
                    self.error(503, "5.5.1", "Error: STARTTLS inside a mail transaction");
                } else {
                    self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
                    // Plaintext pipelined after STARTTLS must not be taken as
                    // encrypted commands (CVE-2011-0411).
                    self.consumed = self.input.len();
                    return Some(Event::StartTls);
                }
                None
            }
            Command::Auth { mechanism, initial } => self.auth_start(&mechanism, initial),
        }
    }

    /// Why DATA/BDAT cannot start now, if it cannot.
    fn body_refusal(&self) -> Option<Reply> {
        if self.tx.mail.is_none() {
            Some(Reply::new(503, "5.5.1", "Error: need MAIL command"))
        } else if self.tx.rcpts.is_empty() {
            Some(Reply::new(554, "5.5.1", "Error: no valid recipients"))
        } else if !self.tx.chunked {
            // A BDAT chunk after the first one is part of a body already started.
            self.no_new_bodies.clone()
        } else {
            None
        }
    }

    fn auth_start(&mut self, mechanism: &str, initial: Option<String>) -> Option<Event> {
        if !self.cfg.auth_enabled {
            self.error(503, "5.5.1", "Error: authentication not enabled");
            return None;
        }
        if !self.auth_allowed() {
            self.error(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            );
            return None;
        }
        if self.helo.is_none() || !self.esmtp {
            self.error(503, "5.5.1", "Error: send EHLO first");
            return None;
        }
        if self.authenticated.is_some() {
            self.error(503, "5.5.1", "Error: already authenticated");
            return None;
        }
        if self.tx.mail.is_some() {
            self.error(503, "5.5.1", "Error: AUTH not allowed in a mail transaction");
            return None;
        }
        match (mechanism, initial) {
            ("PLAIN", None) => {
                self.reply(Reply::plain(334, ""));
                self.phase = Phase::Auth(AuthStep::PlainResponse);
                None
            }
            ("PLAIN", Some(resp)) => self.auth_plain(resp.as_bytes()),
            ("LOGIN", None) => {
                self.reply(Reply::plain(334, "VXNlcm5hbWU6"));
                self.phase = Phase::Auth(AuthStep::LoginUser);
                None
            }
            ("LOGIN", Some(resp)) => {
                self.phase = Phase::Auth(AuthStep::LoginUser);
                self.auth_line(resp.as_bytes())
            }
            _ => {
                self.error(504, "5.5.4", "Error: unsupported authentication mechanism");
                None
            }
        }
    }

    fn decode(&mut self, line: &[u8]) -> Option<String> {
        if line == b"*" {
            self.phase = Phase::Command;
            self.error(501, "5.0.0", "Authentication cancelled");
            return None;
        }
        let raw = if line == b"=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(line)
        };
        match raw.ok().and_then(|v| String::from_utf8(v).ok()) {
            Some(s) => Some(s),
            None => {
                self.phase = Phase::Command;
                self.error(501, "5.5.2", "Error: cannot decode response");
                None
            }
        }
    }

    fn auth_plain(&mut self, line: &[u8]) -> Option<Event> {
        let text = self.decode(line)?;
        let mut parts = text.split('\0');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(authzid), Some(login), Some(password), None) => {
                self.wait(Pending::Auth);
                Some(Event::Auth {
                    mechanism: "PLAIN".into(),
                    login: login.to_string(),
                    password: password.to_string(),
                    authzid: (!authzid.is_empty() && authzid != login).then(|| authzid.to_string()),
                })
            }
            _ => {
                self.phase = Phase::Command;
                self.error(501, "5.5.2", "Error: invalid PLAIN response");
                None
            }
        }
    }

    fn auth_line(&mut self, line: &[u8]) -> Option<Event> {
        // Every step either moves to the next phase or, on a bad line, back to commands.
        let Phase::Auth(step) = std::mem::replace(&mut self.phase, Phase::Command) else {
            return None;
        };
        match step {
            AuthStep::PlainResponse => self.auth_plain(line),
            AuthStep::LoginUser => {
                let user = self.decode(line)?;
                self.reply(Reply::plain(334, "UGFzc3dvcmQ6"));
                self.phase = Phase::Auth(AuthStep::LoginPassword(user));
                None
            }
            AuthStep::LoginPassword(user) => {
                let password = self.decode(line)?;
                self.wait(Pending::Auth);
                Some(Event::Auth {
                    mechanism: "LOGIN".into(),
                    login: user,
                    password,
                    authzid: None,
                })
            }
        }
    }
}
