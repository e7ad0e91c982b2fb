//! Outbound HTTP on someone else's say-so, safe against server-side request forgery: only `https`,
//! only public addresses (each name's resolved addresses are filtered before connecting, so a name
//! cannot point the server at itself, its private networks or a cloud metadata endpoint), no
//! redirects, no proxy from the environment, a size limit on the body and a time limit on the whole
//! exchange. Client metadata documents use it (`get`), and so do connections to upstream services
//! (`send`: token endpoints, user info).
#![forbid(unsafe_code)]

mod follow;

pub use follow::FetchedDocument;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bk_domain::network::is_public_address;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// What a fetcher may do.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// Also reach loopback and private addresses (development only: a document served from this machine).
    pub allow_private_addresses: bool,
    /// Also plain `http` to a loopback host (`localhost`, `127.0.0.1`, `[::1]`). Development and
    /// tests only, and only together with `allow_private_addresses`: a server on this machine.
    pub allow_http_loopback: bool,
    /// PEM certificates trusted besides the system's roots (a development or internal CA).
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The whole exchange, connection to last byte.
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

/// Why a fetch failed; each says what an operator or a client developer can act on.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("only https URLs are fetched")]
    NotHttps,
    #[error("{0} is not a public address; the server does not fetch from its own machine or private networks")]
    NotPublic(String),
    #[error("the name {0} could not be resolved to a public address")]
    Unresolvable(String),
    #[error("the server answered with a redirect ({0}); redirects are not followed")]
    Redirect(u16),
    #[error("the server answered HTTP {0}, not 200")]
    Status(u16),
    #[error("the document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("no complete answer within {0} ms")]
    Timeout(u128),
    #[error("the request failed: {0}")]
    Network(String),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
}

/// A fetched body and what its response said about caching.
pub struct Fetched {
    pub body: Vec<u8>,
    /// `Cache-Control: max-age` in seconds, if given.
    pub max_age: Option<u64>,
    /// `Cache-Control: no-store` or `no-cache`.
    pub no_store: bool,
}

