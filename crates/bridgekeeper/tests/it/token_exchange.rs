//! RFC 8693 token exchange: a confidential client an operator made and allowed the grant trades a
//! person's access token for a narrower one (scopes within it, one audience of this server, no
//! longer life, the same session, `act` naming the client), and nothing wider: every refusal with
//! the RFC's error, and the exchanged token dies with the session, the client or its grant.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

use crate::harness::{Flow, Server, VERIFIER, jwt_parts, operator_token, query_param};
use crate::machine_clients::{MachineKey, now, operator_client, post_form};

const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const SUBJECT_SCOPE: &str = "universal-mcp-read-write connections account openid";

/// A person, the app they signed in to (a registered public client) and its tokens; an operator's
/// client allowed to exchange, with its secret.
struct Setup {
    server: Server,
    op: String,
    flow: Flow,
    subject: String,
    refresh: String,
    app: String,
    exchanger: String,
    secret: String,
}

async fn setup() -> Setup {
    let server = Server::start();
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "person@example.com").await;
    let (app, tokens) = flow.login_client(SUBJECT_SCOPE).await;
    let (exchanger, secret) = operator_client(
        &server,
        &op,
        json!({"name": "downstream gateway", "grantTypes": [EXCHANGE], "allowedScopes": ["universal-mcp-read-write",
            "universal-mcp-read", "connections", "account", "openid"]}),
    )
    .await;
    Setup { server, op, flow, subject: tokens.access, refresh: tokens.refresh, app, exchanger, secret: secret.unwrap() }
}

impl Setup {
    /// An exchange of `subject` by the exchanging client with `extra` parameters: status and JSON.
    async fn exchange(&self, subject: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        self.exchange_as(&self.exchanger, &self.secret, subject, extra).await
    }

    async fn exchange_as(&self, id: &str, secret: &str, subject: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut form = vec![("grant_type", EXCHANGE), ("subject_token", subject), ("subject_token_type", ACCESS_TOKEN)];
        form.extend_from_slice(extra);
        post_form(&self.server, "/api/v1/auth/token", &form, Some((id, secret))).await
    }

    fn mcp(&self) -> String {
        format!("{}/mcp", self.server.issuer)
    }
}

/// A JSON-RPC request on /mcp: HTTP status and answer.
async fn mcp(server: &Server, token: &str, method: &str, params: Value) -> (u16, Value) {
    let res = reqwest::Client::new()
        .post(server.url("/mcp"))
        .bearer_auth(token)
        .header("Accept", "application/json, text/event-stream")
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or_default())
}

async fn whoami(server: &Server, token: &str) -> (u16, Value) {
    mcp(server, token, "tools/call", json!({"name": "whoami", "arguments": {}})).await
}

