//! The provider catalog and the connections API through the real server: providers listed without
//! secrets, an `api_key` connection created, listed, read and deleted, every cross-tenant probe a
//! 404, open redirects and bad input refused, the per-account quota, and a broken catalog stopping
//! the start with the file, provider and field named.

use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, bin};

/// An operator catalog adding an `api_key` provider.
pub(crate) const ACME: &str = r#"
[acme]
name = "Acme CRM"
description = "Deals and contacts"
auth = "api_key"
api_key = { label = "Acme API token", help = "Acme → Settings → API" }
tools = { kind = "http" }
read_tools = ["list_deals"]
"#;

const CLIENT_REDIRECT: &str = "http://127.0.0.1:9/callback";
const SCOPES: &str = "connections providers";

/// A server with the acme catalog file and Google's OAuth app configured through the environment.
fn server(extra: &[(&str, &str)]) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(&file, ACME).unwrap();
    let mut env = vec![
        ("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", file.to_str().unwrap()),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_ID", "google-client-id-123"),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GOOGLE__OAUTH2__CLIENT_SECRET", "google-secret-do-not-show"),
    ];
    env.extend_from_slice(extra);
    (Server::start_with(&env), dir)
}

/// A signed-in tenant's token with `scope`, from a client registered with `CLIENT_REDIRECT`.
async fn tenant(server: &Server, email: &str, scope: &str) -> String {
    let flow = Flow::signup(server, email).await;
    flow.login_client(scope).await.1.access
}

async fn get(server: &Server, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().get(server.url(path)).bearer_auth(token).send().await.unwrap()
}

async fn initiate(server: &Server, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/v1/connections/initiate"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn connect_acme(server: &Server, token: &str, key: &str) -> Value {
    let res = initiate(
        server,
        token,
        json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "providerParams": {"apiKey": key}}),
    )
    .await;
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    res.json().await.unwrap()
}

#[tokio::test]
async fn providers_are_listed_without_secrets() {
    let (server, _dir) = server(&[]);
    let token = tenant(&server, "providers@example.com", SCOPES).await;
    let res = get(&server, &token, "/api/v1/providers").await;
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    assert!(!text.contains("google-secret-do-not-show") && !text.contains("google-client-id-123"), "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = v["providers"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme", "atlassian", "github", "google", "notion", "slack"]);
    let google = get(&server, &token, "/api/v1/providers/google").await.json::<Value>().await.unwrap();
    assert_eq!((google["authKind"].as_str(), google["configured"].as_bool()), (Some("oauth2"), Some(true)));
    assert_eq!(google["scopes"], json!(["openid", "email", "profile"]));
    let github = get(&server, &token, "/api/v1/providers/github").await.json::<Value>().await.unwrap();
    assert_eq!(github["configured"], false);
    assert_eq!(github["tools"]["source"], "mcp");
    let acme = get(&server, &token, "/api/v1/providers/acme").await.json::<Value>().await.unwrap();
    assert_eq!(acme["apiKey"]["label"], "Acme API token");
    assert_eq!(acme["readTools"], json!(["list_deals"]));
    problem(get(&server, &token, "/api/v1/providers/nope").await, 404).await;
    // The scope is required.
    let other = tenant(&server, "no-providers@example.com", "connections").await;
    let p = problem(get(&server, &other, "/api/v1/providers").await, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("providers"));
}

#[tokio::test]
async fn api_key_connection_is_created_listed_read_and_deleted() {
    let (server, _dir) = server(&[]);
    let token = tenant(&server, "apikey@example.com", SCOPES).await;
    let secret_key = "acme_live_5up3r_s3cret";
    let created = connect_acme(&server, &token, &format!("  {secret_key}\n")).await;
    assert!(!created.to_string().contains(secret_key), "the key is never echoed");
    assert_eq!(created["authorizationUrl"], Value::Null);
    assert_eq!(created["providerMetadata"]["name"], "Acme CRM");
    let c = &created["connection"];
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("con_"));
    assert_eq!(
        (c["providerId"].as_str(), c["status"].as_str(), c["canRefresh"].as_bool()),
        (Some("acme"), Some("active"), Some(false))
    );
    let one = get(&server, &token, &format!("/api/v1/connections/{id}")).await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap(), *c);
    let list = get(&server, &token, "/api/v1/connections").await.text().await.unwrap();
    assert!(!list.contains(secret_key));
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!((list["total"].as_u64(), list["page"].as_u64(), list["limit"].as_u64()), (Some(1), Some(1), Some(20)));
    assert_eq!(list["connections"][0]["id"], id.as_str());
    let del = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/connections/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    problem(get(&server, &token, &format!("/api/v1/connections/{id}")).await, 404).await;
    let list: Value = get(&server, &token, "/api/v1/connections").await.json().await.unwrap();
    assert_eq!(list["total"], 0);
    // The key never reached the log.
    assert!(!server.logs().contains(secret_key));
}

