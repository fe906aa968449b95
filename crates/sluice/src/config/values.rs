//! Parsing typed configuration values.

use std::net::IpAddr;

/// A size in bytes (`100MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

/// `dsn-notify`: RFC 3461's NOTIFY value (`NEVER`, or SUCCESS, FAILURE and
/// DELAY in any order and case, spaces allowed), in one spelling per meaning.
pub fn parse_dsn_notify(v: &str) -> Result<&'static str, String> {
    const SPELLINGS: [&str; 8] = [
        "NEVER",
        "SUCCESS",
        "FAILURE",
        "SUCCESS,FAILURE",
        "DELAY",
        "SUCCESS,DELAY",
        "FAILURE,DELAY",
        "SUCCESS,FAILURE,DELAY",
    ];
    let bad = || format!("expected NEVER, or SUCCESS, FAILURE and DELAY separated by commas, got `{v}`");
    let upper = sluice_smtp::address::dsn_notify(&v.replace(' ', "")).ok_or_else(bad)?;
    let bits = upper.split(',').fold(0, |b, k| match k {
        "SUCCESS" => b | 1,
        "FAILURE" => b | 2,
        "DELAY" => b | 4,
        _ => b,
    });
    Ok(SPELLINGS[bits])
}

/// `dsn-ret`: `FULL` or `HDRS`, any case.
pub fn parse_dsn_ret(v: &str) -> Result<&'static str, String> {
    match v.trim().to_ascii_uppercase().as_str() {
        "FULL" => Ok("FULL"),
        "HDRS" => Ok("HDRS"),
        _ => Err(format!("expected FULL or HDRS, got `{v}`")),
    }
}

pub fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" => Ok(true),
        "false" | "no" | "0" => Ok(false),
        _ => Err(format!("expected true/false/yes/no/1/0, got `{v}`")),
    }
}

pub fn parse_size(v: &str) -> Result<Size, String> {
    let upper = v.trim().to_ascii_uppercase();
    let (num, mult) = [("GB", 1u64 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)]
        .iter()
        .find_map(|(suffix, m)| upper.strip_suffix(suffix).map(|n| (n.trim().to_string(), *m)))
        .unwrap_or((upper.clone(), 1));
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .map(Size)
        .ok_or_else(|| format!("expected a size such as 100MB, 512KB or 1GB, got `{v}`"))
}

/// Splits a list on `,`, `;` and whitespace.
pub fn split_list(v: &str) -> Vec<String> {
    v.split([',', ';', ' ', '\t'])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub fn parse_ports(v: &str) -> Result<Vec<u16>, String> {
    let bad = || format!("expected ports such as 25,2525,1024-1026, got `{v}`");
    let mut out = Vec::new();
    for item in split_list(v) {
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (
                a.parse::<u16>().map_err(|_| bad())?,
                b.parse::<u16>().map_err(|_| bad())?,
            ),
            None => {
                let p = item.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if a == 0 || a > b || b - a > 1000 {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// `ip[:port]` (IPv6 as `[::1]:53` or bare `::1`).
pub fn parse_host_port(v: &str, default_port: u16) -> Result<std::net::SocketAddr, String> {
    if let Ok(sa) = v.parse::<std::net::SocketAddr>() {
        return Ok(sa);
    }
    v.parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, default_port))
        .map_err(|_| format!("expected ip[:port], got `{v}`"))
}

/// An address range such as `10.0.0.0/8` or `::1/128` (a bare IP is /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected an address range such as 192.0.2.0/24, got `{s}`");
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (
                ip.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr: ip, prefix })
    }
}

impl Cidr {
    /// True if `ip` is in this range (IPv4-mapped IPv6 addresses match IPv4 ranges).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}
