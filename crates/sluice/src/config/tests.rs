use super::*;
use std::io::Write;

/// The configuration from `text`, or its first error.
fn load(text: &str) -> Result<Config, ConfigError> {
    load_all(text).map_err(|mut e| e.remove(0))
}

/// The configuration from `text`, or every error, the file named `FILE`.
fn load_all(text: &str) -> Result<Config, Vec<ConfigError>> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    let path = f.path().to_path_buf();
    let r = Config::load(Some(&path), Vec::new());
    r.map_err(|e| {
        e.0.into_iter()
            .map(|mut e| {
                e.origin = e.origin.replace(&path.display().to_string(), "FILE");
                e
            })
            .collect()
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
    let e = Config::load(None, vec![("SLUICE_SMTP_PORTS".into(), "1".into())])
        .unwrap_err()
        .0
        .remove(0);
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
    let e = Config::load(None, vec![("MAILERQ_NO_SUCH".into(), "1".into())])
        .unwrap_err()
        .0
        .remove(0);
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
    let c = load("license: /etc/mailerq/license.txt\nsmtp-port: 25\nsmtp-check: true\n").unwrap();
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    let ends = |w: &str, tail: &str| assert!(w.ends_with(tail), "{w}");
    ends(
        &c.warnings[0],
        ":1: license: accepted, not acted on by Sluice: Sluice needs no license",
    );
    ends(
        &c.warnings[1],
        ":3: smtp-check: accepted, not acted on by Sluice: not supported yet (use a plugin)",
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

#[test]
fn every_error_of_a_file_is_reported_in_one_run() {
    let errors =
        load_all("smtp-port: 25\nno-such-key: 1\nsmtp-maxsize: lots\nsmtp-port: 26\nsmtp-certificate: /c.pem\n")
            .unwrap_err();
    let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.origin.as_str(), e.key.as_str())).collect();
    assert_eq!(
        found,
        [
            ("FILE:2", "no-such-key"),
            ("FILE:3", "smtp-maxsize"),
            ("FILE:4", "smtp-port"),
            ("default", "smtp-key"),
        ]
    );
}

#[test]
fn mailerqs_older_rabbitmq_keys_make_the_address() {
    let c = load("rabbitmq-host: r1, r2\nrabbitmq-user: mq\nrabbitmq-password: s3cret/x\nrabbitmq-vhost: mail\nrabbitmq-port: 5673\n").unwrap();
    assert_eq!(
        c.settings.rabbitmq_address.as_deref(),
        Some("amqp://mq:s3cret%2Fx@r1:5673;r2:5673/mail")
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert!(
        c.render()
            .contains("rabbitmq-address: amqp://mq:***@r1:5673;r2:5673/mail    # /")
            && !c.render().contains("s3cret"),
        "where it came from, password hidden: {}",
        c.render()
    );
    // With rabbitmq-address set too, the older keys are ignored, each said.
    let c = load("rabbitmq-address: amqp://a:b@new/\nrabbitmq-host: old\nrabbitmq-vhost: v\n").unwrap();
    assert_eq!(c.settings.rabbitmq_address.as_deref(), Some("amqp://a:b@new/"));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    assert!(c.warnings[0].contains("rabbitmq-host: accepted, not acted on by Sluice: rabbitmq-address is set"));
    // A companion without the host makes nothing, and says so.
    let c = load("rabbitmq-user: mq\n").unwrap();
    assert_eq!(c.settings.rabbitmq_address, None);
    assert!(c.warnings[0].contains("rabbitmq-user: accepted, not acted on by Sluice: it is read with rabbitmq-host"));
    // A bad assembled address is an error at the host's line.
    let e = load("\nrabbitmq-host: h\nrabbitmq-port: many\n").unwrap_err();
    assert_eq!((e.origin.as_str(), e.key.as_str()), ("FILE:2", "rabbitmq-host"));
}

#[test]
fn renamed_and_assembled_log_and_sink_keys() {
    let c = load("smtp-sink-address: 127.0.0.9\nsend-log-directory: /var/log/mq/\nsend-log-prefix: attempts\nreceived-log-directory: /var/log/mq\nsmtp-connections-out: 7\n").unwrap();
    let s = &c.settings;
    assert_eq!(s.smtp_sink_ip, ["127.0.0.9".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(s.send_log.as_deref(), Some("/var/log/mq/attempts"));
    assert_eq!(s.received_log.as_deref(), Some("/var/log/mq/received.log"));
    assert_eq!(s.delivery_connections, 7);
    let ips = load("smtp-default-ips: 127.0.0.4;127.0.0.5\nsmtp-mappable-ips: 10.0.0.0/8\n").unwrap();
    assert_eq!(ips.settings.delivery_ips.len(), 2);
    assert_eq!(ips.settings.smtp_mappable_ips.len(), 1);
    // A bad value is named as the file wrote it, not by Sluice's name.
    let e = load("smtp-default-ips: nope\n").unwrap_err();
    assert_eq!((e.origin.as_str(), e.key.as_str()), ("FILE:1", "smtp-default-ips"));
    let dsn = load("dsn-notify: failure, Delay\ndsn-ret: hdrs\n").unwrap();
    assert_eq!(
        (dsn.settings.dsn_notify, dsn.settings.dsn_ret),
        (Some("FAILURE,DELAY"), Some("HDRS"))
    );
    assert_eq!(
        load("").unwrap().settings.dsn_notify,
        None,
        "unset: the message decides"
    );
    for bad in [
        "dsn-notify: NEVER,FAILURE\n",
        "dsn-notify: sometimes\n",
        "dsn-ret: all\n",
    ] {
        let e = load(bad).unwrap_err();
        assert!(e.key.starts_with("dsn-"), "{bad}: {e:?}");
    }
    // With send-log set too, the directory is ignored, and that is said.
    let e = load("send-log: /a\nsend-log-directory: /b\n").unwrap();
    assert_eq!(e.settings.send_log.as_deref(), Some("/a"));
    assert!(e.warnings[0].contains("send-log-directory: accepted, not acted on by Sluice: send-log is set"));
}

#[test]
fn layers_arguments_and_environment_in_mailerqs_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("config.txt");
    let instance = dir.path().join("instance1.txt");
    std::fs::write(&base, "smtp-port: 25\nwww-port: 8000\nserver-id: 1\nlog-level: warn\n").unwrap();
    std::fs::write(&instance, "smtp-port: 2526\nserver-id: 2\n").unwrap();
    let sources = Sources {
        files: vec![base, instance.clone()],
        arguments: vec![("server-id".into(), "3".into()), ("WWW-PORT".into(), "8001".into())],
    };
    let env = vec![("MAILERQ_WWW_PORT".to_string(), "8002".to_string())];
    let c = Config::load_from(&sources, env).unwrap();
    let s = &c.settings;
    assert_eq!(s.smtp_port, [2526], "the second file wins over the first");
    assert_eq!(s.server_id, 3, "an argument wins over the files");
    assert_eq!(s.www_port, 8002, "the environment wins over arguments");
    assert_eq!(s.log_level, "warn", "what no layer changes stays");
    assert!(c
        .render()
        .contains(&format!("smtp-port: 2526    # {}:1", instance.display())));
    assert!(c.render().contains("server-id: 3    # command line --server-id"));
    // Bad values in two layers: both reported.
    let sources = Sources {
        files: vec![dir.path().join("missing.txt")],
        arguments: vec![("smtp-port".into(), "x".into())],
    };
    let e = Config::load_from(&sources, Vec::new()).unwrap_err().0;
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(e[1].origin, "command line --smtp-port");
}

#[test]
fn www_port_0_turns_plain_http_off_when_https_is_on() {
    let e = load("www-port: 0\n").unwrap_err();
    assert_eq!(e.key, "www-port");
    let c = load("www-port: 0\nwww-secure-port: 8443\n").unwrap();
    assert_eq!(c.settings.www_port, 0);
}

#[test]
fn dns_tuning_keys() {
    let c = load("dns-min-ttl: 120\ndns-attempts: 5\n").unwrap().settings;
    assert_eq!((c.dns_min_ttl.as_secs(), c.dns_attempts), (120, 5));
    assert_eq!(
        load("dns-min-ttl: 0\n").unwrap_err().key,
        "dns-min-ttl",
        "0 is refused, as by MailerQ"
    );
}

#[test]
fn mailerqs_rabbitmq_options() {
    let c = load("").unwrap().settings;
    assert_eq!(
        (
            c.rabbitmq_maxpriority,
            c.rabbitmq_lazy,
            c.rabbitmq_declare,
            c.rabbitmq_encoding.as_str()
        ),
        (0, false, true, "none"),
        "MailerQ's defaults"
    );
    let c = load("rabbitmq-maxpriority: 10\nrabbitmq-lazy: true\nrabbitmq-declare: false\nrabbitmq-encoding: gzip\n")
        .unwrap()
        .settings;
    assert_eq!(
        (
            c.rabbitmq_maxpriority,
            c.rabbitmq_lazy,
            c.rabbitmq_declare,
            c.rabbitmq_encoding.as_str()
        ),
        (10, true, false, "gzip")
    );
    assert_eq!(
        load("rabbitmq-maxpriority: 256\n").unwrap_err().key,
        "rabbitmq-maxpriority"
    );
    assert_eq!(load("rabbitmq-encoding: br\n").unwrap_err().key, "rabbitmq-encoding");
    let c = load("rabbitmq-address: amqps://u:secret@mq1/\nrabbitmq-verify: false\n").unwrap();
    assert!(!c.settings.rabbitmq_verify);
    assert!(c.render().contains("amqps://u:***@mq1/") && !c.render().contains("secret"));
    let e = load("rabbitmq-address: amqps://u:secret@[::1/\n").unwrap_err();
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn docs_mailerq_md_names_every_mailerq_key() {
    let doc = include_str!("../../../../docs/mailerq.md");
    let named = |key: &str| doc.contains(&format!("`{key}`")) || doc.contains(&format!("`{key},"));
    for (key, _) in mailerq::NOT_ACTED_ON.iter().chain(mailerq::RENAMED) {
        assert!(named(key), "docs/mailerq.md does not name `{key}`");
    }
    for (key, _) in mailerq::PARTS {
        // Listed as `rabbitmq-host`, `-port`, … in one row.
        let family = key.rsplit_once('-').map(|(_, s)| format!("`-{s}`")).unwrap_or_default();
        assert!(
            named(key) || doc.contains(&family),
            "docs/mailerq.md does not name `{key}`"
        );
    }
}

#[test]
fn config_check_hides_the_secrets_of_every_address() {
    let c = load(concat!(
        "storage-address: s3://AKIAEXAMPLE:wJalr/K7+secret@eu-west-1/mail\n",
        "database-address: postgresql://sluice:dbsecret@db.example/policy\n",
        "rabbitmq-address: amqp://mq:mq/secret@r1;r2/mail\n",
    ))
    .unwrap();
    let shown = c.render();
    for line in [
        "storage-address: s3://AKIAEXAMPLE:***@eu-west-1/mail",
        "database-address: postgresql://sluice:***@db.example/policy",
        "rabbitmq-address: amqp://mq:***@r1;r2/mail",
    ] {
        assert!(shown.contains(line), "{line}:\n{shown}");
    }
    assert!(!shown.contains("secret"), "{shown}");
    // MailerQ 4.x's name of the settings database too.
    let old = load("database: postgresql://sluice:dbsecret@db.example/policy\n").unwrap();
    assert!(!old.render().contains("dbsecret"), "{}", old.render());
}

#[test]
fn smtp_auth_schemes_sluice_reads_warns_of_or_refuses() {
    let ldap = load("smtp-auth: ldap://example.com:389/dc=example\n").unwrap();
    assert!(
        ldap.warnings[0].contains("smtp-auth: accepted, not acted on by Sluice: ldap:// accounts are not supported"),
        "{:?}",
        ldap.warnings
    );
    let e = load("smtp-auth: hardcoded://onlyasecret\n").unwrap_err();
    assert_eq!(e.key, "smtp-auth");
    assert!(!e.message.contains("onlyasecret"), "{}", e.message);
    assert_eq!(load("smtp-auth: nntp://x\n").unwrap_err().key, "smtp-auth");
    // Accounts Sluice reads protect a public listener; LDAP's (not read) do not.
    let public = "smtp-ip: 192.0.2.1\n";
    assert!(load(&format!("{public}smtp-auth: file:///etc/sluice/users\n")).is_ok());
    assert_eq!(
        load(&format!("{public}smtp-auth: ldap://h/dc=x\n")).unwrap_err().key,
        "smtp-ip"
    );
}