#[tokio::test]
async fn api_key_is_sealed_at_rest() {
    if crate::harness::on_postgres() {
        return; // Reads the SQLite file directly.
    }
    let (server, _dir) = server(&[]);
    let token = tenant(&server, "sealed@example.com", SCOPES).await;
    connect_acme(&server, &token, "acme_plaintext_marker_42").await;
    let (_, dir) = server.stop();
    let mut bytes = std::fs::read(dir.path().join("bridgekeeper.db")).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join("bridgekeeper.db-wal")) {
        bytes.extend(wal);
    }
    assert!(!bytes.windows(24).any(|w| w == b"acme_plaintext_marker_42"), "the key is stored only sealed");
}

#[tokio::test]
async fn cross_tenant_connection_ids_are_404_on_every_route() {
    let (server, _dir) = server(&[]);
    let a = tenant(&server, "tenant-a@example.com", SCOPES).await;
    let b = tenant(&server, "tenant-b@example.com", SCOPES).await;
    let id = connect_acme(&server, &a, "acme_key_of_a").await["connection"]["id"].as_str().unwrap().to_owned();
    let missing = "con_0000000000000000000000000000000";
    for probe in [id.as_str(), missing] {
        let read = problem(get(&server, &b, &format!("/api/v1/connections/{probe}")).await, 404).await;
        let del = reqwest::Client::new()
            .delete(server.url(&format!("/api/v1/connections/{probe}")))
            .bearer_auth(&b)
            .send()
            .await
            .unwrap();
        let del = problem(del, 404).await;
        // Another tenant's id answers exactly as a missing one.
        assert_eq!(read["detail"], "connection not found");
        assert_eq!(del["detail"], "connection not found");
    }
    let list: Value = get(&server, &b, "/api/v1/connections").await.json().await.unwrap();
    assert_eq!((list["total"].as_u64(), list["connections"].as_array().map(Vec::len)), (Some(0), Some(0)));
    // A's connection is untouched by B's attempts.
    assert_eq!(get(&server, &a, &format!("/api/v1/connections/{id}")).await.status(), 200);
}

#[tokio::test]
async fn initiate_refuses_unknown_providers_open_redirects_and_missing_settings() {
    let (server, _dir) = server(&[]);
    let token = tenant(&server, "initiate@example.com", SCOPES).await;
    let body = |provider: &str, redirect: &str| json!({"providerId": provider, "redirectUrl": redirect, "providerParams": {"apiKey": "k"}});
    let p = problem(initiate(&server, &token, body("dropbox-business", CLIENT_REDIRECT)).await, 400).await;
    assert_eq!(p["field"], "providerId");
    assert!(p["detail"].as_str().unwrap().contains("dropbox-business"), "{p}");
    for evil in [
        "https://evil.example/steal",
        "http://127.0.0.1:9/other-path",
        "https://127.0.0.1:9/callback",
        "javascript:alert(1)",
        "//evil.example/",
        "not a url",
    ] {
        let p = problem(initiate(&server, &token, body("acme", evil)).await, 400).await;
        assert_eq!(p["field"], "redirectUrl", "{evil}: {p}");
    }
    // The client's own redirect URI (loopback port may vary) and this server's pages are fine.
    for good in ["http://127.0.0.1:4567/callback".to_owned(), format!("{}/connections", server.issuer)] {
        assert_eq!(initiate(&server, &token, body("acme", &good)).await.status(), 201, "{good}");
    }
    let p =
        problem(initiate(&server, &token, json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT})).await, 400)
            .await;
    assert_eq!(p["field"], "providerParams.apiKey");
    let blank = json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "providerParams": {"apiKey": "  "}});
    let p = problem(initiate(&server, &token, blank).await, 400).await;
    assert_eq!(p["field"], "providerParams.apiKey");
    let p = problem(initiate(&server, &token, body("github", CLIENT_REDIRECT)).await, 400).await;
    assert!(p["detail"].as_str().unwrap().contains("connections.providers.github.oauth2.client_id"), "{p}");
    // A configured oauth2 provider: the tenant is sent to it (the flow is tested in connections_oauth2).
    let res = initiate(&server, &token, body("google", CLIENT_REDIRECT)).await;
    assert_eq!(res.status(), 200);
    let url = res.json::<Value>().await.unwrap()["authorizationUrl"].as_str().unwrap().to_owned();
    assert!(url.starts_with("https://accounts.google.com/o/oauth2/v2/auth?"), "{url}");
    assert_eq!(crate::harness::query_param(&url, "client_id").as_deref(), Some("google-client-id-123"));
    let p = problem(
        initiate(&server, &token, json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "extra": 1})).await,
        400,
    )
    .await;
    assert_eq!(p["field"], "extra");
    // Without the scope.
    let other = tenant(&server, "initiate-noscope@example.com", "providers").await;
    problem(initiate(&server, &other, body("acme", CLIENT_REDIRECT)).await, 403).await;
}

