//! JSON-RPC 2.0 as `/mcp` speaks it: the error codes, how an answer is framed (plain JSON or one
//! SSE message, or several on one stream), and every response builder — results (built or
//! pre-serialised), errors (in-band, or with an HTTP status as the 2026-07-28 revision wants), and
//! the transport-level refusals that have no request id to answer to.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const PARSE_ERROR: i64 = -32700;
pub const INVALID_REQUEST: i64 = -32600;
pub const METHOD_NOT_FOUND: i64 = -32601;
pub const INVALID_PARAMS: i64 = -32602;
pub const INTERNAL_ERROR: i64 = -32603;
/// 2026-07-28: a standard header is missing, malformed, or disagrees with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// 2026-07-28: the request's protocol version is not one this server serves statelessly.
pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
/// MCP 2026-07-28: the request needs a client capability the client did not declare (HTTP 400).
pub const MISSING_CLIENT_CAPABILITY: i64 = -32021;

/// How the answer to a request is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Json,
    Sse,
}

fn json_body(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

fn message_response(framing: Framing, message: String) -> Response {
    match framing {
        Framing::Json => json_body(StatusCode::OK, message),
        Framing::Sse => sse([message]),
    }
}

/// A streamed event-stream response (a relayed call, a listen stream) around `body`.
pub fn event_stream(body: axum::body::Body) -> Response {
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// Messages in the request's framing: an event stream of them all, or (plain JSON) the last.
pub fn messages(framing: Framing, mut messages: Vec<String>) -> Response {
    match framing {
        Framing::Sse => sse(messages),
        Framing::Json => json_body(StatusCode::OK, messages.pop().unwrap_or_default()),
    }
}

/// One SSE stream of JSON-RPC messages (notifications first, the response last).
pub fn sse(messages: impl IntoIterator<Item = String>) -> Response {
    let mut body = String::new();
    for m in messages {
        body.push_str("event: message\ndata: ");
        body.push_str(&m);
        body.push_str("\n\n");
    }
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

fn id_json(id: &Value) -> String {
    serde_json::to_string(id).unwrap_or_else(|_| "null".into())
}

/// A transport-level refusal (no JSON-RPC id to answer to).
pub fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    json_body(status, json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string())
}

/// The server could not do its part (a store or key lookup failed): 503 with an internal error
/// the client may retry; `retry_after_secs` adds a `Retry-After` header.
pub fn unavailable(message: &str, retry_after_secs: Option<u32>) -> Response {
    let mut res = refuse(StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR, message);
    if let Some(secs) = retry_after_secs {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

pub fn error(framing: Framing, id: &Value, code: i64, message: &str) -> Response {
    message_response(
        framing,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string(),
    )
}

/// An error answered with an HTTP status of its own (2026-07-28: 400 for a malformed request,
/// 404 for an unknown method), always as plain JSON and always naming the request `id`.
pub fn error_status(status: StatusCode, id: &Value, code: i64, message: &str, data: Option<Value>) -> Response {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json_body(status, json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string())
}

/// A request over a rate limit: 429 with `Retry-After`, and the JSON-RPC error saying which limit.
pub fn limited(id: &Value, message: &str, retry_after_secs: u64, data: Value) -> Response {
    let mut res = error_status(StatusCode::TOO_MANY_REQUESTS, id, INVALID_REQUEST, message, Some(data));
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    res
}

/// A JSON-RPC notification as one message.
pub fn notification_text(method: &str, params: Value) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string()
}

/// An error response as one message.
pub fn error_text(id: &Value, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = json!({"code": code, "message": message});
    if let Some(d) = data {
        error["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": error}).to_string()
}

/// A result response as one message.
pub fn result_text(id: &Value, result: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

pub fn result(framing: Framing, id: &Value, result: Value) -> Response {
    message_response(framing, result_text(id, result))
}

/// A result whose JSON is already serialised (the tool list) is spliced in without re-encoding.
pub fn result_raw(framing: Framing, id: &Value, result_json: &str) -> Response {
    message_response(framing, format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result_json}}}", id_json(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_is_a_503_internal_error_with_optional_retry_after() {
        let res = unavailable("the server could not check the token; retry", Some(1));
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "1");
        assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        // Byte for byte what the auth step wrote by hand before this builder existed.
        let before = serde_json::to_vec(&json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32603, "message": "the server could not check the token; retry"}})).unwrap();
        assert_eq!(body.as_ref(), before.as_slice());
        assert!(unavailable("x", None).headers().get(header::RETRY_AFTER).is_none());
    }
}
