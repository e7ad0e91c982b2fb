//! `X-Content-Type-Options: nosniff` on every response of every face (JSON above all), so a
//! browser never sniffs a JSON or text answer into something executable.

use serde_json::json;

use crate::harness::{Flow, Server, operator_token};

fn assert_nosniff(res: &reqwest::Response, what: &str) {
    let values: Vec<_> = res.headers().get_all("x-content-type-options").iter().collect();
    assert_eq!(values.len(), 1, "{what}: exactly one X-Content-Type-Options ({values:?})");
    assert_eq!(values[0], "nosniff", "{what}");
}

#[tokio::test]
async fn json_responses_carry_nosniff() {
    let server = Server::start();
    let flow = Flow::signup(&server, "sniff@example.com").await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write account").await;
    let http = reqwest::Client::new();
    let operator = operator_token(&server);
    let gets = [
        ("/health", None),
        ("/ready", None),
        ("/metrics", Some(operator.as_str())),
        ("/.well-known/oauth-authorization-server", None),
        ("/.well-known/oauth-protected-resource/mcp", None),
        ("/.well-known/jwks.json", None),
        ("/api/v1/account", Some(t.access.as_str())),
        ("/api/v1/account", None),
        ("/api/v1/auth/userinfo", None),
        ("/login", None),
        ("/no/such/path", None),
    ];
    for (path, bearer) in gets {
        let mut req = http.get(server.url(path));
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        let res = req.send().await.unwrap();
        assert_nosniff(&res, &format!("GET {path} ({})", res.status()));
    }
    // OAuth endpoints, success and error.
    let res = flow.refresh(&client_id, &t.refresh).await;
    assert_eq!(res.status(), 200);
    assert_nosniff(&res, "token");
    let res = flow.token(&[("grant_type", "password")]).await;
    assert_eq!(res.status(), 400);
    assert_nosniff(&res, "token error");
    let res = http.post(server.url("/api/v1/auth/register")).json(&json!({})).send().await.unwrap();
    assert_nosniff(&res, "register error");
    // /mcp, success and refusal.
    let (_, t2) = flow.login_client("universal-mcp-read-write").await;
    let res = flow.mcp(&t2.access, "tools/list", json!({})).await;
    assert_eq!(res.status(), 200);
    assert_nosniff(&res, "/mcp");
    let res = http.post(server.url("/mcp")).json(&json!({})).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_nosniff(&res, "/mcp 401");
}
