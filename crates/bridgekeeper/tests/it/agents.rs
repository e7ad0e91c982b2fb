//! Agents through the real binary: CRUD with a white-label client's token (`agents-all`), refused
//! for third-party tokens and without the scope; `allowedAgentIds` (404 outside the list, `default`
//! too); validation; and, with no language model configured, `use-agent` and agent chat saying so.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, operator_token};

const CB: &str = "http://127.0.0.1:9/callback";
pub(crate) const WL_SCOPES: &str = "agents-all agents-use universal-mcp-read-write account";

/// An operator-made white-label client allowed the agent scopes, and a token of it for `flow`.
pub(crate) async fn whitelabel_token(server: &Server, flow: &Flow, scope: &str, extra: &[(&str, &str)]) -> String {
    let op = operator_token(server);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({
            "name": "YourApp", "type": "public", "roles": ["whitelabel-customer"],
            "domains": ["yourapp.example"], "redirectUris": [CB],
            "allowedScopes": ["agents-all", "agents-use", "universal-mcp-read", "universal-mcp-read-write", "account"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let t = flow.login_with(&id, None, CB, scope, extra).await;
    assert!(t["scope"].as_str().unwrap().contains(scope.split(' ').next().unwrap()), "{t}");
    t["access_token"].as_str().unwrap().to_owned()
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn create(server: &Server, token: &str, body: Value) -> (u16, Value) {
    send(http().post(server.url("/api/v1/agents")).bearer_auth(token).json(&body)).await
}

async fn get(server: &Server, token: &str, id: &str) -> (u16, Value) {
    send(http().get(server.url(&format!("/api/v1/agents/{id}"))).bearer_auth(token)).await
}

async fn list_ids(server: &Server, token: &str) -> Vec<String> {
    let (status, v) = send(http().get(server.url("/api/v1/agents")).bearer_auth(token)).await;
    assert_eq!(status, 200, "{v}");
    v["agents"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

async fn chat(server: &Server, token: &str, id: &str, body: Value) -> reqwest::Response {
    http()
        .post(server.url(&format!("/api/v1/agents/{id}/chat/completions")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn agent_crud_with_a_whitelabel_token() {
    let server = Server::start();
    let flow = Flow::signup(&server, "wl-crud@example.com").await;
    let token = whitelabel_token(&server, &flow, WL_SCOPES, &[]).await;

    let (status, a) = create(
        &server,
        &token,
        json!({"name": "Support", "llm": "gpt-4o-mini", "personality": "You are concise.", "temperature": 0.3,
               "firstPrompt": "How can I help?", "enabledBuiltInTools": ["whoami"], "billingAccountType": "owner",
               "usageLimits": {"dailyMessagesPerUser": 5, "monthlyCreditsCap": 1000, "limitReachedMessage": "Come back tomorrow."}}),
    )
    .await;
    assert_eq!(status, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("agt_"));
    assert_eq!(a["billingAccountType"], "owner");
    assert_eq!(a["usageLimits"]["dailyMessagesPerUser"], 5);
    assert_eq!(a["isDefault"], false);
    assert!(a.get("billingOwner").is_none(), "the billed owner's account id is not shown");

    // The list holds the default agent (created on first need) and the new one.
    let ids = list_ids(&server, &token).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&id));
    let (status, d) = get(&server, &token, "default").await;
    assert_eq!(status, 200);
    assert_eq!(d["isDefault"], true);
    assert!(ids.contains(&d["id"].as_str().unwrap().to_owned()));

    let (status, got) = get(&server, &token, &id).await;
    assert_eq!((status, got["name"].clone()), (200, json!("Support")));

    let (status, changed) = send(
        http()
            .patch(server.url(&format!("/api/v1/agents/{id}")))
            .bearer_auth(&token)
            .json(&json!({"name": "Helpdesk"})),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!((changed["name"].clone(), changed["llm"].clone()), (json!("Helpdesk"), json!("gpt-4o-mini")));
    assert_eq!(get(&server, &token, &id).await.1["name"], "Helpdesk");

    // The default agent cannot be deleted; another can, once.
    let (status, _) = send(http().delete(server.url("/api/v1/agents/default")).bearer_auth(&token)).await;
    assert_eq!(status, 409);
    let (status, _) = send(http().delete(server.url(&format!("/api/v1/agents/{id}"))).bearer_auth(&token)).await;
    assert_eq!(status, 204);
    assert_eq!(get(&server, &token, &id).await.0, 404);
    let (status, _) = send(http().delete(server.url(&format!("/api/v1/agents/{id}"))).bearer_auth(&token)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn security_agent_management_is_refused_to_third_party_tokens_and_without_agents_all() {
    let server = Server::start();
    let flow = Flow::signup(&server, "tp-agents@example.com").await;
    // A DCR client is THIRD_PARTY: agents-all is dropped from what it asks; agents-use stays.
    let (_, t) = flow.login_client("agents-all agents-use").await;
    assert!(!t.scope.contains("agents-all"), "{}", t.scope);
    let res = http()
        .post(server.url("/api/v1/agents"))
        .bearer_auth(&t.access)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope") && challenge.contains("agents-all"), "{challenge}");
    // It may list and read (agents-use) …
    let ids = list_ids(&server, &t.access).await;
    assert_eq!(ids.len(), 1, "the default agent");
    // … but not change or delete.
    let (status, _) =
        send(http().patch(server.url("/api/v1/agents/default")).bearer_auth(&t.access).json(&json!({"name": "y"})))
            .await;
    assert_eq!(status, 403);

    // A white-label token without agents-all: refused too.
    let wl = whitelabel_token(&server, &flow, "agents-use account", &[]).await;
    assert_eq!(create(&server, &wl, json!({"name": "x"})).await.0, 403);
    // An operator token acts for no account; a PAT is not a white-label client's.
    let op = operator_token(&server);
    assert_eq!(create(&server, &op, json!({"name": "x"})).await.0, 403);
    let pat =
        crate::security_pats::browser_pat(&server, &flow, json!({"name": "p", "scopes": ["agents-all", "agents-use"]}))
            .await;
    let (status, body) = create(&server, pat["token"].as_str().unwrap(), json!({"name": "x"})).await;
    assert_eq!(status, 403, "{body}");
    // Nothing was created by any of them.
    assert_eq!(list_ids(&server, &t.access).await.len(), 1);
    // A token with neither agent scope may not even list.
    let (_, none) = flow.login_client("account").await;
    let (status, _) = send(http().get(server.url("/api/v1/agents")).bearer_auth(&none.access)).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn security_allowed_agent_ids_hide_other_agents_and_default_outside_the_list() {
    let server = Server::start();
    let flow = Flow::signup(&server, "restricted-agents@example.com").await;
    let token = whitelabel_token(&server, &flow, WL_SCOPES, &[]).await;
    let a1 = create(&server, &token, json!({"name": "one"})).await.1["id"].as_str().unwrap().to_owned();
    let a2 = create(&server, &token, json!({"name": "two"})).await.1["id"].as_str().unwrap().to_owned();

    // A white-label token restricted to a1.
    let only = format!("[\"{a1}\"]");
    let restricted = whitelabel_token(&server, &flow, WL_SCOPES, &[("agent_ids", &only)]).await;
    assert_eq!(list_ids(&server, &restricted).await, vec![a1.clone()]);
    assert_eq!(get(&server, &restricted, &a1).await.0, 200);
    let (status, body) = get(&server, &restricted, &a2).await;
    assert_eq!(status, 404);
    let (_, unknown) = get(&server, &restricted, "agt_doesnotexist").await;
    assert_eq!(body, unknown, "outside the list answers exactly like an unknown id");
    assert_eq!(get(&server, &restricted, "default").await.0, 404, "default resolves outside the list");
    let patched =
        http().patch(server.url(&format!("/api/v1/agents/{a2}"))).bearer_auth(&restricted).json(&json!({"name": "z"}));
    assert_eq!(send(patched).await.0, 404);
    assert_eq!(send(http().delete(server.url(&format!("/api/v1/agents/{a2}"))).bearer_auth(&restricted)).await.0, 404);
    let res = chat(&server, &restricted, &a2, json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(res.status(), 404);
    assert_eq!(get(&server, &token, &a2).await.1["name"], "two", "nothing changed");

    // The same through a PAT: `agent_ids` at creation.
    let pat = crate::security_pats::browser_pat(
        &server,
        &flow,
        json!({"name": "p", "scopes": ["agents-use", "universal-mcp-read-write"], "agent_ids": [a2.clone()]}),
    )
    .await;
    let pat = pat["token"].as_str().unwrap();
    assert_eq!(list_ids(&server, pat).await, vec![a2.clone()]);
    assert_eq!(get(&server, pat, &a1).await.0, 404);

    // Another account's agent is not found either.
    let other = Flow::signup(&server, "other-agents@example.com").await;
    let other_token = whitelabel_token(&server, &other, WL_SCOPES, &[]).await;
    let (status, body) = get(&server, &other_token, &a1).await;
    assert_eq!(status, 404);
    assert_eq!(body, unknown);
}

#[tokio::test]
async fn agent_validation_errors_name_the_field_and_change_nothing() {
    let server = Server::start();
    let flow = Flow::signup(&server, "agent-validation@example.com").await;
    let token = whitelabel_token(&server, &flow, WL_SCOPES, &[]).await;
    let cases = [
        (json!({"llm": "m"}), "name"),
        (json!({"name": "a", "temperature": 5}), "temperature"),
        (json!({"name": "a", "enabledBuiltInTools": ["use-agent"]}), "enabledBuiltInTools"),
        (json!({"name": "a", "colour": "red"}), "colour"),
        (json!({"name": "a", "usageLimits": {"monthlyCreditsCap": -1}}), "usageLimits.monthlyCreditsCap"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "a", "personality": "p".repeat(8001)}), "personality"),
    ];
    for (body, field) in cases {
        let (status, p) = create(&server, &token, body.clone()).await;
        assert_eq!(status, 400, "{body}: {p}");
        assert_eq!(p["field"], field, "{body}: {p}");
    }
    // An unknown billing type is refused by the typed body (serde names the variant, not the field).
    assert_eq!(create(&server, &token, json!({"name": "a", "billingAccountType": "team"})).await.0, 400);
    let (status, _) =
        send(http().patch(server.url("/api/v1/agents/default")).bearer_auth(&token).json(&json!({"temperature": -1})))
            .await;
    assert_eq!(status, 400);
    let ids = list_ids(&server, &token).await;
    assert_eq!(ids.len(), 1, "only the default agent: {ids:?}");
    assert_eq!(get(&server, &token, "default").await.1["temperature"], Value::Null);
}

#[tokio::test]
async fn without_a_language_model_use_agent_and_agent_chat_say_so() {
    let server = Server::start();
    let flow = Flow::signup(&server, "no-model@example.com").await;
    let token = whitelabel_token(&server, &flow, WL_SCOPES, &[]).await;

    // use-agent is listed, and answers (reference 000, step 5: X-Response-Format: json) with the error.
    let list: Value = flow.mcp(&token, "tools/list", json!({})).await.json().await.unwrap();
    let names: Vec<&str> =
        list["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"use-agent"), "{names:?}");
    let res = flow
        .mcp(
            &token,
            "tools/call",
            json!({"name": "use-agent", "arguments": {"prompt": "What's on my calendar today?"}}),
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["result"]["isError"], true, "{v}");
    let text = v["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("no language model is configured"), "{text}");
    // Bad arguments are named, whatever the model.
    let v: Value =
        flow.mcp(&token, "tools/call", json!({"name": "use-agent", "arguments": {}})).await.json().await.unwrap();
    // (No MCP-Protocol-Version: 2025-03-26, where invalid arguments are a JSON-RPC error.)
    assert_eq!(v["error"]["code"], -32602, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("prompt"), "{v}");

    // Agent chat: 503 with the same words, never a fake answer.
    let res = chat(&server, &token, "default", json!({"messages": [{"role": "user", "content": "hello"}]})).await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let p: Value = res.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("no language model is configured"), "{p}");
    // Request errors come first, and are named.
    for (body, field) in [
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "system", "content": "x"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "assistant", "content": "x"}]}), "messages"),
        (json!({"messages": [{"role": "user", "content": "x"}], "stream": true}), "stream"),
        (json!({"messages": [{"role": "user", "content": "x"}], "conversationId": "no spaces"}), "conversationId"),
    ] {
        let res = chat(&server, &token, "default", body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["field"], field, "{body}");
    }
    // A token without an agent scope may not chat.
    let (_, plain) = flow.login_client("universal-mcp-read-write").await;
    let res = chat(&server, &plain.access, "default", json!({"messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 403);
}
