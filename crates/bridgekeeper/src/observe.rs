//! What every HTTP request carries through the server: an id (`X-Request-Id`, in log lines, in the
//! response and in audit rows), the client's address (behind trusted proxies, the one they
//! forwarded), a span continuing the caller's W3C `traceparent`, and its count and latency in
//! `/metrics` by route and status.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub const REQUEST_ID: &str = "x-request-id";

/// The trusted proxies, parsed: addresses or CIDR ranges.
pub fn parse_trusted(list: &[String]) -> anyhow::Result<Vec<IpNet>> {
    list.iter()
        .map(|s| {
            let s = s.trim();
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .with_context(|| format!("trusted_proxies: {s:?} is not an address or a CIDR range such as 10.0.0.0/8"))
        })
        .collect()
}

pub struct Observe {
    trusted: Vec<IpNet>,
}

impl Observe {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        Self { trusted }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// The client behind a trusted proxy: walking `X-Forwarded-For` from the right (the hop
    /// nearest to us), the first address that is not itself a trusted proxy; the leftmost when all
    /// are. `None` (use the peer) when the header is missing or a hop on the way is not an address.
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let hops: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = None;
        for hop in hops.iter().rev() {
            let ip = parse_hop(hop)?;
            client = Some(ip);
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// `203.0.113.7`, `2001:db8::1`, `[2001:db8::1]:443` or `203.0.113.7:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>().or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip())).ok().map(canonical)
}

/// An id a trusted proxy set: short, printable, nothing a log line or a header could be bent by.
fn acceptable_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = (1..=128).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='));
    ok.then_some(s)
}

/// `/metrics` labels: the standard methods as themselves, anything else `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

struct HeaderCarrier<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The middleware (outermost application layer, after routing so the route is known).
pub async fn layer(State(o): State<Arc<Observe>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let via_proxy = peer.is_some_and(|p| o.trusts(p.ip()));
    let client = peer.map(|p| {
        let from_header = if via_proxy { o.forwarded_client(req.headers()) } else { None };
        from_header.unwrap_or_else(|| canonical(p.ip()))
    });
    // Handlers read the client's address where they always did (rate limits, audit, sessions).
    if let (Some(p), Some(c)) = (peer, client)
        && c != p.ip()
    {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(c, 0)));
    }
    let request_id = via_proxy
        .then(|| req.headers().get(REQUEST_ID).and_then(acceptable_id).map(str::to_owned))
        .flatten()
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let route = route.as_deref().unwrap_or("unmatched").to_owned();
    let method = method_label(req.method());

    let span = tracing::info_span!("request", request_id = %request_id, method, route = %route);
    // A caller's trace (W3C `traceparent`) continues here; without an exporter this does nothing.
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderCarrier(req.headers())));
    let _ = span.set_parent(parent);

    let ctx = bk_audit::RequestContext { request_id: request_id.clone(), ip: client.map(|c| c.to_string()) };
    let mut res = bk_audit::in_request(ctx, next.run(req)).instrument(span.clone()).await;

    let status = res.status();
    let elapsed = started.elapsed();
    ::metrics::counter!("bridgekeeper_http_requests_total", "method" => method, "route" => route.clone(),
        "status" => status.as_str().to_owned())
    .increment(1);
    ::metrics::histogram!("bridgekeeper_http_request_duration_seconds", "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    if status.is_server_error() {
        span.in_scope(|| {
            tracing::warn!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "server error")
        });
    } else {
        span.in_scope(|| {
            tracing::debug!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, "answered")
        });
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(trusted: &[&str]) -> Observe {
        Observe::new(parse_trusted(&trusted.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap())
    }

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn the_client_is_the_last_untrusted_hop() {
        let o = observe(&["10.0.0.0/8", "192.0.2.1"]);
        // A client cannot choose its address by writing one in front: the rightmost untrusted hop wins.
        let h = xff("1.2.3.4, 198.51.100.9, 10.1.1.1, 192.0.2.1");
        assert_eq!(o.forwarded_client(&h), Some("198.51.100.9".parse().unwrap()));
        assert_eq!(o.forwarded_client(&xff("10.0.0.5, 10.0.0.6")), Some("10.0.0.5".parse().unwrap()));
        assert_eq!(o.forwarded_client(&xff("[2001:db8::1]:443")), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(o.forwarded_client(&xff("::ffff:203.0.113.4")), Some("203.0.113.4".parse().unwrap()));
        assert_eq!(o.forwarded_client(&HeaderMap::new()), None);
        assert_eq!(o.forwarded_client(&xff("1.2.3.4, not-an-address")), None, "a broken nearest hop: use the peer");
    }

    #[test]
    fn trusted_proxies_are_checked_at_start() {
        assert!(parse_trusted(&["10.0.0.0/8".into(), "::1".into(), "127.0.0.1".into()]).is_ok());
        let e = parse_trusted(&["10.0.0.0/33".into()]).unwrap_err().to_string();
        assert!(e.contains("10.0.0.0/33"), "{e}");
        assert!(parse_trusted(&["proxy.internal".into()]).is_err());
    }

    #[test]
    fn only_plain_request_ids_are_kept() {
        assert_eq!(acceptable_id(&HeaderValue::from_static("abc-123_x.y")), Some("abc-123_x.y"));
        assert_eq!(acceptable_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(acceptable_id(&HeaderValue::from_static("")), None);
        assert_eq!(acceptable_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()), None);
    }
}