async fn eventually<F, Fut>(secs: u64, what: &str, f: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn error(v: &(u16, Value)) -> (u16, &str) {
    (v.0, v.1["error"].as_str().unwrap_or(""))
}

#[tokio::test]
async fn token_exchange_narrows_a_persons_token_for_an_allowed_client() {
    let s = setup().await;
    let subject = jwt_parts(&s.subject).1;
    let (status, v) = s.exchange(&s.subject, &[("scope", "universal-mcp-read"), ("resource", &s.mcp())]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["issued_token_type"], ACCESS_TOKEN);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "universal-mcp-read");
    assert!(v.get("refresh_token").is_none(), "no refresh token: {v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let claims = jwt_parts(&token).1;
    assert_eq!(claims["sub"], subject["sub"], "it acts for the same person");
    assert_eq!(claims["sid"], subject["sid"], "on the same session");
    assert_eq!(claims["client_id"], s.exchanger, "RFC 9068: the client that asked");
    assert_eq!(claims["act"], json!({"sub": s.exchanger}), "RFC 8693 §4.1");
    assert_eq!(claims["aud"], s.mcp());
    assert!(claims["exp"].as_i64().unwrap() <= subject["exp"].as_i64().unwrap(), "no longer than the subject");
    assert!(v["expires_in"].as_i64().unwrap() <= subject["exp"].as_i64().unwrap() - now() + 1);
    // It lists tools and may not call them (read only).
    assert_eq!(mcp(&s.server, &token, "tools/list", json!({})).await.0, 200);
    let (status, _) = whoami(&s.server, &token).await;
    assert_eq!(status, 403, "universal-mcp-read does not call tools");
    // Introspection tells the exchanging client, with the actor; the person's app learns nothing of it.
    let (_, v) =
        post_form(&s.server, "/api/v1/auth/introspect", &[("token", &token)], Some((&s.exchanger, &s.secret))).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["act"], json!({"sub": s.exchanger}));
    assert_eq!(v["sid"], subject["sid"]);

    // Without scope and audience: the subject's scopes (never account) and its audience.
    let (status, v) = s.exchange(&s.subject, &[]).await;
    assert_eq!(status, 200, "{v}");
    let all = v["scope"].as_str().unwrap();
    assert!(all.contains("universal-mcp-read-write") && all.contains("connections") && !all.contains("account"), "{v}");
    let wide = v["access_token"].as_str().unwrap().to_owned();
    let (status, v) = whoami(&s.server, &wide).await;
    assert_eq!(status, 200, "{v}");
    let who = &v["result"]["structuredContent"];
    assert_eq!(who["session_id"], subject["sid"]);
    assert_eq!(who["client_id"], s.app, "the context names the person's grant: the app's");
    // The REST API (the issuer as audience).
    let (status, v) = s.exchange(&s.subject, &[("scope", "connections"), ("audience", &s.server.issuer)]).await;
    assert_eq!(status, 200, "{v}");
    let rest = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_parts(&rest).1["aud"], s.server.issuer);
    let res = reqwest::Client::new().get(s.server.url("/api/v1/connections")).bearer_auth(&rest).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = reqwest::Client::new().get(s.server.url("/api/v1/account")).bearer_auth(&rest).send().await.unwrap();
    assert_eq!(res.status(), 403, "no account scope");
    // An exchanged token exchanged again nests the earlier actor.
    let (status, v) = s.exchange(&wide, &[("scope", "universal-mcp-read")]).await;
    assert_eq!(status, 200, "{v}");
    let nested = jwt_parts(v["access_token"].as_str().unwrap()).1;
    assert_eq!(nested["act"], json!({"sub": s.exchanger, "act": {"sub": s.exchanger}}));

    // Audited: who, for whom, which scopes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let v: Value = reqwest::Client::new()
            .get(s.server.url("/api/v1/admin/audit?limit=1000&kind=token.exchanged"))
            .bearer_auth(&s.op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if rows.len() >= 4 || std::time::Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len(), 4, "{rows:?}");
    let first = rows[0].to_string();
    for needed in [s.exchanger.as_str(), subject["sub"].as_str().unwrap(), "universal-mcp-read", s.app.as_str()] {
        assert!(first.contains(needed), "{needed} in {first}");
    }
    assert!(!first.contains(&s.subject), "no token in the audit log");
    let logs = s.server.logs();
    assert!(!logs.contains(&s.subject) && !logs.contains(&token), "no token in the log");
}

#[tokio::test]
async fn security_token_exchange_cannot_widen_scope() {
    let s = setup().await;
    // Scopes outside the subject token, or `account`.
    for scope in ["agents-use", "universal-mcp-read agents-use", "account", "universal-mcp-read account"] {
        let r = s.exchange(&s.subject, &[("scope", scope)]).await;
        assert_eq!(error(&r), (400, "invalid_scope"), "{scope}: {}", r.1);
    }
    // Scopes the exchanging client may not hold, although the subject has them.
    let (narrow, narrow_secret) = operator_client(
        &s.server,
        &s.op,
        json!({"name": "narrow", "grantTypes": [EXCHANGE], "allowedScopes": ["universal-mcp-read"]}),
    )
    .await;
    let narrow_secret = narrow_secret.unwrap();
    let r = s.exchange_as(&narrow, &narrow_secret, &s.subject, &[("scope", "connections")]).await;
    assert_eq!(error(&r), (400, "invalid_scope"), "{}", r.1);
    let r = s.exchange_as(&narrow, &narrow_secret, &s.subject, &[]).await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["scope"], "universal-mcp-read", "the default is what both allow");
    // A token exchanged down cannot be exchanged back up.
    let (_, v) = s.exchange(&s.subject, &[("scope", "universal-mcp-read")]).await;
    let read_only = v["access_token"].as_str().unwrap().to_owned();
    let r = s.exchange(&read_only, &[("scope", "universal-mcp-read-write")]).await;
    assert_eq!(error(&r), (400, "invalid_scope"), "{}", r.1);
    // Targets this server does not serve, or two different ones.
    for extra in [
        vec![("resource", "https://api.other.example/")],
        vec![("audience", "https://api.other.example/")],
        vec![("resource", "https://evil.example/mcp")],
        vec![("resource", "http://127.0.0.1:1/mcp")],
    ] {
        let r = s.exchange(&s.subject, &extra).await;
        assert_eq!(error(&r), (400, "invalid_target"), "{extra:?}: {}", r.1);
    }
    let mcp = s.mcp();
    let r = s.exchange(&s.subject, &[("resource", &mcp), ("audience", &s.server.issuer)]).await;
    assert_eq!(error(&r), (400, "invalid_target"), "{}", r.1);
    // Repeated resources are one request parameter too many.
    let r = s.exchange(&s.subject, &[("resource", &mcp), ("resource", &s.server.issuer)]).await;
    assert_eq!(error(&r), (400, "invalid_request"), "{}", r.1);
    // The exchanged token lives no longer than the subject.
    let (_, v) = s.exchange(&s.subject, &[]).await;
    let exchanged = jwt_parts(v["access_token"].as_str().unwrap()).1;
    assert!(exchanged["exp"].as_i64() <= jwt_parts(&s.subject).1["exp"].as_i64());
}

