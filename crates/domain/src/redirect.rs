//! Redirect URIs: what a client may register and how a requested URI matches a registered one.
//! Matching is exact (RFC 9700 §4.1.3), except that the port of a loopback IP literal may vary (RFC 8252 §7.3).

use url::{Host, Url};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("redirect URI is not an absolute URI: {0}")]
    NotAbsolute(String),
    #[error("redirect URI must not contain a fragment: {0}")]
    Fragment(String),
    #[error("redirect URI must use https (http is allowed only for loopback hosts): {0}")]
    InsecureScheme(String),
}

/// Is `host` a loopback host (127.0.0.0/8, ::1 or `localhost`)?
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Validates a redirect URI offered at registration: absolute, no fragment, https unless loopback.
/// Private-use schemes (`cursor://…`, `com.example.app:/cb`) are allowed for native apps (RFC 8252 §7.1).
pub fn validate_registration(uri: &str) -> Result<Url, RedirectUriError> {
    let url = Url::parse(uri).map_err(|_| RedirectUriError::NotAbsolute(clip(uri)))?;
    if url.fragment().is_some() {
        return Err(RedirectUriError::Fragment(clip(uri)));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(RedirectUriError::InsecureScheme(clip(uri))),
        // javascript:, data: and friends are never redirect targets.
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" | "ws" | "wss" => {
            Err(RedirectUriError::InsecureScheme(clip(uri)))
        }
        _ if url.cannot_be_a_base() && !uri.contains(":/") => Err(RedirectUriError::NotAbsolute(clip(uri))),
        _ => Ok(url),
    }
}

/// Does the requested redirect URI match one registered URI?
pub fn matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    // RFC 8252 §7.3: for loopback IP literals the port may differ; everything else must be identical.
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let loopback_ip = |u: &Url| {
        matches!(u.host(), Some(Host::Ipv4(ip)) if ip.is_loopback())
            || matches!(u.host(), Some(Host::Ipv6(ip)) if ip.is_loopback())
            || matches!(u.host(), Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost"))
    };
    if reg.scheme() != "http" || req.scheme() != "http" || !loopback_ip(&reg) || !loopback_ip(&req) {
        return false;
    }
    reg.host() == req.host()
        && reg.path() == req.path()
        && reg.query() == req.query()
        && reg.username() == req.username()
        && reg.password() == req.password()
        && req.fragment().is_none()
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_required() {
        assert!(matches("https://app.example/cb", "https://app.example/cb"));
        assert!(!matches("https://app.example/cb", "https://app.example/cb/"));
        assert!(!matches("https://app.example/cb", "https://app.example/cb?x=1"));
        assert!(!matches("https://app.example/cb", "https://APP.example.evil/cb"));
    }

    #[test]
    fn loopback_port_may_vary() {
        assert!(matches("http://127.0.0.1/cb", "http://127.0.0.1:53111/cb"));
        assert!(matches("http://127.0.0.1:3000/cb", "http://127.0.0.1:53111/cb"));
        assert!(matches("http://localhost:3000/cb", "http://localhost:9999/cb"));
        assert!(!matches("http://127.0.0.1:3000/cb", "http://127.0.0.1:53111/other"));
        assert!(!matches("https://example.com:443/cb", "https://example.com:8443/cb"));
    }

    #[test]
    fn http_only_on_loopback() {
        assert!(validate_registration("http://127.0.0.1:8000/cb").is_ok());
        assert!(validate_registration("http://localhost/cb").is_ok());
        assert!(validate_registration("http://[::1]/cb").is_ok());
        assert!(validate_registration("http://example.com/cb").is_err());
        assert!(validate_registration("https://example.com/cb#x").is_err());
        assert!(validate_registration("javascript:alert(1)").is_err());
        assert!(validate_registration("cursor://anysphere.cursor-mcp/oauth/callback").is_ok());
        assert!(validate_registration("/relative").is_err());
    }
}
