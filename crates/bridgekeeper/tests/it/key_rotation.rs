//! Signing-key rotation on two instances of one database (SQLite file, or PostgreSQL with
//! `BRIDGEKEEPER_TEST_BACKEND=postgres`), under load: `keys rotate` through the real CLI while
//! clients refresh and call on both instances, and rotation on a period (`keys.rotate_every_secs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Flow, Server, Tokens, jwt_parts, query_param, tokens, whoami};

const ISSUER: &str = "http://127.0.0.1:1";
const ACCESS_TTL_SECS: u64 = 30;
const SCOPE: &str = "universal-mcp-read-write account";

/// Two instances behind one public URL, with `extra` configuration on both.
fn pair(extra: &[(&str, &str)]) -> (Server, Server) {
    let ttl = ACCESS_TTL_SECS.to_string();
    let mut env = vec![
        ("BRIDGEKEEPER_ISSUER", ISSUER),
        ("BRIDGEKEEPER_TOKENS__ACCESS_TOKEN_TTL_SECS", ttl.as_str()),
        ("BRIDGEKEEPER_MCP__RATE_LIMIT_PER_MINUTE", "100000"),
    ];
    env.extend_from_slice(extra);
    let a = Server::start_with(&env);
    let b = a.start_peer(&env);
    (a, b)
}

fn kid_of(token: &str) -> String {
    jwt_parts(token).0["kid"].as_str().unwrap_or_default().to_owned()
}

/// `n` independent sessions (refresh-token chains) of one account and client.
async fn chains(flow: &Flow, n: usize) -> (String, Vec<Tokens>) {
    let cb = "http://127.0.0.1:9/callback";
    let client_id = flow.register(cb, SCOPE).await;
    let mut out = Vec::new();
    for i in 0..n {
        let back = flow.approve(&flow.authorize_url(&client_id, cb, SCOPE, &format!("s{i}"))).await;
        let code = query_param(&back, "code").expect("code");
        out.push(flow.exchange_code(&client_id, cb, &code).await);
    }
    (client_id, out)
}

/// The signing keys an instance publishes.
async fn jwks_kids(server: &Server) -> Vec<String> {
    let jwks: Value = reqwest::get(server.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

/// What the traffic saw: requests, failures (never a token in them), and when each instance first
/// issued a token signed by a key other than the starting one.
#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    failures: Mutex<Vec<String>>,
    first_new_kid: Mutex<HashMap<usize, (Instant, String)>>,
}

impl Tally {
    fn check(&self, what: &str, status: u16, ok: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.lock().unwrap().push(format!("{what}: HTTP {status}"));
        }
    }
}

/// One client's loop: refresh on one instance, then use the new access token as a client does, with
/// requests in parallel — `/mcp` (a tool call and a listing) and `/api/v1/account` on the other
/// instance, `/api/v1/account` on the first — alternating instances, until told to stop. The first
/// token signed by a new key thus reaches the other instance several times at once.
async fn traffic(
    worker: usize,
    bases: [String; 2],
    client_id: String,
    first: Tokens,
    start_kid: String,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut refresh = first.refresh;
    let mut n = worker;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (via, other) = (n % 2, (n + 1) % 2);
        let res = http
            .post(format!("{}/api/v1/auth/token", bases[via]))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str()), ("client_id", &client_id)])
            .send()
            .await;
        let Ok(res) = res else {
            tally.check(&format!("refresh on instance {via} (no answer)"), 0, false);
            break;
        };
        let status = res.status().as_u16();
        tally.check(&format!("refresh on instance {via}"), status, status == 200);
        if status != 200 {
            break; // the chain is gone; the failure is counted
        }
        let v: Value = res.json().await.unwrap();
        refresh = v["refresh_token"].as_str().unwrap().to_owned();
        let access = v["access_token"].as_str().unwrap().to_owned();
        let kid = kid_of(&access);
        if kid != start_kid {
            tally.first_new_kid.lock().unwrap().entry(via).or_insert_with(|| (Instant::now(), kid.clone()));
        }
        let account = |base: &String| http.get(format!("{base}/api/v1/account")).bearer_auth(&access).send();
        let list = http
            .post(format!("{}/mcp", bases[other]))
            .bearer_auth(&access)
            .header("X-Response-Format", "json")
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
            .send();
        let (call, list, account_other, account_via) =
            tokio::join!(whoami(&bases[other], &access), list, account(&bases[other]), account(&bases[via]));
        let (status, who) = call;
        let on = format!("instance {other} with a token of instance {via} (kid {kid})");
        tally.check(&format!("/mcp whoami on {on}"), status, status == 200 && who["email"] == "rotation@example.com");
        for (what, res) in [("/mcp tools/list", list), ("/api/v1/account", account_other)] {
            let status = res.map(|r| r.status().as_u16()).unwrap_or(0);
            tally.check(&format!("{what} on {on}"), status, status == 200);
        }
        let status = account_via.map(|r| r.status().as_u16()).unwrap_or(0);
        tally.check(&format!("/api/v1/account on instance {via}"), status, status == 200);
    }
}