/// An answer of any status (but a redirect) and its bounded body.
pub struct Answer {
    pub status: u16,
    /// The response's headers (`WWW-Authenticate`, `Content-Type`, `Mcp-Session-Id`).
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

pub struct SafeFetcher {
    client: reqwest::Client,
    policy: FetchPolicy,
}

/// Resolves names like the system does, then keeps only the addresses the policy allows.
struct FilteringResolver {
    allow_private: bool,
}

impl Resolve for FilteringResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.iter().copied().filter(|a| allow_private || is_public_address(a.ip())).collect();
            if allowed.is_empty() {
                let why: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves only to addresses that are not public").into();
                return Err(why);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

impl SafeFetcher {
    pub fn new(policy: FetchPolicy) -> Result<Self, String> {
        let client = client_builder(&policy)?
            .timeout(policy.timeout)
            .build()
            .map_err(|e| format!("cannot build the outbound HTTP client: {e}"))?;
        Ok(Self { client, policy })
    }

    /// Refuses what is not https, and literal addresses the policy does not allow (they never
    /// reach the resolver).
    fn check_target(&self, url: &Url) -> Result<(), FetchError> {
        if url.scheme() != "https" && !(url.scheme() == "http" && self.http_allowed(url)) {
            return Err(FetchError::NotHttps);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal
            && !self.policy.allow_private_addresses
            && !is_public_address(ip)
        {
            return Err(FetchError::NotPublic(ip.to_string()));
        }
        Ok(())
    }

    /// Whether this fetcher would send a request to `url` at all (scheme and literal address; names
    /// are judged when they resolve).
    pub fn allows(&self, url: &Url) -> bool {
        self.check_target(url).is_ok()
    }

    /// Plain http only to a loopback host, and only when the policy allows private addresses and
    /// http on loopback.
    fn http_allowed(&self, url: &Url) -> bool {
        self.policy.allow_http_loopback
            && self.policy.allow_private_addresses
            && match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    }

    /// Sends `request` (built on `client()`), and reads an answer of any status but a redirect, at
    /// most `max_body_bytes`, all within the time limit. For APIs whose errors carry a body (an
    /// OAuth token endpoint answers 400 with JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, FetchError> {
        let request = request.build().map_err(|e| FetchError::Network(e.to_string().chars().take(300).collect()))?;
        let url = request.url().clone();
        self.check_target(&url)?;
        let started = std::time::Instant::now();
        let work = async {
            let mut res = self.client.execute(request).await.map_err(|e| self.classify(&url, e))?;
            let status = res.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect(status.as_u16()));
            }
            let headers = std::mem::take(res.headers_mut());
            let body = self.read_body(&url, &mut res).await?;
            Ok(Answer { status: status.as_u16(), headers, body })
        };
        match tokio::time::timeout(self.policy.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(started.elapsed().as_millis())),
        }
    }

    /// The client to build requests for `send` on (its settings are the policy's). Send them with
    /// `send`, which also judges literal addresses, never with `RequestBuilder::send`.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    async fn read_body(&self, url: &Url, res: &mut reqwest::Response) -> Result<Vec<u8>, FetchError> {
        let max = self.policy.max_body_bytes;
        if res.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::TooLarge(max));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.classify(url, e))? {
            if body.len() + chunk.len() > max {
                return Err(FetchError::TooLarge(max));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// `GET url` expecting 200 and at most `max_body_bytes`.
    pub async fn get(&self, url: &Url, accept: &str) -> Result<Fetched, FetchError> {
        self.check_target(url)?;
        let started = std::time::Instant::now();
        let deadline = self.policy.timeout;
        let work = async {
            let mut res = self
                .client
                .get(url.clone())
                .header(reqwest::header::ACCEPT, accept)
                .send()
                .await
                .map_err(|e| self.classify(url, e))?;
            let status = res.status();
            if status.is_redirection() {
                return Err(FetchError::Redirect(status.as_u16()));
            }
            if status != reqwest::StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let (max_age, no_store) = cache_control(res.headers());
            let body = self.read_body(url, &mut res).await?;
            Ok(Fetched { body, max_age, no_store })
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(started.elapsed().as_millis())),
        }
    }

    fn classify(&self, url: &Url, e: reqwest::Error) -> FetchError {
        if e.is_timeout() {
            return FetchError::Timeout(self.policy.timeout.as_millis());
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        if text.contains("not public") {
            return FetchError::Unresolvable(url.host_str().unwrap_or_default().to_owned());
        }
        FetchError::Network(text.chars().take(300).collect())
    }
}

/// A client builder with the policy's rules (https only unless loopback http is allowed, names
/// resolved to allowed addresses only, no redirects, no proxy, bounded connection time) but no
/// limit on a whole exchange: for long-lived streams (an upstream MCP server's event streams),
/// whose caller bounds each request itself. Literal addresses in URLs never reach the resolver:
/// such a client is only for URLs the operator configured.
pub fn client_builder(policy: &FetchPolicy) -> Result<reqwest::ClientBuilder, String> {
    let mut builder = reqwest::Client::builder()
        .https_only(!(policy.allow_http_loopback && policy.allow_private_addresses))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(policy.timeout.min(Duration::from_secs(3)))
        .user_agent(concat!("Bridgekeeper/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(FilteringResolver { allow_private: policy.allow_private_addresses }));
    if let Some(pem) = &policy.extra_roots_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("extra CA certificates: {e}"))?;
        if certs.is_empty() {
            return Err("extra CA certificates: the file holds no PEM certificate".into());
        }
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

/// `max-age` and whether caching is forbidden, from `Cache-Control`.
fn cache_control(headers: &reqwest::header::HeaderMap) -> (Option<u64>, bool) {
    let mut max_age = None;
    let mut no_store = false;
    for v in headers.get_all(reqwest::header::CACHE_CONTROL) {
        for d in v.to_str().unwrap_or("").split(',').map(|d| d.trim().to_ascii_lowercase()) {
            if d == "no-store" || d == "no-cache" {
                no_store = true;
            } else if let Some(n) = d.strip_prefix("max-age=") {
                max_age = n.trim_matches('"').parse().ok();
            }
        }
    }
    (max_age, no_store)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetcher() -> SafeFetcher {
        SafeFetcher::new(FetchPolicy {
            allow_private_addresses: false,
            allow_http_loopback: false,
            extra_roots_pem: None,
            timeout: Duration::from_secs(2),
            max_body_bytes: 5120,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn literal_private_addresses_are_refused_before_connecting() {
        let f = fetcher();
        for u in
            ["https://127.0.0.1/c.json", "https://169.254.169.254/latest", "https://[::1]/c.json", "https://10.0.0.1/x"]
        {
            let e = f.get(&Url::parse(u).unwrap(), "application/json").await.err().unwrap();
            assert!(matches!(e, FetchError::NotPublic(_)), "{u}: {e}");
        }
        let e = f.get(&Url::parse("http://example.com/x").unwrap(), "*/*").await.err().unwrap();
        assert!(matches!(e, FetchError::NotHttps));
    }

    #[tokio::test]
    async fn plain_http_only_to_loopback_and_only_when_allowed() {
        let policy = |http, private| FetchPolicy {
            allow_private_addresses: private,
            allow_http_loopback: http,
            extra_roots_pem: None,
            timeout: Duration::from_secs(2),
            max_body_bytes: 5120,
        };
        let dev = SafeFetcher::new(policy(true, true)).unwrap();
        for u in ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/x"] {
            assert!(dev.check_target(&Url::parse(u).unwrap()).is_ok(), "{u}");
        }
        for u in ["http://example.com/x", "http://10.0.0.1/x", "http://127.0.0.1.nip.io/x"] {
            assert!(matches!(dev.check_target(&Url::parse(u).unwrap()), Err(FetchError::NotHttps)), "{u}");
        }
        // Without private addresses the http switch does nothing.
        let half = SafeFetcher::new(policy(true, false)).unwrap();
        assert!(matches!(half.check_target(&Url::parse("http://127.0.0.1:9/x").unwrap()), Err(FetchError::NotHttps)));
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused() {
        let e = fetcher().get(&Url::parse("https://localhost/c.json").unwrap(), "*/*").await.err().unwrap();
        assert!(matches!(e, FetchError::Unresolvable(_)), "{e}");
    }

    #[test]
    fn cache_control_is_read() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::CACHE_CONTROL, "public, max-age=600".parse().unwrap());
        assert_eq!(cache_control(&h), (Some(600), false));
        h.insert(reqwest::header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_control(&h), (None, true));
    }
}
