//! LLM access through the real binary, against the scripted OpenAI-compatible server: completions
//! billed exactly per the formula (ledger row and headers), streaming, tool calls passed through,
//! the upstream API key kept from clients and logs, the `llm-all` scope, unknown models, upstream
//! failures charged nothing.

use serde_json::{Value, json};

use crate::harness::{Flow, Server};
use crate::scripted_llm::ScriptedLlm;

/// The key the scripted upstream expects (the environment variable the model's config names).
pub const KEY_VAR: &str = "SCRIPTED_LLM_API_KEY";
pub const KEY: &str = "sk-scripted-SECRET-4f7a19c2";

/// The environment of a server offering `test-model` (upstream name `upstream-name`) at these
/// prices (credits per million tokens), with this signup grant.
pub fn model_env(llm: &ScriptedLlm, prompt_rate: u64, completion_rate: u64, grant: i64) -> Vec<(String, String)> {
    let models = format!(
        "[{{id=\"test-model\", base_url=\"{}\", upstream_model=\"upstream-name\", api_key_env=\"{KEY_VAR}\", \
         prompt_credits_per_million={prompt_rate}, completion_credits_per_million={completion_rate}}}]",
        llm.base_url
    );
    vec![
        ("BRIDGEKEEPER_LLM__MODELS".into(), models),
        ("BRIDGEKEEPER_CREDITS__SIGNUP_GRANT".into(), grant.to_string()),
        (KEY_VAR.into(), KEY.into()),
    ]
}

/// A server as [`model_env`] describes.
pub fn start_with_model(llm: &ScriptedLlm, prompt_rate: u64, completion_rate: u64, grant: i64) -> Server {
    let env = model_env(llm, prompt_rate, completion_rate, grant);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with(&env)
}

