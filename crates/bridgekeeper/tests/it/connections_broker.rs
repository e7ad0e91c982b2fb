//! The credential broker (`bk_connections::broker`) against the test's real upstream (the HTTPS
//! authorization server of `connections_oauth2`, which counts refreshes and rotates refresh tokens),
//! on the database of a real server:
//! - 100 concurrent `credential()` calls on an expiring connection through two brokers with their
//!   own database pools (two instances, as the gateway will run them) → one upstream refresh;
//! - `credential_after_401` refreshes once for many callers rejected with the same credential;
//! - kill -9 of the instance holding the refresh lease after the upstream rotated the refresh
//!   token → the next instance waits for the lease to run out and marks the connection `error`,
//!   saying why; kill -9 right after the upstream's answer → usable with the rotated token, or
//!   that same clear `error` — never `active` with a dead refresh token;
//! - `bridgekeeper keys rotate-master` while a server serves → every value re-sealed under the new
//!   key, every connection usable with only the new key, and a ciphertext moved to another row
//!   still does not open.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bk_connections::{Broker, BrokerError, BrokerSettings, Catalog, CatalogSources, Credential, Vault};
use bk_crypto::envelope::MasterKey;
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::ConnectionStore;
use bk_store::SqlStore;
use serde_json::{Value, json};

use crate::connections_oauth2::{Upstream, catalog, catalog_with, connect, env_of, put_refresh, upstream};
use crate::harness::{Flow, Server};

/// The master key ring a server of this suite uses (embedded: the generated file; PostgreSQL: the
/// suite's shared key), with the same key id derivation as the server.
fn master_of(server: &Server) -> String {
    server
        .db_env
        .iter()
        .find(|(k, _)| k == "BRIDGEKEEPER_MASTER_KEY")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| std::fs::read_to_string(server.dir.path().join("master.key")).unwrap())
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_owned()
}

fn key(b64: &str) -> MasterKey {
    let raw: [u8; 32] = base64::engine::general_purpose::STANDARD.decode(b64).unwrap().try_into().unwrap();
    let hex: String = bk_crypto::secret::sha256(&raw).iter().map(|b| format!("{b:02x}")).collect();
    MasterKey::new(format!("mk-{}", &hex[..12]), raw).unwrap()
}

/// The catalog file of `dir` and an upstream client trusting the test's CA, as a server builds them.
fn catalog_and_client(up: &Upstream, dir: &tempfile::TempDir) -> (Catalog, bk_connections::Upstream) {
    let text = std::fs::read_to_string(dir.path().join("providers.toml")).unwrap();
    let catalog = Catalog::load(
        &CatalogSources { operator_file: Some(("providers.toml", &text)), config: None, allow_http_loopback: false },
        &|_| None,
    )
    .unwrap();
    let upstream = bk_connections::Upstream::new(bk_outbound::FetchPolicy {
        allow_private_addresses: true,
        allow_http_loopback: false,
        extra_roots_pem: Some(std::fs::read(up.dir.path().join("ca.pem")).unwrap()),
        timeout: Duration::from_millis(1500),
        max_body_bytes: 1 << 20,
    })
    .unwrap();
    (catalog, upstream)
}

/// One instance's broker on the server's database: its own pool, upstream client and flights.
async fn broker(server: &Server, up: &Upstream, dir: &tempfile::TempDir, master: MasterKey) -> (Broker, Arc<SqlStore>) {
    broker_with_lease(server, up, dir, master, Duration::from_millis(6500)).await
}

async fn broker_with_lease(
    server: &Server,
    up: &Upstream,
    dir: &tempfile::TempDir,
    master: MasterKey,
    lease: Duration,
) -> (Broker, Arc<SqlStore>) {
    let store = Arc::new(SqlStore::connect(&server.db_url(), 8).await.unwrap());
    let (catalog, upstream) = catalog_and_client(up, dir);
    let broker = Broker::new(
        store.clone(),
        Vault::new(Arc::new(master)),
        Arc::new(upstream),
        Arc::new(catalog),
        Arc::new(bk_oauth::SystemClock),
        BrokerSettings { refresh_skew_secs: 60, lease },
        Arc::new(bk_domain::audit::NoAudit),
    );
    (broker, store)
}

