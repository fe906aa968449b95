use super::*;
use std::io::Write;

fn load(text: &str) -> Result<Config, ConfigError> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let path = f.path().to_path_buf();
    let r = Config::load(Some(&path), Vec::new());
    r.map_err(|mut e| {
        e.origin = e.origin.replace(&path.display().to_string(), "FILE");
        e
    })
}

#[test]
fn defaults_and_types() {
    let c = Config::load(None, Vec::new()).unwrap().settings;
    assert_eq!(c.smtp_port, [2525]);
    assert_eq!(c.smtp_maxsize, 100 << 20);
    assert_eq!(c.rabbitmq_outbox, "outbox");
    assert_eq!(c.rabbitmq_results.as_deref(), Some("results"));
    assert!(c.smtp_extract);
    assert_eq!(c.smtp_timeout, std::time::Duration::from_secs(300));
    assert_eq!(c.www_ip, ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(c.smtp_hostname, None);
    let c = load("smtp-port: 25,2525,1024-1026\nsmtp-maxsize: 512KB\n# comment: x\nsmtp-password: a#b:c\nsmtp-username: u\nrabbitmq-address: amqp://u:p@h1;h2/v\nrabbitmq-results:\ndns-server: 127.0.0.1:5353\n").unwrap().settings;
    assert_eq!(c.smtp_port, [25, 2525, 1024, 1025, 1026]);
    assert_eq!(c.smtp_maxsize, 512 << 10);
    assert_eq!(
        c.smtp_password.as_deref(),
        Some("a#b:c"),
        "split on the first colon; # is not a comment mid-line"
    );
    assert_eq!(c.rabbitmq_address.as_deref(), Some("amqp://u:p@h1;h2/v"));
    assert_eq!(c.rabbitmq_results, None, "set empty: no results are written");
    assert_eq!(c.dns_server, Some("127.0.0.1:5353".parse().unwrap()));
}

#[test]
fn errors_name_file_line_and_key() {
    let e = load("smtp-port: 25\nno-such-key: 1\n").unwrap_err();
    assert_eq!(
        (e.origin.as_str(), e.key.as_str(), e.message.as_str()),
        ("FILE:2", "no-such-key", "unknown key")
    );
    let e = load("\nsmtp-maxsize: lots\n").unwrap_err();
    assert_eq!((e.origin.as_str(), e.key.as_str()), ("FILE:2", "smtp-maxsize"));
    assert!(e.message.contains("100MB"), "{}", e.message);
    let e = load("smtp-port: 25\nsmtp-port: 26\n").unwrap_err();
    assert_eq!((e.origin.as_str(), e.key.as_str()), ("FILE:2", "smtp-port"));
    assert!(e.message.contains("duplicate"));
    let e = load("smtp-extract: maybe\n").unwrap_err();
    assert_eq!(e.key, "smtp-extract");
    let e = load("just words\n").unwrap_err();
    assert_eq!(e.origin, "FILE:1");
    let e = load("smtp-range: 10.0.0.0/33\n").unwrap_err();
    assert_eq!(e.key, "smtp-range");
    let e = load("smtp-certificate: /x.pem\n").unwrap_err();
    assert_eq!((e.origin.as_str(), e.key.as_str()), ("default", "smtp-key"));
    let e = load("rabbitmq-address: amqp://u:secret@h:port/\n").unwrap_err();
    assert_eq!(e.key, "rabbitmq-address");
    assert!(!e.message.contains("secret"), "{}", e.message);
    let shown = load("rabbitmq-address: amqp://u:secret@h1/, amqp://v:secret2@h2/\n")
        .unwrap()
        .render();
    assert!(
        shown.contains("rabbitmq-address: amqp://u:***@h1/, amqp://v:***@h2/"),
        "{shown}"
    );
    assert!(!shown.contains("secret"), "{shown}");
    let e = load("www-certificate: /x.pem\n").unwrap_err();
    assert_eq!(e.key, "www-private-key");
    let e = load("www-privatekey: /x.key\n").unwrap_err();
    assert_eq!(e.key, "www-certificate");
    let e = load("www-secure-port: 443,444\n").unwrap_err();
    assert_eq!(e.key, "www-secure-port");
    let c = load("www-secure-port: 8443\nwww-certificate: /c.pem\nwww-privatekey: /k.pem\n").unwrap();
    assert_eq!(
        c.settings.www_key(),
        Some("/k.pem"),
        "MailerQ's two spellings of the key"
    );
}

#[test]
fn environment_overrides() {
    let c = Config::load(
        None,
        vec![("SLUICE_SMTP_PORT".into(), "2526".into()), ("HOME".into(), "/x".into())],
    )
    .unwrap();
    assert_eq!(c.settings.smtp_port, [2526]);
    let e = Config::load(None, vec![("SLUICE_SMTP_PORTS".into(), "1".into())]).unwrap_err();
    assert_eq!(
        (e.origin.as_str(), e.key.as_str()),
        ("environment SLUICE_SMTP_PORTS", "smtp-ports")
    );
    // MailerQ's prefix works; Sluice's own wins when both name a key.
    let c = Config::load(
        None,
        vec![
            ("SLUICE_SMTP_PORT".into(), "2526".into()),
            ("MAILERQ_SMTP_PORT".into(), "2527".into()),
            ("MAILERQ_WWW_PORT".into(), "8486".into()),
        ],
    )
    .unwrap();
    assert_eq!(
        (c.settings.smtp_port.as_slice(), c.settings.www_port),
        (&[2526][..], 8486)
    );
    let e = Config::load(None, vec![("MAILERQ_NO_SUCH".into(), "1".into())]).unwrap_err();
    assert_eq!(e.origin, "environment MAILERQ_NO_SUCH");
}

#[test]
fn cidr_matching() {
    let c: Cidr = "192.168.0.0/16".parse().unwrap();
    assert!(c.contains("192.168.4.5".parse().unwrap()));
    assert!(c.contains("::ffff:192.168.4.5".parse().unwrap()));
    assert!(!c.contains("10.0.0.1".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    assert!("::1".parse::<Cidr>().unwrap().contains("::1".parse().unwrap()));
}

#[test]
fn mailerq_keys_sluice_does_not_act_on_start_with_a_warning_each() {
    let c = load("license: /etc/mailerq/license.txt\nsmtp-port: 25\nstorage-policy: all\n").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    let ends = |w: &str, tail: &str| assert!(w.ends_with(tail), "{w}");
    ends(
        &c.warnings[0],
        ":1: license: accepted, not acted on by Sluice: Sluice needs no license",
    );
    ends(
        &c.warnings[1],
        ":3: storage-policy: accepted, not acted on by Sluice: not supported yet: messages carry their MIME",
    );
    assert!(
        !c.warnings.iter().any(|w| w.contains("/etc/mailerq")),
        "values are not repeated"
    );
    // A key neither knows is still an error.
    assert_eq!(load("no-such-key: 1\n").unwrap_err().message, "unknown key");
    // Every entry names a key Sluice does not have (no shadowing of a real key).
    for (key, _) in mailerq::NOT_ACTED_ON {
        assert!(!KEYS.iter().any(|k| k.name == *key), "{key} is a Sluice key");
    }
}

#[test]
fn retry_interval_takes_mailerqs_list_of_seconds() {
    let c = load("retry-interval: 600,600,1800, 3600\n").unwrap().settings;
    assert_eq!(
        c.retry_interval,
        [600, 600, 1800, 3600].map(std::time::Duration::from_secs)
    );
    assert_eq!(load("retry-interval: 60\n").unwrap().settings.retry_interval.len(), 1);
    let e = load("retry-interval: 600,soon\n").unwrap_err();
    assert_eq!(e.key, "retry-interval");
    assert!(e.message.contains("`soon`"), "{}", e.message);
    assert_eq!(load("retry-interval: 0\n").unwrap_err().key, "retry-interval");
}
