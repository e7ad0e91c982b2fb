//! Two real server processes on one database (SQLite file, or PostgreSQL with
//! `BRIDGEKEEPER_TEST_BACKEND=postgres`): every guarantee holds across instances.

use serde_json::{Value, json};

use crate::harness::{Flow, Server, tokens, whoami};

#[tokio::test]
async fn jwks_identical_and_tokens_of_another_issuer_refused() {
    let a = Server::start();
    let b = a.start_peer(&[]);
    let jwks_a = reqwest::get(a.url("/.well-known/jwks.json")).await.unwrap().text().await.unwrap();
    let jwks_b = reqwest::get(b.url("/.well-known/jwks.json")).await.unwrap().text().await.unwrap();
    assert_eq!(jwks_a, jwks_b, "JWKS is identical on every instance");
    let flow = Flow::signup(&a, "multi@example.com").await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write").await;
    let _ = client_id;
    let (s, who) = whoami(&a.base, &t.access).await;
    assert_eq!((s, who["email"].as_str()), (200, Some("multi@example.com")));
    // Same keys, but b was started with another issuer (its own address): it refuses a's tokens.
    let (s, _) = whoami(&b.base, &t.access).await;
    assert_eq!(s, 401);
}

/// Two instances behind one public URL (the issuer is configuration, not the listening address).
fn pair() -> (Server, Server) {
    let a = Server::start_with(&[("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1")]);
    let b = a.start_peer(&[("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1")]);
    assert_eq!((a.issuer.as_str(), b.issuer.as_str()), ("http://127.0.0.1:1", "http://127.0.0.1:1"));
    assert_ne!(a.base, b.base);
    (a, b)
}

async fn token_via(server: &Server, email: &str) -> (String, crate::harness::Tokens, Flow) {
    // The flow runs against `server` directly; tokens carry the shared issuer.
    let mut flow = Flow::signup(server, email).await;
    flow.base = server.base.clone();
    let (client_id, t) = flow.login_client("universal-mcp-read-write account").await;
    (client_id, t, flow)
}

#[tokio::test]
async fn a_token_issued_by_one_works_on_the_other() {
    let (a, b) = pair();
    let (_, t, _) = token_via(&a, "cross@example.com").await;
    let (s, who) = whoami(&b.base, &t.access).await;
    assert_eq!(s, 200, "b verifies a's token (same keys, same issuer)");
    assert_eq!(who["email"], "cross@example.com");
}

#[tokio::test]
async fn refresh_race_across_instances_exactly_one_succeeds() {
    let (a, b) = pair();
    let (client_id, t, _) = token_via(&a, "race@example.com").await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let base = if i % 2 == 0 { a.base.clone() } else { b.base.clone() };
        let (client_id, refresh) = (client_id.clone(), t.refresh.clone());
        tasks.push(tokio::spawn(async move {
            let res = reqwest::Client::new()
                .post(format!("{base}/api/v1/auth/token"))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", client_id.as_str()),
                ])
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            (status, body["refresh_token"].as_str().map(str::to_owned))
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, token) = t.await.unwrap();
        assert!(status == 200 || status == 400, "status {status}");
        if status == 200 {
            winners.push(token.unwrap());
        }
    }
    assert_eq!(winners.len(), 1, "exactly one of 100 concurrent exchanges (split over two instances) succeeds");
}