#[tokio::test]
async fn security_exchanged_token_dies_with_its_session() {
    let s = setup().await;
    let (_, v) = s.exchange(&s.subject, &[("scope", "universal-mcp-read-write")]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&s.server, &token).await.0, 200);
    // The person's app revokes its own session (RFC 7009, its refresh token): both tokens end.
    let (status, _) =
        post_form(&s.server, "/api/v1/auth/revoke", &[("token", &s.refresh), ("client_id", &s.app)], None).await;
    assert_eq!(status, 200);
    eventually(3, "the exchanged token's end", || async { whoami(&s.server, &token).await.0 == 401 }).await;
    assert_eq!(whoami(&s.server, &s.subject).await.0, 401);
    // The dead subject is not exchanged again.
    let r = s.exchange(&s.subject, &[]).await;
    assert_eq!(error(&r), (400, "invalid_request"), "{}", r.1);
    assert!(r.1["error_description"].as_str().unwrap().contains("revoked"), "{}", r.1);

    // The person revoking the app (their apps list) ends an exchanged token the same way.
    let (app, tokens) = s.flow.login_client(SUBJECT_SCOPE).await;
    let (_, v) = s.exchange(&tokens.access, &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&s.server, &token).await.0, 200);
    let sid = jwt_parts(&tokens.access).1["sid"].as_str().unwrap().to_owned();
    let res = s.flow.http.delete(s.flow.url(&format!("/api/v1/sessions/{sid}"))).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    eventually(3, "the exchanged token's end", || async { whoami(&s.server, &token).await.0 == 401 }).await;
    // Revoking an exchanged token (by the client that holds it) ends its session too.
    let (_, tokens) = s.flow.login_client(SUBJECT_SCOPE).await;
    let (_, v) = s.exchange(&tokens.access, &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (status, _) =
        post_form(&s.server, "/api/v1/auth/revoke", &[("token", &token)], Some((&s.exchanger, &s.secret))).await;
    assert_eq!(status, 200);
    eventually(3, "the revoked exchanged token's end", || async { whoami(&s.server, &token).await.0 == 401 }).await;
    assert_eq!(whoami(&s.server, &tokens.access).await.0, 401, "one session, one fate");
    let _ = app;
}