#[tokio::test]
async fn listing_filters_sorts_pages_and_checks_its_parameters() {
    let (server, _dir) = server(&[]);
    let token = tenant(&server, "list@example.com", SCOPES).await;
    for i in 0..3 {
        connect_acme(&server, &token, &format!("key-{i}")).await;
    }
    let page: Value = get(&server, &token, "/api/v1/connections?limit=2&page=2&sortBy=createdAt&sortOrder=asc")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((page["total"].as_u64(), page["totalPages"].as_u64()), (Some(3), Some(2)));
    assert_eq!(page["connections"].as_array().unwrap().len(), 1);
    let filtered: Value =
        get(&server, &token, "/api/v1/connections?status=active&provider=acme").await.json().await.unwrap();
    assert_eq!(filtered["total"], 3);
    let none: Value = get(&server, &token, "/api/v1/connections?status=expired").await.json().await.unwrap();
    assert_eq!(none["total"], 0);
    for (query, field) in [
        ("limit=101", "limit"),
        ("limit=0", "limit"),
        ("page=0", "page"),
        ("page=x", "page"),
        ("sortBy=secret", "sortBy"),
        ("sortOrder=up", "sortOrder"),
        ("status=gone", "status"),
        ("createdAfter=yesterday", "createdAfter"),
        ("bogus=1", "bogus"),
    ] {
        let p = problem(get(&server, &token, &format!("/api/v1/connections?{query}")).await, 400).await;
        assert_eq!(p["field"], field, "{query}: {p}");
    }
}

#[tokio::test]
async fn connection_quota_is_enforced() {
    let (server, _dir) = server(&[("BRIDGEKEEPER_LIMITS__MAX_CONNECTIONS_PER_ACCOUNT", "2")]);
    let token = tenant(&server, "quota@example.com", SCOPES).await;
    connect_acme(&server, &token, "k1").await;
    connect_acme(&server, &token, "k2").await;
    let res = initiate(
        &server,
        &token,
        json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "providerParams": {"apiKey": "k3"}}),
    )
    .await;
    let p = problem(res, 409).await;
    assert!(p["detail"].as_str().unwrap().contains("limits.max_connections_per_account"));
}

#[test]
fn a_broken_catalog_stops_the_start_naming_file_provider_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(&file, "[acme]\nname = \"Acme\"\nauth = \"oauth2\"\n[acme.oauth2]\nauthorize_url = \"https://acme.example/authorize\"\ntoken_url = \"http://acme.example/token\"\n").unwrap();
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", &file)
        .env("BRIDGEKEEPER_LOG_FORMAT", "text")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(file.to_str().unwrap())
            && err.contains("provider `acme`")
            && err.contains("field `oauth2.token_url`"),
        "{err}"
    );
    // A typo in the server configuration's provider section is named the same way.
    let out = Command::new(bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
        .env("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__GITHUB__OAUTH2__CLIENT_SECRE", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connections.providers")
            && err.contains("provider `github`")
            && err.contains("field `oauth2.client_secre`"),
        "{err}"
    );
}

