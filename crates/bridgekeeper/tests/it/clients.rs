//! White-label and third-party clients: the auth-clients API, roles, branding, secrets.

use serde_json::{Value, json};

use crate::harness::{Flow, PNG_DATA_URI, Server, operator_token, query_param, whoami};

const CB: &str = "http://127.0.0.1:53682/callback";

fn reference_body() -> Value {
    // Reference 000, Step 1, verbatim — with a real image in place of YOUR_LOGO.
    let body = r##"{
"name": "YourApp",
"type": "confidential",
"roles": ["whitelabel-customer"],
"domains": ["yourapp.com"],
"redirectUris": [
"https://yourapp.com/auth/callback",
"https://yourapp.com/connections/callback"
],
"allowedScopes": [
"universal-mcp-read-write",
"agents-all",
"llm-all",
"connections",
"account",
"openid",
"profile",
"email"
],
"branding": {
"logo": "data:image/png;base64,YOUR_LOGO",
"description": "YourApp — AI-powered workspace",
"brandColor": "#4F46E5"
}
}"##;
    serde_json::from_str(&body.replace("data:image/png;base64,YOUR_LOGO", PNG_DATA_URI)).unwrap()
}

async fn post_client(server: &Server, token: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(server.url("/api/v1/auth-clients")).bearer_auth(token).json(body).send().await.unwrap()
}

/// A white-label confidential client with a loopback redirect, created by the operator.
async fn whitelabel(server: &Server, op: &str) -> (String, String) {
    let mut body = reference_body();
    body["redirectUris"] = json!(["https://yourapp.com/auth/callback", CB]);
    let res = post_client(server, op, &body).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (v["clientId"].as_str().unwrap().to_owned(), v["clientSecret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn reference_000_body_creates_whitelabel_client() {
    let server = Server::start();
    let op = operator_token(&server);
    let res = post_client(&server, &op, &reference_body()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let v: Value = res.json().await.unwrap();
    assert!(v["clientId"].as_str().unwrap().starts_with("cli_"));
    assert!(v["clientSecret"].as_str().unwrap().starts_with("bks_"));
    let c = &v["client"];
    assert_eq!(c["roles"], json!(["whitelabel-customer"]));
    assert_eq!(c["type"], "confidential");
    assert_eq!(c["domains"], json!(["yourapp.com"]));
    assert!(c["allowedScopes"].as_array().unwrap().iter().any(|s| s == "agents-all"));
    assert_eq!(c["branding"]["brandColor"], "#4F46E5");
    assert!(
        c.get("clientSecret").is_none() && !c.to_string().contains("bks_"),
        "the secret appears once, outside the client view"
    );
    // Read back: list and get show no secret either.
    let id = v["clientId"].as_str().unwrap();
    let got: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/auth-clients/{id}")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["name"], "YourApp");
    assert!(!got.to_string().contains("bks_"));
}

#[tokio::test]
async fn whitelabel_requires_operator_and_domains() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "owner@example.com").await;
    let (_, t) = flow.login_client("account universal-mcp-read").await;
    // A person may not mint a white-label client.
    let res = post_client(&server, &t.access, &reference_body()).await;
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // No domains, or a redirect off the domains: refused, naming the field.
    let mut body = reference_body();
    body["domains"] = json!([]);
    let res = post_client(&server, &op, &body).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "domains");
    let mut body = reference_body();
    body["redirectUris"] = json!(["https://evil.example/cb"]);
    let res = post_client(&server, &op, &body).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "redirectUris");
    // No token at all.
    let res =
        reqwest::Client::new().post(server.url("/api/v1/auth-clients")).json(&reference_body()).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn bad_client_bodies_name_the_field_and_change_nothing() {
    let server = Server::start();
    let op = operator_token(&server);
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            {
                let mut b = reference_body();
                b["branding"]["brandColor"] = json!("blue");
                b
            },
            400,
            "branding.brandColor",
        ),
        (
            {
                let mut b = reference_body();
                b["branding"]["logo"] = json!("data:text/html;base64,PHNjcmlwdD4=");
                b
            },
            400,
            "branding.logo",
        ),
        (
            {
                let mut b = reference_body();
                b["branding"]["logo"] = json!("data:image/png;base64,PHNjcmlwdD4=");
                b
            },
            400,
            "branding.logo",
        ),
        (
            {
                let mut b = reference_body();
                b["branding"]["description"] = json!("x".repeat(501));
                b
            },
            400,
            "branding.description",
        ),
        (
            {
                let mut b = reference_body();
                b["type"] = json!("secret");
                b
            },
            400,
            "type",
        ),
        (
            {
                let mut b = reference_body();
                b["roles"] = json!(["admin"]);
                b
            },
            400,
            "roles",
        ),
        (
            {
                let mut b = reference_body();
                b["unexpected"] = json!(1);
                b
            },
            400,
            "unexpected",
        ),
        (
            {
                let mut b = reference_body();
                b["name"] = json!("");
                b
            },
            400,
            "name",
        ),
    ];
    for (body, status, field) in cases {
        let res = post_client(&server, &op, &body).await;
        assert_eq!(res.status().as_u16(), status, "{field}");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["field"], field, "{v}");
    }
    // A logo over 2 MB: 413 with the limit stated.
    let big = format!("data:image/png;base64,{}", "A".repeat(3 * 1024 * 1024));
    let mut body = reference_body();
    body["branding"]["logo"] = json!(big);
    let res = post_client(&server, &op, &body).await;
    assert_eq!(res.status(), 413);
    assert!(res.text().await.unwrap().contains("2 MB"));
    let list: Value = reqwest::Client::new()
        .get(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["clients"].as_array().unwrap().len(), 0, "nothing was created");
}

