//! Passwords kept out of what Sluice shows: `config check`, error and log
//! lines name an address (`rabbitmq-address`, `storage-address`,
//! `database-address`) with its secret replaced.

/// `scheme://user:password@rest` with the password replaced by `***`
/// (the whole credentials when they have no `:`, as a Couchbase address's
/// lone password). The credentials are taken to end at the last `@`, so a
/// secret holding `/`, `?`, `:` or `@` is still hidden whichever way the
/// address's own parser reads it (at worst more than the secret is
/// hidden); an address with no `@` is shown as it is.
pub fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => format!("{scheme}://***{}", &rest[at..]),
    }
}

#[cfg(test)]
mod tests {
    use super::hide_password;

    #[test]
    fn the_secret_is_hidden_whatever_it_holds() {
        for (url, shown) in [
            ("amqp://u:secret@h/v", "amqp://u:***@h/v"),
            ("amqp://u:se/cr?et@h/v?heartbeat=5", "amqp://u:***@h/v?heartbeat=5"),
            ("amqp://u:se@cret@h/", "amqp://u:***@h/"),
            (
                "s3://AKIA:wJalr/K7+b@eu-west-1/mail?compression=gzip",
                "s3://AKIA:***@eu-west-1/mail?compression=gzip",
            ),
            ("postgresql://u:p%40w@h/db", "postgresql://u:***@h/db"),
            ("couchbase://secret@h/bucket", "couchbase://***@h/bucket"),
            ("dir:///var/store", "dir:///var/store"),
            ("amqp://h/", "amqp://h/"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(hide_password(url), shown, "{url}");
        }
    }
}
