//! The outbound SMTP session as a state machine: replies in, commands out.
//! It knows the protocol (EHLO/HELO, STARTTLS, AUTH, PIPELINING, the order of
//! replies); the caller owns the socket, the TLS handshake and the policy of
//! what to do with each outcome. Every failure names the [`Stage`] it
//! happened in — the `state` of a result in `spec/messages.md`.

pub use crate::reply::parse_reply;
use crate::reply::Reply;
use crate::wire::{Credentials, HeloName, Param, Path};
use base64::Engine as _;

/// Whether to use STARTTLS (`tls-outbound`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Use it when offered; go on in clear when not (or when it fails).
    Opportunistic,
    /// Fail instead of sending in clear.
    Required,
    /// Never.
    Disabled,
}

/// How the client introduces itself.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The EHLO/HELO name.
    pub helo: HeloName,
    pub tls: TlsPolicy,
    /// AUTH credentials (smarthosts).
    pub auth: Option<Credentials>,
}

/// What the server offered in its EHLO reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// EHLO was accepted (false after a HELO fallback).
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    /// SIZE, with its limit when given (0 = none stated).
    pub size: Option<u64>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub chunking: bool,
    pub enhanced_status: bool,
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Capabilities {
    fn parse(reply: &Reply) -> Capabilities {
        let mut c = Capabilities {
            esmtp: true,
            ..Default::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else { continue };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => c.pipelining = true,
                "STARTTLS" => c.starttls = true,
                "SIZE" => c.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => c.eight_bit_mime = true,
                "SMTPUTF8" => c.smtputf8 = true,
                "DSN" => c.dsn = true,
                "CHUNKING" => c.chunking = true,
                "ENHANCEDSTATUSCODES" => c.enhanced_status = true,
                "AUTH" => {
                    for m in words {
                        match m.to_ascii_uppercase().as_str() {
                            "PLAIN" => c.auth_plain = true,
                            "LOGIN" => c.auth_login = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        c
    }
}

/// Where a session was when something happened (the result `state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Intro,
    Ehlo,
    Helo,
    StartTls,
    AuthPlain,
    AuthLogin,
    AuthUsername,
    AuthPassword,
    MailFrom,
    RcptTo,
    Data,
    Message,
}

impl Stage {
    /// The name used in result JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Intro => "intro",
            Stage::Ehlo => "ehlo",
            Stage::Helo => "helo",
            Stage::StartTls => "starttls",
            Stage::AuthPlain => "authplain",
            Stage::AuthLogin => "authlogin",
            Stage::AuthUsername => "authusername",
            Stage::AuthPassword => "authpassword",
            Stage::MailFrom => "mailfrom",
            Stage::RcptTo => "rcptto",
            Stage::Data => "data",
            Stage::Message => "message",
        }
    }
}

/// One message to send. Paths and parameters are checked types, so nothing
/// in a transaction can end a command line early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Reverse path (null for `<>`).
    pub from: Path,
    /// MAIL parameters, e.g. `BODY=8BITMIME`, `SMTPUTF8`.
    pub from_params: Vec<Param>,
    /// Forward paths with their RCPT parameters.
    pub rcpts: Vec<(Path, Vec<Param>)>,
    /// The message; line ends are normalised to CRLF and dots stuffed when sent.
    pub body: Vec<u8>,
}

/// The replies a transaction got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionResult {
    pub mail: Reply,
    /// One per recipient, in order (missing ones were never answered).
    pub rcpts: Vec<Reply>,
    /// The reply to DATA, when it was sent.
    pub data: Option<Reply>,
    /// The reply after the final dot, when the body was sent.
    pub message: Option<Reply>,
}

/// Something the caller must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// STARTTLS was accepted: flush, do the TLS handshake, then call
    /// [`ClientSession::tls_established`].
    StartTls,
    /// Ready for a transaction ([`ClientSession::send`]).
    Ready,
    /// A transaction ended; look at the replies for the outcome.
    Done(TransactionResult),
    /// The session cannot go on: the stage, the reply if one caused it.
    Failed {
        stage: Stage,
        reply: Option<Reply>,
        reason: String,
    },
    /// QUIT was answered (or the session is over).
    Closed,
    /// DATA was accepted (354) for a transaction started with
    /// [`ClientSession::send_held`]: call [`ClientSession::send_body`] now.
    BodyWanted,
}

#[derive(Debug)]
enum Phase {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth(Stage),
    Idle,
    /// Waiting for the replies of a (possibly pipelined) transaction.
    Transaction(Box<Pending>),
    /// Body sent, waiting for the final reply.
    Message(Box<Pending>),
    Quit,
    Done,
}

