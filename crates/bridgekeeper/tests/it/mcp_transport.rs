//! `/mcp` as a Streamable HTTP endpoint: sessions, versions, DNS-rebinding protection, framing,
//! argument validation, limits.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, tokens};

const V: &str = "2025-11-25";

async fn signed_in(server: &Server, email: &str) -> (Flow, String, crate::harness::Tokens) {
    let flow = Flow::signup(server, email).await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write").await;
    (flow, client_id, t)
}

/// Parses an SSE body into its `data:` JSON messages.
fn sse_messages(body: &str) -> Vec<Value> {
    body.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect()
}

#[tokio::test]
async fn session_required_after_initialize_and_unknown_session_404() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "s1@example.com").await;
    let sid = flow.mcp_initialize(&t.access, V).await;
    assert!(sid.len() >= 32 && sid.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    // Without the session header (and without X-Response-Format: json): 400.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(flow.mcp_in(&t.access, "no-such-session", V, "tools/list", json!({})).await.status(), 404);
    let res = flow.mcp_in(&t.access, &sid, V, "tools/list", json!({})).await;
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.unwrap()["result"]["tools"].is_array());
    // Notifications inside the session: 202.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &sid)
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
}

#[tokio::test]
async fn session_bound_to_account() {
    let server = Server::start();
    let (alice, _, ta) = signed_in(&server, "alice@example.com").await;
    let (_bob, _, tb) = signed_in(&server, "bob@example.com").await;
    let sid = alice.mcp_initialize(&ta.access, V).await;
    // Bob presenting Alice's session id gets exactly what an unknown id gets.
    let theirs = alice.mcp_in(&tb.access, &sid, V, "tools/list", json!({})).await;
    let unknown = alice.mcp_in(&tb.access, "unknown-session-id", V, "tools/list", json!({})).await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(unknown.status(), 404);
    assert_eq!(theirs.text().await.unwrap(), unknown.text().await.unwrap());
    // Bob cannot end it either.
    let res = reqwest::Client::new()
        .delete(alice.url("/mcp"))
        .bearer_auth(&tb.access)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(alice.mcp_in(&ta.access, &sid, V, "ping", json!({})).await.status(), 200);
}

#[tokio::test]
async fn security_an_mcp_session_belongs_to_the_app_that_created_it() {
    let server = Server::start();
    let (flow, first_app, first) = signed_in(&server, "two-apps@example.com").await;
    // The same person authorizes a second app (another client) of the same account.
    let (scope, redirect) = ("universal-mcp-read-write", "http://127.0.0.1:9/other-app");
    let other_app = flow.register(redirect, scope).await;
    let back = flow.approve(&flow.authorize_url(&other_app, redirect, scope, "st")).await;
    let code = crate::harness::query_param(&back, "code").expect("code");
    let second = flow.exchange_code(&other_app, redirect, &code).await;
    let sid = flow.mcp_initialize(&first.access, V).await;
    // The other app cannot use the session (nor answer the questions relayed on it, nor cancel
    // its calls): it looks unknown.
    let other = flow.mcp_in(&second.access, &sid, V, "tools/list", json!({})).await;
    assert_eq!(other.status(), 404);
    assert_eq!(flow.mcp_in(&first.access, &sid, V, "tools/list", json!({})).await.status(), 200);
    // The same app's later grant (a step-up re-authorization) keeps it.
    let back = flow.approve(&flow.authorize_url(&first_app, "http://127.0.0.1:9/callback", scope, "st2")).await;
    let code = crate::harness::query_param(&back, "code").expect("code");
    let later = flow.exchange_code(&first_app, "http://127.0.0.1:9/callback", &code).await;
    assert_ne!(later.access, first.access);
    assert_eq!(flow.mcp_in(&later.access, &sid, V, "tools/list", json!({})).await.status(), 200);
}

#[tokio::test]
async fn session_survives_refresh_and_delete_ends_it() {
    let server = Server::start();
    let (flow, client_id, t1) = signed_in(&server, "s3@example.com").await;
    let sid = flow.mcp_initialize(&t1.access, V).await;
    let t2 = tokens(flow.refresh(&client_id, &t1.refresh).await).await;
    assert_eq!(flow.mcp_in(&t2.access, &sid, V, "tools/list", json!({})).await.status(), 200);
    let res = reqwest::Client::new()
        .delete(flow.url("/mcp"))
        .bearer_auth(&t2.access)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(flow.mcp_in(&t2.access, &sid, V, "tools/list", json!({})).await.status(), 404);
    let res = reqwest::Client::new().delete(flow.url("/mcp")).bearer_auth(&t2.access).send().await.unwrap();
    assert_eq!(res.status(), 400, "DELETE without a session id");
}

