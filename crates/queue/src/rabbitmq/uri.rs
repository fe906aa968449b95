//! `rabbitmq-address`: `amqp://user:pass@host1;host2;host3/vhost` names
//! several brokers of one cluster; each becomes its own connection URI.

/// One URI per host, in the order given (credentials, port and vhost shared).
pub fn split_hosts(address: &str) -> Result<Vec<String>, String> {
    let address = address.trim();
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("`{address}` is not an amqp:// or amqps:// URI"))?;
    if scheme != "amqp" && scheme != "amqps" {
        return Err(format!("`{scheme}` is not amqp or amqps"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (credentials, hosts) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts
        .split([';', ','])
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        return Err(format!("`{address}` names no host"));
    }
    // The vhost "/" is written `%2f`; without a path the broker's default vhost is used.
    Ok(hosts
        .into_iter()
        .map(|h| format!("{scheme}://{credentials}{h}{path}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_become_uris() {
        assert_eq!(
            split_hosts("amqp://u:p@h1;h2:5673;h3/%2f").unwrap(),
            ["amqp://u:p@h1/%2f", "amqp://u:p@h2:5673/%2f", "amqp://u:p@h3/%2f"]
        );
        assert_eq!(split_hosts("amqp://localhost").unwrap(), ["amqp://localhost"]);
        assert!(split_hosts("http://x").is_err());
        assert!(split_hosts("amqp://u:p@/v").is_err());
    }
}
