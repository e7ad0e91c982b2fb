//! The consent page warns about every client the operator has not vetted — registered by a signed-up
//! person through the management API as much as by dynamic registration — and says who registered
//! it and where it sends the person. An operator's client carries no warning.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, location, operator_token};

/// The consent page `flow` (signed in) is shown for `client_id`.
async fn consent_page(flow: &Flow, client_id: &str, redirect_uri: &str) -> String {
    let res =
        flow.http.get(flow.authorize_url(client_id, redirect_uri, "universal-mcp-read", "s")).send().await.unwrap();
    let to = location(&res);
    assert!(to.starts_with("/consent?"), "{to}");
    flow.http.get(flow.url(&to)).send().await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn consent_warns_about_clients_the_operator_did_not_vet() {
    let server = Server::start();
    // Anyone with an account registers a client that borrows a trusted name.
    let mallory = Flow::signup(&server, "mallory@example.com").await;
    let cb = "https://claude-desktop.evil.example/callback";
    let res = mallory
        .http
        .post(server.url("/api/v1/auth-clients"))
        .json(&json!({"name": "Claude Desktop", "type": "public", "redirectUris": [cb]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let impostor = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();

    let victim = Flow::signup(&server, "victim-consent@example.com").await;
    let page = consent_page(&victim, &impostor, cb).await;
    assert!(page.contains("<strong>Claude Desktop</strong> wants to access your account"), "{page}");
    assert!(page.contains(r#"<p class="warn">"#), "no warning for a person's client:\n{page}");
    assert!(page.contains("registered by <strong>mallory@example.com</strong>"), "{page}");
    assert!(page.contains("not by the operator of this server"), "{page}");
    assert!(page.contains("<strong>claude-desktop.evil.example</strong>: allow it only if"), "{page}");

    // A dynamically registered client: the warning says it registered itself.
    let dcr = victim.register("http://127.0.0.1:9/callback", "universal-mcp-read").await;
    let page = consent_page(&victim, &dcr, "http://127.0.0.1:9/callback").await;
    assert!(page.contains("registered itself automatically (dynamic registration)"), "{page}");
    assert!(page.contains("<strong>127.0.0.1</strong>: allow it only if"), "{page}");

    // A client the operator created: no warning.
    let op = operator_token(&server);
    let ops_cb = "https://app.operator.example/cb";
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({"name": "Operator App", "type": "public", "redirectUris": [ops_cb]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let vetted = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let page = consent_page(&victim, &vetted, ops_cb).await;
    assert!(page.contains("<strong>Operator App</strong> wants to access your account"), "{page}");
    assert!(!page.contains(r#"class="warn""#), "an operator's client is vetted:\n{page}");
}
