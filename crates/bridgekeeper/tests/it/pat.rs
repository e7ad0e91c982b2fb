//! Personal access tokens, the account and its sessions (authorized apps).

use serde_json::{Value, json};

use crate::harness::{Flow, Server, whoami};

async fn create_pat(server: &Server, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().post(server.url("/api/v1/auth/pat")).bearer_auth(token).json(&body).send().await.unwrap()
}

/// A PAT made in `flow`'s signed-in browser (the first-party way; a third-party app's token may not).
async fn browser_pat(server: &Server, flow: &Flow, body: Value) -> String {
    let res = flow.http.post(server.url("/api/v1/auth/pat")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn pat_works_like_a_token_with_the_same_restrictions() {
    let server = Server::start();
    let flow = Flow::signup(&server, "pat@example.com").await;
    // The creating credential: a PAT with `account` (an app's token may not create PATs).
    let creator =
        browser_pat(&server, &flow, json!({"name": "creator", "scopes": ["account", "universal-mcp-read-write"]}))
            .await;
    let res = create_pat(
        &server,
        &creator,
        json!({
            "name": "CI bot",
            "scopes": ["universal-mcp-read-write", "llm-all"],
            "expires_in": 3600,
            "provider_permissions": {"github": "read"},
            "default_provider_permission": "disabled",
            "agent_ids": ["agent_9"],
        }),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    let pat = v["token"].as_str().unwrap().to_owned();
    assert!(pat.starts_with("bkp_"));
    assert!(v["session_id"].as_str().unwrap().starts_with("ses_"));
    assert_eq!(v["expires_in"], 3600);
    // Scopes never exceed the creating token's: llm-all is dropped.
    assert_eq!(v["scopes"], json!(["universal-mcp-read-write"]));
    let (status, who) = whoami(&server.base, &pat).await;
    assert_eq!(status, 200);
    assert_eq!(who["credential"], "pat");
    assert_eq!(who["email"], "pat@example.com");
    assert_eq!(who["provider_permissions"], json!({"github": "read"}));
    assert_eq!(who["default_provider_permission"], "disabled");
    assert_eq!(who["agent_ids"], json!(["agent_9"]));
    // The list shows it (beside its creator) without any secret.
    let list: Value = reqwest::Client::new()
        .get(server.url("/api/v1/auth/pat"))
        .bearer_auth(&creator)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens = list["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    assert!(!list.to_string().contains(&pat) && tokens.iter().all(|t| t.get("token").is_none()));
    // Revoked: stops within a second.
    let id = v["id"].as_str().unwrap();
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth/pat/{id}")))
        .bearer_auth(&creator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(whoami(&server.base, &pat).await.0, 401);
}

#[tokio::test]
async fn pat_restricted_like_a_token() {
    let server = Server::start();
    let flow = Flow::signup(&server, "patscope@example.com").await;
    // A credential whose grant is restricted cannot mint a PAT that escapes the restriction.
    let restricted = browser_pat(
        &server,
        &flow,
        json!({"name": "restricted", "scopes": ["account", "universal-mcp-read"],
            "provider_permissions": {"google": "read"}, "default_provider_permission": "disabled"}),
    )
    .await;
    let v: Value = create_pat(&server, &restricted, json!({
        "name": "wider", "scopes": "universal-mcp-read-write universal-mcp-read", "provider_permissions": {"google": "read-write", "slack": "read-write"}
    }))
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["scopes"], json!(["universal-mcp-read"]));
    assert_eq!(v["provider_permissions"], json!({"google": "read", "slack": "disabled"}));
    assert_eq!(v["default_provider_permission"], "disabled");
    // A read-only PAT lists tools but cannot call them, exactly like a read-only access token.
    let pat = v["token"].as_str().unwrap();
    let res = flow.mcp(pat, "tools/list", json!({})).await;
    assert_eq!(res.status(), 200);
    let res = flow.mcp(pat, "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    assert_eq!(res.status(), 403);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    // Without the account scope, no PAT at all; bad bodies name the field.
    let (_, no_account) = flow.login_client("universal-mcp-read").await;
    assert_eq!(
        create_pat(&server, &no_account.access, json!({"name": "x", "scopes": ["universal-mcp-read"]})).await.status(),
        403
    );
    let res =
        create_pat(&server, &restricted, json!({"name": "x", "scopes": ["universal-mcp-read"], "expires_in": 5})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "expires_in");
    let res = create_pat(&server, &restricted, json!({"name": "x", "scopes": ["nope"]})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "scopes");
}

#[tokio::test]
async fn account_sessions_list_and_revoke() {
    let server = Server::start();
    let flow = Flow::signup(&server, "sessions@example.com").await;
    let (client_id, t) = flow.login_client("account universal-mcp-read").await;
    let http = reqwest::Client::new();
    let acc: Value =
        http.get(server.url("/api/v1/account")).bearer_auth(&t.access).send().await.unwrap().json().await.unwrap();
    assert_eq!(acc["email"], "sessions@example.com");
    let list: Value =
        http.get(server.url("/api/v1/sessions")).bearer_auth(&t.access).send().await.unwrap().json().await.unwrap();
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["clientId"], client_id);
    assert!(sessions[0]["clientName"].as_str().unwrap().starts_with("Test client"), "{list}");
    // Another account cannot see or revoke it.
    let other = Flow::signup(&server, "other-sessions@example.com").await;
    let (_, to) = other.login_client("account").await;
    let sid = sessions[0]["id"].as_str().unwrap();
    let theirs =
        http.delete(server.url(&format!("/api/v1/sessions/{sid}"))).bearer_auth(&to.access).send().await.unwrap();
    let none = http.delete(server.url("/api/v1/sessions/ses_nope")).bearer_auth(&to.access).send().await.unwrap();
    assert_eq!((theirs.status().as_u16(), none.status().as_u16()), (404, 404));
    assert_eq!(theirs.text().await.unwrap(), none.text().await.unwrap());
    let pat_theirs = http.delete(server.url("/api/v1/auth/pat/pat_x")).bearer_auth(&to.access).send().await.unwrap();
    assert_eq!(pat_theirs.status(), 404);
    // The owner revokes it: its tokens die within a second.
    let res = http.delete(server.url(&format!("/api/v1/sessions/{sid}"))).bearer_auth(&t.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(http.get(server.url("/api/v1/account")).bearer_auth(&t.access).send().await.unwrap().status(), 401);
    assert_eq!(flow.refresh(&client_id, &t.refresh).await.status(), 400);
}

#[tokio::test]
async fn signed_in_browser_creates_pats_but_not_cross_site() {
    let server = Server::start();
    let flow = Flow::signup(&server, "browser@example.com").await;
    // The sign-up left this browser signed in: it may create a PAT with any scope but agents-all.
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "laptop", "scopes": ["universal-mcp-read-write", "agents-all", "account"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<Value>().await.unwrap()["scopes"], json!(["universal-mcp-read-write", "account"]));
    // A cross-origin write with the cookie is refused.
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .header("Origin", "https://evil.example")
        .json(&json!({"name": "evil", "scopes": ["account"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // Form posts (what a cross-site page could send without CORS) are not accepted.
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .form(&[("name", "x"), ("scopes", "account")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 415);
}
