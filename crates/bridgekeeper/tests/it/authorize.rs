//! The authorization endpoint: redirect URI rules, PKCE, response types, `iss`, 303s, framing.

use crate::harness::{Flow, Server, VERIFIER, challenge, location, query_param};

const CB: &str = "http://127.0.0.1:9/callback";

async fn setup(email: &str) -> (Server, Flow, String) {
    let server = Server::start();
    let flow = Flow::signup(&server, email).await;
    let client_id = flow.register(CB, "universal-mcp-read-write").await;
    (server, flow, client_id)
}

/// A client the operator created (public): its person's consent can be remembered, unlike a
/// dynamically registered client's.
async fn setup_operator_client(email: &str) -> (Server, Flow, String) {
    let server = Server::start();
    let flow = Flow::signup(&server, email).await;
    let op = crate::harness::operator_token(&server);
    let created: serde_json::Value = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&serde_json::json!({"name": "Vetted", "type": "public", "redirectUris": [CB]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["clientId"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned();
    (server, flow, id)
}

fn url_with(flow: &Flow, pairs: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&flow.url("/api/v1/auth/authorize")).unwrap();
    for (k, v) in pairs {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

#[tokio::test]
async fn exact_redirect_match_required_but_loopback_port_may_vary() {
    let (_s, flow, client_id) = setup("a@example.com").await;
    // Different path: refused with an error page, not redirected.
    let bad = flow.authorize_url(&client_id, "http://127.0.0.1:9/callback/evil", "universal-mcp-read", "s");
    let res = flow.http.get(&bad).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());
    // Other port on loopback (RFC 8252 §7.3): accepted, and the code is sent to that port.
    let back = flow
        .approve(&flow.authorize_url(&client_id, "http://127.0.0.1:45678/callback", "universal-mcp-read", "s"))
        .await;
    assert!(back.starts_with("http://127.0.0.1:45678/callback?"), "{back}");
    assert!(query_param(&back, "code").is_some());
}

#[tokio::test]
async fn no_redirect_on_bad_client_or_redirect_uri() {
    let (_s, flow, client_id) = setup("b@example.com").await;
    for url in [
        flow.authorize_url("cli_unknown", CB, "universal-mcp-read", "s"),
        flow.authorize_url(&client_id, "https://attacker.example/cb", "universal-mcp-read", "s"),
        url_with(&flow, &[("response_type", "code"), ("redirect_uri", CB)]),
    ] {
        let res = flow.http.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 400, "{url}");
        assert!(res.headers().get("location").is_none(), "must never redirect: {url}");
        let body = res.text().await.unwrap();
        assert!(body.contains("not valid"), "an error page explains: {body}");
    }
}

#[tokio::test]
async fn implicit_grant_refused() {
    let (_s, flow, client_id) = setup("c@example.com").await;
    let url = url_with(
        &flow,
        &[
            ("response_type", "token"),
            ("client_id", &client_id),
            ("redirect_uri", CB),
            ("state", "xyz"),
            ("code_challenge", &challenge(VERIFIER)),
            ("code_challenge_method", "S256"),
        ],
    );
    let res = flow.http.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let loc = location(&res);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("unsupported_response_type"));
    assert_eq!(query_param(&loc, "state").as_deref(), Some("xyz"));
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(flow.base.as_str()));
    assert!(!loc.contains("access_token"));
}

async fn pkce_error(flow: &Flow, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![("response_type", "code"), ("client_id", client_id), ("redirect_uri", CB), ("state", "s1")];
    pairs.extend_from_slice(extra);
    let res = flow.http.get(url_with(flow, &pairs)).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let loc = location(&res);
    assert!(loc.starts_with(CB), "{loc}");
    assert_eq!(query_param(&loc, "iss").as_deref(), Some(flow.base.as_str()));
    assert!(query_param(&loc, "code").is_none());
    query_param(&loc, "error").unwrap()
}

#[tokio::test]
async fn pkce_missing_challenge_refused() {
    let (_s, flow, client_id) = setup("d@example.com").await;
    assert_eq!(pkce_error(&flow, &client_id, &[]).await, "invalid_request");
    assert_eq!(pkce_error(&flow, &client_id, &[("code_challenge_method", "S256")]).await, "invalid_request");
}

#[tokio::test]
async fn pkce_plain_refused() {
    let (_s, flow, client_id) = setup("e@example.com").await;
    let c = challenge(VERIFIER);
    assert_eq!(
        pkce_error(&flow, &client_id, &[("code_challenge", &c), ("code_challenge_method", "plain")]).await,
        "invalid_request"
    );
}

#[tokio::test]
async fn pkce_absent_method_refused() {
    let (_s, flow, client_id) = setup("f@example.com").await;
    let c = challenge(VERIFIER);
    assert_eq!(pkce_error(&flow, &client_id, &[("code_challenge", &c)]).await, "invalid_request");
}

