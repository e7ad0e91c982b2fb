//! DNS-rebinding protection for `/mcp`: the `Host` (or HTTP/2 authority) and, when present, the
//! `Origin` must name this server — its issuer, a loopback address, or an operator-listed value.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, Uri, header};

pub struct HostPolicy {
    issuer_host: String,
    issuer_origin: String,
    hosts: Vec<String>,
    origins: Vec<String>,
}

/// Is `host` (lower-case, without port, IPv6 in brackets) `localhost` or a loopback address?
/// Parsed as an address, never matched by prefix: `127.evil.example` and `127.0.0.1.nip.io` are
/// names, and a name (other than `localhost`) can be made to resolve anywhere (DNS rebinding).
fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
    }
    host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// A port as it may appear in a `Host` header: 1 to 5 digits.
fn valid_port(port: &str) -> bool {
    (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit())
}

/// Splits `host[:port]` (with bracketed IPv6) into host and port.
fn split_host(authority: &str) -> (String, Option<&str>) {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let host = format!("[{}]", &rest[..end]).to_ascii_lowercase();
            // Anything after `]` other than `:port` is kept as the "port", so it fails validation.
            let after = &rest[end + 1..];
            let port = (!after.is_empty()).then(|| after.strip_prefix(':').unwrap_or(after));
            return (host, port);
        }
        return (a.to_ascii_lowercase(), None);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), Some(p)),
        _ => (a.to_ascii_lowercase(), None),
    }
}

impl HostPolicy {
    pub fn new(issuer: &str, extra_hosts: &[String], extra_origins: &[String]) -> Self {
        let url = url::Url::parse(issuer).ok();
        let issuer_host = url
            .as_ref()
            .and_then(|u| {
                u.host_str().map(|h| match u.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_owned(),
                })
            })
            .unwrap_or_default()
            .to_ascii_lowercase();
        let issuer_origin = url.map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        Self {
            issuer_host,
            issuer_origin,
            hosts: extra_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            origins: extra_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
        }
    }

    fn host_allowed(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        if authority == self.issuer_host {
            return true;
        }
        let (host, port) = split_host(&authority);
        if is_loopback_host(&host) && port.is_none_or(valid_port) {
            return true;
        }
        self.hosts.iter().any(|h| *h == authority || *h == host)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if origin == self.issuer_origin || self.origins.contains(&origin) {
            return true;
        }
        match url::Url::parse(&origin) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {
                u.host_str().is_some_and(|h| is_loopback_host(&h.to_ascii_lowercase()))
            }
            _ => false,
        }
    }

    /// Checks a request; the error says what was refused.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<(), String> {
        let authority = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| uri.authority().map(|a| a.as_str().to_owned()));
        match authority {
            Some(a) if self.host_allowed(&a) => {}
            Some(a) => {
                return Err(format!("host {} is not served here", a.chars().take(100).collect::<String>()));
            }
            None => return Err("the request has no Host".into()),
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let o = origin.to_str().unwrap_or("");
            if !self.origin_allowed(o) {
                return Err(format!("origin {} is not allowed", o.chars().take(100).collect::<String>()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn check(p: &HostPolicy, host: &str, origin: Option<&str>) -> bool {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        p.check(&h, &Uri::from_static("/mcp")).is_ok()
    }

    #[test]
    fn rebinding_refused_loopback_and_issuer_allowed() {
        let p =
            HostPolicy::new("https://bk.example.com", &["internal.lb:8080".into()], &["https://app.example".into()]);
        assert!(check(&p, "bk.example.com", None));
        assert!(check(&p, "localhost:1234", Some("http://localhost:5173")));
        assert!(check(&p, "127.0.0.1:8080", None));
        assert!(check(&p, "[::1]:8080", None));
        assert!(check(&p, "internal.lb:8080", Some("https://app.example")));
        assert!(!check(&p, "evil.example.com", None));
        assert!(!check(&p, "localhost:8080", Some("http://evil.example.com")));
        assert!(!check(&p, "bk.example.com", Some("null")));
        assert!(!check(&p, "internal.lb:9999", None));
    }

    #[test]
    fn loopback_is_an_address_not_a_prefix() {
        for host in ["127.0.0.1", "127.0.0.2", "127.255.255.254", "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "127.evil.example",
            "127.0.0.1.nip.io",
            "127.",
            "127.1",
            "127.0.0.1.",
            "0x7f.0.0.1",
            "::1",
            "[::2]",
            "[::ffff:10.0.0.1]",
            "128.0.0.1",
            "localhost.evil.example",
            "evil-localhost",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn loopback_lookalikes_refused_in_host_and_origin() {
        let p = HostPolicy::new("https://bk.example.com", &[], &[]);
        for host in [
            "127.evil.example",
            "127.0.0.1.nip.io",
            "127.0.0.1.nip.io:8080",
            "127.0.0.1:80x",
            "127.0.0.1:",
            "[::1]evil.example",
        ] {
            assert!(!check(&p, host, None), "Host {host}");
        }
        for origin in ["http://127.evil.example", "http://127.0.0.1.nip.io:8080", "https://127.0.0.1.evil.example"] {
            assert!(!check(&p, "bk.example.com", Some(origin)), "Origin {origin}");
        }
        for host in ["127.0.0.1", "127.0.0.9:65535", "[::1]", "[::1]:9000", "localhost", "LocalHost:3000"] {
            assert!(check(&p, host, None), "Host {host}");
        }
        for origin in ["http://127.0.0.5:5173", "http://[::1]:6274", "http://localhost"] {
            assert!(check(&p, "bk.example.com", Some(origin)), "Origin {origin}");
        }
    }
}
