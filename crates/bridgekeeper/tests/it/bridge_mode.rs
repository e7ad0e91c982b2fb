//! Bridge mode (reference 002) through the real binary, with a small real backend in the
//! reference's shape started here ("Nexus": `POST /auth/verify` checks the admin token and answers
//! a token scoped to the user; `GET /leads/search` answers only that user's leads for it, and
//! records which token each call carried). People sign up with a password and verify their email
//! from the outbox. What is proved: each sign-in is verified at consent and carries its own scoped
//! token to its tool calls; refused and unverified people get `access_denied` at the redirect (an
//! unverified address never reaches the backend) and a backend failure `temporarily_unavailable`;
//! the token is never in the JWT, the tool arguments, an answer or the log, and is sealed at rest;
//! a refresh keeps it; a 401 leads to verification at the next refresh (a new token, or the end of
//! the grant); revoking the session deletes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::harness::{Flow, Server, jwt_parts, query_param};

pub(crate) const ADMIN_TOKEN: &str = "nexus-admin-token-never-shown";
pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";
pub(crate) const SCOPE: &str = "universal-mcp-read-write";

/// The company backend (reference 002's Nexus).
#[derive(Default)]
pub(crate) struct Nexus {
    /// Users the backend knows: email → user id.
    pub users: HashMap<String, String>,
    /// The tokens it accepts now: token → user id.
    pub valid: HashMap<String, String>,
    /// Every verify call: (Authorization header, email in the body).
    pub verify_calls: Vec<(String, String)>,
    /// Every leads call: (Authorization header, query string).
    pub lead_calls: Vec<(String, String)>,
    /// Every token it issued.
    pub issued: Vec<String>,
    /// The verify endpoint answers 503.
    pub down: bool,
}

pub(crate) type Shared = Arc<Mutex<Nexus>>;

async fn verify(State(n): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let email = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["email"].as_str().map(str::to_owned));
    let mut n = n.lock().unwrap();
    n.verify_calls.push((auth.clone(), email.clone().unwrap_or_default()));
    if auth != format!("Bearer {ADMIN_TOKEN}") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_admin_token"}))).into_response();
    }
    if n.down {
        return (StatusCode::SERVICE_UNAVAILABLE, "maintenance").into_response();
    }
    let Some(user) = email.and_then(|e| n.users.get(&e).cloned()) else {
        return (StatusCode::FORBIDDEN, axum::Json(json!({"error": "access_denied"}))).into_response();
    };
    let token = format!("nexus_scoped_{user}_{}", n.issued.len() + 1);
    n.issued.push(token.clone());
    n.valid.insert(token.clone(), user.clone());
    axum::Json(json!({"access_token": token, "user_id": user, "expires_in": 86400})).into_response()
}

async fn leads(State(n): State<Shared>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut n = n.lock().unwrap();
    n.lead_calls.push((auth.clone(), q.get("q").cloned().unwrap_or_default()));
    let Some(user) = auth.strip_prefix("Bearer ").and_then(|t| n.valid.get(t).cloned()) else {
        return (StatusCode::UNAUTHORIZED, "invalid token").into_response();
    };
    axum::Json(json!([{"id": format!("lead-of-{user}"), "owner": user, "company": "Initech"}])).into_response()
}

pub(crate) async fn nexus() -> (String, Shared) {
    let state: Shared = Arc::default();
    let app = axum::Router::new()
        .route("/auth/verify", post(verify))
        .route("/leads/search", get(leads))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

/// Bridgekeeper with Nexus bridged, as an operator configures it.
fn server(base: &str) -> Server {
    let env = env_for(base);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env)
}

