//! Operators' upstream API keys for LLM models, through the real binary against the scripted
//! upstream (which records the headers it receives): `PUT /api/v1/admin/llm/models/{id}/api-key`
//! makes the upstream receive the stored key (on this instance at once, on another within two
//! seconds), the key sealed in the database and in no answer, audit row or log line; `DELETE` falls
//! back to the configured (environment) key; unknown models 404; only an operator token may set
//! one; a sealed key copied to another model does not open; `keys rotate-master` re-seals it.

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use crate::harness::{Server, operator_token};
use crate::llm::{KEY, KEY_VAR, chat, model_env, person};
use crate::scripted_llm::ScriptedLlm;

const STORED: &str = "sk-stored-SECRET-9d1e44b0";
const PATH: &str = "/api/v1/admin/llm/models/test-model/api-key";

fn env_of(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn script() -> Value {
    json!({"replies": [{"content": "hi", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}]})
}

async fn set_key(server: &Server, token: &str, path: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new().put(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap()
}

async fn clear_key(server: &Server, token: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new().delete(server.url(path)).bearer_auth(token).send().await.unwrap()
}

/// One completion of `model`; the Authorization header the upstream received for it.
async fn upstream_auth(server: &Server, llm: &ScriptedLlm, pat: &str, model: &str) -> Option<String> {
    let before = llm.requests().len();
    let res =
        chat(server, pat, json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}))
            .await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(!text.contains(STORED), "a completion's answer carries the key");
    assert_eq!(status, 200, "{text}");
    let sent = llm.requests();
    assert_eq!(sent.len(), before + 1);
    sent[before].header("authorization").map(str::to_owned)
}

async fn pool(server: &Server) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&server.db_url()).await.unwrap()
}

async fn stored_rows(server: &Server) -> Vec<(String, Vec<u8>)> {
    let pool = pool(server).await;
    let rows =
        sqlx::query_as("SELECT model_id, sealed FROM llm_api_keys ORDER BY model_id").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

/// The audit events of a kind, once there are `n`: (target, details).
async fn audited(server: &Server, kind: &str, n: usize) -> Vec<(String, String)> {
    // The audit log is written behind the request: give it a moment.
    for _ in 0..50 {
        let pool = pool(server).await;
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT target, details FROM audit_events WHERE kind = $1 ORDER BY seq")
                .bind(kind)
                .fetch_all(&pool)
                .await
                .unwrap();
        pool.close().await;
        if rows.len() >= n {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {n} {kind} events")
}

async fn all_audit_text(server: &Server) -> String {
    let pool = pool(server).await;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, details FROM audit_events").fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows.iter().map(|(k, d)| format!("{k} {d}\n")).collect()
}

#[tokio::test]
async fn an_operator_set_llm_key_reaches_the_upstream_sealed_and_clearing_falls_back_to_the_env_key() {
    let llm = ScriptedLlm::start(script()).await;
    let env = model_env(&llm, 1000, 1000, 100_000);
    let server = Server::start_with(&env_of(&env));
    let op = operator_token(&server);
    let pat = person(&server, "keys@example.com", &["llm-all", "account"]).await;
    let bearer = |k: &str| Some(format!("Bearer {k}"));
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, bearer(KEY), "the configured key first");

    let res = set_key(&server, &op, PATH, json!({"apiKey": STORED})).await;
    assert_eq!(res.status(), 204);
    assert!(res.text().await.unwrap().is_empty(), "the key is not returned");
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, bearer(STORED), "the stored key at once");

    // In the database: sealed, not in the clear.
    let rows = stored_rows(&server).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "test-model");
    let sealed = &rows[0].1;
    assert!(sealed.len() > STORED.len());
    assert!(!sealed.windows(STORED.len()).any(|w| w == STORED.as_bytes()), "the key is stored in the clear");
    assert!(!String::from_utf8_lossy(sealed).contains("SECRET"));

    // Audited without the key; nowhere in answers that list models or the audit log.
    let set = audited(&server, "llm.api_key.set", 1).await;
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].0, "test-model");
    let models = reqwest::Client::new().get(server.url("/api/v1/models")).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(models.status(), 200);
    assert!(!models.text().await.unwrap().contains(STORED));
    let audit = reqwest::Client::new().get(server.url("/api/v1/admin/audit")).bearer_auth(&op).send().await.unwrap();
    assert_eq!(audit.status(), 200);
    let audit = audit.text().await.unwrap();
    assert!(audit.contains("llm.api_key.set"), "{audit}");
    assert!(!audit.contains(STORED));

    // Replacing it works the same way.
    let replaced = "sk-stored-SECRET-second-77";
    assert_eq!(set_key(&server, &op, PATH, json!({"apiKey": replaced})).await.status(), 204);
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, bearer(replaced));

    // Cleared: the environment's key again; clearing twice is still 204.
    assert_eq!(clear_key(&server, &op, PATH).await.status(), 204);
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, bearer(KEY), "back to the configured key");
    assert!(stored_rows(&server).await.is_empty());
    assert_eq!(clear_key(&server, &op, PATH).await.status(), 204);
    let cleared = audited(&server, "llm.api_key.cleared", 2).await;
    assert_eq!(cleared.len(), 2);
    assert!(cleared[0].1.contains("true") && cleared[1].1.contains("false"), "{cleared:?}");

    let all = all_audit_text(&server).await;
    assert!(!all.contains(STORED) && !all.contains(replaced), "a key in the audit log");
    let logs = server.logs();
    assert!(!logs.contains(STORED) && !logs.contains(replaced) && !logs.contains(KEY), "a key in the log");
}

