//! The audit log: every event kind, tenant isolation, redaction, retention, tamper evidence, live stream.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, bin, client, input, operator_token, tokens};

const CB: &str = "http://127.0.0.1:9/callback";

/// Every row of the operator audit log, once `until` holds (events are written asynchronously).
async fn admin_rows(server: &Server, op: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = reqwest::Client::new()
            .get(server.url("/api/v1/admin/audit?limit=1000"))
            .bearer_auth(op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rows = v["events"].as_array().cloned().unwrap_or_default();
        if until(&rows) || std::time::Instant::now() > deadline {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn kinds(rows: &[Value]) -> BTreeSet<(String, String)> {
    rows.iter().map(|r| (r["kind"].as_str().unwrap().to_owned(), r["outcome"].as_str().unwrap().to_owned())).collect()
}

#[tokio::test]
async fn each_event_kind_is_emitted() {
    let server = Server::start_with(&[("BRIDGEKEEPER_LIMITS__REGISTRATIONS_PER_MINUTE", "6")]);
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "events@example.com").await; // account.signup
    // auth.signin failure, then success (login inside approve()).
    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/"),
            ("email", "events@example.com"),
            ("password", "wrong password"),
        ])
        .send()
        .await
        .unwrap();
    let fresh = Flow { http: client(), ..flow };
    // client.registered, auth.consent, auth.code_issued, auth.code_redeemed, token.issued, auth.signin
    let (client_id, t) = fresh.login_client("universal-mcp-read-write account").await;
    // auth.consent denied
    fresh.decide(&fresh.authorize_url(&client_id, CB, "universal-mcp-read", "s"), "deny").await;
    // token.refreshed, then token.refresh_replay
    let t2 = tokens(fresh.refresh(&client_id, &t.refresh).await).await;
    fresh.refresh(&client_id, &t.refresh).await;
    // auth.code_replay (a second session, its code used twice)
    let back = fresh.approve(&fresh.authorize_url(&client_id, CB, "universal-mcp-read-write account", "s2")).await;
    let code = crate::harness::query_param(&back, "code").unwrap();
    let t3 = fresh.exchange_code(&client_id, CB, &code).await;
    fresh
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CB),
            ("client_id", &client_id),
            ("code_verifier", crate::harness::VERIFIER),
        ])
        .await;
    let _ = t2;
    // mcp.tools_call, with a third session
    let (cid3, t4) = fresh.login_client("universal-mcp-read-write account").await;
    crate::harness::whoami(&server.base, &t4.access).await;
    // token.revoked
    reqwest::Client::new()
        .post(server.url("/api/v1/auth/revoke"))
        .form(&[("token", t4.refresh.as_str()), ("client_id", cid3.as_str())])
        .send()
        .await
        .unwrap();
    let _ = t3;
    // pat.created (in the signed-in browser: an app's token may not), pat.revoked, session.revoked
    let (_, t5) = fresh.login_client("account universal-mcp-read").await;
    let pat: Value = fresh
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "p", "scopes": ["account"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pat_id = pat["id"].as_str().unwrap();
    reqwest::Client::new()
        .delete(server.url(&format!("/api/v1/auth/pat/{pat_id}")))
        .bearer_auth(&t5.access)
        .send()
        .await
        .unwrap();
    let sessions: Value = reqwest::Client::new()
        .get(server.url("/api/v1/sessions"))
        .bearer_auth(&t5.access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = sessions["sessions"][0]["id"].as_str().unwrap().to_owned();
    // client.created, client.updated, client.secret_rotated, client.deleted
    let created: Value = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({"name": "Ops", "redirectUris": [CB]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["clientId"].as_str().unwrap();
    let http = reqwest::Client::new();
    http.put(server.url(&format!("/api/v1/auth-clients/{id}")))
        .bearer_auth(&op)
        .json(&json!({"name": "Ops 2", "redirectUris": [CB]}))
        .send()
        .await
        .unwrap();
    http.put(server.url(&format!("/api/v1/auth-clients/{id}/secret"))).bearer_auth(&op).send().await.unwrap();
    http.delete(server.url(&format!("/api/v1/auth-clients/{id}"))).bearer_auth(&op).send().await.unwrap();
    // ratelimit.refused: the DCR limit (6/min here) is reached.
    for _ in 0..3 {
        fresh.register(CB, "universal-mcp-read").await;
    }
    let res = http
        .post(server.url("/api/v1/auth/register"))
        .json(&json!({"redirect_uris": [CB], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 429);
    http.delete(server.url(&format!("/api/v1/sessions/{sid}"))).bearer_auth(&t5.access).send().await.unwrap();

    let expected: Vec<(&str, &str)> = vec![
        ("account.signup", "success"),
        ("auth.signin", "failure"),
        ("auth.signin", "success"),
        ("client.registered", "success"),
        ("auth.consent", "success"),
        ("auth.consent", "denied"),
        ("auth.code_issued", "success"),
        ("auth.code_redeemed", "success"),
        ("auth.code_replay", "failure"),
        ("token.issued", "success"),
        ("token.refreshed", "success"),
        ("token.refresh_replay", "failure"),
        ("token.revoked", "success"),
        ("mcp.tools_call", "success"),
        ("pat.created", "success"),
        ("pat.revoked", "success"),
        ("session.revoked", "success"),
        ("client.created", "success"),
        ("client.updated", "success"),
        ("client.secret_rotated", "success"),
        ("client.deleted", "success"),
        ("ratelimit.refused", "denied"),
    ];
    let want: BTreeSet<(String, String)> = expected.iter().map(|(k, o)| (k.to_string(), o.to_string())).collect();
    let rows = admin_rows(&server, &op, |rows| want.is_subset(&kinds(rows))).await;
    let have = kinds(&rows);
    let missing: Vec<_> = want.difference(&have).collect();
    assert!(missing.is_empty(), "missing events: {missing:?}");
    // Tool calls carry tool, provider and latency; replays say the session was revoked.
    let call = rows.iter().find(|r| r["kind"] == "mcp.tools_call").unwrap();
    assert_eq!(call["details"]["tool"], "whoami");
    assert_eq!(call["details"]["provider"], "bridgekeeper");
    assert!(call["latency_ms"].is_i64());
    assert!(call["account_id"].as_str().unwrap().starts_with("acc_"));
    let replay = rows.iter().find(|r| r["kind"] == "token.refresh_replay").unwrap();
    assert_eq!(replay["details"]["session_revoked"], true);
}

#[tokio::test]
async fn cross_tenant_audit_probe_returns_empty() {
    let server = Server::start();
    let alice = Flow::signup(&server, "alice-audit@example.com").await;
    let bob = Flow::signup(&server, "bob-audit@example.com").await;
    let (_, ta) = alice.login_client("account universal-mcp-read-write").await;
    let (_, tb) = bob.login_client("account").await;
    crate::harness::whoami(&server.base, &ta.access).await;
    let alice_id = crate::harness::jwt_parts(&ta.access).1["sub"].as_str().unwrap().to_owned();
    let get = |token: String, q: String| {
        let url = server.url(&format!("/api/v1/audit{q}"));
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap() }
    };
    // Alice sees her own rows (once written).
    let mut own = Value::Null;
    for _ in 0..50 {
        own = get(ta.access.clone(), String::new()).await.json().await.unwrap();
        if own["events"].as_array().unwrap().iter().any(|e| e["kind"] == "mcp.tools_call") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let own_rows = own["events"].as_array().unwrap();
    assert!(own_rows.iter().all(|e| e["account_id"] == alice_id.as_str()));
    assert!(own_rows.iter().any(|e| e["kind"] == "mcp.tools_call"));
    // Bob probing for Alice's rows gets an empty page, exactly like an account with no rows.
    let probe = get(tb.access.clone(), format!("?account_id={alice_id}")).await;
    assert_eq!(probe.status(), 200);
    let probe: Value = probe.json().await.unwrap();
    let nobody: Value = get(tb.access.clone(), "?account_id=acc_does_not_exist".into()).await.json().await.unwrap();
    assert_eq!(probe, json!({"events": [], "next_cursor": null}));
    assert_eq!(probe, nobody);
    // Bob's own log holds none of Alice's rows.
    let mine: Value = get(tb.access.clone(), String::new()).await.json().await.unwrap();
    assert!(mine["events"].as_array().unwrap().iter().all(|e| e["account_id"] != alice_id.as_str()));
    // Without the account scope: refused; the operator endpoint needs an operator token.
    let (_, no_scope) = alice.login_client("universal-mcp-read").await;
    assert_eq!(get(no_scope.access, String::new()).await.status(), 403);
    let res =
        reqwest::Client::new().get(server.url("/api/v1/admin/audit")).bearer_auth(&ta.access).send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn redaction_of_every_secret_kind() {
    let server = Server::start_with(&[("BRIDGEKEEPER_AUDIT__REDACT", r#"["acme-key-[0-9]{6}"]"#)]);
    let op = operator_token(&server);
    let flow = Flow::signup(&server, "secrets@example.com").await;
    let (client_id, t) = flow.login_client("universal-mcp-read-write account").await;
    let t2 = tokens(flow.refresh(&client_id, &t.refresh).await).await;
    let pat: Value = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "p", "scopes": ["account"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pat_token = pat["token"].as_str().unwrap().to_owned();
    let conf: Value = reqwest::Client::new()
        .post(server.url("/api/v1/auth-clients"))
        .bearer_auth(&op)
        .json(&json!({"name": "Backend", "type": "confidential", "redirectUris": [CB]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_secret = conf["clientSecret"].as_str().unwrap().to_owned();
    let upstream = "ya29.a0AfH6SMBupstreamtokenvalue";
    let custom = "acme-key-123456";
    // Secrets pushed through event paths that carry user-supplied text: a client name, a login email.
    let sneaky_name = format!("x {} {} Bearer {} {} {}", t.refresh, t2.access, pat_token, upstream, custom);
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/auth/register"))
        .json(&json!({"client_name": sneaky_name, "redirect_uris": [CB], "token_endpoint_auth_method": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let http = client();
    let page = http.get(server.url("/login")).send().await.unwrap().text().await.unwrap();
    http.post(server.url("/login"))
        .form(&[
            ("csrf_token", input(&page, "csrf_token").as_str()),
            ("next", "/"),
            ("email", &format!("{client_secret}@x.io")),
            ("password", &flow.password),
        ])
        .send()
        .await
        .unwrap();
    crate::harness::whoami(&server.base, &t2.access).await;
    let rows = admin_rows(&server, &op, |rows| {
        rows.iter().any(|r| r["kind"] == "client.registered") && rows.iter().any(|r| r["kind"] == "mcp.tools_call")
    })
    .await;
    let registered = rows
        .iter()
        .find(|r| r["kind"] == "client.registered" && r["details"]["name"].as_str().unwrap().starts_with("x "))
        .unwrap();
    assert!(registered["details"]["name"].as_str().unwrap().contains("[REDACTED]"));
    // Stop the server so everything is flushed, then grep every byte it persisted or logged.
    let logs = server.logs();
    let url = server.db_url();
    let (status, dir) = server.stop();
    assert!(status.success());
    let dir = dir.path().to_owned();
    let mut persisted = Vec::new();
    if crate::harness::on_postgres() {
        // On PostgreSQL the rows are checked through the database itself.
        let pool = db(&url).await;
        for table in [
            "audit_events",
            "clients",
            "sessions",
            "refresh_tokens",
            "authorization_codes",
            "personal_access_tokens",
            "accounts",
        ] {
            let rows: Vec<String> =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT CAST(t.* AS TEXT) FROM {table} t")))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            persisted.extend(rows.join("\n").into_bytes());
        }
    }
    // Every file of the data directory, and of its folders (the outbox of log-only mail: the
    // messages hold their own single-use links, and none of the secrets below).
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            for inner in std::fs::read_dir(&path).unwrap() {
                persisted.extend(std::fs::read(inner.unwrap().path()).unwrap());
            }
        } else {
            persisted.extend(std::fs::read(path).unwrap());
        }
    }
    let persisted = String::from_utf8_lossy(&persisted).into_owned();
    for (what, secret) in [
        ("refresh token", t.refresh.as_str()),
        ("rotated refresh token", t2.refresh.as_str()),
        ("access token (JWT)", t.access.as_str()),
        ("PAT", pat_token.as_str()),
        ("client secret", client_secret.as_str()),
        ("password", flow.password.as_str()),
        ("upstream token", upstream),
        ("custom pattern", custom),
    ] {
        assert!(!persisted.contains(secret), "{what} found in the database");
        assert!(!logs.contains(secret), "{what} found in the logs");
    }
}

fn cli(env: &[(String, String)], dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(bin());
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).arg("--data-dir").arg(dir).output().unwrap()
}

async fn db(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(url).await.unwrap()
}

#[tokio::test]
async fn chain_verification_detects_an_edited_row() {
    let server = Server::start();
    let flow = Flow::signup(&server, "chain@example.com").await;
    flow.login_client("universal-mcp-read").await;
    let op = operator_token(&server);
    admin_rows(&server, &op, |rows| rows.len() >= 5).await;
    let (env, url) = (server.db_env.clone(), server.db_url());
    let (_, keep) = server.stop();
    let dir = keep.path().to_owned();
    let ok = cli(&env, &dir, &["admin", "audit", "verify"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact"));
    // Someone edits a row of the account in the database.
    let pool = db(&url).await;
    let seq: i64 = sqlx::query_scalar("SELECT MIN(seq) FROM audit_events WHERE account_id IS NOT NULL AND seq > 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_events SET outcome = 'success', details = '{\"edited\":true}' WHERE seq = $1")
        .bind(seq)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let bad = cli(&env, &dir, &["admin", "audit", "verify"]);
    assert!(!bad.status.success());
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains(&format!("BROKEN at row {seq}")), "{out}");
    // Marking the edited row redacted (as deleting an account does) does not hide the edit: the
    // chain records no deletion of its account.
    let pool = db(&url).await;
    sqlx::query("UPDATE audit_events SET redacted_at = 1 WHERE seq = $1").bind(seq).execute(&pool).await.unwrap();
    pool.close().await;
    let still = cli(&env, &dir, &["admin", "audit", "verify"]);
    assert!(!still.status.success());
    let out = String::from_utf8_lossy(&still.stdout);
    assert!(out.contains(&format!("BROKEN at row {seq}")) && out.contains("no deletion of its account"), "{out}");
    // The tail shows rows in text and JSON.
    let tail = cli(&env, &dir, &["admin", "audit", "tail", "--format", "json", "--since-mins", "60"]);
    let rows: Value = serde_json::from_slice(&tail.stdout).unwrap();
    assert!(rows.as_array().unwrap().len() >= 5);
}

#[tokio::test]
async fn retention_by_rows_and_by_days_keeps_the_chain_verifiable() {
    let server = Server::start();
    let flow = Flow::signup(&server, "retain@example.com").await;
    for _ in 0..2 {
        flow.login_client("universal-mcp-read").await;
    }
    let op = operator_token(&server);
    let rows = admin_rows(&server, &op, |rows| rows.len() >= 10).await;
    assert!(rows.len() >= 10, "{} rows", rows.len());
    let (env, url) = (server.db_env.clone(), server.db_url());
    let (_, keep) = server.stop();
    let dir = keep.path().to_owned();
    // Age the three oldest rows (their stored hashes stay as they were).
    let pool = db(&url).await;
    sqlx::query("UPDATE audit_events SET at_ms = 0 WHERE seq <= 3").execute(&pool).await.unwrap();
    pool.close().await;
    // Restart with retention: by days (drops the aged rows) and by rows (keeps 5).
    let mut cmd = Command::new(bin());
    for (k, v) in &env {
        cmd.env(k, v);
    }
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env("BRIDGEKEEPER_AUDIT__RETENTION_DAYS", "1")
        .env("BRIDGEKEEPER_AUDIT__MAX_ROWS", "5")
        .stdout(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let pool = db(&url).await;
    let mut count: i64 = -1;
    while std::time::Instant::now() < deadline {
        count = sqlx::query_scalar("SELECT COUNT(*) FROM audit_events").fetch_one(&pool).await.unwrap();
        if count <= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(count <= 5, "retention kept {count} rows");
    let v = cli(&env, &dir, &["admin", "audit", "verify"]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[tokio::test]
async fn sse_stream_receives_own_tool_calls_and_none_of_another() {
    let server = Server::start();
    let alice = Flow::signup(&server, "alice-sse@example.com").await;
    let bob = Flow::signup(&server, "bob-sse@example.com").await;
    let (_, ta) = alice.login_client("account universal-mcp-read-write").await;
    let (_, tb) = bob.login_client("account universal-mcp-read-write").await;
    let alice_id = crate::harness::jwt_parts(&ta.access).1["sub"].as_str().unwrap().to_owned();
    let mut res =
        reqwest::Client::new().get(server.url("/api/v1/events")).bearer_auth(&ta.access).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // Bob calls first, then Alice.
    crate::harness::whoami(&server.base, &tb.access).await;
    crate::harness::whoami(&server.base, &ta.access).await;
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("mcp.tools_call") {
        match tokio::time::timeout_at(deadline, res.chunk()).await {
            Ok(Ok(Some(c))) => seen.push_str(&String::from_utf8_lossy(&c)),
            _ => break,
        }
    }
    let events: Vec<Value> = seen
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    assert!(events.iter().any(|e| e["kind"] == "mcp.tools_call" && e["account_id"] == alice_id.as_str()), "{seen}");
    assert!(events.iter().all(|e| e["account_id"] == alice_id.as_str()), "another account's event leaked: {seen}");
}

/// NATS runs at 127.0.0.1:4222 on development and CI machines.
#[tokio::test]
async fn audit_events_are_published_to_nats() {
    let nats = async_nats::connect("127.0.0.1:4222").await.expect("NATS at 127.0.0.1:4222");
    let server = Server::start_with(&[("BRIDGEKEEPER_AUDIT__NATS_URL", "nats://127.0.0.1:4222")]);
    let flow = Flow::signup(&server, "nats@example.com").await;
    let (_, t) = flow.login_client("universal-mcp-read-write").await;
    let account = crate::harness::jwt_parts(&t.access).1["sub"].as_str().unwrap().to_owned();
    let mut sub = nats.subscribe(format!("bridgekeeper.audit.{account}")).await.unwrap();
    nats.flush().await.unwrap();
    // The publisher may still be connecting: call until an event arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let msg = loop {
        crate::harness::whoami(&server.base, &t.access).await;
        match tokio::time::timeout(Duration::from_millis(500), futures_util::StreamExt::next(&mut sub)).await {
            Ok(Some(m)) => break m,
            _ => assert!(tokio::time::Instant::now() < deadline, "no audit event on NATS"),
        }
    };
    let v: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(v["account_id"], account.as_str());
    assert!(v["hash"].as_str().is_some_and(|h| h.len() == 64));
}