/// The configuration bridging Nexus at `base`.
pub(crate) fn env_for(base: &str) -> Vec<(String, String)> {
    let p = "BRIDGEKEEPER_CONNECTIONS__PROVIDERS__NEXUS__";
    let tools = format!(
        r#"[{{ name = "search_leads", description = "Search the leads the signed-in user may see", url = "{base}/leads/search", render = "table", input_schema = {{ type = "object", properties = {{ q = {{ type = "string" }} }}, required = ["q"] }} }}]"#
    );
    let env: Vec<(String, String)> = vec![
        (format!("{p}NAME"), "Nexus CRM".into()),
        (format!("{p}AUTH"), "token_exchange".into()),
        (format!("{p}TOKEN_EXCHANGE__VERIFY_URL"), format!("{base}/auth/verify")),
        (format!("{p}TOKEN_EXCHANGE__ADMIN_TOKEN_ENV"), "NEXUS_ADMIN_TOKEN".into()),
        (format!("{p}TOKEN_EXCHANGE__BRIDGE"), "true".into()),
        (format!("{p}TOOLS__KIND"), "http".into()),
        (format!("{p}TOOLS__DEFINITIONS"), tools),
        (format!("{p}READ_TOOLS"), r#"["search_leads"]"#.into()),
        ("NEXUS_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
        ("BRIDGEKEEPER_CONNECTIONS__ALLOW_PRIVATE_ADDRESSES".into(), "true".into()),
        ("BRIDGEKEEPER_CONNECTIONS__ALLOW_HTTP_LOOPBACK".into(), "true".into()),
    ];
    env
}

/// The newest message to `to` in the outbox (log-only mail), quoted-printable undone.
async fn mail_to(server: &Server, to: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dir = server.dir.path().join("outbox");
        let mut files: Vec<_> =
            std::fs::read_dir(&dir).map(|d| d.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
        files.sort();
        for f in files.iter().rev() {
            let raw = std::fs::read_to_string(f).unwrap_or_default().replace("=\r\n", "").replace("=3D", "=");
            if raw.contains(&format!("To: {to}")) && raw.contains("/verify-email?token=") {
                return raw;
            }
        }
        assert!(Instant::now() < deadline, "no verification message to {to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A person who signed up; with `verified`, who followed the verification link too.
pub(crate) async fn person(server: &Server, email: &str, verified: bool) -> Flow {
    let flow = Flow::signup(server, email).await;
    if verified {
        let m = mail_to(server, email).await;
        let start = m.find("/verify-email?token=").unwrap();
        let link = m[start..].split_whitespace().next().unwrap();
        let res = reqwest::get(server.url(link)).await.unwrap();
        assert_eq!(res.status(), 200, "the verification link works");
    }
    flow
}

/// The redirect back to the client after the person approves (a code, or an error).
async fn sign_in(flow: &Flow) -> (String, String) {
    let client_id = flow.register(REDIRECT, SCOPE).await;
    (client_id.clone(), flow.approve(&flow.authorize_url(&client_id, REDIRECT, SCOPE, "st-42")).await)
}

struct Session {
    client_id: String,
    access: String,
    refresh: String,
}

async fn signed_in(flow: &Flow) -> Session {
    let (client_id, back) = sign_in(flow).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code in {back}"));
    let t = flow.exchange_code(&client_id, REDIRECT, &code).await;
    Session { client_id, access: t.access, refresh: t.refresh }
}

/// `tools/call` of `nexus_search_leads`: the whole JSON-RPC answer.
pub(crate) async fn search(flow: &Flow, access: &str, q: &str) -> Value {
    let res = flow.mcp(access, "tools/call", json!({"name": "nexus_search_leads", "arguments": {"q": q}})).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub(crate) fn text_of(answer: &Value) -> String {
    answer["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned()
}

pub(crate) async fn bridge_rows(server: &Server) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM session_bridges").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

async fn sealed_values(server: &Server) -> Vec<Vec<u8>> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    let rows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM session_bridges").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// Nothing the backend issued, nor the admin token, is in the server's log.
pub(crate) fn assert_no_token_logged(server: &Server, n: &Shared) {
    let logs = server.logs();
    assert!(!logs.contains(ADMIN_TOKEN), "the admin token is in the log");
    for t in &n.lock().unwrap().issued {
        assert!(!logs.contains(t.as_str()), "a scoped token is in the log");
    }
}

#[tokio::test]
async fn bridge_mode_each_session_carries_its_own_backend_token_to_its_tool_calls() {
    let (base, n) = nexus().await;
    {
        let mut g = n.lock().unwrap();
        g.users.insert("alice@acme.example".into(), "u-alice".into());
        g.users.insert("bob@acme.example".into(), "u-bob".into());
    }
    let server = server(&base);
    let alice = person(&server, "alice@acme.example", true).await;
    let bob = person(&server, "bob@acme.example", true).await;
    let a = signed_in(&alice).await;
    let b = signed_in(&bob).await;
    {
        let g = n.lock().unwrap();
        assert_eq!(g.verify_calls.len(), 2, "each sign-in was verified once, at consent");
        for (auth, _) in &g.verify_calls {
            assert_eq!(auth, &format!("Bearer {ADMIN_TOKEN}"), "with the operator's admin token");
        }
        let emails: Vec<&str> = g.verify_calls.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(emails, ["alice@acme.example", "bob@acme.example"]);
    }
    let (alice_token, bob_token) = {
        let g = n.lock().unwrap();
        (g.issued[0].clone(), g.issued[1].clone())
    };
    // The tool is listed with only the user's own arguments.
    let list: Value = alice.mcp(&a.access, "tools/list", json!({})).await.json().await.unwrap();
    let tool = list["result"]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "nexus_search_leads").cloned();
    let tool = tool.unwrap_or_else(|| panic!("nexus_search_leads listed: {list}"));
    assert_eq!(tool["inputSchema"]["properties"].as_object().unwrap().keys().collect::<Vec<_>>(), ["q"]);
    // Each session's calls carry that session's token, whoever calls first.
    let ra = search(&alice, &a.access, "initech").await;
    let rb = search(&bob, &b.access, "initech").await;
    let ra2 = search(&alice, &a.access, "globex").await;
    assert!(text_of(&ra).contains("lead-of-u-alice") && !text_of(&ra).contains("u-bob"), "{ra}");
    assert!(text_of(&rb).contains("lead-of-u-bob") && !text_of(&rb).contains("u-alice"), "{rb}");
    assert!(text_of(&ra2).contains("| company | id | owner |"), "rendered as a table: {ra2}");
    let calls = n.lock().unwrap().lead_calls.clone();
    assert_eq!(
        calls,
        [
            (format!("Bearer {alice_token}"), "initech".to_owned()),
            (format!("Bearer {bob_token}"), "initech".to_owned()),
            (format!("Bearer {alice_token}"), "globex".to_owned()),
        ]
    );
    // The scoped token is nowhere the client or the model can see it, nor in the clear at rest.
    for (access, token) in [(&a.access, &alice_token), (&b.access, &bob_token)] {
        let (header, claims) = jwt_parts(access);
        assert!(!format!("{header}{claims}{access}").contains(token.as_str()), "not in the JWT");
    }
    for answer in [&ra, &rb, &ra2, &list] {
        let s = answer.to_string();
        assert!(!s.contains("nexus_scoped_"), "not in an answer: {s}");
    }
    let sealed = sealed_values(&server).await;
    assert_eq!(sealed.len(), 2, "one sealed token per session");
    for s in &sealed {
        assert!(!s.windows(13).any(|w| w == b"nexus_scoped_"), "sealed, not stored in the clear");
    }
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn security_bridge_mode_a_refused_user_gets_access_denied_at_consent_and_no_code() {
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    let server = server(&base);
    let carol = person(&server, "carol@elsewhere.example", true).await;
    let (client_id, back) = sign_in(&carol).await;
    assert!(back.starts_with(REDIRECT), "back to the client: {back}");
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some("st-42"));
    assert_eq!(query_param(&back, "iss").as_deref(), Some(server.issuer.as_str()));
    assert!(query_param(&back, "code").is_none(), "no code: {back}");
    assert_eq!(n.lock().unwrap().verify_calls.len(), 1, "the backend was asked, and refused");
    assert_eq!(bridge_rows(&server).await, 0, "nothing held");
    // The backend failing is not the person's refusal: temporarily_unavailable, and no code either.
    n.lock().unwrap().down = true;
    let alice = person(&server, "alice@acme.example", true).await;
    let back = alice.approve(&alice.authorize_url(&client_id, REDIRECT, SCOPE, "st-7")).await;
    assert_eq!(query_param(&back, "error").as_deref(), Some("temporarily_unavailable"), "{back}");
    assert!(query_param(&back, "code").is_none());
    // Back up: the same person passes.
    n.lock().unwrap().down = false;
    let back = alice.approve(&alice.authorize_url(&client_id, REDIRECT, SCOPE, "st-8")).await;
    assert!(query_param(&back, "code").is_some(), "{back}");
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn security_bridge_mode_never_sends_an_unverified_email_to_the_backend() {
    let (base, n) = nexus().await;
    // The backend knows this address: whoever signs up with it unverified must still not get in.
    n.lock().unwrap().users.insert("victim@acme.example".into(), "u-victim".into());
    let server = server(&base);
    let impostor = person(&server, "victim@acme.example", false).await;
    let (_, back) = sign_in(&impostor).await;
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert!(query_param(&back, "code").is_none());
    assert!(n.lock().unwrap().verify_calls.is_empty(), "the address was never sent");
    assert!(n.lock().unwrap().issued.is_empty());
}

#[tokio::test]
async fn bridge_mode_a_refresh_keeps_the_token_and_a_backend_401_is_verified_again_at_the_next_refresh() {
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    let server = server(&base);
    let alice = person(&server, "alice@acme.example", true).await;
    let s = signed_in(&alice).await;
    let first = n.lock().unwrap().issued[0].clone();
    // A refresh keeps the session's token: the backend is not asked, the next call carries it.
    let res = alice.refresh(&s.client_id, &s.refresh).await;
    assert_eq!(res.status(), 200);
    let t = crate::harness::tokens(res).await;
    assert_eq!(n.lock().unwrap().verify_calls.len(), 1, "a refresh does not verify again");
    let r = search(&alice, &t.access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-alice"), "{r}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {first}"));
    // The backend revokes the token: the call fails with a clear tool error and marks the session.
    n.lock().unwrap().valid.clear();
    let r = search(&alice, &t.access, "initech").await;
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(text_of(&r).contains("HTTP 401") && text_of(&r).contains("verified again"), "{r}");
    let backend_calls = n.lock().unwrap().lead_calls.len();
    let r = search(&alice, &t.access, "initech").await;
    assert_eq!(r["result"]["isError"], true, "until the refresh, calls say so: {r}");
    assert_eq!(n.lock().unwrap().lead_calls.len(), backend_calls, "without asking the backend again");
    // The next refresh verifies again: a new token sealed on the same session, used from then on.
    let res = alice.refresh(&s.client_id, &t.refresh).await;
    assert_eq!(res.status(), 200);
    let t = crate::harness::tokens(res).await;
    assert_eq!(n.lock().unwrap().verify_calls.len(), 2, "verified again at the refresh");
    let second = n.lock().unwrap().issued[1].clone();
    assert_ne!(first, second);
    let r = search(&alice, &t.access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-alice"), "{r}");
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {second}"));
    assert_eq!(bridge_rows(&server).await, 1, "replaced in place");
    // The backend fails for a while: the refresh answers temporarily_unavailable and changes nothing.
    n.lock().unwrap().valid.clear();
    let r = search(&alice, &t.access, "initech").await;
    assert_eq!(r["result"]["isError"], true);
    n.lock().unwrap().down = true;
    let res = alice.refresh(&s.client_id, &t.refresh).await;
    assert_eq!(res.status(), 503);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"], "temporarily_unavailable", "{e}");
    n.lock().unwrap().down = false;
    // Now the backend no longer knows alice: the refresh with the same (unspent) token ends the grant.
    n.lock().unwrap().users.clear();
    let res = alice.refresh(&s.client_id, &t.refresh).await;
    assert_eq!(res.status(), 400);
    let e: Value = res.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant", "{e}");
    assert_eq!(bridge_rows(&server).await, 0, "the session's token is destroyed with it");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let res = alice.mcp(&t.access, "tools/list", json!({})).await;
    assert_eq!(res.status(), 401, "the grant is over");
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn security_bridge_mode_revoking_the_session_destroys_its_token() {
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    let server = server(&base);
    let alice = person(&server, "alice@acme.example", true).await;
    let s1 = signed_in(&alice).await;
    let s2 = signed_in(&alice).await;
    assert_eq!(bridge_rows(&server).await, 2, "one per session");
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/revoke"))
        .form(&[("token", s1.refresh.as_str()), ("client_id", s1.client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(bridge_rows(&server).await, 1, "the revoked session's token is gone");
    // The other session still works with its own token.
    let r = search(&alice, &s2.access, "initech").await;
    assert!(text_of(&r).contains("lead-of-u-alice"), "{r}");
    let second = n.lock().unwrap().issued[1].clone();
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {second}"));
    assert_no_token_logged(&server, &n);
}

#[tokio::test]
async fn bridge_mode_tokens_are_resealed_by_a_master_key_rotation() {
    use base64::Engine;
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    // One issuer for both instances, so the peer accepts the first one's access tokens.
    let mut env = env_for(&base);
    env.push(("BRIDGEKEEPER_ISSUER".into(), "http://127.0.0.1:1".into()));
    let server = Server::start_with(&env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let alice = person(&server, "alice@acme.example", true).await;
    let s = signed_in(&alice).await;
    let old = server
        .db_env
        .iter()
        .find(|(k, _)| k == "BRIDGEKEEPER_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| std::fs::read_to_string(server.dir.path().join("master.key")).unwrap())
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned();
    let new = base64::engine::general_purpose::STANDARD.encode(bk_crypto::secret::random_bytes::<32>());
    let before = sealed_values(&server).await;
    let mut c = server.command();
    c.args(["keys", "rotate-master", "--data-dir"]).arg(server.dir.path());
    for (k, v) in &env {
        c.env(k, v);
    }
    c.env("BRIDGEKEEPER_MASTER_KEY", &new).env("BRIDGEKEEPER_OPEN_ONLY_MASTER_KEYS", &old);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = sealed_values(&server).await;
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "re-sealed under the new key");
    // An instance holding only the new key uses the session's token.
    let mut only_new = env.clone();
    only_new.push(("BRIDGEKEEPER_MASTER_KEY".into(), new));
    let fresh = server.start_peer(&only_new.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let res = reqwest::Client::new()
        .post(fresh.url("/mcp"))
        .bearer_auth(&s.access)
        .header("X-Response-Format", "json")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "nexus_search_leads", "arguments": {"q": "initech"}}}))
        .send()
        .await
        .unwrap();
    let r: Value = res.json().await.unwrap();
    assert!(text_of(&r).contains("lead-of-u-alice"), "{r}");
    let first = n.lock().unwrap().issued[0].clone();
    assert_eq!(n.lock().unwrap().lead_calls.last().unwrap().0, format!("Bearer {first}"));
    assert_no_token_logged(&server, &n);
    assert_no_token_logged(&fresh, &n);
}

#[tokio::test]
async fn security_bridge_mode_a_refused_admin_token_is_the_operators_failure_not_the_persons() {
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    let mut env = env_for(&base);
    for (k, v) in env.iter_mut() {
        if k == "NEXUS_ADMIN_TOKEN" {
            *v = "a-stale-admin-token".into();
        }
    }
    let server = Server::start_with(&env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>());
    let alice = person(&server, "alice@acme.example", true).await;
    let (_, back) = sign_in(&alice).await;
    assert_eq!(query_param(&back, "error").as_deref(), Some("temporarily_unavailable"), "{back}");
    assert!(query_param(&back, "code").is_none());
    assert_eq!(n.lock().unwrap().verify_calls.len(), 1);
    assert!(server.logs().contains("refused the operator's admin token"), "the operator can see why");
    assert!(!server.logs().contains("a-stale-admin-token"));
}

/// A public client the operator created (its person's consent is remembered), limited to
/// `providers` when given.
async fn operator_client(server: &Server, providers: Option<&[&str]>) -> String {
    let op = crate::harness::operator_token(server);
    let mut body = json!({"name": "Nexus for Claude", "type": "public", "redirectUris": [REDIRECT]});
    if let Some(p) = providers {
        body["allowedProviders"] = json!(p);
    }
    let created: Value = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["clientId"].as_str().unwrap_or_else(|| panic!("{created}")).to_owned()
}

#[tokio::test]
async fn security_bridge_mode_verifies_remembered_consent_too_and_only_grants_that_reach_the_provider() {
    let (base, n) = nexus().await;
    n.lock().unwrap().users.insert("alice@acme.example".into(), "u-alice".into());
    let server = server(&base);
    let alice = person(&server, "alice@acme.example", true).await;
    let client_id = operator_client(&server, None).await;
    let url = |state: &str| alice.authorize_url(&client_id, REDIRECT, SCOPE, state);
    let back = alice.approve(&url("s1")).await;
    assert!(query_param(&back, "code").is_some(), "{back}");
    // Remembered: straight back without the consent page, and still verified first.
    let res = alice.http.get(url("s2")).send().await.unwrap();
    let back = crate::harness::location(&res);
    assert!(back.starts_with(REDIRECT) && query_param(&back, "code").is_some(), "{back}");
    assert_eq!(n.lock().unwrap().verify_calls.len(), 2, "asked at every sign-in");
    // The backend drops alice: the remembered consent no longer gets her a code.
    n.lock().unwrap().users.clear();
    let res = alice.http.get(url("s3")).send().await.unwrap();
    let back = crate::harness::location(&res);
    assert_eq!(query_param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert!(query_param(&back, "code").is_none());
    // A client that cannot reach nexus is not bridged: the backend is not asked, and the
    // session sees no nexus tool.
    let other = operator_client(&server, Some(&["github"])).await;
    let asked = n.lock().unwrap().verify_calls.len();
    let back = alice.approve(&alice.authorize_url(&other, REDIRECT, SCOPE, "s4")).await;
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("{back}"));
    assert_eq!(n.lock().unwrap().verify_calls.len(), asked, "not asked");
    let t = alice.exchange_code(&other, REDIRECT, &code).await;
    let list: Value = alice.mcp(&t.access, "tools/list", json!({})).await.json().await.unwrap();
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"whoami") && !names.contains(&"nexus_search_leads"), "{names:?}");
}
