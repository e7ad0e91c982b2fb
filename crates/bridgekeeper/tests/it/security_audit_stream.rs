//! Security review, finding 7: the live audit stream (`GET /api/v1/events`) ends when the credential
//! that opened it stops being good — its session revoked, its PAT revoked, its token expired — within
//! about a second, like every other request.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Flow, Server, whoami};

/// Reads the stream until it ends; what it sent, or None if it was still open at the deadline.
async fn read_until_end(mut res: reqwest::Response, within: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = String::new();
    loop {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            Ok(Ok(None)) | Ok(Err(_)) => return Some(seen),
            Err(_) => return None,
        }
    }
}

async fn open_stream(server: &Server, token: &str) -> reqwest::Response {
    let res = reqwest::Client::new().get(server.url("/api/v1/events")).bearer_auth(token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res
}

/// Makes an event of the account (a tool call) so the stream has something to deliver.
async fn stir(server: &Server, token: &str) {
    whoami(&server.base, token).await;
}

#[tokio::test]
async fn event_stream_ends_when_its_session_is_revoked() {
    let server = Server::start();
    let flow = Flow::signup(&server, "stream-revoked@example.com").await;
    let (_, t) = flow.login_client("account universal-mcp-read-write").await;
    let (_, other) = flow.login_client("universal-mcp-read-write").await;
    let stream = open_stream(&server, &t.access).await;
    let sid = crate::harness::jwt_parts(&t.access).1["sid"].as_str().unwrap().to_owned();
    let res = flow.http.delete(server.url(&format!("/api/v1/sessions/{sid}"))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // The account's other app keeps causing events; none may reach the revoked app.
    let (server_base, other_access) = (server.base.clone(), other.access.clone());
    let stirring = tokio::spawn(async move {
        for _ in 0..20 {
            whoami(&server_base, &other_access).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let seen = read_until_end(stream, Duration::from_secs(3)).await;
    stirring.abort();
    let seen = seen.expect("the stream stayed open after its session was revoked");
    assert!(seen.contains("event: closed"), "the stream says why it ends: {seen}");
}

#[tokio::test]
async fn event_stream_ends_when_its_pat_is_revoked() {
    let server = Server::start();
    let flow = Flow::signup(&server, "stream-pat@example.com").await;
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "watcher", "scopes": ["account", "universal-mcp-read-write"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let pat: serde_json::Value = res.json().await.unwrap();
    let token = pat["token"].as_str().unwrap();
    let mut stream = open_stream(&server, token).await;
    // It works while the PAT lives: its own tool call arrives.
    stir(&server, token).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains("mcp.tools_call") {
        match tokio::time::timeout_at(deadline, stream.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            _ => panic!("no event while the PAT was live: {seen}"),
        }
    }
    let res = flow.http.delete(server.url(&format!("/api/v1/auth/pat/{}", pat["id"].as_str().unwrap()))).send().await;
    assert_eq!(res.unwrap().status(), 204);
    let seen = read_until_end(stream, Duration::from_secs(3)).await;
    assert!(seen.is_some(), "the stream stayed open after its PAT was revoked");
}

#[tokio::test]
async fn event_stream_ends_when_its_token_expires() {
    // The shortest access-token lifetime the configuration allows.
    let server = Server::start_with(&[("BRIDGEKEEPER_TOKENS__ACCESS_TOKEN_TTL_SECS", "30")]);
    let flow = Flow::signup(&server, "stream-expiry@example.com").await;
    let (_, t) = flow.login_client("account").await;
    let exp = crate::harness::jwt_parts(&t.access).1["exp"].as_i64().unwrap();
    let stream = open_stream(&server, &t.access).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let until_expiry = Duration::from_secs((exp - now).max(0) as u64);
    // Still open just before expiry …
    let started = tokio::time::Instant::now();
    let seen = read_until_end(stream, until_expiry + Duration::from_secs(3)).await;
    let seen = seen.expect("the stream stayed open after its token expired");
    // … and closed only once the token is no longer valid (not merely on a timer of its own).
    assert!(started.elapsed() + Duration::from_secs(2) >= until_expiry, "closed too early: {seen}");
    assert!(seen.contains("event: closed"), "{seen}");
}
