//! `/metrics` is for operators: by default it needs an operator token; `metrics.public = true`
//! opens it; `metrics.listen` serves it only on a separate address (and no longer on the main one).

use crate::harness::{Flow, Server, operator_token};

async fn get(url: String, bearer: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn metrics_require_an_operator_token_by_default() {
    let server = Server::start();
    let res = get(server.url("/metrics"), None).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let body = res.text().await.unwrap();
    assert!(!body.contains("bridgekeeper_audit"), "no figures without the token: {body}");
    assert_eq!(get(server.url("/metrics"), Some("bko_not-a-real-token")).await.status(), 401);
    // A person's access token is not an operator token.
    let flow = Flow::signup(&server, "metrics@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write account").await;
    assert_eq!(get(server.url("/metrics"), Some(&t.access)).await.status(), 401);
    let operator = operator_token(&server);
    let res = get(server.url("/metrics"), Some(&operator)).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("bridgekeeper_audit_events_written_total "));
}

#[tokio::test]
async fn metrics_public_when_configured() {
    let server = Server::start_with(&[("BRIDGEKEEPER_METRICS__PUBLIC", "true")]);
    let res = get(server.url("/metrics"), None).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("bridgekeeper_audit_events_dropped_total 0"));
}

#[tokio::test]
async fn metrics_served_only_on_their_own_listen_address() {
    let server = Server::start_with(&[("BRIDGEKEEPER_METRICS__LISTEN", "127.0.0.1:0")]);
    // The main address no longer serves them, not even to an operator.
    let operator = operator_token(&server);
    assert_eq!(get(server.url("/metrics"), Some(&operator)).await.status(), 404);
    let addr = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "metrics listening")
        .and_then(|v| v["fields"]["addr"].as_str().map(str::to_owned))
        .expect("the metrics address is logged");
    let res = get(format!("http://{addr}/metrics"), None).await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("bridgekeeper_audit_events_written_total "));
    // Only /metrics is served there.
    assert_eq!(get(format!("http://{addr}/api/v1/account"), None).await.status(), 404);
    assert_eq!(get(format!("http://{addr}/health"), None).await.status(), 404);
}

#[test]
fn invalid_metrics_listen_address_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("BRIDGEKEEPER_METRICS__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics.listen") && err.contains("not-an-address"), "{err}");
}
