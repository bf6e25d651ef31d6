//! Which ad-hoc MCP server URLs a request may make the host connect to.
//!
//! A client-supplied URL is a server-side request forgery risk: it could
//! point at the host's loopback services, the private network or a cloud
//! metadata endpoint. Every address the host name resolves to must be
//! public unless the operator allowed its network, and the connection is
//! then pinned to exactly those checked addresses, so a second DNS answer
//! (rebinding) cannot redirect it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy)]
struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(text: &str) -> Result<Network, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or network"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}` has an invalid prefix length"))?,
            None => max,
        };
        Ok(Network { base, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                same_prefix(&base.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                same_prefix(&base.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    a[..full] == b[..full] && (rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0)
}

#[derive(Debug, Clone, Default)]
pub struct UrlPolicy {
    allowed: Vec<Network>,
}

/// A URL that passed the policy, with the addresses it may connect to.
#[derive(Debug)]
pub struct CheckedUrl {
    pub url: reqwest::Url,
    pub host: String,
    pub addrs: Vec<SocketAddr>,
}

impl UrlPolicy {
    pub fn new(allowed: &[String]) -> Result<UrlPolicy, String> {
        let allowed = allowed
            .iter()
            .map(|n| Network::parse(n))
            .collect::<Result<_, _>>()?;
        Ok(UrlPolicy { allowed })
    }

    pub async fn check(&self, url: &str) -> Result<CheckedUrl, String> {
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a valid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("`{url}` must use http or https"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("`{url}` has no host"))?
            .to_owned();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare_host.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => {
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((bare_host, port)))
                    .await
                    .map_err(|_| format!("resolving `{host}` timed out"))?
                    .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(format!("`{host}` resolves to no address"));
        }
        for addr in &addrs {
            let ip = canonical(addr.ip());
            if !is_public(ip) && !self.allowed.iter().any(|n| n.contains(ip)) {
                return Err(format!(
                    "refusing `{url}`: `{host}` resolves to {ip}, a loopback, private, link-local or \
                     otherwise internal address (an operator can allow it with security.allow_mcp_networks)"
                ));
            }
        }
        Ok(CheckedUrl {
            url: parsed,
            host: bare_host.to_owned(),
            addrs,
        })
    }
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0xdb8
        || first == 0x64 && ip.segments()[1] == 0xff9b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_internal_addresses_unless_allowed() {
        let strict = UrlPolicy::default();
        for url in [
            "http://127.0.0.1:8000/mcp",
            "http://localhost/mcp",
            "http://10.1.2.3/mcp",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/mcp",
            "http://[::ffff:127.0.0.1]/mcp",
            "http://[fd00::1]/mcp",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
        ] {
            let error = strict
                .check(url)
                .await
                .err()
                .unwrap_or_else(|| panic!("{url} allowed"));
            assert!(error.starts_with("refusing"), "{url}: {error}");
        }
        assert!(strict.check("http://93.184.216.34/mcp").await.is_ok());
        assert!(
            strict
                .check("ftp://93.184.216.34/")
                .await
                .unwrap_err()
                .contains("http or https")
        );
        assert!(strict.check("not a url").await.is_err());

        let loopback = UrlPolicy::new(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
        let checked = loopback.check("http://127.0.0.1:8931/mcp").await.unwrap();
        assert_eq!(checked.addrs, [SocketAddr::from(([127, 0, 0, 1], 8931))]);
        assert!(loopback.check("http://[::1]/mcp").await.is_ok());
        assert!(loopback.check("http://10.0.0.1/").await.is_err());
        assert!(UrlPolicy::new(&["10.0.0.0/33".into()]).is_err());
    }

    #[test]
    fn networks_match_by_prefix() {
        let net = Network::parse("172.16.0.0/12").unwrap();
        assert!(net.contains("172.31.255.1".parse().unwrap()));
        assert!(!net.contains("172.32.0.1".parse().unwrap()));
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }
}