#[tokio::test]
async fn security_token_exchange_needs_an_allowed_client() {
    let s = setup().await;
    // An operator's confidential client without the grant.
    let (plain, plain_secret) = operator_client(
        &s.server,
        &s.op,
        json!({"name": "plain", "grantTypes": ["client_credentials"], "allowedScopes": ["universal-mcp-read"]}),
    )
    .await;
    let r = s.exchange_as(&plain, &plain_secret.unwrap(), &s.subject, &[]).await;
    assert_eq!(error(&r), (400, "unauthorized_client"), "{}", r.1);
    // A registered confidential client.
    let res = reqwest::Client::new()
        .post(s.server.url("/api/v1/auth/register"))
        .json(&json!({"client_name": "registered", "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let r =
        s.exchange_as(v["client_id"].as_str().unwrap(), v["client_secret"].as_str().unwrap(), &s.subject, &[]).await;
    assert_eq!(error(&r), (400, "unauthorized_client"), "{}", r.1);
    // The person's own (public) app: no credentials, no such grant for it.
    let (status, v) = post_form(
        &s.server,
        "/api/v1/auth/token",
        &[
            ("grant_type", EXCHANGE),
            ("client_id", &s.app),
            ("subject_token", &s.subject),
            ("subject_token_type", ACCESS_TOKEN),
        ],
        None,
    )
    .await;
    assert_eq!((status, v["error"].as_str()), (400, Some("unsupported_grant_type")), "{v}");
    // A wrong secret is no client at all.
    let r = s.exchange_as(&s.exchanger, "wrong", &s.subject, &[]).await;
    assert_eq!(error(&r), (401, "invalid_client"));

    // Taking the grant away (or deleting the client) ends the tokens it got by exchange.
    let (_, v) = s.exchange(&s.subject, &[]).await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&s.server, &token).await.0, 200);
    let res = reqwest::Client::new()
        .put(s.server.url(&format!("/api/v1/auth-clients/{}", s.exchanger)))
        .bearer_auth(&s.op)
        .json(&json!({"name": "downstream gateway", "grantTypes": ["client_credentials"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    eventually(3, "the exchanged token's end", || async { whoami(&s.server, &token).await.0 == 401 }).await;
    assert_eq!(whoami(&s.server, &s.subject).await.0, 200, "the person's own token lives on");
    let r = s.exchange(&s.subject, &[]).await;
    assert_eq!(error(&r), (400, "unauthorized_client"), "{}", r.1);
    let res = reqwest::Client::new()
        .put(s.server.url(&format!("/api/v1/auth-clients/{}", s.exchanger)))
        .bearer_auth(&s.op)
        .json(&json!({"name": "downstream gateway", "grantTypes": [EXCHANGE]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, v) = s.exchange(&s.subject, &[]).await;
    assert_eq!(status, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let res = reqwest::Client::new()
        .delete(s.server.url(&format!("/api/v1/auth-clients/{}", s.exchanger)))
        .bearer_auth(&s.op)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    eventually(3, "the deleted client's exchanged token's end", || async { whoami(&s.server, &token).await.0 == 401 })
        .await;
}

/// A DPoP proof by `key` for the token endpoint.
fn dpop_proof(key: &MachineKey, url: &str) -> String {
    let mut jwk = key.jwk.clone();
    for m in ["kid", "use", "alg"] {
        jwk.as_object_mut().unwrap().remove(m);
    }
    key.sign(
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
        json!({"jti": uuid::Uuid::new_v4().to_string(), "htm": "POST", "htu": url, "iat": now()}),
    )
}

#[tokio::test]
async fn security_token_exchange_refuses_what_is_not_a_live_persons_token_of_this_server() {
    let s = setup().await;
    let mut cases: Vec<(String, &str)> =
        vec![("not-a-token".into(), "not an access token"), (s.refresh.clone(), "not an access token")];
    // A PAT.
    let pat = crate::machine_clients::browser_pat(&s.flow).await;
    cases.push((pat, "personal access token"));
    // An unbound machine client's token: nobody to act for.
    let (machine, machine_secret) =
        operator_client(&s.server, &s.op, json!({"name": "m", "grantTypes": ["client_credentials"]})).await;
    let (_, v) = post_form(
        &s.server,
        "/api/v1/auth/token",
        &[("grant_type", "client_credentials")],
        Some((&machine, &machine_secret.unwrap())),
    )
    .await;
    cases.push((v["access_token"].as_str().unwrap().to_owned(), "no account"));
    // Another server's token (same shape, another issuer and key).
    let elsewhere = Server::start();
    let other = Flow::signup(&elsewhere, "elsewhere@example.com").await;
    let (_, foreign) = other.login_client(SUBJECT_SCOPE).await;
    cases.push((foreign.access, "not an access token"));
    // A token whose signature was tampered with.
    let mut parts: Vec<String> = s.subject.split('.').map(str::to_owned).collect();
    let mut claims = jwt_parts(&s.subject).1;
    claims["scope"] = json!("agents-all");
    parts[1] = B64.encode(claims.to_string());
    cases.push((parts.join("."), "not an access token"));
    // A DPoP-bound token (the app proved a key at the token endpoint).
    let key = MachineKey::new("dpop");
    let client = s.flow.register(REDIRECT, SUBJECT_SCOPE).await;
    let back = s.flow.approve(&s.flow.authorize_url(&client, REDIRECT, SUBJECT_SCOPE, "st")).await;
    let code = query_param(&back, "code").unwrap();
    let res = reqwest::Client::new()
        .post(s.server.url("/api/v1/auth/token"))
        .header("DPoP", dpop_proof(&key, &format!("{}/api/v1/auth/token", s.server.issuer)))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", client.as_str()),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP", "{v}");
    cases.push((v["access_token"].as_str().unwrap().to_owned(), "DPoP-bound"));
    for (subject, why) in cases {
        let r = s.exchange(&subject, &[]).await;
        assert_eq!(error(&r), (400, "invalid_request"), "{why}: {}", r.1);
        assert!(r.1["error_description"].as_str().unwrap().contains(why), "{why}: {}", r.1);
    }
    // Parameters this server does not take.
    for (extra, why) in [
        (vec![("actor_token", s.subject.as_str()), ("actor_token_type", ACCESS_TOKEN)], "actor_token"),
        (vec![("requested_token_type", "urn:ietf:params:oauth:token-type:refresh_token")], "requested_token_type"),
    ] {
        let r = s.exchange(&s.subject, &extra).await;
        assert_eq!(error(&r), (400, "invalid_request"), "{why}: {}", r.1);
    }
    let form = [
        ("grant_type", EXCHANGE),
        ("subject_token", s.subject.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
    ];
    let r = post_form(&s.server, "/api/v1/auth/token", &form, Some((&s.exchanger, &s.secret))).await;
    assert_eq!(error(&r), (400, "invalid_request"), "{}", r.1);
    let form = [("grant_type", EXCHANGE), ("subject_token", s.subject.as_str())];
    let r = post_form(&s.server, "/api/v1/auth/token", &form, Some((&s.exchanger, &s.secret))).await;
    assert_eq!(error(&r), (400, "invalid_request"), "{}", r.1);
    // An exchange with a DPoP proof of the exchanging client binds the new token to its key.
    let own = MachineKey::new("own");
    let res = reqwest::Client::new()
        .post(s.server.url("/api/v1/auth/token"))
        .basic_auth(&s.exchanger, Some(&s.secret))
        .header("DPoP", dpop_proof(&own, &format!("{}/api/v1/auth/token", s.server.issuer)))
        .form(&[("grant_type", EXCHANGE), ("subject_token", s.subject.as_str()), ("subject_token_type", ACCESS_TOKEN)])
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["token_type"], "DPoP", "{v}");
    let bound = v["access_token"].as_str().unwrap().to_owned();
    assert!(jwt_parts(&bound).1["cnf"]["jkt"].is_string());
    assert_eq!(whoami(&s.server, &bound).await.0, 401, "a DPoP-bound token is no bearer token");
    // Refusals are audited, without the token.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = reqwest::Client::new()
            .get(s.server.url("/api/v1/admin/audit?limit=1000&kind=token.exchange_refused"))
            .bearer_auth(&s.op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if rows.len() >= 10 {
            assert!(!v.to_string().contains(&s.subject));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "refusals not audited: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An exchanged token reaches no provider the exchanging client may not use, although the person's
/// grant to the app allows it: the two clients' provider lists both apply.
#[tokio::test]
async fn security_exchanged_token_reaches_only_providers_both_clients_may_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("providers.toml");
    std::fs::write(&file, crate::connections::ACME).unwrap();
    let server = Server::start_with(&[("BRIDGEKEEPER_CONNECTIONS__CATALOG_FILE", file.to_str().unwrap())]);
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "providers@example.com").await;
    let (_, tokens) = flow.login_client("connections universal-mcp-read-write").await;
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/connections/initiate"))
        .bearer_auth(&tokens.access)
        .json(&json!({"providerId": "acme", "redirectUrl": REDIRECT, "providerParams": {"apiKey": "acme-key-0123456789"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let listed = |token: String| {
        let url = server.url("/api/v1/connections");
        async move {
            let v: Value =
                reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap();
            v["total"].as_u64().unwrap()
        }
    };
    for (providers, expected) in [(json!(["google"]), 0), (json!(null), 1), (json!(["acme"]), 1)] {
        let (id, secret) = operator_client(
            &server,
            &op,
            json!({"name": "gateway", "grantTypes": [EXCHANGE], "allowedProviders": providers}),
        )
        .await;
        let form = [
            ("grant_type", EXCHANGE),
            ("subject_token", tokens.access.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
            ("scope", "connections"),
        ];
        let (status, v) = post_form(&server, "/api/v1/auth/token", &form, Some((&id, &secret.unwrap()))).await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(listed(v["access_token"].as_str().unwrap().to_owned()).await, expected, "providers {providers}");
    }
    assert_eq!(listed(tokens.access.clone()).await, 1, "the app itself sees its connection");
}

#[tokio::test]
async fn metadata_advertises_the_machine_grants_and_private_key_jwt() {
    let server = Server::start();
    let m: Value =
        reqwest::get(server.url("/.well-known/oauth-authorization-server")).await.unwrap().json().await.unwrap();
    for grant in ["client_credentials", EXCHANGE] {
        assert!(m["grant_types_supported"].as_array().unwrap().iter().any(|g| g == grant), "{grant}: {m}");
    }
    for key in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert!(m[key].as_array().unwrap().iter().any(|g| g == "private_key_jwt"), "{key}: {m}");
    }
    assert_eq!(
        m["token_endpoint_auth_signing_alg_values_supported"],
        json!(["RS256", "PS256", "ES256", "ES384", "EdDSA"])
    );
}