async fn get(server: &Server, token: &str, id: &str) -> Value {
    reqwest::Client::new()
        .get(server.url(&format!("/api/v1/connections/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn access_token(c: &bk_connections::UsableCredential) -> String {
    match c.credential() {
        Credential::OAuth { access_token, .. } => access_token.clone(),
        Credential::ApiKey { key } => key.clone(),
        other => panic!("{other:?}"),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Moves the connection's expiry to `at` (the provider's clock, as it were).
async fn expire_at(store: &SqlStore, account: &AccountId, id: &ConnectionId, at: i64) {
    let mut c = store.connection(account, id).await.unwrap().unwrap();
    c.expires_at = Some(at);
    assert!(store.update_connection(account, &c, None).await.unwrap());
}

#[tokio::test]
async fn credential_refreshes_once_for_100_callers_on_two_instances() {
    let up = upstream().await;
    let dir = catalog(&up);
    let env: Vec<(&str, String)> = env_of(&up, &dir);
    let server = Server::start_with(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let flow = Flow::signup(&server, "broker@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let id = connect(&server, &up, &token, &flow.http).await;
    let account = AccountId::from_string(get(&server, &token, &id).await["accountId"].as_str().unwrap());
    let id = ConnectionId::from_string(id);
    let (one, store) = broker(&server, &up, &dir, key(&master_of(&server))).await;
    let (two, _) = broker(&server, &up, &dir, key(&master_of(&server))).await;

    // Not expiring: the stored token, no call to the provider.
    let c = one.credential(&account, &id).await.unwrap();
    assert_eq!(access_token(&c), "upstream-at-1");
    assert!(!format!("{c:?}").contains("upstream-at"), "Debug never shows the token");
    assert_eq!(up.seen.lock().unwrap().refreshes, 0);

    // Expiring within the skew: 100 callers at once, half on each instance → one refresh upstream,
    // every caller gets the new token.
    expire_at(&store, &account, &id, now() + 10).await;
    let mut calls = Vec::new();
    for i in 0..100 {
        let b = if i % 2 == 0 { one.clone() } else { two.clone() };
        let (account, id) = (account.clone(), id.clone());
        calls.push(tokio::spawn(async move { b.credential(&account, &id).await.map(|c| access_token(&c)) }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "upstream-at-2");
    }
    assert_eq!(up.seen.lock().unwrap().refreshes, 1, "exactly one upstream refresh");
    let row = store.sealed_connection(&account, &id).await.unwrap().unwrap();
    assert!(row.connection.expires_at.unwrap() > now() + 500, "the new expiry is stored");

    // The provider answered 401 to the new token: 20 callers rejected with the same credential → one
    // refresh (with the rotated refresh token, which the upstream checks), all get its result.
    let rejected = Arc::new(one.credential(&account, &id).await.unwrap());
    let mut calls = Vec::new();
    for i in 0..20 {
        let b = if i % 2 == 0 { one.clone() } else { two.clone() };
        let (account, id, rejected) = (account.clone(), id.clone(), rejected.clone());
        calls.push(tokio::spawn(async move {
            b.credential_after_401(&account, &id, &rejected).await.map(|c| access_token(&c))
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap(), "upstream-at-3");
    }
    assert_eq!(up.seen.lock().unwrap().refreshes, 2);

    // Another tenant's id is missing; a provider that stops accepting the refresh token → expired.
    let stranger = AccountId::from_string("acc_nobody");
    assert!(matches!(one.credential(&stranger, &id).await, Err(BrokerError::Missing)));
    up.seen.lock().unwrap().valid_refresh = None;
    expire_at(&store, &account, &id, now() - 1).await;
    match two.credential(&account, &id).await {
        Err(BrokerError::NotUsable { status, reason, .. }) => {
            assert_eq!(status.as_str(), "expired");
            assert!(reason.contains("invalid_grant"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(up.seen.lock().unwrap().refreshes, 3);
    assert!(matches!(one.credential(&account, &id).await, Err(BrokerError::NotUsable { .. })));
    assert_eq!(up.seen.lock().unwrap().refreshes, 3, "an expired connection is not refreshed again");
}

#[tokio::test]
async fn a_lease_taken_after_it_ran_out_is_not_overwritten_by_its_late_holder() {
    let up = upstream().await;
    let dir = catalog(&up);
    let env: Vec<(&str, String)> = env_of(&up, &dir);
    let server = Server::start_with(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let flow = Flow::signup(&server, "late@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let id = connect(&server, &up, &token, &flow.http).await;
    let account = AccountId::from_string(get(&server, &token, &id).await["accountId"].as_str().unwrap());
    let id = ConnectionId::from_string(id);
    // The slow instance's lease (1 s, to the second) runs out while the provider takes 1.4 s to
    // answer it (within the 1.5 s client timeout).
    let (slow, store) = broker_with_lease(&server, &up, &dir, key(&master_of(&server)), Duration::from_secs(1)).await;
    let (other, _) = broker(&server, &up, &dir, key(&master_of(&server))).await;
    let before = store.sealed_credential(&account, &id).await.unwrap().unwrap();
    up.seen.lock().unwrap().refresh_delay_ms = Some(1400);
    expire_at(&store, &account, &id, now() + 10).await;
    let late = {
        let (slow, account, id) = (slow.clone(), account.clone(), id.clone());
        tokio::spawn(async move { slow.credential(&account, &id).await })
    };
    until("the slow instance's refresh", || up.seen.lock().unwrap().refreshes == 1).await;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    // The lease ran out: the other instance takes it. The provider has rotated the refresh token
    // for the slow one, so it refuses this one, and the connection says the refresh was interrupted.
    let theirs = other.credential(&account, &id).await;
    assert!(
        matches!(&theirs, Err(BrokerError::NotUsable { reason, .. }) if reason.contains("interrupted")),
        "{theirs:?}"
    );
    // The slow instance got its answer after losing the lease: it stores nothing over the newer
    // outcome and hands out nothing it did not store — that outcome, or (having waited as long as a
    // caller waits) the old token, still good for a few seconds.
    match late.await.unwrap() {
        Err(BrokerError::NotUsable { .. }) => {}
        Ok(c) => assert_eq!(access_token(&c), "upstream-at-1"),
        other => panic!("{other:?}"),
    }
    assert_eq!(up.seen.lock().unwrap().refreshes, 2);
    let row = store.sealed_connection(&account, &id).await.unwrap().unwrap();
    assert_eq!(row.connection.status.as_str(), "error");
    assert_eq!(row.generation, 1, "one outcome stored");
    assert_eq!(row.sealed, before, "the late holder's tokens were not written");
}

/// A refresh on an instance about to be killed (its answer may never come).
async fn refresh_on_doomed(base: String, token: String, id: String) {
    let url = format!("{base}/api/v1/connections/{id}/refresh");
    let _ = reqwest::Client::new().put(url).bearer_auth(token).send().await;
}

/// Waits until `f` holds (polling the test's own upstream, never the server).
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn kill_9_after_the_upstream_rotated_leaves_the_connection_usable_or_clearly_in_error() {
    let up = upstream().await;
    let dir = catalog(&up);
    let mut env: Vec<(&str, String)> = env_of(&up, &dir);
    env.push(("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut doomed = Server::start_with(&env);
    let peer = doomed.start_peer(&env);
    let flow = Flow::signup(&doomed, "crash@example.com").await;
    let token = flow.login_client("connections").await.1.access;

    // 1. The instance dies while the provider answers: it has rotated the refresh token, the
    //    instance never stored the new one.
    let id = connect(&peer, &up, &token, &flow.http).await;
    up.seen.lock().unwrap().refresh_delay_ms = Some(30_000);
    let (base, t, i) = (doomed.base.clone(), token.clone(), id.clone());
    let inflight = tokio::spawn(refresh_on_doomed(base, t, i));
    until("the upstream to rotate", || up.seen.lock().unwrap().refreshes == 1).await;
    doomed.kill9();
    let _ = inflight.await;
    up.seen.lock().unwrap().refresh_delay_ms = Some(0);
    // The peer waits for the dead holder's lease to run out, refreshes with the refresh token it
    // has (the provider no longer takes it) and says what happened.
    let started = std::time::Instant::now();
    let res = put_refresh(&peer.base, &token, &id).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by the lease");
    assert_eq!(v["status"], "error", "{v}");
    assert!(v["lastError"].as_str().unwrap().contains("interrupted"), "{v}");
    assert_eq!(get(&peer, &token, &id).await["status"], "error");
    assert_eq!(up.seen.lock().unwrap().refreshes, 2);
    // The status change is audited (the audit log also streams it), with the reason.
    let mut audited = String::new();
    for _ in 0..50 {
        let out = peer
            .command()
            .args(["admin", "audit", "tail", "--format", "json", "--data-dir"])
            .arg(doomed.dir.path())
            .output()
            .unwrap();
        audited = String::from_utf8_lossy(&out.stdout).into_owned();
        if audited.contains("connection.status_changed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Value = serde_json::from_str(&audited).unwrap();
    let change = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "connection.status_changed" && e["target"] == id.as_str())
        .unwrap_or_else(|| panic!("{audited}"))
        .clone();
    assert_eq!((change["details"]["from"].as_str(), change["details"]["to"].as_str()), (Some("active"), Some("error")));
    assert!(change["details"]["reason"].as_str().unwrap().contains("interrupted"), "{change}");

    // 2. The instance dies right after the provider's answer left it: either it stored the rotated
    //    token (then the connection works with it) or it did not (then the same clear error).
    let second = connect(&peer, &up, &token, &flow.http).await;
    // (A peer of the first server: its data directory is the database's on SQLite.)
    let mut doomed = doomed.start_peer(&env);
    let before = up.seen.lock().unwrap().answered;
    let (base, t, i) = (doomed.base.clone(), token.clone(), second.clone());
    let inflight = tokio::spawn(refresh_on_doomed(base, t, i));
    until("the upstream's answer", || up.seen.lock().unwrap().answered > before).await;
    doomed.kill9();
    let _ = inflight.await;
    let refreshes = up.seen.lock().unwrap().refreshes;
    let v: Value = put_refresh(&peer.base, &token, &second).await.json().await.unwrap();
    match v["status"].as_str() {
        Some("active") => {
            // The refresh just made presented the rotated refresh token: the provider accepted it.
            assert_eq!(up.seen.lock().unwrap().refreshes, refreshes + 1);
            assert!(v["lastError"].is_null(), "{v}");
            eprintln!("kill -9 after the answer: the rotated token had been stored; the connection works");
        }
        Some("error") => {
            assert!(v["lastError"].as_str().unwrap().contains("interrupted"), "{v}");
            eprintln!("kill -9 after the answer: the instance died before storing; the connection says so");
        }
        _ => panic!("never silently broken: {v}"),
    }
}

#[tokio::test]
async fn master_key_rotation_keeps_every_connection_usable() {
    let up = upstream().await;
    let dir = catalog_with(&up, crate::connections::ACME);
    let env: Vec<(&str, String)> = env_of(&up, &dir);
    let mut issuer_env = env.clone();
    issuer_env.push(("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1".into()));
    let server = Server::start_with(&issuer_env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let old = master_of(&server);
    let new = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let flow = Flow::signup(&server, "rotate@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let oauth = connect(&server, &up, &token, &flow.http).await;
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/connections/initiate"))
        .bearer_auth(&token)
        .json(&json!({"providerId": "acme", "redirectUrl": "http://127.0.0.1:9/callback", "providerParams": {"apiKey": "acme-key-1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let acme = res.json::<Value>().await.unwrap()["connection"]["id"].as_str().unwrap().to_owned();
    let account = AccountId::from_string(get(&server, &token, &oauth).await["accountId"].as_str().unwrap());

    // Phase 1: an instance with the new key active and the old one kept for opening serves.
    let mut ring_env = issuer_env.clone();
    ring_env.push(("BRIDGEKEEPER_MASTER_KEY", new.clone()));
    ring_env.push(("BRIDGEKEEPER_OPEN_ONLY_MASTER_KEYS", old.clone()));
    let ring_env: Vec<(&str, &str)> = ring_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let serving = server.start_peer(&ring_env);
    let cli = |args: &[&str]| {
        let mut c = server.command();
        c.args(args).arg("--data-dir").arg(server.dir.path());
        for (k, v) in &ring_env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, listed, err) = cli(&["keys", "list", "--format", "json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["master_keys"][0]["active"], true);
    assert_eq!(listed["master_keys"][0]["id"], key(&new).id());
    assert_eq!(listed["master_keys"][0]["sealed_values"], 0);
    assert!(listed["master_keys"][1]["sealed_values"].as_u64().unwrap() >= 3, "{listed}");

    // Phase 2: re-seal while refreshes go on through the serving instance.
    let refreshing = {
        let (base, t, id) = (serving.base.clone(), token.clone(), oauth.clone());
        tokio::spawn(async move {
            for _ in 0..3 {
                assert_eq!(put_refresh(&base, &t, &id).await.status(), 200);
            }
        })
    };
    let (ok, out, err) = cli(&["keys", "rotate-master"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("re-sealed"), "{out}");
    refreshing.await.unwrap();
    let (ok, again, _) = cli(&["keys", "rotate-master"]);
    assert!(ok && again.contains("re-sealed 0 values"), "{again}");
    let (_, listed, _) = cli(&["keys", "list", "--format", "json"]);
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["master_keys"][1]["sealed_values"], 0, "no value left under the old key: {listed}");
    assert_eq!(listed["not_in_ring"], json!([]));

    // Phase 3: the old key removed. A server with only the new key starts (its signing keys open),
    // and every connection is usable.
    let mut only_new = issuer_env.clone();
    only_new.push(("BRIDGEKEEPER_MASTER_KEY", new.clone()));
    let only_new: Vec<(&str, &str)> = only_new.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fresh = server.start_peer(&only_new);
    let v: Value = put_refresh(&fresh.base, &token, &oauth).await.json().await.unwrap();
    assert_eq!(v["status"], "active", "{v}");
    let (b, store) = broker(&server, &up, &dir, key(&new)).await;
    let (oauth, acme) = (ConnectionId::from_string(oauth), ConnectionId::from_string(acme));
    assert!(access_token(&b.credential(&account, &oauth).await.unwrap()).starts_with("upstream-at-"));
    assert_eq!(access_token(&b.credential(&account, &acme).await.unwrap()), "acme-key-1");
    let (old_only, _) = broker(&server, &up, &dir, key(&old)).await;
    assert!(matches!(old_only.credential(&account, &acme).await, Err(BrokerError::Unreadable)));

    // A ciphertext moved to another row does not open there.
    let sealed = store.sealed_credential(&account, &oauth).await.unwrap().unwrap();
    let c = store.connection(&account, &acme).await.unwrap().unwrap();
    assert!(store.update_connection(&account, &c, Some(&sealed)).await.unwrap());
    assert!(matches!(b.credential(&account, &acme).await, Err(BrokerError::Unreadable)));
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// `bench/broker.sh` runs this (release build): the per-call cost of `credential()` with the token
/// still good (one read and one AES-GCM open) next to its parts, the cost when it must refresh next
/// to the upstream token endpoint called directly, and what a caller waiting on another's refresh
/// sees next to the upstream's own latency — all measured in the same run, printed as ratios.
#[tokio::test]
#[ignore = "benchmark: bench/broker.sh"]
async fn bench_credential() {
    let up = upstream().await;
    let dir = catalog(&up);
    let env: Vec<(&str, String)> = env_of(&up, &dir);
    let server = Server::start_with(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    let flow = Flow::signup(&server, "bench@example.com").await;
    let token = flow.login_client("connections").await.1.access;
    let id = connect(&server, &up, &token, &flow.http).await;
    let account = AccountId::from_string(get(&server, &token, &id).await["accountId"].as_str().unwrap());
    let id = ConnectionId::from_string(id);
    let master = key(&master_of(&server));
    let (b, store) = broker(&server, &up, &dir, key(&master_of(&server))).await;
    let vault = Vault::new(Arc::new(master));
    let (catalog, client) = catalog_and_client(&up, &dir);
    let Some(bk_connections::AuthKind::OAuth2(o)) = catalog.get("testidp").map(|p| &p.auth) else { panic!() };
    up.seen.lock().unwrap().refresh_delay_ms = Some(0);
    let n = 2000;

    // 1. The token is good: the read alone, the read + open, and credential(), in interleaved
    //    rounds (the best round of each), so warm-up and caches favour none of them.
    for _ in 0..200 {
        b.credential(&account, &id).await.unwrap();
    }
    let (mut read, mut read_open, mut cached) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = std::time::Instant::now();
        for _ in 0..n {
            store.sealed_connection(&account, &id).await.unwrap().unwrap();
        }
        read = read.min(micros(t.elapsed()) / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            let row = store.sealed_connection(&account, &id).await.unwrap().unwrap();
            drop(vault.open(&account, &id, &row.sealed).unwrap());
        }
        read_open = read_open.min(micros(t.elapsed()) / n as f64);
        let t = std::time::Instant::now();
        for _ in 0..n {
            drop(b.credential(&account, &id).await.unwrap());
        }
        cached = cached.min(micros(t.elapsed()) / n as f64);
    }
    println!("{:<58} {read:>10.1} µs/call", "baseline: the database read alone (sealed_connection)");
    println!("{:<58} {read_open:>10.1} µs/call", "baseline: read + vault open (AES-256-GCM, JSON)");
    println!("{:<58} {cached:>10.1} µs/call", "credential(), token still good");

    // 2. The upstream token endpoint called directly (TLS handshake + refresh), then credential()
    //    on an expiring connection (read, lease, upstream, seal, store).
    let rounds = 30;
    let mut direct = Vec::new();
    for _ in 0..rounds {
        let rt = up.seen.lock().unwrap().valid_refresh.clone();
        let cred = Credential::OAuth {
            access_token: "x".into(),
            refresh_token: rt,
            token_type: "Bearer".into(),
            upstream: None,
        };
        let t = std::time::Instant::now();
        drop(client.refresh(o, &cred).await.unwrap());
        direct.push(micros(t.elapsed()));
    }
    // The direct calls rotated the refresh token: store the current one so the broker can refresh.
    let rt = up.seen.lock().unwrap().valid_refresh.clone();
    let cred =
        Credential::OAuth { access_token: "x".into(), refresh_token: rt, token_type: "Bearer".into(), upstream: None };
    let c = store.connection(&account, &id).await.unwrap().unwrap();
    store.update_connection(&account, &c, Some(&vault.seal(&account, &id, &cred).unwrap())).await.unwrap();
    let mut refreshing = Vec::new();
    for _ in 0..rounds {
        expire_at(&store, &account, &id, now() + 10).await;
        let t = std::time::Instant::now();
        drop(b.credential(&account, &id).await.unwrap());
        refreshing.push(micros(t.elapsed()));
    }
    direct.sort_by(f64::total_cmp);
    refreshing.sort_by(f64::total_cmp);
    let (d50, r50) = (percentile(&direct, 0.5), percentile(&refreshing, 0.5));
    println!("{:<58} {:>10.1} µs p50", "upstream token endpoint, called directly", d50);
    println!("{:<58} {:>10.1} µs p50", "credential(), expiring: refreshes first", r50);

    // 3. Single flight: 50 callers on an expiring connection while the upstream takes 200 ms.
    up.seen.lock().unwrap().refresh_delay_ms = Some(200);
    let mut upstream_slow = Vec::new();
    let mut waiters = Vec::new();
    for _ in 0..5 {
        let rt = up.seen.lock().unwrap().valid_refresh.clone();
        let cred = Credential::OAuth {
            access_token: "x".into(),
            refresh_token: rt,
            token_type: "Bearer".into(),
            upstream: None,
        };
        let t = std::time::Instant::now();
        drop(client.refresh(o, &cred).await.unwrap());
        upstream_slow.push(micros(t.elapsed()));
        let rt = up.seen.lock().unwrap().valid_refresh.clone();
        let cred = Credential::OAuth {
            access_token: "x".into(),
            refresh_token: rt,
            token_type: "Bearer".into(),
            upstream: None,
        };
        store.update_connection(&account, &c, Some(&vault.seal(&account, &id, &cred).unwrap())).await.unwrap();
        expire_at(&store, &account, &id, now() + 10).await;
        let before = up.seen.lock().unwrap().refreshes;
        let mut calls = Vec::new();
        for _ in 0..50 {
            let (b, account, id) = (b.clone(), account.clone(), id.clone());
            calls.push(tokio::spawn(async move {
                let t = std::time::Instant::now();
                drop(b.credential(&account, &id).await.unwrap());
                micros(t.elapsed())
            }));
        }
        for c in calls {
            waiters.push(c.await.unwrap());
        }
        assert_eq!(up.seen.lock().unwrap().refreshes, before + 1, "one refresh per round");
    }
    upstream_slow.sort_by(f64::total_cmp);
    waiters.sort_by(f64::total_cmp);
    let u50 = percentile(&upstream_slow, 0.5);
    println!("{:<58} {:>10.1} µs p50", "upstream token endpoint taking 200 ms, called directly", u50);
    println!(
        "{:<58} {:>10.1} µs p50 {:>10.1} µs p99 {:>10.1} µs max",
        "a caller among 50 during one single-flight refresh",
        percentile(&waiters, 0.5),
        percentile(&waiters, 0.99),
        waiters[waiters.len() - 1]
    );
    println!("ratios (same run):");
    println!("  credential() good token / database read alone        {:>8.2}", cached / read);
    println!("  credential() good token / read + open                 {:>8.2}", cached / read_open);
    println!("  credential() refreshing / upstream endpoint direct    {:>8.2}", r50 / d50);
    println!("  credential() refreshing / credential() good token     {:>8.1}", r50 / cached);
    println!("  waiter p50 / upstream endpoint (200 ms) direct        {:>8.2}", percentile(&waiters, 0.5) / u50);
    println!("  waiter p99 / upstream endpoint (200 ms) direct        {:>8.2}", percentile(&waiters, 0.99) / u50);
}