/// `keys rotate` through the real CLI while eight clients refresh and call on both instances:
/// every request succeeds; tokens issued after it carry the new `kid` on both instances within a
/// bounded time; and a token signed by the old key verifies on both until it expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_rotate_under_load_on_two_instances_fails_no_request() {
    let (a, b) = pair(&[]);
    let mut flow = Flow::signup(&a, "rotation@example.com").await;
    flow.base = a.base.clone();
    let (client_id, mut sessions) = chains(&flow, 9).await;
    // Signed by the first key, kept unused until the end.
    let old = sessions.pop().unwrap();
    let old_kid = kid_of(&old.access);
    let old_exp = jwt_parts(&old.access).1["exp"].as_i64().unwrap();
    assert_eq!(jwks_kids(&a).await, std::slice::from_ref(&old_kid));

    let (tally, stop) = (Arc::new(Tally::default()), Arc::new(AtomicBool::new(false)));
    let workers: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let bases = [a.base.clone(), b.base.clone()];
            tokio::spawn(traffic(i, bases, client_id.clone(), t, old_kid.clone(), tally.clone(), stop.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = tally.requests.load(Ordering::Relaxed);
    assert!(before > 20, "the traffic is running ({before} requests)");

    // The operator rotates, on this database, with the servers' configuration.
    let mut cli = a.command();
    cli.args(["keys", "rotate", "--data-dir"])
        .arg(a.dir.path())
        .env("BRIDGEKEEPER_TOKENS__ACCESS_TOKEN_TTL_SECS", ACCESS_TTL_SECS.to_string());
    let rotated_at = Instant::now();
    let out = tokio::task::spawn_blocking(move || cli.output().expect("keys rotate")).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let new_kid = said
        .lines()
        .find_map(|l| l.strip_prefix("active signing key: "))
        .unwrap_or_else(|| panic!("no new key named: {said}"))
        .trim()
        .to_owned();
    assert!(said.contains("older keys: 1"), "{said}");
    assert_ne!(new_kid, old_kid);

    // Both instances sign with the new key within the reload period (10 s) and a margin.
    let deadline = rotated_at + Duration::from_secs(15);
    while tally.first_new_kid.lock().unwrap().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "both instances did not sign with the new key within 15 s: {:?}",
            tally.first_new_kid.lock().unwrap().keys().collect::<Vec<_>>()
        );
        let (s, _) = whoami(&a.base, &old.access).await;
        let (s2, _) = whoami(&b.base, &old.access).await;
        tally.check("the old key's token during the rotation", s.max(s2), s == 200 && s2 == 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A little more traffic with both keys in play, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    let requests = tally.requests.load(Ordering::Relaxed);
    let firsts = tally.first_new_kid.lock().unwrap().clone();
    for (instance, (at, kid)) in &firsts {
        assert_eq!(kid, &new_kid, "instance {instance} signed with an unexpected key");
        eprintln!(
            "key rotation under load: instance {instance} issued its first token signed by the new key {:.1} s after `keys rotate` began",
            at.duration_since(rotated_at).as_secs_f64()
        );
    }
    eprintln!("key rotation under load: {requests} requests, {} failed", failures.len());
    assert!(failures.is_empty(), "{} of {requests} requests failed: {failures:?}", failures.len());
    assert!(requests > before * 2, "{requests} requests");

    // Both instances publish both keys, and the old key's token verifies on both until it expires.
    for server in [&a, &b] {
        let kids = jwks_kids(server).await;
        assert!(kids.contains(&old_kid) && kids.contains(&new_kid) && kids.len() == 2, "{kids:?}");
    }
    let now = || i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    let mut checked = 0;
    while now().unwrap() < old_exp - 1 {
        for server in [&a, &b] {
            assert_eq!(whoami(&server.base, &old.access).await.0, 200, "the old key's token refused before it expired");
            checked += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for server in [&a, &b] {
        assert_eq!(whoami(&server.base, &old.access).await.0, 401, "expired, it is refused");
        assert!(jwks_kids(server).await.contains(&old_kid), "the old key is still published (until ttl + 60 s)");
    }
    eprintln!("key rotation under load: the old key's token verified {checked} more times on both, until it expired");

    // The rotation is audited.
    let events = rotation_events(&a).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, new_kid);
    assert_eq!(events[0].1["via"], "cli");
    assert_eq!(events[0].1["replaced"], old_kid.as_str());
}

/// The `signing_key.rotated` audit rows: target (the new key) and details.
async fn rotation_events(server: &Server) -> Vec<(String, Value)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT target, details FROM audit_events WHERE kind = 'signing_key.rotated' ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().map(|(t, d)| (t, serde_json::from_str(&d).unwrap())).collect()
}

/// How many signing keys the database holds (retired ones included).
async fn stored_keys(server: &Server) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

/// With `keys.rotate_every_secs` (12 s here) both instances look for a due key every 3 s; the
/// database gets exactly one new key per period, audited once, and both instances sign with it
/// while tokens each issues keep verifying on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_rotation_on_two_instances_makes_one_key_per_period() {
    const PERIOD: u64 = 12;
    let period = PERIOD.to_string();
    let (a, b) = pair(&[("BRIDGEKEEPER_KEYS__ROTATE_EVERY_SECS", period.as_str())]);
    let started = Instant::now();
    let mut flow = Flow::signup(&a, "rotation@example.com").await;
    flow.base = a.base.clone();
    let (client_id, mut sessions) = chains(&flow, 1).await;
    let mut refresh = sessions.pop().unwrap().refresh;
    assert_eq!(stored_keys(&a).await, 1);
    let mut kids_by_instance: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    let (mut n, mut events) = (0usize, Vec::new());
    // The first key is due after 12 s, its successor 12 s later: wait until both instances sign
    // with the second successor (a third is not due for another 12 s).
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(2 * PERIOD + 20),
            "two periodic rotations, seen by both instances, did not happen in time: {events:?} {kids_by_instance:?}"
        );
        n += 1;
        let (via, other) = (n % 2, (n + 1) % 2);
        let (server, peer) = if via == 0 { (&a, &b) } else { (&b, &a) };
        flow.base = server.base.clone();
        let res = flow.refresh(&client_id, &refresh).await;
        assert_eq!(res.status(), 200, "a refresh on instance {via} failed");
        let v: Value = res.json().await.unwrap();
        refresh = v["refresh_token"].as_str().unwrap().to_owned();
        let access = v["access_token"].as_str().unwrap();
        assert_eq!(whoami(&peer.base, access).await.0, 200, "instance {other} refused a token of instance {via}");
        let kid = kid_of(access);
        if kids_by_instance[via].last() != Some(&kid) {
            eprintln!("periodic rotation: at {:.1} s instance {via} signs with {kid}", started.elapsed().as_secs_f64());
            kids_by_instance[via].push(kid);
        }
        if n % 4 == 0 {
            events = rotation_events(&a).await;
            if events.len() >= 2 && kids_by_instance.iter().all(|k| k.last() == Some(&events[1].0)) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let keys = stored_keys(&a).await;
    let events = rotation_events(&a).await;
    assert_eq!(keys, 3, "one new key per period, whichever instance made it: {events:?}");
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|(_, d)| d["via"] == "schedule"), "{events:?}");
    assert_eq!(events[1].1["replaced"].as_str(), Some(events[0].0.as_str()), "each replaced the one before");
    let published = jwks_kids(&b).await;
    assert_eq!(published.len(), 3, "older keys stay published until their tokens expire: {published:?}");
}

