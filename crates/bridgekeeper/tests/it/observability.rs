//! Request ids (response header, log lines, audit rows), the client's address behind trusted proxies
//! and only behind them, and traces exported over OTLP that continue the caller's `traceparent`
//! (HTTP header, and an MCP request's `params._meta`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, operator_token};

/// The operator audit rows of `kind`, once one exists (events are written asynchronously).
async fn rows_of(server: &Server, op: &str, kind: &str) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = reqwest::Client::new()
            .get(server.url(&format!("/api/v1/admin/audit?limit=1000&kind={kind}")))
            .bearer_auth(op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows: Vec<Value> = v["events"].as_array().cloned().unwrap_or_default();
        let rows: Vec<Value> = rows.into_iter().filter(|r| r["kind"] == kind).collect();
        if !rows.is_empty() || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A dynamic client registration (audited as `client.registered`).
async fn register_client(server: &Server, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(server.url("/api/v1/auth/register")).json(&json!({
        "client_name": format!("observed {}", uuid_ish()),
        "redirect_uris": ["http://127.0.0.1:9/cb"],
        "token_endpoint_auth_method": "none"
    }));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn request_id(res: &reqwest::Response) -> String {
    res.headers().get("x-request-id").expect("x-request-id on every answer").to_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_answer_names_its_request_id_which_its_audit_row_and_log_lines_carry() {
    let server = Server::start();
    let op = operator_token(&server);
    let res = register_client(&server, &[]).await;
    assert_eq!(res.status(), 201);
    let id = request_id(&res);
    assert_eq!(id.len(), 32, "a fresh id: {id}");
    // Problem answers, 404s and the gateway carry one too, each its own.
    let other = reqwest::get(server.url("/no/such/route")).await.unwrap();
    assert_eq!(other.status(), 404);
    assert_ne!(request_id(&other), id);

    let rows = rows_of(&server, &op, "client.registered").await;
    let row = rows.iter().find(|r| r["request_id"] == id.as_str()).unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row["ip"], "127.0.0.1", "the peer's address: {row}");
    // Log lines written while serving the request name it (the request's span).
    let logs = server.logs();
    assert!(
        logs.lines().any(|l| l.contains(&id) && l.contains("/api/v1/auth/register")),
        "a log line with the request id and route"
    );
}

#[tokio::test]
async fn security_forwarded_headers_from_an_untrusted_peer_are_ignored() {
    // No trusted proxies (the default): anyone can write X-Forwarded-For; it must not become the
    // address rate limits and audit rows use, nor may a caller choose its request id.
    let server = Server::start();
    let op = operator_token(&server);
    let res =
        register_client(&server, &[("x-forwarded-for", "203.0.113.9"), ("x-request-id", "chosen-by-caller")]).await;
    let id = request_id(&res);
    assert_ne!(id, "chosen-by-caller");
    let rows = rows_of(&server, &op, "client.registered").await;
    let row = rows.iter().find(|r| r["request_id"] == id.as_str()).unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row["ip"], "127.0.0.1", "{row}");
    assert!(!server.logs().contains("203.0.113.9"));
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_the_client() {
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8"),
        ("BRIDGEKEEPER_LIMITS__REGISTRATION_ATTEMPTS_PER_MINUTE", "3"),
        ("BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE", "3"),
    ]);
    let op = operator_token(&server);
    // The client wrote a fake hop in front; the proxies (10.1.2.3, then us at 127.0.0.1) appended
    // what they saw: the rightmost untrusted hop is the client.
    let res = register_client(
        &server,
        &[("x-forwarded-for", "192.0.2.66, 198.51.100.7, 10.1.2.3"), ("x-request-id", "edge-4711")],
    )
    .await;
    assert_eq!(request_id(&res), "edge-4711", "a trusted proxy's request id is kept");
    let rows = rows_of(&server, &op, "client.registered").await;
    let row = rows.iter().find(|r| r["request_id"] == "edge-4711").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(row["ip"], "198.51.100.7", "{row}");
    // Per-source limits count the forwarded client, not the proxy: three registration attempts
    // from one client use up its limit (429) while another client behind the same proxy goes on.
    for _ in 0..3 {
        assert_eq!(register_from(&server, "198.51.100.8").await, 400);
    }
    assert_eq!(
        register_from(&server, "198.51.100.8").await,
        429,
        "the per-source limit applies to the forwarded client"
    );
    assert_eq!(
        register_from(&server, "198.51.100.9").await,
        400,
        "another client behind the same proxy is not limited"
    );
    // A malformed id from the proxy is replaced.
    let res = register_client(&server, &[("x-request-id", "has spaces")]).await;
    assert_ne!(request_id(&res), "has spaces");
}