/// A signed-up account's PAT with these scopes.
pub async fn person(server: &Server, email: &str, scopes: &[&str]) -> String {
    let flow = Flow::signup(server, email).await;
    let res = flow
        .http
        .post(server.url("/api/v1/auth/pat"))
        .json(&json!({"name": "llm test", "scopes": scopes}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

pub async fn chat(server: &Server, token: &str, body: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.url("/api/v1/chat/completions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn ledger(server: &Server, token: &str) -> Value {
    let res = reqwest::Client::new()
        .get(server.url("/api/v1/credit-transactions?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> i64 {
    res.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn completion_is_billed_exactly_per_the_formula_with_tool_calls_passed_through() {
    let llm = ScriptedLlm::start(json!({"replies": [{
        "content": null,
        "tool_calls": [{"id": "call_7", "name": "lookup", "arguments": {"city": "Oslo"}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3}
    }]}))
    .await;
    // 7 × 300 000 + 3 × 1 100 000 = 5 400 000 micro-credits → ceil = 6 credits.
    let server = start_with_model(&llm, 300_000, 1_100_000, 1_000);
    let token = person(&server, "billed@example.com", &["llm-all", "account"]).await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "d",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let messages = json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": "{\"city\":\"Bergen\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"}
    ]);
    let res = chat(
        &server,
        &token,
        json!({"model": "test-model", "messages": messages, "tools": tools, "max_tokens": 50, "temperature": 0.2, "seed": 9}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-credits-consumed"), 6);
    assert_eq!(header(&res, "x-credits-remaining"), 994);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["model"], "test-model", "the public id, not the upstream's name");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["id"], "call_7");
    assert_eq!(call["function"]["name"], "lookup");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Oslo"})
    );
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(v["usage"]["prompt_tokens"], 7);

    // What reached the upstream: its own model name, the prompt and tools unchanged, the cap.
    let sent = llm.requests();
    assert_eq!(sent.len(), 1);
    let b = &sent[0].body;
    assert_eq!(b["model"], "upstream-name");
    assert_eq!(b["messages"][3]["tool_call_id"], "call_1");
    assert_eq!(b["messages"][3]["role"], "tool");
    assert_eq!(b["messages"][2]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Bergen\"}");
    assert_eq!(b["messages"][1]["content"], "weather in Oslo?");
    assert_eq!(b["tools"], tools);
    assert_eq!(b["max_tokens"], 50);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["seed"], 9, "unknown fields pass through");
    assert_eq!(b["stream"], false);

    // The ledger: the signup grant, then the completion, newest first.
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 994);
    let rows = l["transactions"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["kind"], "completion");
    assert_eq!(rows[0]["amount"], -6);
    assert_eq!(rows[0]["balanceAfter"], 994);
    assert_eq!(rows[0]["model"], "test-model");
    assert_eq!(rows[0]["promptTokens"], 7);
    assert_eq!(rows[0]["completionTokens"], 3);
    assert_eq!(rows[1]["kind"], "signup_grant");
    assert_eq!(rows[1]["amount"], 1000);
}

/// Server-sent events of a streamed answer: the JSON chunks, the comments, and whether it ended with `[DONE]`.
fn sse(text: &str) -> (Vec<Value>, Vec<String>, bool) {
    let mut chunks = Vec::new();
    let mut comments = Vec::new();
    let mut done = false;
    for frame in text.split("\n\n").filter(|f| !f.trim().is_empty()) {
        if let Some(c) = frame.strip_prefix(':') {
            comments.push(c.trim().to_owned());
        } else if let Some(d) = frame.strip_prefix("data: ") {
            assert!(!done, "nothing after [DONE]");
            if d == "[DONE]" {
                done = true;
            } else {
                chunks.push(serde_json::from_str(d).unwrap());
            }
        }
    }
    (chunks, comments, done)
}

#[tokio::test]
async fn streaming_completion_relays_chunks_and_settles_the_reported_usage() {
    let llm = ScriptedLlm::start(json!({"replies": [{
        "content": "Hello", "chunks": ["Hel", "lo"], "chunk_delay_ms": 20,
        "usage": {"prompt_tokens": 4, "completion_tokens": 2}
    }]}))
    .await;
    let server = start_with_model(&llm, 1_000_000, 1_000_000, 100);
    let token = person(&server, "stream@example.com", &["llm-all", "account"]).await;
    let res = chat(
        &server,
        &token,
        json!({"model": "test-model", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let reserved = header(&res, "x-credits-reserved");
    assert!(reserved >= 10, "the prompt's bound plus max_tokens is held: {reserved}");
    assert_eq!(header(&res, "x-credits-remaining"), 100 - reserved);
    let (chunks, comments, done) = sse(&res.text().await.unwrap());
    assert!(done);
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello");
    assert!(chunks.iter().all(|c| c["model"] == "test-model"));
    assert!(chunks.iter().all(|c| c.get("usage").is_none()), "no usage chunk unless asked");
    assert_eq!(comments, vec!["credits-consumed=6 credits-remaining=94".to_owned()]);
    let sent = llm.requests();
    assert_eq!(sent[0].body["stream"], true);
    assert_eq!(sent[0].body["stream_options"]["include_usage"], true);
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 94);
    assert_eq!(l["transactions"][0]["amount"], -6);

    // Asked for, the usage chunk is passed on.
    let res = chat(
        &server,
        &token,
        json!({"model": "test-model", "stream": true, "stream_options": {"include_usage": true}, "max_tokens": 10,
               "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    let (chunks, comments, _) = sse(&res.text().await.unwrap());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["completion_tokens"], 2);
    assert_eq!(comments, vec!["credits-consumed=6 credits-remaining=88".to_owned()]);
}

#[tokio::test]
async fn security_upstream_api_key_reaches_the_upstream_and_never_the_client_or_logs() {
    let llm = ScriptedLlm::start(
        json!({"replies": [{"content": "fine", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}]}),
    )
    .await;
    let server = start_with_model(&llm, 1_000, 1_000, 100);
    let token = person(&server, "key@example.com", &["llm-all", "account"]).await;
    let res =
        chat(&server, &token, json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 200);
    let headers = format!("{:?}", res.headers());
    let body = res.text().await.unwrap();
    assert_eq!(llm.requests()[0].header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    // An upstream that echoes the key in its error (OpenAI does, in part) — the client gets none of it.
    llm.set_script(
        json!({"replies": [{"status": 401, "error": {"message": format!("Incorrect API key provided: {KEY}")}}]}),
    );
    let res =
        chat(&server, &token, json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 502);
    let err = res.text().await.unwrap();
    assert!(err.contains("nothing was charged"), "{err}");
    llm.set_script(json!({"replies": [{"status": 400, "error": {"message": format!("bad request near {KEY}")}}]}));
    let res =
        chat(&server, &token, json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 400);
    let rejected = res.text().await.unwrap();
    assert!(
        rejected.contains("bad request near [redacted]"),
        "the upstream's reason is passed on, scrubbed: {rejected}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for (what, text) in
        [("headers", &headers), ("body", &body), ("error", &err), ("rejection", &rejected), ("logs", &server.logs())]
    {
        assert!(
            !text.contains(KEY) && !text.contains("SECRET-4f7a"),
            "the upstream key leaked into the {what}: {text}"
        );
    }
}

#[tokio::test]
async fn security_llm_all_scope_is_required() {
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "x"}]})).await;
    let server = start_with_model(&llm, 0, 0, 100);
    let token = person(&server, "noscope@example.com", &["account"]).await;
    for res in [
        chat(&server, &token, json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}]})).await,
        reqwest::Client::new().get(server.url("/api/v1/models")).bearer_auth(&token).send().await.unwrap(),
    ] {
        assert_eq!(res.status(), 403);
        let challenge = res.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("insufficient_scope") && challenge.contains("scope=\"llm-all\""), "{challenge}");
        let v: Value = res.json().await.unwrap();
        assert!(v["detail"].as_str().unwrap().contains("llm-all"), "{v}");
    }
    assert!(llm.requests().is_empty(), "nothing reached the upstream");
    let res = reqwest::Client::new()
        .post(server.url("/api/v1/chat/completions"))
        .json(&json!({"model": "test-model", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn unknown_model_and_bad_requests_are_clear_errors_that_reach_no_upstream() {
    let llm = ScriptedLlm::start(json!({"replies": [{"content": "x"}]})).await;
    let server = start_with_model(&llm, 1_000, 2_000, 100);
    let token = person(&server, "unknown@example.com", &["llm-all", "account"]).await;
    let res = chat(&server, &token, json!({"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 404);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["field"], "model");
    assert!(
        v["detail"].as_str().unwrap().contains("gpt-17") && v["detail"].as_str().unwrap().contains("/api/v1/models")
    );
    let res = chat(&server, &token, json!({"model": "test-model", "messages": []})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "messages");
    let res = chat(
        &server,
        &token,
        json!({"model": "test-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
    )
    .await;
    assert_eq!(res.status(), 400);
    let res = chat(&server, &token, json!({"messages": [{"role": "user", "content": "x"}]})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["field"], "model");
    assert!(llm.requests().is_empty());
    // The list names what is offered, with prices.
    let v: Value = reqwest::Client::new()
        .get(server.url("/api/v1/models"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["data"][0]["id"], "test-model");
    assert_eq!(v["data"][0]["prompt_credits_per_million"], 1000);
    assert_eq!(v["data"][0]["completion_credits_per_million"], 2000);
    assert!(!v.to_string().contains("upstream-name") && !v.to_string().contains("127.0.0.1"));
    // Nothing charged: only the signup grant in the ledger.
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 100);
    assert_eq!(l["transactions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_upstream_failure_is_charged_nothing() {
    let llm = ScriptedLlm::start(json!({"replies": [{"status": 503}, {"status": 429}]})).await;
    let server = start_with_model(&llm, 1_000_000, 1_000_000, 100);
    let token = person(&server, "failure@example.com", &["llm-all", "account"]).await;
    let body = json!({"model": "test-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let res = chat(&server, &token, body.clone()).await;
    assert_eq!(res.status(), 502);
    let res = chat(&server, &token, body.clone()).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let res = chat(&server, &token, streamed).await;
    assert_eq!(res.status(), 503);
    let l = ledger(&server, &token).await;
    assert_eq!(l["balance"], 100, "holds were given back");
    assert_eq!(l["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn a_stream_the_client_abandons_is_still_settled_from_the_usage() {
    let llm = ScriptedLlm::start(json!({"replies": [{
        "content": "abcde", "chunks": ["a", "b", "c", "d", "e"], "chunk_delay_ms": 150,
        "usage": {"prompt_tokens": 2, "completion_tokens": 5}
    }]}))
    .await;
    let server = start_with_model(&llm, 1_000_000, 1_000_000, 100);
    let token = person(&server, "abandon@example.com", &["llm-all", "account"]).await;
    let mut res = chat(
        &server,
        &token,
        json!({"model": "test-model", "stream": true, "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let first = res.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("data: "));
    drop(res);
    // The relay reads the upstream to its end, then settles: 2 + 5 = 7 credits, the hold given back.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let l = ledger(&server, &token).await;
        if l["transactions"][0]["kind"] == "completion" {
            assert_eq!(l["transactions"][0]["amount"], -7);
            assert_eq!(l["balance"], 93);
            break;
        }
        if std::time::Instant::now() > deadline {
            let logs = server.logs();
            let notable: Vec<&str> = logs.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            panic!("never settled: {l}\n{}", notable.join("\n"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn a_model_whose_api_key_is_missing_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "BRIDGEKEEPER_LLM__MODELS",
            "[{id=\"m\", base_url=\"http://127.0.0.1:9/v1\", api_key_env=\"BK_TEST_UNSET_LLM_KEY\", \
             prompt_credits_per_million=1, completion_credits_per_million=1}]",
        )
        .env_remove("BK_TEST_UNSET_LLM_KEY")
        .env("BRIDGEKEEPER_DATABASE_URL", format!("sqlite://{}/t.db", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("BK_TEST_UNSET_LLM_KEY is not set"), "{text}");
}
