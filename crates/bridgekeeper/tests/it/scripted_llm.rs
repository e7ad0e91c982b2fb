//! A scripted OpenAI-compatible chat-completions server for tests (no model can be fetched here):
//! it answers `POST /v1/chat/completions` from a script, deterministically, streamed or not, and
//! records every request it was sent (headers and body) so a test can assert what reached the
//! prompt. In process (axum on an ephemeral port); the agent tests reuse it. `e2e/lib/scripted-llm.mjs`
//! is the same server for Node (bench and e2e), with the same script format:
//!
//! ```json
//! {"replies": [{
//!     "content": "Hello",                                  // the assistant's text (optional)
//!     "tool_calls": [{"id": "call_1", "name": "search", "arguments": {"q": "x"}}],
//!                                                          // arguments: an object or JSON text
//!     "usage": {"prompt_tokens": 10, "completion_tokens": 5},   // default 10 and 5
//!     "omit_usage": false,                                 // true: report no usage at all
//!     "finish_reason": "stop",                             // default: tool_calls if any, else stop
//!     "delay_ms": 0,                                       // before the answer (or the first chunk)
//!     "chunks": ["Hel", "lo"],                             // how the content is streamed (default: one chunk)
//!     "chunk_delay_ms": 0,                                 // between streamed chunks
//!     "status": 500, "error": {"message": "boom"}          // answer this error instead
//! }]}
//! ```
//!
//! Replies are used in order; once they run out, the last one repeats. A streamed answer is: a
//! role chunk, the content chunks, one chunk per tool call, a finish chunk, then — when the request
//! asked with `stream_options.include_usage` — a usage chunk with no choices, and `data: [DONE]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A request the server was sent.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

struct Inner {
    script: Mutex<Vec<Value>>,
    next: AtomicUsize,
    requests: Mutex<Vec<Recorded>>,
}

pub struct ScriptedLlm {
    /// `http://127.0.0.1:PORT/v1` (an OpenAI-compatible base URL).
    pub base_url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ScriptedLlm {
    /// Starts a server answering `script` (`{"replies": […]}`).
    pub async fn start(script: Value) -> ScriptedLlm {
        let inner = Arc::new(Inner {
            script: Mutex::new(replies_of(&script)),
            next: AtomicUsize::new(0),
            requests: Mutex::default(),
        });
        let app =
            axum::Router::new().route("/v1/chat/completions", axum::routing::post(answer)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedLlm { base_url: format!("http://{addr}/v1"), inner, task }
    }

    /// Replaces the script (and starts again at its first reply).
    pub fn set_script(&self, script: Value) {
        *self.inner.script.lock().unwrap() = replies_of(&script);
        self.inner.next.store(0, Ordering::SeqCst);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }
}

fn replies_of(script: &Value) -> Vec<Value> {
    script["replies"].as_array().cloned().filter(|r| !r.is_empty()).unwrap_or_else(|| vec![json!({"content": "ok"})])
}

async fn answer(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    inner.requests.lock().unwrap().push(Recorded {
        headers: headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: body.clone(),
    });
    let reply = {
        let script = inner.script.lock().unwrap();
        let i = inner.next.fetch_add(1, Ordering::SeqCst).min(script.len() - 1);
        script[i].clone()
    };
    let ms = |k: &str| Duration::from_millis(reply[k].as_u64().unwrap_or(0));
    tokio::time::sleep(ms("delay_ms")).await;
    if let Some(status) = reply["status"].as_u64().filter(|s| *s >= 400) {
        let error = reply.get("error").cloned().unwrap_or_else(|| json!({"message": "scripted error"}));
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, Json(json!({"error": error}))).into_response();
    }
    let model = body["model"].as_str().unwrap_or("scripted").to_owned();
    let content = reply["content"].as_str().map(str::to_owned);
    let tool_calls: Vec<Value> = reply["tool_calls"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let args = match &c["arguments"] {
                Value::String(s) => s.clone(),
                Value::Null => "{}".to_owned(),
                other => other.to_string(),
            };
            json!({"id": c["id"].as_str().map_or(format!("call_{i}"), str::to_owned), "type": "function",
                   "function": {"name": c["name"], "arguments": args}})
        })
        .collect();
    let finish =
        reply["finish_reason"].as_str().unwrap_or(if tool_calls.is_empty() { "stop" } else { "tool_calls" }).to_owned();
    let usage = (reply["omit_usage"] != true).then(|| {
        let p = reply["usage"]["prompt_tokens"].as_u64().unwrap_or(10);
        let c = reply["usage"]["completion_tokens"].as_u64().unwrap_or(5);
        json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
    });
    let id = "chatcmpl-scripted";
    if body["stream"] != true {
        let mut message = json!({"role": "assistant", "content": content});
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let mut out = json!({"id": id, "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]});
        if let Some(u) = usage {
            out["usage"] = u;
        }
        return Json(out).into_response();
    }
    let chunk = |delta: Value, finish: Option<&str>| {
        json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut frames = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let pieces: Vec<String> = match reply["chunks"].as_array() {
        Some(c) => c.iter().filter_map(|p| p.as_str().map(str::to_owned)).collect(),
        None => content.into_iter().collect(),
    };
    frames.extend(pieces.into_iter().map(|p| chunk(json!({"content": p}), None)));
    for (i, c) in tool_calls.into_iter().enumerate() {
        let mut c = c;
        c["index"] = json!(i);
        frames.push(chunk(json!({"tool_calls": [c]}), None));
    }
    frames.push(chunk(json!({}), Some(&finish)));
    if body["stream_options"]["include_usage"] == true
        && let Some(u) = usage
    {
        frames.push(json!({"id": id, "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [], "usage": u}));
    }
    let gap = ms("chunk_delay_ms");
    let mut texts: Vec<String> = frames.iter().map(|f| format!("data: {f}\n\n")).collect();
    texts.push("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::iter(texts.into_iter().enumerate()).then(move |(i, t)| async move {
        if i > 0 {
            tokio::time::sleep(gap).await;
        }
        Ok::<_, std::convert::Infallible>(t)
    });
    ([("content-type", "text/event-stream")], Body::from_stream(stream)).into_response()
}

use futures_util::StreamExt as _;