/// `token` with its header's `kid` replaced (its signature no longer matters: the key is unknown).
fn with_kid(token: &str, kid: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut header = jwt_parts(token).0;
    header["kid"] = json!(kid);
    let rest = token.split_once('.').map_or("", |(_, r)| r);
    format!("{}.{rest}", b64.encode(header.to_string()))
}

/// `keys rotate` through the CLI, with the servers' configuration; the new key's id.
fn rotate(server: &Server) -> String {
    let out =
        server.command().args(["keys", "rotate", "--data-dir"]).arg(server.dir.path()).output().expect("keys rotate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.lines().find_map(|l| l.strip_prefix("active signing key: ")).expect("the new key").trim().to_owned()
}

/// A new key's tokens reach an instance before its periodic reload (every 10 s) — just after a token
/// naming an unknown `kid` (forged here; a long-retired key's does the same) made it reload, and
/// twenty at once. Every one is accepted: the instance reloads for them (after the one-second pause
/// between reloads) instead of refusing them because it reloaded a moment ago or is reloading now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_keys_tokens_are_accepted_right_after_an_unknown_kid_and_all_at_once() {
    let (a, b) = pair(&[]);
    let mut flow = Flow::signup(&a, "rotation@example.com").await;
    flow.base = a.base.clone();
    let (client_id, mut sessions) = chains(&flow, 1).await;
    let refresh = sessions.pop().unwrap().refresh;
    // A first rotation tells when b's periodic reload runs: its JWKS changes then (nothing else
    // reaches b). Its next one is ten seconds later: everything below happens before it.
    let first = rotate(&a);
    let deadline = Instant::now() + Duration::from_secs(12);
    while !jwks_kids(&b).await.contains(&first) {
        assert!(Instant::now() < deadline, "b did not reload within 12 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_reloaded = Instant::now();
    // b meets an unknown kid and reloads (nothing new) …
    let forged = with_kid(&flow.login_client(SCOPE).await.1.access, "key_0000000000000000000000000000forged");
    assert_eq!(whoami(&b.base, &forged).await.0, 401);
    let forged_at = Instant::now();
    // … a second key is made, and a learns it at once (its own unknown kid) and signs with it …
    let second = rotate(&a);
    assert_eq!(whoami(&a.base, &forged).await.0, 401);
    assert!(jwks_kids(&a).await.contains(&second));
    let res = flow.refresh(&client_id, &refresh).await;
    assert_eq!(res.status(), 200);
    let token = tokens(res).await.access;
    assert_eq!(kid_of(&token), second);
    assert!(!jwks_kids(&b).await.contains(&second), "b does not know the second key yet");
    assert!(b_reloaded.elapsed() < Duration::from_secs(8), "still before b's next periodic reload");
    // … and its tokens reach b, twenty at once, within seconds of b's last reload.
    let since_forged = forged_at.elapsed();
    let started = Instant::now();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (base, token) = (b.base.clone(), token.clone());
            tokio::spawn(async move { whoami(&base, &token).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    assert_eq!(statuses, [200; 20], "the new key's tokens are accepted by the instance that did not know it yet");
    assert!(jwks_kids(&b).await.contains(&second), "b publishes the new key from then on");
    eprintln!(
        "unknown kid: twenty requests with a new key's token, {since_forged:.1?} after a forged kid's reload, \
         all answered 200 within {:.1?}",
        started.elapsed()
    );
}

/// A rotation period that makes no sense stops the start with the setting named, before anything is
/// opened or changed.
#[test]
fn a_bad_rotation_period_is_a_start_up_error_naming_the_setting() {
    for (env, says) in [
        (vec![("BRIDGEKEEPER_KEYS__ROTATE_EVERY_SECS", "5")], "keys.rotate_every_secs must be 10 to"),
        (vec![("BRIDGEKEEPER_KEYS__ROTATE_EVERY_DAYS", "4000")], "keys.rotate_every_days must be 0 (never) to 3650"),
        (
            vec![("BRIDGEKEEPER_KEYS__ROTATE_EVERY_DAYS", "30"), ("BRIDGEKEEPER_KEYS__ROTATE_EVERY_SECS", "60")],
            "set rotate_every_days or rotate_every_secs, not both",
        ),
        (vec![("BRIDGEKEEPER_KEYS__ROTATE_EVERY_HOURS", "1")], "rotate_every_hours"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(crate::harness::bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(says), "{env:?}: {err}");
        assert!(!dir.path().join("bridgekeeper.db").exists(), "nothing was created");
    }
}