/// `list-connections` on `/mcp`: the caller's own connections, in the API's shape, never a key.
async fn list_connections_tool(server: &Server, token: &str) -> Value {
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list-connections", "arguments": {}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    v["result"]["structuredContent"].clone()
}

#[tokio::test]
async fn list_connections_tool_returns_the_callers_connections() {
    let (server, _dir) = server(&[]);
    let scope = "connections universal-mcp-read-write";
    let a = tenant(&server, "mcp-a@example.com", scope).await;
    let b = tenant(&server, "mcp-b@example.com", scope).await;
    let created = connect_acme(&server, &a, "acme_key_for_mcp").await;
    let listed = list_connections_tool(&server, &a).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["connections"][0], created["connection"]);
    assert!(!listed.to_string().contains("acme_key_for_mcp"));
    let other = list_connections_tool(&server, &b).await;
    assert_eq!((other["total"].as_u64(), other["connections"].as_array().map(Vec::len)), (Some(0), Some(0)));
}

/// A grant that disables a provider (or a client that may not use it) cannot see, read, refresh,
/// delete or start connections of that provider through the REST API — the same rule as the
/// `list-connections` tool: such a connection is answered like one that does not exist.
#[tokio::test]
async fn security_a_grant_kept_from_a_provider_cannot_see_or_touch_its_connections() {
    let (server, _dir) = server(&[]);
    let flow = Flow::signup(&server, "reach@example.com").await;
    let full = flow.login_client(SCOPES).await.1.access;
    let id = connect_acme(&server, &full, "acme-key-1").await["connection"]["id"].as_str().unwrap().to_owned();
    // The same person authorizes another app with acme disabled.
    let client_id = flow.register(CLIENT_REDIRECT, SCOPES).await;
    let permissions: String = url::form_urlencoded::byte_serialize(br#"{"acme":"disabled"}"#).collect();
    let authorize =
        format!("{}&provider_permissions={permissions}", flow.authorize_url(&client_id, CLIENT_REDIRECT, SCOPES, "st"));
    let back = flow.approve(&authorize).await;
    let code = crate::harness::query_param(&back, "code").expect("code");
    let kept = flow.exchange_code(&client_id, CLIENT_REDIRECT, &code).await.access;

    let listed: Value = get(&server, &kept, "/api/v1/connections").await.json().await.unwrap();
    assert_eq!(listed["total"], 0, "{listed}");
    assert_eq!(listed["connections"], json!([]));
    let path = format!("/api/v1/connections/{id}");
    problem(get(&server, &kept, &path).await, 404).await;
    let http = reqwest::Client::new();
    let res = http.delete(server.url(&path)).bearer_auth(&kept).send().await.unwrap();
    problem(res, 404).await;
    let res = http.put(server.url(&format!("{path}/refresh"))).bearer_auth(&kept).send().await.unwrap();
    problem(res, 404).await;
    let res = initiate(
        &server,
        &kept,
        json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "providerParams": {"apiKey": "k2"}}),
    )
    .await;
    let p = problem(res, 403).await;
    assert!(p["detail"].as_str().unwrap().contains("acme"), "{p}");
    // The connection is untouched, and the unrestricted app still sees it.
    let listed: Value = get(&server, &full, "/api/v1/connections").await.json().await.unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(get(&server, &full, &path).await.status(), 200);
}

