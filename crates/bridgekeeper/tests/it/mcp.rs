//! The protected `/mcp` endpoint.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, query_param};

#[tokio::test]
async fn mcp_without_token_points_to_resource_metadata() {
    let server = Server::start();
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let h = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(h.starts_with("Bearer "), "{h}");
    assert!(
        h.contains(&format!("resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"", server.base)),
        "{h}"
    );
    assert!(h.contains("scope=\""), "{h}");
    let res =
        reqwest::Client::new().post(server.url("/mcp")).bearer_auth("garbage").json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
}

#[tokio::test]
async fn initialize_list_and_whoami_from_context() {
    let server = Server::start();
    let flow = Flow::signup(&server, "who@example.com").await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write account").await;
    let init: Value = flow
        .mcp(
            &t.access,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert!(init["result"]["capabilities"]["tools"].is_object());
    let list: Value = flow.mcp(&t.access, "tools/list", json!({})).await.json().await.unwrap();
    assert!(list["result"]["tools"].as_array().unwrap().iter().any(|t| t["name"] == "whoami"));
    assert_eq!(flow.mcp(&t.access, "ping", json!({})).await.json::<Value>().await.unwrap()["result"], json!({}));
    // whoami reports the context; arguments cannot smuggle in another identity.
    let res: Value =
        flow.mcp(&t.access, "tools/call", json!({"name": "whoami", "arguments": {}})).await.json().await.unwrap();
    let who = &res["result"]["structuredContent"];
    assert_eq!(who["email"], "who@example.com");
    assert_eq!(who["client_id"], client_id);
    assert_eq!(who["scopes"], json!(["universal-mcp-read-write", "account"]));
    let (_, claims) = crate::harness::jwt_parts(&t.access);
    assert_eq!(who["account_id"], claims["sub"]);
    let res: Value = flow
        .mcp(&t.access, "tools/call", json!({"name": "whoami", "arguments": {"account_id": "acc_someone_else"}}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(res["error"]["code"], -32602);
}

#[tokio::test]
async fn read_scope_lists_but_cannot_call() {
    let server = Server::start();
    let flow = Flow::signup(&server, "r@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read").await;
    assert_eq!(flow.mcp(&t.access, "tools/list", json!({})).await.status(), 200);
    let res = flow.mcp(&t.access, "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    assert_eq!(res.status(), 403);
    let h = res.headers()["www-authenticate"].to_str().unwrap();
    assert!(h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"universal-mcp-read-write\""), "{h}");
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let server = Server::start();
    let flow = Flow::signup(&server, "aud@example.com").await;
    let cb = "http://127.0.0.1:9/callback";
    let client_id = flow.register(cb, "universal-mcp-read-write").await;
    // A token for the issuer itself (RFC 8707 resource) is valid, but not for /mcp.
    let mut url = url::Url::parse(&flow.authorize_url(&client_id, cb, "universal-mcp-read-write", "s")).unwrap();
    url.query_pairs_mut().append_pair("resource", &server.base);
    let back = flow.approve(url.as_str()).await;
    let t = flow.exchange_code(&client_id, cb, &query_param(&back, "code").unwrap()).await;
    assert_eq!(crate::harness::jwt_parts(&t.access).1["aud"], server.base);
    let res = flow.mcp(&t.access, "tools/list", json!({})).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    // An unknown resource is refused at authorization (invalid_target).
    let mut url = url::Url::parse(&flow.authorize_url(&client_id, cb, "universal-mcp-read-write", "s")).unwrap();
    url.query_pairs_mut().append_pair("resource", "https://elsewhere.example/mcp");
    let res = flow.http.get(url.as_str()).send().await.unwrap();
    assert_eq!(query_param(&crate::harness::location(&res), "error").as_deref(), Some("invalid_target"));
}

#[tokio::test]
async fn revoked_session_stops_mcp_within_one_second() {
    let server = Server::start();
    let flow = Flow::signup(&server, "rev@example.com").await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write").await;
    assert_eq!(flow.mcp(&t.access, "tools/list", json!({})).await.status(), 200);
    reqwest::Client::new()
        .post(flow.url("/api/v1/auth/revoke"))
        .form(&[("token", t.refresh.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if flow.mcp(&t.access, "tools/list", json!({})).await.status() == 401 {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "revocation not seen within 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn notifications_get_202_and_unknown_methods_an_error() {
    let server = Server::start();
    let flow = Flow::signup(&server, "n@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write").await;
    let res = reqwest::Client::new()
        .post(flow.url("/mcp"))
        .bearer_auth(&t.access)
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let v: Value = flow.mcp(&t.access, "no/such", json!({})).await.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32601);
    let res =
        reqwest::Client::new().post(flow.url("/mcp")).bearer_auth(&t.access).body("{not json").send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], -32700);
}