/// A registration attempt (an empty, invalid body) forwarded for `ip`: its status.
async fn register_from(server: &Server, ip: &'static str) -> u16 {
    reqwest::Client::new()
        .post(server.url("/api/v1/auth/register"))
        .header("x-forwarded-for", ip)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A collector: every OTLP/HTTP JSON export it receives.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::post;
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new().route(
        "/v1/traces",
        post({
            let got = got.clone();
            move |body: axum::body::Bytes| async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    got.lock().unwrap().push(v);
                }
                axum::Json(json!({}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// Every span exported: (trace id, parent span id, name, attributes).
fn spans(exports: &[Value]) -> Vec<(String, String, String, Value)> {
    exports
        .iter()
        .flat_map(|e| e["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .map(|s| {
            (
                s["traceId"].as_str().unwrap_or_default().to_ascii_lowercase(),
                s["parentSpanId"].as_str().unwrap_or_default().to_ascii_lowercase(),
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["attributes"].clone(),
            )
        })
        .collect()
}

// Multi-threaded: the collector must keep answering while the test waits for the server to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_continue_the_callers_traceparent_over_http_and_mcp_meta() {
    let (endpoint, got) = collector().await;
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_OTLP_ENDPOINT", endpoint.as_str()),
        ("BRIDGEKEEPER_TELEMETRY__OTLP_PROTOCOL", "http/json"),
    ]);
    let flow = Flow::signup(&server, "traces@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write account").await;

    // An HTTP request naming its trace in the header.
    let http_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let http_parent = "00f067aa0ba902b7";
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/account"))
        .bearer_auth(&t.access)
        .header("traceparent", format!("00-{http_trace}-{http_parent}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let account_request = request_id(&res);

    // An MCP request naming its trace in params._meta (SEP-414), not in a header.
    let mcp_trace = "0af7651916cd43dd8448eb211c80319c";
    let mcp_parent = "b7ad6b7169203331";
    let res = flow
        .mcp(&t.access, "tools/list", json!({"_meta": {"traceparent": format!("00-{mcp_trace}-{mcp_parent}-01")}}))
        .await;
    assert_eq!(res.status(), 200);

    // A clean stop sends what the exporter still holds.
    let (status, _dir) = server.stop();
    assert!(status.success());
    let spans = spans(&got.lock().unwrap());
    let request = spans
        .iter()
        .find(|(trace, parent, name, _)| trace == http_trace && parent == http_parent && name == "request")
        .unwrap_or_else(|| panic!("the request span continues the header's trace: {spans:?}"));
    let attrs = request.3.to_string();
    assert!(attrs.contains(&account_request) && attrs.contains("/api/v1/account"), "{attrs}");
    assert!(
        spans.iter().any(|(trace, parent, name, _)| trace == mcp_trace && parent == mcp_parent && name == "mcp"),
        "the MCP span continues the _meta trace: {spans:?}"
    );
    // A request that named no trace starts its own (sampled at ratio 1.0 by default).
    assert!(spans.iter().any(|(trace, _, name, _)| name == "request" && trace != http_trace && trace != mcp_trace));
    // No token in any exported span.
    let all = serde_json::to_string(&spans).unwrap();
    assert!(!all.contains(&t.access));
}

#[test]
fn telemetry_settings_are_checked_at_start() {
    for (k, v, says) in [
        ("BRIDGEKEEPER_TELEMETRY__OTLP_PROTOCOL", "grpc", "telemetry.otlp_protocol"),
        ("BRIDGEKEEPER_OTLP_ENDPOINT", "not a url", "telemetry.otlp_endpoint"),
        ("BRIDGEKEEPER_TRUSTED_PROXIES", "10.0.0.0/40", "trusted_proxies"),
    ] {
        let out = std::process::Command::new(crate::harness::bin())
            .args(["serve"])
            .env(k, v)
            .env("BRIDGEKEEPER_DATA_DIR", tempfile::tempdir().unwrap().path())
            .env("BRIDGEKEEPER_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{k}={v} must stop the start");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{k}={v}: {err}");
    }
}

fn uuid_ish() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
        + N.fetch_add(1, Ordering::Relaxed) as u128
}
