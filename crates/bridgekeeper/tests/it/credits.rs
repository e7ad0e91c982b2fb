//! The credits ledger through the real binary: concurrent completions never overdraw a balance,
//! an empty balance refuses before the upstream is called, each account sees only its own rows,
//! and an operator's grant is credited and audited.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::operator_token;
use crate::llm::{chat, ledger, model_env, person, start_with_model};
use crate::scripted_llm::ScriptedLlm;

fn sum(rows: &Value) -> i64 {
    rows["transactions"].as_array().unwrap().iter().map(|r| r["amount"].as_i64().unwrap()).sum()
}

#[tokio::test]
async fn credits_race_fifty_concurrent_completions_on_two_instances_never_overdraw_and_the_ledger_sums_to_the_balance()
{
    // 1 credit per completion token, prompts free; each completion reports 2 tokens and asks for
    // at most 2, so each needs exactly 2 credits: a balance of 25 pays for 12.
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "ab", "delay_ms": 40,
        "usage": {"prompt_tokens": 3, "completion_tokens": 2}}]}))
    .await;
    let server = start_with_model(&llm, 0, 1_000_000, 25);
    // A second instance on the same database takes every other request (a load balancer).
    let env = model_env(&llm, 0, 1_000_000, 25);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let peer = server.start_peer(&env);
    let token = person(&server, "race@example.com", &["llm-all", "account"]).await;
    let body = json!({"model": "test-model", "max_tokens": 2, "messages": [{"role": "user", "content": "go"}]});
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let instance = if i % 2 == 0 { &server } else { &peer };
            let (url, token, body) = (instance.url("/api/v1/chat/completions"), token.clone(), body.clone());
            tokio::spawn(async move {
                let res = reqwest::Client::new().post(url).bearer_auth(token).json(&body).send().await.unwrap();
                let status = res.status().as_u16();
                let remaining: Option<i64> =
                    res.headers().get("x-credits-remaining").and_then(|v| v.to_str().ok()?.parse().ok());
                let v: Value = res.json().await.unwrap();
                (status, remaining, v)
            })
        })
        .collect();
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, remaining, v) = t.await.unwrap();
        match status {
            200 => ok += 1,
            402 => {
                refused += 1;
                assert_eq!(v["error"], "CreditsExhaustedError", "{v}");
            }
            s => panic!("unexpected status {s}: {v}"),
        }
        assert!(remaining.is_none_or(|r| r >= 0), "a negative balance was shown");
    }
    assert_eq!((ok, refused), (12, 38));
    assert_eq!(llm.requests().len(), 12, "refused requests never reached the upstream");
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 1);
    assert_eq!(sum(&l), 1, "the ledger sums to the balance");
    let rows = l["transactions"].as_array().unwrap();
    assert_eq!(rows.len(), 13);
    assert!(rows.iter().all(|r| r["balanceAfter"].as_i64().unwrap() >= 0));
}

#[tokio::test]
async fn empty_balance_is_402_credits_exhausted_and_the_upstream_is_not_called() {
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "x"}]})).await;
    let server = start_with_model(&llm, 1_000, 1_000, 0);
    let token = person(&server, "empty@example.com", &["llm-all", "account"]).await;
    for body in [
        json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "test-model", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "test-model", "stream": true, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let res = chat(&server, &token, body).await;
        assert_eq!(res.status(), 402);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        assert_eq!(res.headers()["x-credits-remaining"], "0");
        let v: Value = res.json().await.unwrap();
        assert_eq!(v["error"], "CreditsExhaustedError");
        assert_eq!(v["status"], 402);
        assert_eq!(v["balance"], 0);
        assert!(v["required"].as_i64().unwrap() >= 1);
    }
    assert!(llm.requests().is_empty());
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 0);
    assert_eq!(l["transactions"][0]["kind"], "signup_grant");
}