/// Connect flows are counted per account, and callbacks (unauthenticated, each a database write)
/// per source address: beyond the configured rates, 429 with Retry-After.
#[tokio::test]
async fn connects_and_callbacks_are_rate_limited() {
    let (server, _dir) = server(&[
        ("BRIDGEKEEPER_LIMITS__CONNECTS_PER_MINUTE", "2"),
        ("BRIDGEKEEPER_LIMITS__CONNECT_CALLBACKS_PER_SOURCE_PER_MINUTE", "3"),
    ]);
    let token = tenant(&server, "limits@example.com", SCOPES).await;
    let body =
        |key: &str| json!({"providerId": "acme", "redirectUrl": CLIENT_REDIRECT, "providerParams": {"apiKey": key}});
    assert_eq!(initiate(&server, &token, body("k1")).await.status(), 201);
    assert_eq!(initiate(&server, &token, body("k2")).await.status(), 201);
    let res = initiate(&server, &token, body("k3")).await;
    assert!(res.headers().contains_key("retry-after"));
    problem(res, 429).await;
    let other = tenant(&server, "limits-other@example.com", SCOPES).await;
    assert_eq!(initiate(&server, &other, body("k4")).await.status(), 201, "another account has its own count");
    let callback = || reqwest::Client::new().get(server.url("/api/v1/connections/callback?state=made-up")).send();
    for _ in 0..3 {
        assert_ne!(callback().await.unwrap().status(), 429);
    }
    let res = callback().await.unwrap();
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn bridgekeeper_publishes_its_own_client_metadata_document() {
    // On plain http (development) the document is served but not used as a client id (the
    // specification wants an https URL): upstream servers get a dynamic registration instead.
    let server = Server::start();
    let res = reqwest::get(server.url("/.well-known/oauth-client")).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let doc: Value = res.json().await.unwrap();
    assert_eq!(doc["client_id"], format!("{}/.well-known/oauth-client", server.issuer));
    assert_eq!(doc["redirect_uris"], json!([format!("{}/api/v1/connections/callback", server.issuer)]));
    assert_eq!(doc["token_endpoint_auth_method"], "none");
    assert_eq!(doc["grant_types"], json!(["authorization_code", "refresh_token"]));
    assert_eq!(doc["client_name"], "Bridgekeeper");

    // An operator serving it elsewhere (https) names that URL; the document says the same.
    let server = Server::start_with(&[
        ("BRIDGEKEEPER_CONNECTIONS__CLIENT_METADATA_URL", "https://bk.example.com/client.json"),
        ("BRIDGEKEEPER_CONNECTIONS__CLIENT_NAME", "Acme Gateway"),
    ]);
    let doc: Value = reqwest::get(server.url("/.well-known/oauth-client")).await.unwrap().json().await.unwrap();
    assert_eq!(
        (doc["client_id"].as_str(), doc["client_name"].as_str()),
        (Some("https://bk.example.com/client.json"), Some("Acme Gateway"))
    );
}

#[test]
fn a_client_metadata_url_that_is_not_https_or_plain_http_without_the_switch_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &str)]| {
        let mut c = Command::new(bin());
        c.args(["serve", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
            .env("BRIDGEKEEPER_LOG_FORMAT", "text");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run(&[("BRIDGEKEEPER_CONNECTIONS__CLIENT_METADATA_URL", "http://bk.example.com/client.json")]);
    assert!(err.contains("connections.client_metadata_url must be an https URL"), "{err}");
    let err = run(&[("BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK", "true")]);
    assert!(err.contains("connections.allow_http_loopback needs connections.allow_private_addresses"), "{err}");
}

#[tokio::test]
async fn security_a_token_exchange_provider_never_exchanges_an_unverified_email() {
    // The tenant backend trusts the email it is sent: whoever signs up as someone@company would get
    // that person's scoped token. Until the address is verified, nothing is sent to the backend
    // (e2e/connections/exchange.test.mjs connects verified accounts against a real backend).
    let (server, _dir) = server(&[
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__NAME", "Nexus CRM"),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__AUTH", "token_exchange"),
        (
            "BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__TOKEN_EXCHANGE__VERIFY_URL",
            "https://api.nexus.example/auth/verify",
        ),
        ("BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__TOKEN_EXCHANGE__ADMIN_TOKEN", "nexus-admin-do-not-show"),
    ]);
    let token = tenant(&server, "victim@nexus.example", SCOPES).await;
    let res = initiate(&server, &token, json!({"providerId": "nexus", "redirectUrl": CLIENT_REDIRECT})).await;
    assert_eq!(res.status(), 403);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["title"], "Email not verified", "{p}");
    assert!(p["detail"].as_str().unwrap().contains("verify the address first"), "{p}");
    let list = get(&server, &token, "/api/v1/connections").await.json::<Value>().await.unwrap();
    assert_eq!(list["total"], 0);
    assert!(!server.logs().contains("nexus-admin-do-not-show"));
}
