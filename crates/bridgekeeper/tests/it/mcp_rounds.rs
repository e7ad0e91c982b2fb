//! MCP 2026-07-28 beyond single requests: multi-round-trip requests (`restrict-access` asks the
//! person to confirm through form elicitation; the sealed `requestState` is bound to the caller,
//! the call and the grant as it was) and `subscriptions/listen` (acknowledged first, then
//! `notifications/tools/list_changed` when the caller's grant changes — on any instance — and a
//! graceful end when the grant is revoked).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Flow, Server, whoami};
use crate::mcp_2026::{Modern, answer};

const SUBSCRIPTION_ID: &str = "io.modelcontextprotocol/subscriptionId";
const SCOPE: &str = "universal-mcp-read-write";

/// Signed in with a client that can answer forms; also returns the grant's refresh token and client.
async fn eliciting(server: &Server, email: &str) -> (Flow, Modern, String, String) {
    let flow = Flow::signup(server, email).await;
    let (client_id, t) = flow.login_client(SCOPE).await;
    let m = Modern { url: flow.url("/mcp"), token: t.access, capabilities: json!({"elicitation": {"form": {}}}) };
    (flow, m, t.refresh, client_id)
}

fn restrict(provider: &str, permission: &str) -> Value {
    json!({"name": "restrict-access", "arguments": {"provider": provider, "permission": permission}})
}

/// The retry of `restrict(provider, permission)` with the person's answer and the sealed state.
fn retry(provider: &str, permission: &str, state: &Value, answer: Value) -> Value {
    let mut p = restrict(provider, permission);
    p["requestState"] = state.clone();
    p["inputResponses"] = json!({"confirm": answer});
    p
}

fn accept() -> Value {
    json!({"action": "accept", "content": {"confirm": true}})
}

/// Calls `restrict-access` and returns its `requestState`, checking the input request.
async fn ask(m: &Modern, provider: &str, permission: &str) -> Value {
    let a = m.call(json!("ask"), "tools/call", restrict(provider, permission)).await;
    assert_eq!(a.status, 200, "{:?}", a.messages);
    let r = &a.body()["result"];
    assert_eq!(r["resultType"], "input_required", "{r}");
    let req = &r["inputRequests"]["confirm"];
    assert_eq!(req["method"], "elicitation/create", "{r}");
    assert_eq!(req["params"]["mode"], "form");
    assert!(req["params"]["message"].as_str().unwrap().contains(provider), "{r}");
    assert_eq!(req["params"]["requestedSchema"]["properties"]["confirm"]["type"], "boolean");
    assert!(r["_meta"]["io.modelcontextprotocol/serverInfo"].is_object(), "{r}");
    assert!(r["requestState"].is_string(), "{r}");
    r["requestState"].clone()
}

async fn permission_of(m: &Modern, provider: &str) -> Option<String> {
    let (status, me) = whoami(&m.url.replace("/mcp", ""), &m.token).await;
    assert_eq!(status, 200, "{me}");
    me["provider_permissions"][provider].as_str().map(str::to_owned)
}

#[tokio::test]
async fn restrict_access_asks_then_narrows_once_confirmed() {
    let server = Server::start();
    let (_, m, _, _) = eliciting(&server, "mrtr@example.com").await;
    let state = ask(&m, "github", "read").await;
    assert_eq!(permission_of(&m, "github").await, None, "asking changes nothing");

    let a = m.call(json!("retry"), "tools/call", retry("github", "read", &state, accept())).await;
    let r = &a.body()["result"];
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["isError"], false, "{r}");
    assert_eq!(r["structuredContent"]["changed"], true, "{r}");
    assert_eq!(r["structuredContent"]["provider_permissions"]["github"], "read", "{r}");
    assert_eq!(permission_of(&m, "github").await.as_deref(), Some("read"), "the grant itself is narrowed");

    // The same confirmation again: the grant is no longer what it was confirmed against.
    let a = m.call(json!("replay"), "tools/call", retry("github", "read", &state, accept())).await;
    let r = &a.body()["result"];
    assert_eq!(r["isError"], true, "a replayed confirmation is refused: {r}");
    assert!(r["content"][0]["text"].as_str().unwrap().contains("already used"), "{r}");
    // Asking for what the grant already is: nothing to confirm.
    let a = m.call(json!("noop"), "tools/call", restrict("github", "read")).await;
    let r = &a.body()["result"];
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["structuredContent"]["changed"], false, "{r}");
    // Narrowing further is a new question.
    let state = ask(&m, "github", "disabled").await;
    m.call(json!("retry2"), "tools/call", retry("github", "disabled", &state, accept())).await;
    assert_eq!(permission_of(&m, "github").await.as_deref(), Some("disabled"));
    // The change is audited with what changed.
    let log = server.logs();
    assert!(log.contains("grant narrowed"), "the narrowing is logged");
}