#[tokio::test]
async fn revocation_on_one_instance_is_seen_by_the_other_within_one_second() {
    let (a, b) = pair();
    let (client_id, t, _) = token_via(&a, "revoke-multi@example.com").await;
    assert_eq!(whoami(&b.base, &t.access).await.0, 200);
    reqwest::Client::new()
        .post(a.url("/api/v1/auth/revoke"))
        .form(&[("token", t.refresh.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    let start = std::time::Instant::now();
    while whoami(&b.base, &t.access).await.0 != 401 {
        assert!(start.elapsed() < std::time::Duration::from_secs(1), "b still accepts the revoked session after 1 s");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn mcp_session_created_on_one_is_usable_on_the_other() {
    let (a, b) = pair();
    let (_, t, flow) = token_via(&a, "mcp-multi@example.com").await;
    let sid = flow.mcp_initialize(&t.access, "2025-11-25").await;
    let mut on_b = Flow { base: b.base.clone(), ..flow };
    let res = on_b.mcp_in(&t.access, &sid, "2025-11-25", "tools/list", json!({})).await;
    assert_eq!(res.status(), 200, "no sticky sessions needed");
    // Ended on b: a sees it ended within a second.
    let res = reqwest::Client::new()
        .delete(b.url("/mcp"))
        .bearer_auth(&t.access)
        .header("Mcp-Session-Id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    on_b.base = a.base.clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(on_b.mcp_in(&t.access, &sid, "2025-11-25", "tools/list", json!({})).await.status(), 404);
    let _ = tokens;
}

fn unique_prefix() -> String {
    format!(
        "bk-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
    )
}

/// Registers a new public client (each call a different one: identical registrations reuse one).
async fn register(base: &str) -> u16 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"redirect_uris": [format!("http://127.0.0.1:9/cb{n}")], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Redis runs at 127.0.0.1:6379 on development and CI machines.
#[tokio::test]
async fn dcr_limit_is_shared_across_instances_through_redis() {
    let prefix = unique_prefix();
    let env =
        [("BRIDGEKEEPER_REDIS_URL", "redis://127.0.0.1:6379"), ("BRIDGEKEEPER_REDIS__KEY_PREFIX", prefix.as_str())];
    let a = Server::start_with(&env);
    let b = a.start_peer(&env);
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(register(if i % 2 == 0 { &a.base } else { &b.base }).await);
    }
    assert_eq!(&statuses[..5], &[201; 5], "{statuses:?}");
    assert_eq!(statuses[5], 429, "the 6th registration in a minute fails whichever instance gets it: {statuses:?}");
    assert_eq!(register(&a.base).await, 429);
    let ready: Value = reqwest::get(a.url("/ready")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn unreachable_redis_fails_in_the_configured_direction() {
    // Nothing listens on port 9 of 127.0.0.1.
    let closed = Server::start_with(&[("BRIDGEKEEPER_REDIS_URL", "redis://127.0.0.1:9")]);
    assert_eq!(register(&closed.base).await, 429, "closed (the default): refuse");
    assert_eq!(reqwest::get(closed.url("/ready")).await.unwrap().status(), 503);
    let open = Server::start_with(&[
        ("BRIDGEKEEPER_REDIS_URL", "redis://127.0.0.1:9"),
        ("BRIDGEKEEPER_REDIS__FAILURE_MODE", "open"),
    ]);
    assert_eq!(register(&open.base).await, 201, "open: allow");
    assert!(closed.logs().contains("Redis rate limiter unavailable"), "the failure is logged");
}

/// kill -9 one instance while refreshes and tool calls are in flight on both: afterwards every
/// token a client received works (or was never acknowledged), and no refresh family is half-rotated.
#[tokio::test]
async fn crash_under_load_loses_nothing_acknowledged() {
    let env = [
        ("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1"),
        ("BRIDGEKEEPER_TOKENS__REFRESH_REUSE_GRACE_SECS", "30"),
        ("BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE", "100000"),
    ];
    let mut a = Server::start_with(&env);
    let b = a.start_peer(&env);
    let flow = Flow::signup(&a, "crash@example.com").await;
    let cb = "http://127.0.0.1:9/callback";
    let client_id = flow.register(cb, "universal-mcp-read-write").await;
    let mut chains = Vec::new();
    for i in 0..12 {
        let back =
            flow.approve(&flow.authorize_url(&client_id, cb, "universal-mcp-read-write", &format!("s{i}"))).await;
        let code = crate::harness::query_param(&back, "code").unwrap();
        chains.push(flow.exchange_code(&client_id, cb, &code).await);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for (i, t) in chains.into_iter().enumerate() {
        let (bases, client_id, stop) = ([a.base.clone(), b.base.clone()], client_id.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).build().unwrap();
            let (mut refresh, mut access, mut n) = (t.refresh, t.access, i);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let base = &bases[n % 2];
                let _ = http
                    .post(format!("{base}/mcp"))
                    .bearer_auth(&access)
                    .header("X-Response-Format", "json")
                    .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}))
                    .send()
                    .await;
                let res = http
                    .post(format!("{base}/api/v1/auth/token"))
                    .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", client_id.as_str())])
                    .send()
                    .await;
                // Only a complete 200 answer acknowledges the new pair; anything else keeps the old one.
                if let Ok(r) = res
                    && r.status() == 200
                    && let Ok(v) = r.json::<Value>().await
                {
                    refresh = v["refresh_token"].as_str().unwrap().to_owned();
                    access = v["access_token"].as_str().unwrap().to_owned();
                }
            }
            (refresh, access)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    a.kill9();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let http = reqwest::Client::new();
    for w in workers {
        let (refresh, _) = w.await.unwrap();
        // The last acknowledged refresh token still works on the surviving instance.
        let res = http
            .post(b.url("/api/v1/auth/token"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", client_id.as_str()),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status();
        assert_eq!(status, 200, "an acknowledged refresh token stopped working: {}", res.text().await.unwrap());
        let v: Value = res.json().await.unwrap();
        assert_eq!(whoami(&b.base, v["access_token"].as_str().unwrap()).await.0, 200);
    }
    // No family is half-rotated: every used refresh token has its successor.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&a.db_url()).await.unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens r WHERE r.used_at IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM refresh_tokens c WHERE c.parent_id = r.id)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
}

/// The `kid` a token was signed with.
fn kid_of(token: &str) -> String {
    crate::harness::jwt_parts(token).0["kid"].as_str().unwrap().to_owned()
}

/// `keys rotate` while both instances serve: every request before, during and after succeeds; both
/// sign with the new key within seconds; a token signed by the old key keeps verifying (the old key
/// stays in the JWKS until such tokens have expired).
#[tokio::test]
async fn signing_keys_rotate_across_instances_without_a_failed_request() {
    let (a, b) = pair();
    let (client_id, t0, flow) = token_via(&a, "rotate@example.com").await;
    let old_kid = kid_of(&t0.access);
    let mut refresh = t0.refresh.clone();
    // Refreshes go to one instance or the other; the flow's base says which.
    let mut refresher = Flow { http: crate::harness::client(), ..flow };
    let (mut requests, mut new_kids) = (0, std::collections::HashSet::new());
    let mut rotated = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    loop {
        assert!(std::time::Instant::now() < deadline, "both instances did not sign with the new key within 40 s");
        // The old token, on both.
        for server in [&a, &b] {
            let (s, _) = whoami(&server.base, &t0.access).await;
            assert_eq!(s, 200, "the old key's token is refused after {requests} requests");
            requests += 1;
        }
        // A new token from each instance in turn (refresh), checked on the other.
        let (via, other) = if (requests / 4) % 2 == 0 { (&a, &b) } else { (&b, &a) };
        refresher.base = via.base.clone();
        let res = refresher.refresh(&client_id, &refresh).await;
        assert_eq!(res.status(), 200, "a refresh failed after {requests} requests");
        let t = tokens(res).await;
        refresh = t.refresh.clone();
        let (s, _) = whoami(&other.base, &t.access).await;
        assert_eq!(s, 200, "a new token is refused by the other instance after {requests} requests");
        requests += 2;
        let kid = kid_of(&t.access);
        if kid != old_kid {
            new_kids.insert(via.base.clone());
        }
        if !rotated && requests >= 20 {
            let out =
                a.command().args(["keys", "rotate", "--data-dir"]).arg(a.dir.path()).output().expect("keys rotate");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("active signing key: key_") && said.contains("older keys: 1"), "{said}");
            rotated = true;
        }
        if rotated && new_kids.len() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Both publish both keys until the old key's tokens have expired.
    for server in [&a, &b] {
        let jwks: Value = reqwest::get(server.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids.len(), 2, "{kids:?}");
        assert!(kids.contains(&old_kid.as_str()));
    }
    let (s, _) = whoami(&b.base, &t0.access).await;
    assert_eq!(s, 200);
    assert!(requests > 30, "{requests} requests");
}