#[tokio::test]
async fn another_instance_uses_a_newly_set_llm_key_within_two_seconds() {
    let llm = ScriptedLlm::start(script()).await;
    let mut env = model_env(&llm, 1000, 1000, 100_000);
    env.push(("BRIDGEKEEPER_ISSUER".into(), "http://127.0.0.1:1".into()));
    let first = Server::start_with(&env_of(&env));
    let peer = first.start_peer(&env_of(&env));
    let op = operator_token(&first);
    let pat = person(&first, "peer@example.com", &["llm-all"]).await;
    // The peer has read (and cached) that there is no stored key.
    assert_eq!(upstream_auth(&peer, &llm, &pat, "test-model").await, Some(format!("Bearer {KEY}")));
    assert_eq!(set_key(&first, &op, PATH, json!({"apiKey": STORED})).await.status(), 204);
    let set_at = Instant::now();
    loop {
        let auth = upstream_auth(&peer, &llm, &pat, "test-model").await;
        if auth == Some(format!("Bearer {STORED}")) {
            break;
        }
        assert!(set_at.elapsed() < Duration::from_millis(3_000), "the peer still sends the old key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(clear_key(&first, &op, PATH).await.status(), 204);
    let cleared_at = Instant::now();
    loop {
        if upstream_auth(&peer, &llm, &pat, "test-model").await == Some(format!("Bearer {KEY}")) {
            break;
        }
        assert!(cleared_at.elapsed() < Duration::from_millis(3_000), "the peer still sends the cleared key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!peer.logs().contains(STORED));
}

#[tokio::test]
async fn security_llm_api_keys_are_set_only_with_an_operator_token() {
    let llm = ScriptedLlm::start(script()).await;
    let env = model_env(&llm, 1000, 1000, 100_000);
    let server = Server::start_with(&env_of(&env));
    let pat = person(&server, "notop@example.com", &["llm-all", "account"]).await;
    let res = set_key(&server, &pat, PATH, json!({"apiKey": STORED})).await;
    assert_eq!(res.status(), 403);
    assert_eq!(clear_key(&server, &pat, PATH).await.status(), 403);
    let anonymous = reqwest::Client::new().put(server.url(PATH)).json(&json!({"apiKey": STORED})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let forged = set_key(&server, "bko_forged-operator-token", PATH, json!({"apiKey": STORED})).await;
    assert_eq!(forged.status(), 401);
    assert!(stored_rows(&server).await.is_empty(), "nothing stored");
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, Some(format!("Bearer {KEY}")));
    // Documented as operator-only operations.
    let doc: Value = reqwest::get(server.url("/openapi.json")).await.unwrap().json().await.unwrap();
    let ops = &doc["paths"]["/api/v1/admin/llm/models/{id}/api-key"];
    assert_eq!(ops["put"]["operationId"], "adminSetLlmApiKey");
    assert_eq!(ops["delete"]["operationId"], "adminClearLlmApiKey");
    assert_eq!(ops["put"]["security"], json!([{"operator": []}]));
}

#[tokio::test]
async fn an_unknown_model_is_404_and_a_bad_llm_key_is_400_with_nothing_stored() {
    let llm = ScriptedLlm::start(script()).await;
    let env = model_env(&llm, 1000, 1000, 100_000);
    let server = Server::start_with(&env_of(&env));
    let op = operator_token(&server);
    let unknown = "/api/v1/admin/llm/models/no-such-model/api-key";
    let res = set_key(&server, &op, unknown, json!({"apiKey": STORED})).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(clear_key(&server, &op, unknown).await.status(), 404);
    for bad in [
        json!({"apiKey": ""}),
        json!({"apiKey": "two\nlines"}),
        json!({"apiKey": " padded "}),
        json!({"apiKey": "x".repeat(4097)}),
        json!({"key": STORED}),
        json!({"apiKey": STORED, "extra": 1}),
    ] {
        let res = set_key(&server, &op, PATH, bad.clone()).await;
        assert_eq!(res.status(), 400, "{bad}");
        let body = res.text().await.unwrap();
        assert!(!body.contains(STORED), "{body}");
    }
    assert!(stored_rows(&server).await.is_empty(), "nothing stored");
    let pat = person(&server, "bad@example.com", &["llm-all"]).await;
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, Some(format!("Bearer {KEY}")));
}

#[tokio::test]
async fn security_a_sealed_llm_key_copied_to_another_model_does_not_open() {
    let llm = ScriptedLlm::start(script()).await;
    let models = format!(
        "[{{id=\"test-model\", base_url=\"{0}\", api_key_env=\"{KEY_VAR}\", prompt_credits_per_million=1000, \
         completion_credits_per_million=1000}}, {{id=\"org/other-model\", base_url=\"{0}\", api_key_env=\"{KEY_VAR}\", \
         prompt_credits_per_million=1000, completion_credits_per_million=1000}}]",
        llm.base_url
    );
    let env = vec![
        ("BRIDGEKEEPER_LLM__MODELS".to_owned(), models),
        ("BRIDGEKEEPER_CREDITS__SIGNUP_GRANT".to_owned(), "100000".to_owned()),
        (KEY_VAR.to_owned(), KEY.to_owned()),
    ];
    let server = Server::start_with(&env_of(&env));
    let op = operator_token(&server);
    let pat = person(&server, "moved@example.com", &["llm-all", "account"]).await;
    assert_eq!(set_key(&server, &op, PATH, json!({"apiKey": STORED})).await.status(), 204);
    let sealed = stored_rows(&server).await.remove(0).1;
    let pool = pool(&server).await;
    sqlx::query("INSERT INTO llm_api_keys (model_id, sealed, updated_at) VALUES ('org/other-model', $1, 0)")
        .bind(sealed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let before = llm.requests().len();
    let res = chat(
        &server,
        &pat,
        json!({"model": "org/other-model", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5}),
    )
    .await;
    assert!(res.status().is_server_error(), "{}", res.status());
    let body = res.text().await.unwrap();
    assert!(!body.contains(STORED), "{body}");
    assert_eq!(llm.requests().len(), before, "nothing reached the upstream");
    // The account was charged nothing.
    let ledger = crate::llm::ledger(&server, &pat).await;
    assert_eq!(ledger["balance"], 100_000);
    // The model it belongs to still works.
    assert_eq!(upstream_auth(&server, &llm, &pat, "test-model").await, Some(format!("Bearer {STORED}")));
    // The other model's own key (its id's `/` percent-encoded in the path) replaces the copy.
    let own = "sk-own-SECRET-of-other";
    let path = "/api/v1/admin/llm/models/org%2Fother-model/api-key";
    assert_eq!(set_key(&server, &op, path, json!({"apiKey": own})).await.status(), 204);
    assert_eq!(upstream_auth(&server, &llm, &pat, "org/other-model").await, Some(format!("Bearer {own}")));
}

#[tokio::test]
async fn keys_rotate_master_reseals_llm_api_keys_and_they_keep_working() {
    let llm = ScriptedLlm::start(script()).await;
    let mut env = model_env(&llm, 1000, 1000, 100_000);
    env.push(("BRIDGEKEEPER_ISSUER".into(), "http://127.0.0.1:1".into()));
    let server = Server::start_with(&env_of(&env));
    let op = operator_token(&server);
    let pat = person(&server, "rotate@example.com", &["llm-all"]).await;
    assert_eq!(set_key(&server, &op, PATH, json!({"apiKey": STORED})).await.status(), 204);
    let before = stored_rows(&server).await;
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
    let mut c = server.command();
    c.args(["keys", "rotate-master", "--data-dir"]).arg(server.dir.path());
    for (k, v) in &env {
        c.env(k, v);
    }
    c.env("BRIDGEKEEPER_MASTER_KEY", &new).env("BRIDGEKEEPER_OPEN_ONLY_MASTER_KEYS", &old);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(STORED) && !String::from_utf8_lossy(&out.stderr).contains(STORED));
    let after = stored_rows(&server).await;
    assert_eq!(after.len(), 1);
    assert_ne!(before[0].1, after[0].1, "re-sealed under the new key");
    let old_id = bk_crypto::envelope::key_id_of(&before[0].1).unwrap().to_owned();
    assert_ne!(bk_crypto::envelope::key_id_of(&after[0].1), Some(old_id.as_str()));
    // An instance holding only the new master key sends the stored key.
    let mut only_new = env.clone();
    only_new.push(("BRIDGEKEEPER_MASTER_KEY".into(), new));
    let fresh = server.start_peer(&env_of(&only_new));
    assert_eq!(upstream_auth(&fresh, &llm, &pat, "test-model").await, Some(format!("Bearer {STORED}")));
    assert!(!fresh.logs().contains(STORED));
}

/// `bridgekeeper admin llm …` on the server's database and configuration, `stdin` written to it.
fn cli(server: &Server, env: &[(String, String)], args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut c = server.command();
    c.args(["admin", "llm"]).args(args).arg("--data-dir").arg(server.dir.path());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn the_cli_sets_and_clears_an_llm_key_read_from_standard_input() {
    let llm = ScriptedLlm::start(script()).await;
    let env = model_env(&llm, 1000, 1000, 100_000);
    let server = Server::start_with(&env_of(&env));
    let pat = person(&server, "cli@example.com", &["llm-all"]).await;
    let out = cli(&server, &env, &["set-key", "--model", "test-model", "--key-stdin"], &format!("{STORED}\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!printed.contains(STORED), "{printed}");
    assert_eq!(stored_rows(&server).await.len(), 1);
    // Another process stored it: this instance sees it within its two-second recheck.
    let start = Instant::now();
    while upstream_auth(&server, &llm, &pat, "test-model").await != Some(format!("Bearer {STORED}")) {
        assert!(start.elapsed() < Duration::from_secs(3), "the server still sends the old key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let set = audited(&server, "llm.api_key.set", 1).await;
    assert!(set[0].0 == "test-model" && set[0].1.contains("cli"), "{set:?}");
    // Refused: an unknown model, a key with a space, no --key-stdin; nothing changed.
    let unknown = cli(&server, &env, &["set-key", "--model", "nope", "--key-stdin"], "sk-x\n");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no model \"nope\""));
    let spaced = cli(&server, &env, &["set-key", "--model", "test-model", "--key-stdin"], "sk with space\n");
    assert!(!spaced.status.success());
    assert!(!cli(&server, &env, &["set-key", "--model", "test-model"], "").status.success());
    assert_eq!(stored_rows(&server).await.len(), 1);
    let out = cli(&server, &env, &["clear-key", "--model", "test-model"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stored_rows(&server).await.is_empty());
    let start = Instant::now();
    while upstream_auth(&server, &llm, &pat, "test-model").await != Some(format!("Bearer {KEY}")) {
        assert!(start.elapsed() < Duration::from_secs(3), "the server still sends the cleared key");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