#[tokio::test]
async fn scopes_by_role_and_unknown_scopes_dropped() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "roles@example.com").await;
    // White-label: may get agents-all.
    let (wl, wl_secret) = whitelabel(&server, &op).await;
    let t = flow.login_with(&wl, Some(&wl_secret), CB, "agents-all universal-mcp-read bogus", &[]).await;
    assert_eq!(t["scope"], "universal-mcp-read agents-all");
    // Third party (created by the operator with agents-all requested): never agents-all.
    let res = post_client(
        &server,
        &op,
        &json!({
            "name": "Tool", "type": "public", "roles": ["third-party"], "redirectUris": [CB],
            "allowedScopes": ["agents-all", "universal-mcp-read", "made-up"]
        }),
    )
    .await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["client"]["allowedScopes"], json!(["universal-mcp-read"]));
    let tp = v["clientId"].as_str().unwrap();
    let t = flow.login_with(tp, None, CB, "agents-all universal-mcp-read", &[]).await;
    assert_eq!(t["scope"], "universal-mcp-read");
    // Nothing grantable: invalid_scope.
    let res = flow.http.get(flow.authorize_url(tp, CB, "agents-all llm-all", "s")).send().await.unwrap();
    let loc = crate::harness::location(&res);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_scope"));
}

#[tokio::test]
async fn restrictions_survive_two_refreshes_and_reach_tools() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "restrict@example.com").await;
    let (wl, secret) = whitelabel(&server, &op).await;
    let t = flow
        .login_with(
            &wl,
            Some(&secret),
            CB,
            "universal-mcp-read-write",
            &[
                ("provider_permissions", r#"{"google":"read-write","slack":"read"}"#),
                ("default_provider_permission", "disabled"),
                ("agent_ids", r#"["agent_1","agent_2"]"#),
                ("knowledge_base_ids", r#"["kb_1"]"#),
            ],
        )
        .await;
    let check = |who: Value| {
        assert_eq!(who["provider_permissions"], json!({"google": "read-write", "slack": "read"}), "{who}");
        assert_eq!(who["default_provider_permission"], "disabled");
        assert_eq!(who["agent_ids"], json!(["agent_1", "agent_2"]));
        assert_eq!(who["knowledge_base_ids"], json!(["kb_1"]));
    };
    let (s, who) = whoami(&server.base, t["access_token"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    check(who);
    let mut refresh = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let res = reqwest::Client::new()
            .post(server.url("/api/v1/auth/token"))
            .basic_auth(&wl, Some(&secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        refresh = v["refresh_token"].as_str().unwrap().to_owned();
        check(whoami(&server.base, v["access_token"].as_str().unwrap()).await.1);
    }
    // Malformed restrictions are refused at authorization, naming the parameter.
    let mut u = url::Url::parse(&flow.authorize_url(&wl, CB, "universal-mcp-read", "s")).unwrap();
    u.query_pairs_mut().append_pair("provider_permissions", r#"{"google":"admin"}"#);
    let res = flow.http.get(u.as_str()).send().await.unwrap();
    let loc = crate::harness::location(&res);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("invalid_request"));
    assert!(query_param(&loc, "error_description").unwrap().contains("provider_permissions.google"));
}

#[tokio::test]
async fn validate_previews_the_consent_screen() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "preview@example.com").await;
    let (wl, _) = whitelabel(&server, &op).await;
    let mut u = url::Url::parse(&flow.authorize_url(&wl, CB, "universal-mcp-read account", "s")).unwrap();
    u.set_path("/api/v1/auth/validate");
    u.query_pairs_mut().append_pair("agent_ids", r#"["a1"]"#);
    let v: Value = reqwest::get(u.as_str()).await.unwrap().json().await.unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["client"]["name"], "YourApp");
    assert_eq!(v["client"]["branding"]["brandColor"], "#4F46E5");
    assert_eq!(v["scopes"].as_array().unwrap().len(), 2);
    assert_eq!(v["agentIds"], json!(["a1"]));
    u.query_pairs_mut().append_pair("code_challenge_method", "plain");
    let res = reqwest::get(u.as_str()).await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["valid"], false);
}

#[tokio::test]
async fn secret_rotation_invalidates_old_secret_at_once() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "rotate@example.com").await;
    let (wl, old) = whitelabel(&server, &op).await;
    let t = flow.login_with(&wl, Some(&old), CB, "universal-mcp-read", &[]).await;
    let refresh = |secret: String, token: String| {
        let (url, id) = (server.url("/api/v1/auth/token"), wl.clone());
        async move {
            reqwest::Client::new()
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .unwrap()
        }
    };
    // The old secret is now in the fast path (verified twice).
    let r1 = refresh(old.clone(), t["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(r1.status(), 200);
    let next: Value = r1.json().await.unwrap();
    let res = reqwest::Client::new()
        .put(server.url(&format!("/api/v1/auth-clients/{wl}/secret")))
        .bearer_auth(&op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let new = res.json::<Value>().await.unwrap()["clientSecret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    let token = next["refresh_token"].as_str().unwrap().to_owned();
    let stale = refresh(old.clone(), token.clone()).await;
    assert_eq!(stale.status(), 401, "the old secret stops working at once");
    let fresh = refresh(new, token).await;
    assert_eq!(fresh.status(), 200, "and the refresh token was not consumed by the refused attempt");
}

#[tokio::test]
async fn cross_account_client_probes_404() {
    let server = Server::start();
    let alice = Flow::signup(&server, "alice@example.com").await;
    let bob = Flow::signup(&server, "bob@example.com").await;
    let (_, ta) = alice.login_client("account").await;
    let (_, tb) = bob.login_client("account").await;
    let res =
        post_client(&server, &ta.access, &json!({"name": "Alice's tool", "type": "public", "redirectUris": [CB]}))
            .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["clientId"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let theirs =
        http.get(server.url(&format!("/api/v1/auth-clients/{id}"))).bearer_auth(&tb.access).send().await.unwrap();
    let none = http.get(server.url("/api/v1/auth-clients/cli_nope")).bearer_auth(&tb.access).send().await.unwrap();
    assert_eq!((theirs.status().as_u16(), none.status().as_u16()), (404, 404));
    assert_eq!(theirs.text().await.unwrap(), none.text().await.unwrap(), "no existence oracle");
    let res =
        http.delete(server.url(&format!("/api/v1/auth-clients/{id}"))).bearer_auth(&tb.access).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = http
        .put(server.url(&format!("/api/v1/auth-clients/{id}/secret")))
        .bearer_auth(&tb.access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let list: Value = http
        .get(server.url("/api/v1/auth-clients"))
        .bearer_auth(&tb.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["clients"], json!([]));
    // The owner still sees it; deleting it works.
    let res =
        http.delete(server.url(&format!("/api/v1/auth-clients/{id}"))).bearer_auth(&ta.access).send().await.unwrap();
    assert_eq!(res.status(), 204);
}

#[tokio::test]
async fn branding_shown_and_escaped_on_pages() {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "brand@example.com").await;
    let mut body = reference_body();
    body["name"] = json!("Acme <script>alert(1)</script>");
    body["branding"]["description"] = json!("<img src=x onerror=alert(2)> workspace");
    body["redirectUris"] = json!([CB]);
    let v: Value = post_client(&server, &op, &body).await.json().await.unwrap();
    let id = v["clientId"].as_str().unwrap();
    // Login page reached from the authorize request, in a fresh browser.
    let fresh = crate::harness::client();
    let res = fresh.get(flow.authorize_url(id, CB, "universal-mcp-read", "s")).send().await.unwrap();
    let login = fresh.get(server.url(&crate::harness::location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("class=\"brand-logo\""), "{login}");
    assert!(login.contains(&format!("/static/brand/{id}.css")));
    assert!(login.contains("Acme &lt;script&gt;"), "escaped: {login}");
    assert!(!login.contains("<script>alert(1)"));
    assert!(!login.contains("<img src=x"));
    let css = reqwest::get(server.url(&format!("/static/brand/{id}.css"))).await.unwrap().text().await.unwrap();
    assert!(css.contains("--brand: #4F46E5"), "{css}");
    // Third-party clients get Bridgekeeper's own look.
    assert_eq!(reqwest::get(server.url("/static/brand/cli_nope.css")).await.unwrap().status(), 404);
}