#[tokio::test]
async fn a_declined_or_missing_answer_changes_nothing() {
    let server = Server::start();
    let (_, m, _, _) = eliciting(&server, "decline@example.com").await;
    let state = ask(&m, "slack", "disabled").await;
    for (i, answer) in [
        json!({"action": "decline"}),
        json!({"action": "cancel"}),
        json!({"action": "accept", "content": {"confirm": false}}),
    ]
    .into_iter()
    .enumerate()
    {
        let a = m.call(json!(i), "tools/call", retry("slack", "disabled", &state, answer.clone())).await;
        let r = &a.body()["result"];
        assert_eq!(r["resultType"], "complete", "{answer}: {r}");
        assert_eq!(r["structuredContent"]["changed"], false, "{answer}: {r}");
    }
    // A retry without the answer is asked again (the specification's rule for missing input).
    let mut p = restrict("slack", "disabled");
    p["requestState"] = state.clone();
    let a = m.call(json!("again"), "tools/call", p).await;
    assert_eq!(a.body()["result"]["resultType"], "input_required", "{}", a.body());
    assert_eq!(permission_of(&m, "slack").await, None);
}

#[tokio::test]
async fn request_state_is_bound_to_its_caller_call_and_integrity() {
    let server = Server::start();
    let (flow, m, _, _) = eliciting(&server, "bound@example.com").await;
    let state = ask(&m, "github", "read").await;
    let s = state.as_str().unwrap();
    let refused = |a: &crate::mcp_2026::Answer, why: &str| {
        assert_eq!(a.body()["error"]["code"], -32602, "{why}: {}", a.body());
        assert!(a.body()["error"]["message"].as_str().unwrap().contains("requestState"), "{why}: {}", a.body());
    };
    // Altered: one character of the payload changed.
    let mut altered = s.to_owned().into_bytes();
    altered[5] = if altered[5] == b'A' { b'B' } else { b'A' };
    let altered = json!(String::from_utf8(altered).unwrap());
    refused(&m.call(json!(1), "tools/call", retry("github", "read", &altered, accept())).await, "altered");
    // Another call: other arguments under the same state.
    refused(&m.call(json!(2), "tools/call", retry("github", "disabled", &state, accept())).await, "other arguments");
    refused(&m.call(json!(3), "tools/call", retry("slack", "read", &state, accept())).await, "other provider");
    // Another grant of the same person (a second client), and another person.
    let (_, t2) = flow.login_client(SCOPE).await;
    let m2 = Modern { url: m.url.clone(), token: t2.access, capabilities: m.capabilities.clone() };
    refused(&m2.call(json!(4), "tools/call", retry("github", "read", &state, accept())).await, "other grant");
    let (_, other, _, _) = eliciting(&server, "other@example.com").await;
    refused(&other.call(json!(5), "tools/call", retry("github", "read", &state, accept())).await, "other person");
    // Not a string.
    let a = m.call(json!(6), "tools/call", retry("github", "read", &json!({"x": 1}), accept())).await;
    assert_eq!(a.body()["error"]["code"], -32602, "{}", a.body());
    assert_eq!(permission_of(&m, "github").await, None, "nothing was changed by any of them");
    assert_eq!(permission_of(&m2, "github").await, None);
    // The genuine retry still works.
    let a = m.call(json!(7), "tools/call", retry("github", "read", &state, accept())).await;
    assert_eq!(a.body()["result"]["structuredContent"]["changed"], true, "{}", a.body());
}