#[tokio::test]
async fn without_max_tokens_the_cap_sent_upstream_is_what_the_balance_affords() {
    let llm = ScriptedLlm::start(
        json!({"replies": [{"content": "x", "usage": {"prompt_tokens": 1, "completion_tokens": 9}}]}),
    )
    .await;
    let server = start_with_model(&llm, 0, 1_000_000, 10);
    let token = person(&server, "afford@example.com", &["llm-all", "account"]).await;
    let res =
        chat(&server, &token, json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 200);
    assert_eq!(llm.requests()[0].body["max_tokens"], 10, "the default 4096 lowered to the 10 credits left");
    assert_eq!(res.headers()["x-credits-remaining"], "1");
    // A client's own max_tokens beyond the balance is refused, not silently lowered.
    let res = chat(
        &server,
        &token,
        json!({"model": "test-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.status(), 402);
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn security_credit_transactions_list_only_the_callers_own_rows() {
    let llm = ScriptedLlm::start(
        json!({"replies": [{"content": "x", "usage": {"prompt_tokens": 5, "completion_tokens": 5}}]}),
    )
    .await;
    let server = start_with_model(&llm, 1_000_000, 1_000_000, 50);
    let a = person(&server, "ledger-a@example.com", &["llm-all", "account"]).await;
    let b = person(&server, "ledger-b@example.com", &["llm-all", "account"]).await;
    let res = chat(
        &server,
        &a,
        json!({"model": "test-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let la = ledger(&server, &a).await;
    let a_rows = la["transactions"].as_array().unwrap().clone();
    assert_eq!(a_rows.len(), 2);
    assert_eq!(la["balance"], 40);
    let lb = ledger(&server, &b).await;
    assert_eq!(lb["balance"], 50);
    let b_rows = lb["transactions"].as_array().unwrap();
    assert_eq!(b_rows.len(), 1);
    assert!(b_rows.iter().all(|r| !a_rows.iter().any(|x| x["id"] == r["id"])));
    // A cursor naming A's newest row still lists only B's own rows older than it.
    let newest_a = a_rows[0]["id"].as_str().unwrap();
    let v: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/credit-transactions?before={newest_a}")))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&Value> = v["transactions"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
    assert!(ids.iter().all(|id| !a_rows.iter().any(|x| &&x["id"] == id)), "{v}");
    assert!(!v.to_string().contains("ledger-a"));
    // Pagination: one row per page, newest first, then the next.
    let p1: Value = reqwest::Client::new()
        .get(server.url("/api/v1/credit-transactions?limit=1"))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p1["transactions"][0]["id"], a_rows[0]["id"]);
    let next = p1["nextBefore"].as_str().unwrap();
    let p2: Value = reqwest::Client::new()
        .get(server.url(&format!("/api/v1/credit-transactions?limit=1&before={next}")))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(p2["transactions"][0]["id"], a_rows[1]["id"]);
    // The ledger needs the `account` scope; bad parameters are named.
    let llm_only = person(&server, "ledger-c@example.com", &["llm-all"]).await;
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/credit-transactions"))
        .bearer_auth(&llm_only)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for (q, field) in [("limit=0", "limit"), ("limit=101", "limit"), ("before=x", "before"), ("page=2", "page")] {
        let res = reqwest::Client::new()
            .get(server.url(&format!("/api/v1/credit-transactions?{q}")))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
        assert_eq!(res.json::<Value>().await.unwrap()["field"], field, "{q}");
    }
}

#[tokio::test]
async fn operator_grant_is_credited_and_audited() {
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "x"}]})).await;
    let server = start_with_model(&llm, 1_000, 1_000, 5);
    let token = person(&server, "granted@example.com", &["llm-all", "account"]).await;
    let account: Value = reqwest::Client::new()
        .get(server.url("/api/v1/account"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = account["id"].as_str().unwrap().to_owned();
    let op = operator_token(&server);
    let grant = |who: String, id: String, body: Value| {
        let url = server.url(&format!("/api/v1/admin/accounts/{id}/credits"));
        async move { reqwest::Client::new().post(url).bearer_auth(who).json(&body).send().await.unwrap() }
    };
    // A person's token may not grant, whatever its scopes; nothing changes.
    let res = grant(token.clone(), id.clone(), json!({"amount": 100})).await;
    assert_eq!(res.status(), 403);
    let res = grant(op.clone(), "acc_nobody".into(), json!({"amount": 100})).await;
    assert_eq!(res.status(), 404);
    for (body, field) in [
        (json!({"amount": 0}), "amount"),
        (json!({"amount": -5}), "amount"),
        (json!({"amount": 5, "reason": "x".repeat(201)}), "reason"),
        (json!({"amount": 5, "extra": 1}), "extra"),
    ] {
        let res = grant(op.clone(), id.clone(), body.clone()).await;
        assert_eq!(res.status(), 400, "{body}");
        assert_eq!(res.json::<Value>().await.unwrap()["field"], field, "{body}");
    }
    assert_eq!(ledger(&server, &token).await["balance"], 5);
    let res = grant(op.clone(), id.clone(), json!({"amount": 2500, "reason": "pilot customer"})).await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["balance"], 2505);
    assert_eq!(v["transaction"]["kind"], "grant");
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 2505);
    assert_eq!(l["transactions"][0]["amount"], 2500);
    assert_eq!(l["transactions"][0]["note"], "pilot customer");
    assert_eq!(sum(&l), 2505);
    // Audited, with the operator and the account.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let event = loop {
        let rows: Value = reqwest::Client::new()
            .get(server.url("/api/v1/admin/audit?limit=1000"))
            .bearer_auth(&op)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let found = rows["events"].as_array().unwrap().iter().find(|e| e["kind"] == "credits.granted").cloned();
        if let Some(e) = found {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no credits.granted event: {rows}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = event.to_string();
    assert!(text.contains(&id), "{event}");
    assert!(text.contains("2500") && text.contains("pilot customer"), "{event}");
    assert_eq!(event["outcome"], "success");
}

#[tokio::test]
async fn security_ledger_rows_are_append_only_in_the_database() {
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "x"}]})).await;
    let server = start_with_model(&llm, 0, 0, 70);
    let token = person(&server, "append-only@example.com", &["llm-all", "account"]).await;
    assert_eq!(ledger(&server, &token).await["balance"], 70);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&server.db_url()).await.unwrap();
    // Even someone with the database's credentials cannot rewrite history quietly.
    for sql in ["UPDATE credit_transactions SET amount = 1000000", "DELETE FROM credit_transactions"] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    // And a balance cannot go below zero, whatever writes it.
    assert!(sqlx::query("UPDATE credit_balances SET balance = -1").execute(&pool).await.is_err());
    pool.close().await;
    assert_eq!(ledger(&server, &token).await["transactions"][0]["amount"], 70);
}