#[derive(Debug)]
struct Pending {
    tx: Transaction,
    /// An RSET reply to skip first.
    rset: bool,
    mail: Option<Reply>,
    rcpts: Vec<Reply>,
    /// DATA was sent (pipelined, or after the last RCPT).
    data_sent: bool,
    data: Option<Reply>,
    /// The caller supplies the body after 354 ([`ClientSession::send_body`]).
    hold: bool,
}

/// One outbound SMTP session.
#[derive(Debug)]
pub struct ClientSession {
    cfg: ClientConfig,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    caps: Capabilities,
    secure: bool,
    greeting: Option<Reply>,
    /// A transaction ended abnormally: RSET before the next.
    dirty: bool,
    /// Transactions completed (the `messages` of a result).
    pub sent: u64,
    /// The AUTH mechanism the server accepted.
    authenticated: Option<&'static str>,
}

/// Dot-stuffs a body, normalising every line end — CRLF, bare LF and bare
/// CR — to CRLF, and appends the final dot. No byte sequence in a body can
/// then end the data early at the next hop (outbound SMTP smuggling).
pub fn encode_body(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 50 + 5);
    let mut pos = 0;
    let mut line_start = true;
    while pos < body.len() {
        if line_start && body[pos] == b'.' {
            out.push(b'.');
        }
        match memchr::memchr2(b'\r', b'\n', &body[pos..]) {
            Some(i) => {
                let end = pos + i;
                out.extend_from_slice(&body[pos..end]);
                out.extend_from_slice(b"\r\n");
                let crlf = body[end] == b'\r' && body.get(end + 1) == Some(&b'\n');
                pos = end + if crlf { 2 } else { 1 };
                line_start = true;
            }
            None => {
                out.extend_from_slice(&body[pos..]);
                pos = body.len();
                line_start = false;
            }
        }
    }
    if !body.is_empty() && !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

impl ClientSession {
    /// A session on a fresh connection (`secure`: implicit TLS).
    pub fn new(cfg: ClientConfig, secure: bool) -> Self {
        ClientSession {
            cfg,
            phase: Phase::Greeting,
            input: Vec::new(),
            output: Vec::new(),
            caps: Capabilities::default(),
            secure,
            greeting: None,
            dirty: false,
            sent: 0,
            authenticated: None,
        }
    }