#[tokio::test]
async fn bad_protocol_version_400() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "v@example.com").await;
    let sid = flow.mcp_initialize(&t.access, "2025-06-18").await;
    let res = flow.mcp_in(&t.access, &sid, "1999-01-01", "tools/list", json!({})).await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("2025-11-25"), "the error lists what is supported");
    assert_eq!(flow.mcp_in(&t.access, &sid, "2025-06-18", "tools/list", json!({})).await.status(), 200);
    // An unknown version asked at initialize is answered with the latest one.
    let res: Value = flow
        .mcp(
            &t.access,
            "initialize",
            json!({"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["result"]["protocolVersion"], V);
}

#[tokio::test]
async fn bad_origin_or_host_403() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "o@example.com").await;
    let post = |headers: Vec<(&'static str, &'static str)>| {
        let (url, token) = (flow.url("/mcp"), t.access.clone());
        async move {
            let mut r = reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("X-Response-Format", "json")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}));
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(post(vec![("Origin", "http://evil.example.com")]).await, 403);
    assert_eq!(post(vec![("Host", "evil.example.com")]).await, 403);
    assert_eq!(post(vec![("Origin", "null")]).await, 403);
    assert_eq!(post(vec![("Origin", "http://localhost:6274")]).await, 200);
    assert_eq!(post(vec![("Host", "localhost:1234")]).await, 200);
    // Refused before the token is even looked at: no token, bad origin → 403, not 401.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .header("Origin", "https://evil.example.com")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn allowed_origins_are_configurable() {
    let server = Server::start_with(&[("BRIDGEKEEPER_MCP__ALLOWED_ORIGINS", "[\"https://app.example\"]")]);
    let (flow, _, t) = signed_in(&server, "cfg@example.com").await;
    let status = |origin: &'static str| {
        let (url, token) = (flow.url("/mcp"), t.access.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("X-Response-Format", "json")
                .header("Origin", origin)
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("https://app.example").await, 200);
    assert_eq!(status("https://other.example").await, 403);
}

#[tokio::test]
async fn x_response_format_json_forces_plain_json() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "fmt@example.com").await;
    let sid = flow.mcp_initialize(&t.access, V).await;
    // A client that accepts SSE gets its tool call as an SSE stream…
    let res = flow.mcp_in(&t.access, &sid, V, "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let msgs = sse_messages(&res.text().await.unwrap());
    assert_eq!(msgs.last().unwrap()["result"]["structuredContent"]["email"], "fmt@example.com");
    // …unless it asks for plain JSON.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Accept", "application/json, text/event-stream")
        .header("Mcp-Session-Id", &sid)
        .header("X-Response-Format", "json")
        .json(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.json::<Value>().await.unwrap()["result"]["structuredContent"]["email"], "fmt@example.com");
    // The reference-000 backend call: no session, no Accept, X-Response-Format: json.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Content-Type", "application/json")
        .header("X-Response-Format", "json")
        .body(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"list-connections","arguments":{}},"id":"1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["id"], "1");
    assert_eq!(v["result"]["structuredContent"], json!({"connections": [], "total": 0}));
}

#[tokio::test]
async fn invalid_tool_arguments_name_the_field() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "args@example.com").await;
    // 2025-11-25 (SEP-1303): a tool execution error the model can read.
    let sid = flow.mcp_initialize(&t.access, V).await;
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Mcp-Session-Id", &sid)
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {"account_id": "acc_x"}}}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(v["result"]["content"][0]["text"].as_str().unwrap().contains("arguments.account_id"), "{v}");
    // 2025-06-18: a JSON-RPC invalid-params error.
    let old = flow.mcp_initialize(&t.access, "2025-06-18").await;
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Mcp-Session-Id", &old)
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {"account_id": "acc_x"}}}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32602);
    assert!(v["error"]["message"].as_str().unwrap().contains("arguments.account_id"));
    // Unknown tools are protocol errors in every version.
    let v: Value =
        flow.mcp(&t.access, "tools/call", json!({"name": "nope", "arguments": {}})).await.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32602);
}

#[tokio::test]
async fn rate_limit_429() {
    let server = Server::start_with(&[("BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE", "5")]);
    let (flow, _, t) = signed_in(&server, "rl@example.com").await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = flow.mcp(&t.access, "ping", json!({})).await;
        if res.status() == 429 {
            assert!(res.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 3, "{statuses:?}");
    // Per account: another account is unaffected.
    let (other, _, t2) = signed_in(&server, "rl2@example.com").await;
    assert_eq!(other.mcp(&t2.access, "ping", json!({})).await.status(), 200);
}

#[tokio::test]
async fn transport_edges() {
    let server = Server::start();
    let (flow, _, t) = signed_in(&server, "edge@example.com").await;
    let sid = flow.mcp_initialize(&t.access, V).await;
    // GET offers no stream.
    let res = reqwest::Client::new()
        .get(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // Accept that allows neither JSON nor SSE.
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Accept", "text/html")
        .header("Mcp-Session-Id", &sid)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 406);
    // Bodies over 1 MiB.
    let big =
        format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "a".repeat(1024 * 1024 + 10));
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Content-Type", "application/json")
        .header("X-Response-Format", "json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Logging level: accepted when valid, invalid params otherwise.
    let ok: Value =
        flow.mcp_in(&t.access, &sid, V, "logging/setLevel", json!({"level": "info"})).await.json().await.unwrap();
    assert_eq!(ok["result"], json!({}));
    let bad: Value =
        flow.mcp_in(&t.access, &sid, V, "logging/setLevel", json!({"level": "loud"})).await.json().await.unwrap();
    assert_eq!(bad["error"]["code"], -32602);
}
