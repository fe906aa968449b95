//! PROXY protocol v1 (text) and v2 (binary) headers, as sent by HAProxy and
//! load balancers in front of the SMTP port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;

/// The addresses a PROXY header reports; `None` for LOCAL/UNKNOWN (use the socket's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// A header that is not valid PROXY protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyError(pub &'static str);

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ProxyError {}

/// Parses a header at the start of `buf`: `Ok(None)` needs more bytes,
/// `Ok(Some((header, length)))` consumed `length` bytes.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        return if n < V2_SIGNATURE.len() {
            Ok(None)
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] != b"PROXY "[..n] {
        return Err(ProxyError("connection does not start with a PROXY header"));
    }
    parse_v1(buf)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(end) = buf.windows(2).take(V1_MAX).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(ProxyError("PROXY v1 header too long"))
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| ProxyError("PROXY v1 header is not ASCII"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let header = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => ProxyHeader {
            source: None,
            destination: None,
        },
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let ip = |s: &str| -> Result<IpAddr, ProxyError> {
                let ip: IpAddr = s.parse().map_err(|_| ProxyError("PROXY v1: bad address"))?;
                if (*proto == "TCP4") != ip.is_ipv4() {
                    return Err(ProxyError("PROXY v1: address family mismatch"));
                }
                Ok(ip)
            };
            let port = |s: &str| s.parse::<u16>().map_err(|_| ProxyError("PROXY v1: bad port"));
            ProxyHeader {
                source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
                destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
            }
        }
        _ => return Err(ProxyError("PROXY v1: malformed header")),
    };
    Ok(Some((header, end + 2)))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let ver_cmd = buf[12];
    let family = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError("PROXY v2: unsupported version"));
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let total = 16 + len;
    let body = &buf[16..total];
    let local = ProxyHeader {
        source: None,
        destination: None,
    };
    match ver_cmd & 0x0f {
        0 => return Ok(Some((local, total))), // LOCAL: health checks from the proxy itself
        1 => {}
        _ => return Err(ProxyError("PROXY v2: unsupported command")),
    }
    let header = match family {
        0x11 if len >= 12 => {
            let ip = |o: usize| IpAddr::V4(Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]));
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(8))),
                destination: Some(SocketAddr::new(ip(4), port(10))),
            }
        }
        0x21 if len >= 36 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            let port = |o: usize| u16::from_be_bytes([body[o], body[o + 1]]);
            ProxyHeader {
                source: Some(SocketAddr::new(ip(0), port(32))),
                destination: Some(SocketAddr::new(ip(16), port(34))),
            }
        }
        0x00 => local, // UNSPEC
        0x11 | 0x21 => return Err(ProxyError("PROXY v2: address block too short")),
        _ => local, // unix sockets and others: keep the socket's addresses
    };
    Ok(Some((header, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1() {
        let h = b"PROXY TCP4 192.0.2.1 198.51.100.2 40000 25\r\nEHLO";
        let (hdr, n) = parse(h).unwrap().unwrap();
        assert_eq!(n, h.len() - 4);
        assert_eq!(hdr.source, Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(hdr.destination, Some("198.51.100.2:25".parse().unwrap()));
        assert_eq!(parse(b"PROXY TCP4 1.2.3.4"), Ok(None));
        assert!(parse(b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n").is_err());
        assert!(parse(b"EHLO x\r\n").is_err());
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0.source, None);
    }

    #[test]
    fn v2() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0, 12, 192, 0, 2, 1, 10, 0, 0, 1, 0x9c, 0x40, 0, 25]);
        assert_eq!(parse(&h[..20]), Ok(None));
        let (hdr, n) = parse(&h).unwrap().unwrap();
        assert_eq!(n, 28);
        assert_eq!(hdr.source, Some("192.0.2.1:40000".parse().unwrap()));
        assert_eq!(hdr.destination, Some("10.0.0.1:25".parse().unwrap()));
    }
}