#[tokio::test]
async fn a_client_that_cannot_answer_forms_gets_32021() {
    let server = Server::start();
    let (flow, mut m, _, _) = eliciting(&server, "nocap@example.com").await;
    for caps in [json!({}), json!({"elicitation": {"url": {}}}), json!({"sampling": {}})] {
        m.capabilities = caps.clone();
        let a = m.call(json!("c"), "tools/call", restrict("github", "read")).await;
        assert_eq!(a.status, 400, "{caps}: {:?}", a.messages);
        let e = &a.body()["error"];
        assert_eq!(e["code"], -32021, "{caps}: {e}");
        assert_eq!(e["data"]["requiredCapabilities"], json!({"elicitation": {"form": {}}}), "{e}");
        assert_eq!(a.body()["id"], "c");
    }
    // `elicitation: {}` means form mode.
    m.capabilities = json!({"elicitation": {}});
    ask(&m, "github", "read").await;
    // The legacy protocol has no multi-round-trip results: the tool says what it needs.
    let sid = flow.mcp_initialize(&m.token, "2025-11-25").await;
    let res = flow.mcp_in(&m.token, &sid, "2025-11-25", "tools/call", restrict("github", "read")).await;
    let text = res.text().await.unwrap();
    assert!(text.contains("\"isError\":true") && text.contains("2026-07-28"), "{text}");
    assert_eq!(permission_of(&m, "github").await, None);
}

/// An open `subscriptions/listen` stream, read message by message.
struct Listening {
    res: reqwest::Response,
    buf: String,
}

impl Listening {
    async fn open(m: &Modern, id: Value, filter: Value) -> Listening {
        let res = m.request(id, "subscriptions/listen", json!({"notifications": filter})).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
        assert!(res.headers().get("mcp-session-id").is_none());
        Listening { res, buf: String::new() }
    }

    /// The next JSON-RPC message, or None if the stream ended or nothing came within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let event: String = self.buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data:")) {
                    return Some(serde_json::from_str(data.trim()).unwrap());
                }
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buf.push_str(std::str::from_utf8(&chunk).unwrap()),
                Ok(_) | Err(_) => return None,
            }
        }
    }
}

/// Narrows `provider` to `read` through `restrict-access`, confirmed.
async fn narrow(m: &Modern, provider: &str) {
    let state = ask(m, provider, "read").await;
    let a = m.call(json!("n"), "tools/call", retry(provider, "read", &state, accept())).await;
    assert_eq!(a.body()["result"]["structuredContent"]["changed"], true, "{}", a.body());
}