#[tokio::test]
async fn iss_on_every_authorization_response() {
    let (_s, flow, client_id) = setup("g@example.com").await;
    let ok = flow.approve(&flow.authorize_url(&client_id, CB, "universal-mcp-read", "s-ok")).await;
    assert_eq!(query_param(&ok, "iss").as_deref(), Some(flow.base.as_str()));
    assert_eq!(query_param(&ok, "state").as_deref(), Some("s-ok"));
    let denied = flow.decide(&flow.authorize_url(&client_id, CB, "universal-mcp-read-write", "s-no"), "deny").await;
    assert_eq!(query_param(&denied, "error").as_deref(), Some("access_denied"));
    assert_eq!(query_param(&denied, "iss").as_deref(), Some(flow.base.as_str()));
    assert_eq!(query_param(&denied, "state").as_deref(), Some("s-no"));
    assert!(query_param(&denied, "code").is_none());
}

#[tokio::test]
async fn posts_answer_303() {
    let server = Server::start();
    let flow = Flow::signup(&server, "h@example.com").await; // asserts 303 on sign-up
    let client_id = flow.register(CB, "universal-mcp-read").await;
    // login (fresh browser) and consent are asserted to be 303 inside decide().
    let fresh = Flow { http: crate::harness::client(), ..flow };
    let back = fresh.approve(&fresh.authorize_url(&client_id, CB, "universal-mcp-read", "s")).await;
    assert!(query_param(&back, "code").is_some());
}

#[tokio::test]
async fn pages_refuse_framing() {
    let server = Server::start();
    for path in ["/login", "/signup", "/"] {
        let res = crate::harness::client().get(server.url(path)).send().await.unwrap();
        assert_eq!(res.headers()["x-frame-options"], "DENY", "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }
    let flow = Flow::signup(&server, "i@example.com").await;
    let client_id = flow.register(CB, "universal-mcp-read").await;
    let res = flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read", "s")).send().await.unwrap();
    let consent = flow.http.get(flow.url(&location(&res))).send().await.unwrap();
    assert_eq!(consent.status(), 200);
    assert_eq!(consent.headers()["x-frame-options"], "DENY");
    assert!(consent.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
}

#[tokio::test]
async fn consent_is_remembered_per_client_and_scopes() {
    let (_s, flow, client_id) = setup_operator_client("j@example.com").await;
    // First time: the client is asked.
    let first = flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read", "s")).send().await.unwrap();
    assert!(location(&first).starts_with("/consent?"));
    flow.approve(&flow.authorize_url(&client_id, CB, "universal-mcp-read", "s")).await;
    // Same scopes again: straight back with a code.
    let again = flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read", "s2")).send().await.unwrap();
    let loc = location(&again);
    assert!(loc.starts_with(CB) && query_param(&loc, "code").is_some(), "{loc}");
    // More scopes: asked again.
    let more =
        flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read-write", "s3")).send().await.unwrap();
    assert!(location(&more).starts_with("/consent?"));
}

#[tokio::test]
async fn consent_post_requires_csrf_token() {
    let (_s, flow, client_id) = setup("k@example.com").await;
    let res = flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read", "s")).send().await.unwrap();
    let page = flow.http.get(flow.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    let mut fields: Vec<(String, String)> =
        crate::harness::form_inputs(&page).into_iter().filter(|(k, _)| k != "csrf_token").collect();
    fields.push(("decision".into(), "approve".into()));
    let r = flow.http.post(flow.url("/consent")).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    fields.push(("csrf_token".into(), "forged".into()));
    let r = flow.http.post(flow.url("/consent")).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn client_name_is_escaped_on_the_consent_page() {
    let server = Server::start();
    let flow = Flow::signup(&server, "xss@example.com").await;
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/register"))
        .json(&serde_json::json!({
            "client_name": "<script>alert(1)</script>\"><img src=x onerror=alert(2)>",
            "redirect_uris": [CB],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .unwrap();
    let client_id = res.json::<serde_json::Value>().await.unwrap()["client_id"].as_str().unwrap().to_owned();
    let res = flow.http.get(flow.authorize_url(&client_id, CB, "universal-mcp-read", "s\"><b>")).send().await.unwrap();
    let page = flow.http.get(flow.url(&location(&res))).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(!page.contains("<img src=x"), "{page}");
    assert!(!page.contains("\"><b>"), "{page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;"), "shown as text: {page}");
    assert!(page.contains("registered itself"), "DCR clients carry a warning");
}

#[tokio::test]
async fn remembered_consent_does_not_cover_wider_restrictions() {
    let (_s, flow, client_id) = setup_operator_client("wider@example.com").await;
    let with = |perms: &str| {
        let mut u = url::Url::parse(&flow.authorize_url(&client_id, CB, "universal-mcp-read", "s")).unwrap();
        u.query_pairs_mut()
            .append_pair("provider_permissions", perms)
            .append_pair("default_provider_permission", "disabled");
        u.to_string()
    };
    flow.approve(&with(r#"{"google":"read"}"#)).await;
    // The same request again: remembered.
    let same = flow.http.get(with(r#"{"google":"read"}"#)).send().await.unwrap();
    assert!(location(&same).starts_with(CB));
    // Wider provider permissions with the same scopes: asked again.
    let wider = flow.http.get(with(r#"{"google":"read-write"}"#)).send().await.unwrap();
    assert!(location(&wider).starts_with("/consent?"), "{}", location(&wider));
}