    /// The AUTH mechanism the server accepted (`PLAIN`, `LOGIN`), if the session logged in.
    pub fn authentication(&self) -> Option<&'static str> {
        self.authenticated
    }

    /// What the server offered (after EHLO).
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The greeting (its text names the remote MTA).
    pub fn greeting(&self) -> Option<&Reply> {
        self.greeting.as_ref()
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Commands waiting to be written; the caller drains them.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// Adds bytes read from the server.
    pub fn feed(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// Writes one command line. Every argument comes from a checked type
    /// ([`crate::wire`]); this is the last line of defence if one did not.
    fn command(&mut self, line: &str) {
        debug_assert!(!line.contains(['\r', '\n', '\0']), "{line:?}");
        let line: String = line.chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')).collect();
        self.output.extend_from_slice(line.as_bytes());
        self.output.extend_from_slice(b"\r\n");
    }

    fn path_command(&mut self, verb: &str, path: &Path, params: &[Param]) {
        let mut line = format!("{verb}:<{path}>");
        for p in params {
            line.push(' ');
            line.push_str(p.as_str());
        }
        self.command(&line);
    }

    fn fail(&mut self, stage: Stage, reply: Option<Reply>, reason: impl Into<String>) -> Event {
        self.phase = Phase::Done;
        Event::Failed {
            stage,
            reply,
            reason: reason.into(),
        }
    }

    /// The TLS handshake after STARTTLS succeeded: EHLO again (RFC 3207).
    pub fn tls_established(&mut self) {
        self.secure = true;
        self.input.clear();
        self.caps = Capabilities::default();
        self.phase = Phase::Ehlo;
        let helo = format!("EHLO {}", self.cfg.helo);
        self.command(&helo);
    }

    /// Starts a transaction; only after [`Event::Ready`] or [`Event::Done`].
    pub fn send(&mut self, tx: Transaction) {
        self.start(tx, false);
    }

    /// Starts a transaction whose body is given only once the server said
    /// 354 ([`Event::BodyWanted`]); `tx.body` is ignored.
    pub fn send_held(&mut self, tx: Transaction) {
        self.start(tx, true);
    }

    /// The body of a held transaction, after [`Event::BodyWanted`].
    pub fn send_body(&mut self, body: &[u8]) {
        if let Phase::Message(p) = &self.phase {
            if p.hold {
                encode_body(body, &mut self.output);
            }
        }
    }

    fn start(&mut self, tx: Transaction, hold: bool) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let rset = self.dirty;
        if rset {
            self.command("RSET");
        }
        self.path_command("MAIL FROM", &tx.from, &tx.from_params);
        let pipelining = self.caps.pipelining;
        if pipelining {
            for (rcpt, params) in &tx.rcpts {
                self.path_command("RCPT TO", rcpt, params);
            }
            self.command("DATA");
        }
        self.phase = Phase::Transaction(Box::new(Pending {
            tx,
            rset,
            mail: None,
            rcpts: Vec::new(),
            data_sent: pipelining,
            data: None,
            hold,
        }));
    }

    /// Ends the session politely.
    pub fn quit(&mut self) {
        if matches!(self.phase, Phase::Done) {
            return;
        }
        self.command("QUIT");
        self.phase = Phase::Quit;
    }

    /// Processes buffered replies until an event is due (`None`: flush output, read more).
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (reply, used) = match parse_reply(&self.input) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    let stage = self.stage();
                    return Some(self.fail(stage, None, e.to_string()));
                }
            };
            self.input.drain(..used);
            if let Some(ev) = self.on_reply(reply) {
                return Some(ev);
            }
        }
    }

    /// The stage the next reply answers (picks the timeout while waiting).
    pub fn stage(&self) -> Stage {
        match &self.phase {
            Phase::Greeting => Stage::Intro,
            Phase::Ehlo => Stage::Ehlo,
            Phase::Helo => Stage::Helo,
            Phase::StartTls => Stage::StartTls,
            Phase::Auth(s) => *s,
            Phase::Transaction(p) if p.mail.is_none() => Stage::MailFrom,
            Phase::Transaction(p) if p.rcpts.len() < p.tx.rcpts.len() => Stage::RcptTo,
            Phase::Transaction(_) => Stage::Data,
            Phase::Message(_) => Stage::Message,
            Phase::Idle | Phase::Quit | Phase::Done => Stage::Message,
        }
    }

    fn on_reply(&mut self, reply: Reply) -> Option<Event> {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Greeting => {
                if reply.code != 220 {
                    return Some(self.fail(Stage::Intro, Some(reply), "greeting refused"));
                }
                self.greeting = Some(reply);
                self.phase = Phase::Ehlo;
                let helo = format!("EHLO {}", self.cfg.helo);
                self.command(&helo);
                None
            }
            Phase::Ehlo => {
                if reply.code == 250 {
                    self.caps = Capabilities::parse(&reply);
                    return self.after_hello();
                }
                if (500..=502).contains(&reply.code) || reply.code == 504 {
                    // No ESMTP: try the old greeting.
                    self.phase = Phase::Helo;
                    let helo = format!("HELO {}", self.cfg.helo);
                    self.command(&helo);
                    return None;
                }
                Some(self.fail(Stage::Ehlo, Some(reply), "EHLO refused"))
            }
            Phase::Helo => {
                if reply.code != 250 {
                    return Some(self.fail(Stage::Helo, Some(reply), "HELO refused"));
                }
                self.caps = Capabilities::default();
                self.after_hello()
            }
            Phase::StartTls => {
                if reply.code == 220 {
                    return Some(Event::StartTls);
                }
                if self.cfg.tls == TlsPolicy::Required {
                    return Some(self.fail(
                        Stage::StartTls,
                        Some(reply),
                        "STARTTLS refused and tls-outbound is required",
                    ));
                }
                self.caps.starttls = false;
                self.after_tls()
            }
            Phase::Auth(stage) => self.on_auth(stage, reply),
            Phase::Transaction(p) => self.on_transaction(*p, reply),
            Phase::Message(p) => {
                let accepted =
                    p.mail.as_ref().is_some_and(Reply::is_positive) && p.rcpts.iter().any(Reply::is_positive);
                self.phase = Phase::Idle;
                let Pending { mail, rcpts, data, .. } = *p;
                // Without an accepted recipient the body was an empty stand-in
                // (RFC 2920 §3.1): its reply means nothing.
                let message = accepted.then_some(reply);
                let delivered = message.as_ref().is_some_and(Reply::is_positive);
                self.sent += u64::from(delivered);
                self.dirty = !delivered;
                Some(Event::Done(TransactionResult {
                    mail: mail.unwrap_or_else(|| Reply::plain(0, "")),
                    rcpts,
                    data,
                    message,
                }))
            }
            Phase::Quit => Some(Event::Closed),
            Phase::Idle | Phase::Done => {
                // An unsolicited reply (e.g. 421 before closing).
                Some(self.fail(Stage::Message, Some(reply), "unexpected reply"))
            }
        }
    }

    /// After EHLO/HELO: STARTTLS by policy, then AUTH, then ready.
    fn after_hello(&mut self) -> Option<Event> {
        if !self.secure && self.cfg.tls != TlsPolicy::Disabled {
            if self.caps.starttls {
                self.phase = Phase::StartTls;
                self.command("STARTTLS");
                return None;
            }
            if self.cfg.tls == TlsPolicy::Required {
                return Some(self.fail(
                    Stage::StartTls,
                    None,
                    "server does not offer STARTTLS and tls-outbound is required",
                ));
            }
        }
        self.after_tls()
    }

    fn after_tls(&mut self) -> Option<Event> {
        let Some(creds) = self.cfg.auth.clone() else {
            self.phase = Phase::Idle;
            return Some(Event::Ready);
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        if self.caps.auth_plain {
            self.phase = Phase::Auth(Stage::AuthPlain);
            let plain = format!("\0{}\0{}", creds.user(), creds.password());
            self.command(&format!("AUTH PLAIN {}", b64(&plain)));
            None
        } else if self.caps.auth_login {
            self.phase = Phase::Auth(Stage::AuthLogin);
            self.command("AUTH LOGIN");
            None
        } else {
            Some(self.fail(Stage::Ehlo, None, "server offers neither AUTH PLAIN nor AUTH LOGIN"))
        }
    }

    fn on_auth(&mut self, stage: Stage, reply: Reply) -> Option<Event> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let (user, pass) = match &self.cfg.auth {
            Some(c) => (c.user().to_string(), c.password().to_string()),
            None => Default::default(),
        };
        match (stage, reply.code) {
            (_, 235) => {
                self.authenticated = Some(if stage == Stage::AuthPlain { "PLAIN" } else { "LOGIN" });
                self.phase = Phase::Idle;
                Some(Event::Ready)
            }
            (Stage::AuthLogin, 334) => {
                self.phase = Phase::Auth(Stage::AuthUsername);
                self.command(&b64(&user));
                None
            }
            (Stage::AuthUsername, 334) => {
                self.phase = Phase::Auth(Stage::AuthPassword);
                self.command(&b64(&pass));
                None
            }
            _ => Some(self.fail(stage, Some(reply), "authentication failed")),
        }
    }

    fn on_transaction(&mut self, mut p: Pending, reply: Reply) -> Option<Event> {
        if p.rset {
            p.rset = false;
            self.dirty = false;
            self.phase = Phase::Transaction(Box::new(p));
            return None;
        }
        if p.mail.is_none() {
            let ok = reply.is_positive();
            p.mail = Some(reply);
            if !ok && !p.data_sent {
                return Some(self.finish(p));
            }
            if ok && !p.data_sent {
                self.next_rcpt(&p);
            }
            self.phase = Phase::Transaction(Box::new(p));
            return None;
        }
        if p.rcpts.len() < p.tx.rcpts.len() {
            p.rcpts.push(reply);
            if !p.data_sent {
                if p.rcpts.len() < p.tx.rcpts.len() {
                    self.next_rcpt(&p);
                } else if p.rcpts.iter().any(Reply::is_positive) {
                    self.command("DATA");
                    p.data_sent = true;
                } else {
                    return Some(self.finish(p));
                }
            }
            self.phase = Phase::Transaction(Box::new(p));
            return None;
        }
        // The reply to DATA.
        let go = reply.code == 354;
        p.data = Some(reply);
        let accepted = p.rcpts.iter().any(Reply::is_positive) && p.mail.as_ref().is_some_and(Reply::is_positive);
        if go && accepted {
            let hold = p.hold;
            if !hold {
                let body = std::mem::take(&mut p.tx.body);
                encode_body(&body, &mut self.output);
            }
            self.phase = Phase::Message(Box::new(p));
            return hold.then_some(Event::BodyWanted);
        }
        if go {
            // RFC 2920 §3.1: DATA accepted although no recipient was; send an
            // empty message so the server is back in step (its reply is ignored).
            self.output.extend_from_slice(b".\r\n");
            self.phase = Phase::Message(Box::new(p));
            return None;
        }
        Some(self.finish(p))
    }

    fn next_rcpt(&mut self, p: &Pending) {
        let (rcpt, params) = &p.tx.rcpts[p.rcpts.len()];
        self.path_command("RCPT TO", rcpt, params);
    }

    /// A transaction that ended before the body was accepted.
    fn finish(&mut self, p: Pending) -> Event {
        self.dirty = true;
        self.phase = Phase::Idle;
        let Pending { mail, rcpts, data, .. } = p;
        Event::Done(TransactionResult {
            mail: mail.unwrap_or_else(|| Reply::plain(0, "")),
            rcpts,
            data,
            message: None,
        })
    }
}
