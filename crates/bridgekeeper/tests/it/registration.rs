//! Dynamic client registration that real clients can live with: identical public registrations
//! reuse one client without spending the limit, unused registrations expire, a client manages its
//! own registration (RFC 7592), and a refusal says what the limit is and when to retry.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, location, on_postgres, query_param};

const CB: &str = "http://127.0.0.1:9/callback";

fn metadata(redirect_uri: &str) -> Value {
    json!({
        "client_name": "Reusing client",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "scope": "universal-mcp-read-write openid",
        "software_id": "example-cli",
        "software_version": "1.2.3",
    })
}

async fn register_from(
    http: &reqwest::Client,
    server: &Server,
    body: &Value,
) -> (u16, Value, reqwest::header::HeaderMap) {
    let res = http.post(server.url("/api/v1/auth/register")).json(body).send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, res.json().await.unwrap_or(Value::Null), headers)
}

async fn register(server: &Server, body: &Value) -> (u16, Value) {
    let (s, v, _) = register_from(&reqwest::Client::new(), server, body).await;
    (s, v)
}

/// A client whose connections come from another loopback address: another source.
fn from_address(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder().local_address(IpAddr::V4(ip)).build().unwrap()
}

async fn configuration(server: &Server, id: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(server.url(&format!("/api/v1/auth/register/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn dynamic_clients(server: &Server) -> Vec<Value> {
    let out = server
        .command()
        .args(["admin", "client", "list", "--dynamic", "--format", "json", "--data-dir"])
        .arg(server.dir.path())
        .output()
        .expect("run admin client list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[tokio::test]
async fn identical_public_registrations_reuse_one_client_without_spending_the_limit() {
    // Default limits: 5 new registrations per minute per source.
    let server = Server::start();
    let mut ids = std::collections::HashSet::new();
    let mut tokens = Vec::new();
    for run in 0..20u16 {
        // A client that picks a free loopback port per run is still the same client (RFC 8252 §7.3).
        let redirect = format!("http://127.0.0.1:{}/callback", 40_000 + run);
        let (status, body) = register(&server, &metadata(&redirect)).await;
        assert_eq!(status, 201, "run {run}: {body}");
        assert_eq!(body["redirect_uris"], json!([redirect]), "the answer names the redirect URI just sent");
        ids.insert(body["client_id"].as_str().unwrap().to_owned());
        let token = body["registration_access_token"].as_str().unwrap().to_owned();
        assert!(token.starts_with("bkr_"), "{body}");
        assert_eq!(
            body["registration_client_uri"],
            server.url(&format!("/api/v1/auth/register/{}", body["client_id"].as_str().unwrap()))
        );
        tokens.push(token);
    }
    assert_eq!(ids.len(), 1, "one client for twenty identical registrations: {ids:?}");
    assert_eq!(dynamic_clients(&server).len(), 1);
    // Each answer carried a new registration access token; only the newest manages the client.
    let id = ids.into_iter().next().unwrap();
    assert_eq!(configuration(&server, &id, &tokens[0]).await.status(), 401);
    assert_eq!(configuration(&server, &id, tokens.last().unwrap()).await.status(), 200);
    // Only the first registration spent the limit: four new, different clients still fit in this minute.
    for n in 0..4 {
        let (status, body) = register(&server, &metadata(&format!("http://127.0.0.1:9/other-{n}"))).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, _) = register(&server, &metadata("http://127.0.0.1:9/one-too-many")).await;
    assert_eq!(status, 429);
    // … while the reused one still answers.
    let (status, body) = register(&server, &metadata(CB)).await;
    assert_eq!((status, body["client_id"].as_str()), (201, Some(id.as_str())));
}

#[tokio::test]
async fn different_redirect_uris_make_different_clients() {
    let server = Server::start();
    let (_, a) = register(&server, &metadata("http://127.0.0.1:9/callback")).await;
    let (_, b) = register(&server, &metadata("http://127.0.0.1:9/elsewhere")).await;
    let (_, c) = register(&server, &metadata("https://app.example/callback")).await;
    let mut other_name = metadata(CB);
    other_name["client_name"] = json!("Another tool");
    let (_, d) = register(&server, &other_name).await;
    let mut other_version = metadata(CB);
    other_version["software_version"] = json!("1.2.4");
    let (_, e) = register(&server, &other_version).await;
    let ids: std::collections::HashSet<_> = [&a, &b, &c, &d, &e].iter().map(|v| v["client_id"].clone()).collect();
    assert_eq!(ids.len(), 5, "{ids:?}");
}

#[tokio::test]
async fn confidential_registration_is_never_reused() {
    let server = Server::start();
    let mut body = metadata(CB);
    body["token_endpoint_auth_method"] = json!("client_secret_basic");
    let (s1, a) = register(&server, &body).await;
    let (s2, b) = register(&server, &body).await;
    assert_eq!((s1, s2), (201, 201));
    assert_ne!(a["client_id"], b["client_id"]);
    assert_ne!(a["client_secret"], b["client_secret"]);
    assert!(a["client_secret"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn reuse_never_crosses_sources_nor_returns_a_deleted_client() {
    let server = Server::start();
    let body = metadata(CB);
    let (_, first) = register(&server, &body).await;
    // The same metadata from another address is another client.
    let (status, other, _) = register_from(&from_address(Ipv4Addr::new(127, 0, 0, 2)), &server, &body).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(first["client_id"], other["client_id"]);
    // Deleted (RFC 7592) clients are never handed out again.
    let id = first["client_id"].as_str().unwrap();
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth/register/{id}")))
        .bearer_auth(first["registration_access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (_, again) = register(&server, &body).await;
    assert_ne!(again["client_id"], first["client_id"]);
}

#[tokio::test]
async fn a_refused_registration_names_the_limit_its_window_and_when_to_retry() {
    let server = Server::start();
    for n in 0..5 {
        assert_eq!(register(&server, &metadata(&format!("http://127.0.0.1:9/cb-{n}"))).await.0, 201);
    }
    let (status, body, headers) =
        register_from(&reqwest::Client::new(), &server, &metadata("http://127.0.0.1:9/cb-6")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"], "too_many_requests");
    assert_eq!(body["limit"], "client_registration");
    assert_eq!(body["limit_max"], 5);
    assert_eq!(body["window_secs"], 60);
    let retry = body["retry_after_secs"].as_u64().unwrap();
    assert!((1..=60).contains(&retry), "{body}");
    assert_eq!(headers["retry-after"].to_str().unwrap(), retry.to_string());
    let text = body["error_description"].as_str().unwrap();
    assert!(text.contains("5 new client registrations per minute") && text.contains(&format!("{retry} s")), "{text}");
    // Nothing was created by the refused request.
    assert_eq!(dynamic_clients(&server).len(), 5);
}

#[tokio::test]
async fn an_unused_registration_is_purged_after_its_time_and_a_used_one_is_not() {
    let server = Server::start_with(&[("BRIDGEKEEPER_REGISTRATION__UNUSED_TTL_SECS", "2")]);
    let flow = Flow::signup(&server, "purge@example.com").await;
    let (_, unused) = register(&server, &metadata("http://127.0.0.1:9/unused")).await;
    let (_, used) = register(&server, &metadata(CB)).await;
    let used_id = used["client_id"].as_str().unwrap().to_owned();
    let back = flow.approve(&flow.authorize_url(&used_id, CB, "universal-mcp-read", "s")).await;
    let tokens = flow.exchange_code(&used_id, CB, &query_param(&back, "code").unwrap()).await;
    let listed = dynamic_clients(&server);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().any(|c| c["client_id"] == used["client_id"] && c["used"] == true), "{listed:?}");
    assert!(listed.iter().any(|c| c["client_id"] == unused["client_id"] && c["used"] == false), "{listed:?}");

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let listed = dynamic_clients(&server);
        if listed.len() == 1 {
            assert_eq!(listed[0]["client_id"], used["client_id"]);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the unused client was not purged: {listed:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The purged client is gone everywhere: authorization refuses it, its token manages nothing.
    let unused_id = unused["client_id"].as_str().unwrap();
    let res = flow
        .http
        .get(flow.authorize_url(unused_id, "http://127.0.0.1:9/unused", "universal-mcp-read", "s"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let token = unused["registration_access_token"].as_str().unwrap();
    assert_eq!(configuration(&server, unused_id, token).await.status(), 401);
    // The used one keeps working.
    assert_eq!(flow.refresh(&used_id, &tokens.refresh).await.status(), 200);
    let op = crate::harness::operator_token(&server);
    let metrics = reqwest::Client::new().get(server.url("/metrics")).bearer_auth(op).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("bridgekeeper_dynamic_clients_purged_total 1\n"), "{text}");
    assert!(text.contains("bridgekeeper_dynamic_registrations_total{outcome=\"created\"} 2\n"), "{text}");
}

#[tokio::test]
async fn rfc7592_read_update_delete_with_the_right_token() {
    let server = Server::start();
    let flow = Flow::signup(&server, "manage@example.com").await;
    let (_, reg) = register(&server, &metadata(CB)).await;
    let id = reg["client_id"].as_str().unwrap().to_owned();
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();

    // Read: the registration as it stands, and the same token back.
    let res = configuration(&server, &id, &token).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let read: Value = res.json().await.unwrap();
    for k in ["client_id", "client_name", "redirect_uris", "grant_types", "token_endpoint_auth_method", "software_id"] {
        assert_eq!(read[k], reg[k], "{k}");
    }
    assert_eq!(read["registration_access_token"], token.as_str());

    // Update: new name and redirect URI, a rotated token; the old one is dead.
    let new_cb = "http://127.0.0.1:9/new-callback";
    let mut update = metadata(new_cb);
    update["client_id"] = json!(id);
    update["client_name"] = json!("Renamed client");
    let res = reqwest::Client::new()
        .put(server.url(&format!("/api/v1/auth/register/{id}")))
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let updated: Value = res.json().await.unwrap();
    assert_eq!(updated["client_name"], "Renamed client");
    assert_eq!(updated["redirect_uris"], json!([new_cb]));
    let new_token = updated["registration_access_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    assert_eq!(configuration(&server, &id, &token).await.status(), 401);
    assert_eq!(configuration(&server, &id, &new_token).await.status(), 200);
    // The authorization endpoint follows the update: the old redirect URI is refused, the new one works.
    let old = flow.http.get(flow.authorize_url(&id, CB, "universal-mcp-read", "s")).send().await.unwrap();
    assert_eq!(old.status(), 400);
    let back = flow.approve(&flow.authorize_url(&id, new_cb, "universal-mcp-read", "s")).await;
    let tokens = flow.exchange_code(&id, new_cb, &query_param(&back, "code").unwrap()).await;
    assert!(!tokens.access.is_empty());

    // An update cannot turn the public client into a confidential one.
    let mut confidential = update.clone();
    confidential["token_endpoint_auth_method"] = json!("client_secret_basic");
    let res = reqwest::Client::new()
        .put(server.url(&format!("/api/v1/auth/register/{id}")))
        .bearer_auth(&new_token)
        .json(&confidential)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_client_metadata");

    // Delete: 204, the client and everything it was granted are gone, the token with them.
    let res = reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth/register/{id}")))
        .bearer_auth(&new_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(configuration(&server, &id, &new_token).await.status(), 401);
    assert_eq!(flow.refresh(&id, &tokens.refresh).await.status(), 401, "the deleted client's grant is revoked");
}

#[tokio::test]
async fn rfc7592_refuses_a_wrong_or_another_clients_token() {
    let server = Server::start();
    let (_, a) = register(&server, &metadata("http://127.0.0.1:9/a")).await;
    let (_, b) = register(&server, &metadata("http://127.0.0.1:9/b")).await;
    let a_id = a["client_id"].as_str().unwrap();
    let b_token = b["registration_access_token"].as_str().unwrap();
    let http = reqwest::Client::new();
    let uri = server.url(&format!("/api/v1/auth/register/{a_id}"));
    let attempts = [
        http.get(&uri).bearer_auth(b_token),
        http.get(&uri).bearer_auth("bkr_wrong"),
        http.get(&uri),
        http.get(server.url("/api/v1/auth/register/cli_doesnotexist")).bearer_auth(b_token),
        http.put(&uri)
            .bearer_auth(b_token)
            .json(&json!({"client_id": a_id, "redirect_uris": ["https://evil.example/cb"]})),
        http.delete(&uri).bearer_auth(b_token),
    ];
    for req in attempts {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401);
        assert_eq!(res.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_token");
    }
    // Nothing changed: a's registration is intact and still managed by a's own token.
    let res = configuration(&server, a_id, a["registration_access_token"].as_str().unwrap()).await;
    let read: Value = res.json().await.unwrap();
    assert_eq!(read["redirect_uris"], json!(["http://127.0.0.1:9/a"]));
}

#[tokio::test]
async fn security_registration_access_token_is_stored_only_as_its_digest() {
    if on_postgres() {
        return; // the file check below reads the embedded database
    }
    let server = Server::start();
    let (_, reg) = register(&server, &metadata(CB)).await;
    let token = reg["registration_access_token"].as_str().unwrap().to_owned();
    let (_, dir) = server.stop();
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("bridgekeeper.db") {
            stored.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(stored.len() > 10_000, "the database files were read");
    let secret_part = token.trim_start_matches("bkr_");
    assert!(!stored.windows(secret_part.len()).any(|w| w == secret_part.as_bytes()), "the token is in the database");
}

#[tokio::test]
async fn security_dynamic_clients_are_asked_for_consent_every_time() {
    let server = Server::start();
    let flow = Flow::signup(&server, "every-time@example.com").await;
    let (_, reg) = register(&server, &metadata(CB)).await;
    let id = reg["client_id"].as_str().unwrap();
    for state in ["first", "second", "third"] {
        let res = flow.http.get(flow.authorize_url(id, CB, "universal-mcp-read", state)).send().await.unwrap();
        assert!(location(&res).starts_with("/consent?"), "{state}: {}", location(&res));
        let back = flow.approve(&flow.authorize_url(id, CB, "universal-mcp-read", state)).await;
        assert!(query_param(&back, "code").is_some());
    }
    // prompt=none cannot skip it either.
    let mut silent = url::Url::parse(&flow.authorize_url(id, CB, "universal-mcp-read", "quiet")).unwrap();
    silent.query_pairs_mut().append_pair("prompt", "none");
    let res = flow.http.get(silent.as_str()).send().await.unwrap();
    let loc = location(&res);
    assert_eq!(query_param(&loc, "error").as_deref(), Some("consent_required"), "{loc}");
}

#[tokio::test]
async fn application_type_decides_which_redirect_uris_a_registration_may_have() {
    let server = Server::start();
    let with = |application_type: &str, uri: &str| {
        let mut m = metadata(uri);
        m["application_type"] = json!(application_type);
        m
    };
    for (t, uri, status) in [
        ("native", "http://127.0.0.1:9/callback", 201),
        ("native", "com.example.app:/callback", 201),
        ("native", "https://app.example/callback", 400),
        ("web", "https://app.example/callback", 201),
        ("web", "http://localhost:9/callback", 400),
        ("desktop", "https://app.example/callback", 400),
    ] {
        let (s, body) = register(&server, &with(t, uri)).await;
        assert_eq!(s, status, "{t} {uri}: {body}");
        if s == 400 {
            assert!(body["error"] == "invalid_redirect_uri" || body["error"] == "invalid_client_metadata", "{body}");
        } else {
            assert_eq!(body["application_type"], t);
        }
    }
}