#[tokio::test]
async fn listen_acknowledges_then_reports_tool_list_changes_and_ends_with_the_grant() {
    let server = Server::start();
    let (flow, m, refresh, client_id) = eliciting(&server, "listen@example.com").await;
    let mut stream =
        Listening::open(&m, json!("sub-1"), json!({"toolsListChanged": true, "promptsListChanged": true})).await;
    let ack = stream.next(Duration::from_secs(5)).await.expect("acknowledgment");
    assert_eq!(ack["method"], "notifications/subscriptions/acknowledged", "{ack}");
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], "sub-1");
    assert_eq!(ack["params"]["notifications"], json!({"toolsListChanged": true}), "prompts are not honoured: omitted");
    // Nothing changes: nothing is sent.
    assert!(stream.next(Duration::from_millis(2500)).await.is_none(), "no notification without a change");
    // A subscription that did not ask for tool changes gets none.
    let mut quiet = Listening::open(&m, json!(2), json!({})).await;
    let ack = quiet.next(Duration::from_secs(5)).await.unwrap();
    assert_eq!(ack["params"]["notifications"], json!({}));
    assert_eq!(ack["params"]["_meta"][SUBSCRIPTION_ID], 2);

    narrow(&m, "github").await;
    let note = stream.next(Duration::from_secs(4)).await.expect("a tools list-changed notification");
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
    assert_eq!(note["params"]["_meta"][SUBSCRIPTION_ID], "sub-1");
    assert!(note.get("id").is_none(), "a notification: {note}");

    // Revoking the grant ends the stream with the graceful-closure result.
    let res = reqwest::Client::new()
        .post(flow.url("/api/v1/auth/revoke"))
        .form(&[("token", refresh.as_str()), ("client_id", client_id.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let end = stream.next(Duration::from_secs(4)).await.expect("the closing result");
    assert_eq!(end["id"], "sub-1", "{end}");
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
    assert_eq!(end["result"]["_meta"][SUBSCRIPTION_ID], "sub-1", "{end}");
    assert!(stream.next(Duration::from_secs(2)).await.is_none(), "the stream is over");
    assert!(
        quiet.next(Duration::from_secs(4)).await.unwrap().get("result").is_some(),
        "every stream of the grant ends"
    );
}

#[tokio::test]
async fn listen_refuses_what_it_cannot_serve() {
    let server = Server::start();
    let (_, m, _, _) = eliciting(&server, "listen-bad@example.com").await;
    // A JSON-only client cannot read a stream.
    for (accept, plain) in [("application/json", false), ("application/json, text/event-stream", true)] {
        let mut req = reqwest::Client::new()
            .post(&m.url)
            .bearer_auth(&m.token)
            .header("Accept", accept)
            .header("MCP-Protocol-Version", "2026-07-28")
            .header("Mcp-Method", "subscriptions/listen");
        if plain {
            req = req.header("X-Response-Format", "json");
        }
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen",
            "params": {"_meta": crate::mcp_2026::meta_with(json!({})), "notifications": {"toolsListChanged": true}}});
        let a = answer(req.json(&body)).await;
        assert_eq!(a.status, 406, "{accept}: {:?}", a.messages);
        assert_eq!(a.body()["id"], 1);
    }
    // The GET stream is gone in 2026-07-28: 405 pointing to listen (not a version error).
    let res = reqwest::Client::new()
        .get(&m.url)
        .bearer_auth(&m.token)
        .header("Accept", "text/event-stream")
        .header("MCP-Protocol-Version", "2026-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    assert!(res.text().await.unwrap().contains("subscriptions/listen"));
    // A malformed filter is named.
    let a = m.call(json!(2), "subscriptions/listen", json!({"notifications": {"toolsListChanged": "yes"}})).await;
    assert_eq!(a.body()["error"]["code"], -32602, "{}", a.body());
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("toolsListChanged"));
    // A bounded number of streams per account.
    let mut open = Vec::new();
    for i in 0..8 {
        open.push(Listening::open(&m, json!(i), json!({"toolsListChanged": true})).await);
    }
    let res = m.request(json!(9), "subscriptions/listen", json!({})).send().await.unwrap();
    assert_eq!(res.status(), 429);
    let refusal: Value = res.json().await.unwrap();
    assert_eq!(refusal["id"], 9, "{refusal}");
    drop(open.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    Listening::open(&m, json!(10), json!({})).await;
}

#[tokio::test]
async fn a_change_on_one_instance_reaches_a_stream_on_another() {
    // Two instances behind one public URL (see `multi_instance`).
    let issuer = [("BRIDGEKEEPER_ISSUER", "http://127.0.0.1:1")];
    let a = Server::start_with(&issuer);
    let b = a.start_peer(&issuer);
    let (_, m, _, _) = eliciting(&a, "peers@example.com").await;
    let on_b = Modern { url: b.url("/mcp"), token: m.token.clone(), capabilities: m.capabilities.clone() };
    let mut stream = Listening::open(&on_b, json!("b"), json!({"toolsListChanged": true})).await;
    assert_eq!(
        stream.next(Duration::from_secs(5)).await.unwrap()["method"],
        "notifications/subscriptions/acknowledged"
    );
    narrow(&m, "google").await;
    let note = stream.next(Duration::from_secs(5)).await.expect("the peer's stream sees the change");
    assert_eq!(note["method"], "notifications/tools/list_changed", "{note}");
}

#[tokio::test]
async fn shutdown_ends_open_streams_gracefully() {
    let server = Server::start();
    let (_, m, _, _) = eliciting(&server, "shutdown@example.com").await;
    let mut stream = Listening::open(&m, json!(1), json!({"toolsListChanged": true})).await;
    stream.next(Duration::from_secs(5)).await.unwrap();
    let stopping = tokio::task::spawn_blocking(move || server.terminate());
    let end = stream.next(Duration::from_secs(10)).await.expect("the closing result before the server stops");
    assert_eq!(end["result"]["resultType"], "complete", "{end}");
    assert!(stopping.await.unwrap().success(), "the server stops cleanly with a stream open");
}
