//! The `sluice` binary: the daemon (`sluice run`) and its command line.
#![forbid(unsafe_code)]

mod cli;
mod cluster;
mod config;
mod daemon;
mod deliver;
mod headers;
mod http;
mod jsonlog;
mod message_store;
mod metrics;
mod policy;
mod privileges;
mod queues;
mod receive;
mod reception;
mod secret;
mod shutdown;
mod stamp;
mod stream;
mod trace;
mod worker;

use clap::{Parser, Subcommand};
use config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Sluice: a mail transfer agent with a durable queue and MailerQ-compatible plugins.
#[derive(Parser, Debug)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Configuration file (default /etc/sluice/config.txt when it exists, else built-in defaults).
    #[arg(long, short = 'c', global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A second file layered over the first, as MailerQ's --config-file (one instance's own settings).
    #[arg(long, global = true, value_name = "FILE")]
    config_file: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run,
    /// Put JSON messages (one per line, or a JSON array) into the outbox.
    Inject {
        /// File to read; standard input when absent or "-".
        file: Option<PathBuf>,
    },
    /// Read a MIME message from standard input and put it into the inbox.
    Send(SendArgs),
    /// Inspect the queues.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Validate the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Inspect plugins.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// The settings database.
    Database {
        #[command(subcommand)]
        action: DatabaseAction,
    },
    /// Delivery policy in force (asks the running daemon).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// The history of a message (asks the running daemon): KEY is its message-id or a recipient.
    Trace { key: String },
    /// Pauses (fields as MailerQ's /v1/pauses: mta, domain, ip, tag, expire, reason).
    Pause {
        #[command(subcommand)]
        action: cli::settings::FieldAction,
    },
    /// Suppressions (fields as MailerQ's /v1/suppressions: type, value, code, extended, description).
    Suppress {
        #[command(subcommand)]
        action: cli::settings::FieldAction,
    },
    /// The capacity table: delivery limits per local IP and domain.
    Capacity {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The flood_responses table: replies that pause or slow a destination.
    Flood {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The dkim_keys table (private keys are written, never printed).
    Dkim {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The dkim_patterns table: which From addresses each key signs.
    DkimPatterns {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The delegates table: send from another local IP.
    Delegates {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The mtanames table: the EHLO name per local IP.
    Mtanames {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The dns table: MX and A answers used instead of DNS.
    Dns {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
    /// The locals table: incoming recipients that go to rabbitmq-local.
    Locals {
        #[command(subcommand)]
        action: cli::settings::RowAction,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyAction {
    /// The limits for mail to DOMAIN, the row each comes from, and the live state.
    Show {
        domain: String,
        /// The local (sending) IP.
        #[arg(long)]
        from: Option<String>,
        /// The domain's MX host names, for mx: rows (comma-separated).
        #[arg(long)]
        mx: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum DatabaseAction {
    /// Create or migrate its tables, read every row, list the rows that would be skipped.
    Check,
}

#[derive(Subcommand, Debug)]
enum PluginAction {
    /// Load plugins without starting the daemon: report what each exports and whether it is compatible.
    Check {
        /// Plugin files (.so).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
struct SendArgs {
    /// Envelope sender (default: from x-mq-envelope, Return-Path, Sender or From).
    #[arg(long, short = 'f', value_name = "ADDR")]
    envelope: Option<String>,
    /// Take recipients from To, Cc and Bcc (and drop Bcc).
    #[arg(long, short = 't')]
    extract_recipients: bool,
    /// Do not treat a line with a single dot as the end of the message.
    #[arg(long, short = 'i')]
    ignore_dot: bool,
    /// Recipients.
    recipients: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum QueueAction {
    /// Message counts per queue, as JSON lines.
    Stats,
    /// Show messages without removing them.
    Peek {
        name: String,
        #[arg(short = 'n', default_value_t = 10)]
        n: usize,
    },
    /// Remove and print messages.
    Pop {
        name: String,
        #[arg(short = 'n', default_value_t = 1)]
        n: usize,
        /// Keep waiting for more messages.
        #[arg(long)]
        follow: bool,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigAction {
    /// Validate and print the effective configuration.
    Check,
}

/// The configuration from `path` (else /etc/sluice/config.txt, else
/// MailerQ's /etc/mailerq/config.txt, when one exists), the `--config-file`
/// layers and the `--key=value` arguments, then the environment.
fn load_config(
    path: Option<&Path>,
    layers: &[PathBuf],
    arguments: Vec<(String, String)>,
) -> Result<Config, config::ConfigErrors> {
    let found = ["/etc/sluice/config.txt", "/etc/mailerq/config.txt"]
        .iter()
        .map(Path::new)
        .find(|p| p.exists());
    let mut files: Vec<PathBuf> = path.or(found).map(Path::to_path_buf).into_iter().collect();
    files.extend(layers.iter().cloned());
    Config::load_from(&config::Sources { files, arguments }, std::env::vars())
}

/// Takes MailerQ's `--key=value` overrides (any configuration key) out of
/// the arguments, leaving the rest for the command-line parser.
fn split_overrides(args: Vec<String>) -> (Vec<String>, Vec<(String, String)>) {
    let mut rest = Vec::new();
    let mut overrides = Vec::new();
    let mut after_dashes = false;
    for a in args {
        after_dashes |= a == "--";
        let setting = a
            .strip_prefix("--")
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, _)| !after_dashes && config::is_key(&k.to_ascii_lowercase()));
        match setting {
            Some((k, v)) => overrides.push((k.to_string(), v.to_string())),
            None => rest.push(a),
        }
    }
    (rest, overrides)
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // The PostgreSQL client logs every statement with its parameters at
        // debug (a DKIM key being stored among them): never below info.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},tokio_postgres=info")));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// sendmail compatibility: `sendmail [-i] [-t] [-f ADDR] [-oi] [-F NAME] [--] RCPT...`.
fn sendmail_args(args: &[String]) -> cli::SendOptions {
    let mut o = cli::SendOptions {
        command: "sendmail".into(),
        arguments: args.to_vec(),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-i" | "-oi" => o.ignore_dot = true,
            "-t" => o.extract_recipients = true,
            "-f" | "-r" => o.envelope = it.next().cloned(),
            "-F" | "-o" | "-B" | "-N" | "-R" | "-V" | "-X" => {
                it.next();
            }
            "--" => o.recipients.extend(it.by_ref().cloned()),
            s if s.starts_with("-f") || s.starts_with("-r") => o.envelope = Some(s[2..].to_string()),
            s if s.starts_with('-') => {} // other sendmail flags are accepted and ignored
            s => o.recipients.push(s.to_string()),
        }
    }
    o
}

fn main() -> ExitCode {
    // Keeps the exported plugin API (MQ_*) in the binary; see crates/plugin/exports.list.
    std::hint::black_box(&sluice_plugin::abi::EXPORTS);
    let args: Vec<String> = std::env::args().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if invoked_as == "sendmail" {
        let cfg = match load_config(None, &[], Vec::new()) {
            Ok(c) => c,
            Err(e) => return fail_config(e),
        };
        return finish(cli::send(&cfg, sendmail_args(&args[1..])));
    }
    let (parsed, overrides) = split_overrides(args.clone());
    let cli = Cli::parse_from(parsed);
    let cfg = match load_config(cli.config.as_deref(), &cli.config_file, overrides) {
        Ok(c) => c,
        Err(e) => return fail_config(e),
    };
    init_logging(&cfg.settings.log_level);
    let result = match cli.command {
        Command::Run => {
            for w in &cfg.warnings {
                tracing::warn!("{w}");
            }
            daemon::run(cfg)
        }
        Command::Inject { file } => cli::inject(&cfg, file.as_deref()),
        Command::Send(s) => cli::send(
            &cfg,
            cli::SendOptions {
                envelope: s.envelope,
                extract_recipients: s.extract_recipients,
                ignore_dot: s.ignore_dot,
                recipients: s.recipients,
                command: "sluice send".into(),
                arguments: args[1..].to_vec(),
            },
        ),
        Command::Queue {
            action: QueueAction::Stats,
        } => cli::stats(&cfg),
        Command::Queue {
            action: QueueAction::Peek { name, n },
        } => cli::read(&cfg, &name, n, false, false),
        Command::Queue {
            action: QueueAction::Pop { name, n, follow },
        } => cli::read(&cfg, &name, n, true, follow),
        Command::Config {
            action: ConfigAction::Check,
        } => {
            for w in &cfg.warnings {
                eprintln!("warning: {w}");
            }
            print!("{}", cfg.render());
            Ok(())
        }
        Command::Plugin {
            action: PluginAction::Check { files },
        } => plugin_check(&files),
        Command::Database {
            action: DatabaseAction::Check,
        } => policy::check(&cfg),
        Command::Policy {
            action: PolicyAction::Show { domain, from, mx },
        } => cli::policy_show(&cfg, &domain, from.as_deref(), mx.as_deref()),
        Command::Trace { key } => cli::trace(&cfg, &key),
        Command::Pause { action } => cli::settings::pauses(&cfg, action),
        Command::Suppress { action } => cli::settings::suppressions(&cfg, action),
        Command::Capacity { action } => cli::settings::rows(&cfg, "capacity", action),
        Command::Flood { action } => cli::settings::rows(&cfg, "flood_responses", action),
        Command::Dkim { action } => cli::settings::rows(&cfg, "dkim_keys", action),
        Command::DkimPatterns { action } => cli::settings::rows(&cfg, "dkim_patterns", action),
        Command::Delegates { action } => cli::settings::rows(&cfg, "delegates", action),
        Command::Mtanames { action } => cli::settings::rows(&cfg, "mtanames", action),
        Command::Dns { action } => cli::settings::rows(&cfg, "dns", action),
        Command::Locals { action } => cli::settings::rows(&cfg, "locals", action),
    };
    finish(result)
}

/// `sluice plugin check`: one line per plugin; fails if any is unusable.
fn plugin_check(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut bad = 0;
    for f in files {
        match sluice_plugin::loader::Plugin::open(f) {
            Ok(p) => println!(
                "{}: compatible (MQ_API_VERSION {}); exports: {}",
                f.display(),
                sluice_plugin::API_VERSION,
                if p.exports.is_empty() {
                    "no hooks".to_string()
                } else {
                    p.exports.join(", ")
                }
            ),
            Err(e) => {
                println!("{e}");
                bad += 1;
            }
        }
    }
    anyhow::ensure!(bad == 0, "{bad} of {} plugins cannot be used", files.len());
    Ok(())
}

fn fail_config(errors: config::ConfigErrors) -> ExitCode {
    for e in &errors.0 {
        eprintln!("sluice: {e}");
    }
    ExitCode::from(2)
}

fn finish(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        // A configuration problem found late in start-up is still one (exit 2).
        Err(e) if e.downcast_ref::<config::ConfigError>().is_some() => {
            eprintln!("sluice: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
