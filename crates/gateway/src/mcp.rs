//! MCP over Streamable HTTP (spec 2025-11-25, also 2025-06-18 and 2025-03-26).
//!
//! Every request passes, in order: host/origin check (403) → bearer token (401/403) → per-account
//! rate limit (429) → `MCP-Protocol-Version` (400) → body → session (`Mcp-Session-Id` from
//! `initialize` on; 400 without, 404 unknown/ended/another account's) → dispatch.
//! Answers are JSON; a `tools/call` from a client that accepts `text/event-stream` is answered as an
//! SSE stream, unless `X-Response-Format: json` asks for plain JSON. A backend sending
//! `X-Response-Format: json` may also call without a session (one-shot requests, as in reference 000).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::{authenticate, insufficient_scope};
use crate::context::RequestContext;
use crate::session::Lookup;
use crate::tools::ToolError;

pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
const LATEST: &str = "2025-11-25";
/// Assumed when a client sends no `MCP-Protocol-Version` (spec: backwards compatibility).
const DEFAULT_VERSION: &str = "2025-03-26";
const SESSION_HEADER: &str = "mcp-session-id";
const LOG_LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;

/// How the answer to a request is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Json,
    Sse,
}

fn json_body(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// A transport-level refusal (no JSON-RPC id to answer to).
fn refuse(status: StatusCode, code: i64, message: &str) -> Response {
    json_body(status, json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string())
}

fn message_response(framing: Framing, message: String) -> Response {
    match framing {
        Framing::Json => json_body(StatusCode::OK, message),
        Framing::Sse => {
            let mut res = (StatusCode::OK, format!("event: message\ndata: {message}\n\n")).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            res
        }
    }
}

fn id_json(id: &Value) -> String {
    serde_json::to_string(id).unwrap_or_else(|_| "null".into())
}

fn rpc_error(framing: Framing, id: &Value, code: i64, message: &str) -> Response {
    message_response(
        framing,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string(),
    )
}

/// A result whose JSON is already serialized (the tool list) is spliced in without re-encoding.
fn rpc_result_raw(framing: Framing, id: &Value, result_json: &str) -> Response {
    message_response(framing, format!("{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result_json}}}", id_json(id)))
}

fn rpc_result(framing: Framing, id: &Value, result: Value) -> Response {
    message_response(framing, json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn wants_plain_json(headers: &HeaderMap) -> bool {
    header_str(headers, "x-response-format").is_some_and(|v| v.trim().eq_ignore_ascii_case("json"))
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    header_str(headers, "accept").is_some_and(|a| {
        a.split(',').any(|part| {
            let m = part.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case(media) || m == "*/*"
        })
    })
}

/// Steps shared by every method: host check, authentication, rate limit, protocol version.
async fn admit(gw: &Gateway, headers: &HeaderMap, uri: &Uri) -> Result<RequestContext, Response> {
    if let Err(why) = gw.hosts.check(headers, uri) {
        tracing::warn!(reason = %why, "refused /mcp request (DNS-rebinding protection)");
        return Err(refuse(StatusCode::FORBIDDEN, INVALID_REQUEST, &format!("forbidden: {why}")));
    }
    let ctx = authenticate(gw, headers).await?;
    if let Err(wait) = gw.limiter.check(&ctx.account_id).await {
        gw.emit(gw.event("ratelimit.refused", bk_domain::audit::Outcome::Denied, &ctx).detail("limit", "mcp_requests"));
        let mut res = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            INVALID_REQUEST,
            &format!("rate limit exceeded for this account; retry in {wait} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(res);
    }
    if let Some(v) = header_str(headers, "mcp-protocol-version")
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            &format!(
                "unsupported MCP-Protocol-Version {}; supported: {}",
                v.chars().take(40).collect::<String>(),
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    Ok(ctx)
}

/// The live session named by `Mcp-Session-Id`, or the refusal.
async fn session_of(
    gw: &Gateway,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Option<bk_domain::mcp_session::McpSession>, Response> {
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Ok(None);
    };
    match gw.sessions.find(ctx, id).await {
        Ok(Lookup::Live(s)) => Ok(Some(s)),
        Ok(Lookup::NotFound) => {
            Err(refuse(StatusCode::NOT_FOUND, INVALID_REQUEST, "session not found; initialize a new one"))
        }
        Err(e) => {
            tracing::error!(error = %e, "MCP session lookup failed");
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "the server could not look up the session; retry",
            ))
        }
    }
}

pub async fn post(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = match admit(&gw, &headers, &uri).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let plain_json = wants_plain_json(&headers);
    if let Some(ct) = header_str(&headers, "content-type")
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, INVALID_REQUEST, "the body must be application/json");
    }
    if !plain_json
        && headers.contains_key(header::ACCEPT)
        && !accepts(&headers, "application/json")
        && !accepts(&headers, "text/event-stream")
    {
        return refuse(
            StatusCode::NOT_ACCEPTABLE,
            INVALID_REQUEST,
            "Accept must include application/json or text/event-stream",
        );
    }
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(StatusCode::BAD_REQUEST, PARSE_ERROR, &format!("the body is not JSON: {e}"));
        }
    };
    let Some(obj) = msg.as_object() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "expected one JSON-RPC message object (batches are not supported)",
        );
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return refuse(StatusCode::BAD_REQUEST, INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    }
    let method = obj.get("method").and_then(Value::as_str);
    let id = obj.get("id").cloned().filter(|i| i.is_string() || i.is_number());
    if obj.contains_key("id") && id.is_none() {
        return refuse(StatusCode::BAD_REQUEST, INVALID_REQUEST, "id must be a string or a number");
    }
    let params = obj.get("params").cloned().unwrap_or(Value::Null);

    if method == Some("initialize") {
        let Some(id) = id else {
            return refuse(StatusCode::BAD_REQUEST, INVALID_REQUEST, "initialize is a request: it needs an id");
        };
        return initialize(&gw, &ctx, &id, &params).await;
    }
    let session = match session_of(&gw, &ctx, &headers).await {
        Ok(s) => s,
        Err(res) => return res,
    };
    if session.is_none() && !plain_json {
        return refuse(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "Mcp-Session-Id header is required (call initialize first)",
        );
    }
    let (Some(id), Some(method)) = (id, method) else {
        // Notifications and responses are acknowledged without a body.
        return StatusCode::ACCEPTED.into_response();
    };
    let version = session
        .as_ref()
        .map(|s| s.protocol_version.as_str())
        .or_else(|| header_str(&headers, "mcp-protocol-version"))
        .unwrap_or(DEFAULT_VERSION);
    let framing = if method == "tools/call" && !plain_json && accepts(&headers, "text/event-stream") {
        Framing::Sse
    } else {
        Framing::Json
    };
    dispatch(&gw, &ctx, framing, version, &id, method, &params).await
}

async fn initialize(gw: &Gateway, ctx: &RequestContext, id: &Value, params: &Value) -> Response {
    if !ctx.scopes.allows_mcp_read() {
        return insufficient_scope(gw, Scope::McpRead);
    }
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(LATEST);
    let version = if SUPPORTED_VERSIONS.contains(&asked) { asked } else { LATEST };
    let client_name = params.pointer("/clientInfo/name").and_then(Value::as_str).map(str::to_owned);
    let session = match gw.sessions.create(ctx, version, client_name).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "creating an MCP session failed");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                INTERNAL_ERROR,
                "the server could not create a session; retry",
            );
        }
    };
    let mut res = rpc_result(
        Framing::Json,
        id,
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": false}, "logging": {}},
            "serverInfo": {"name": "bridgekeeper", "title": "Bridgekeeper", "version": env!("CARGO_PKG_VERSION")},
            "instructions": "Tools of the signed-in account. Call whoami to see who you are and what this session may do.",
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    res
}

async fn dispatch(
    gw: &Gateway,
    ctx: &RequestContext,
    framing: Framing,
    version: &str,
    id: &Value,
    method: &str,
    params: &Value,
) -> Response {
    match method {
        "ping" | "tools/list" | "logging/setLevel" if !ctx.scopes.allows_mcp_read() => {
            insufficient_scope(gw, Scope::McpRead)
        }
        "ping" => rpc_result(framing, id, json!({})),
        "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
            Some(l) if LOG_LEVELS.contains(&l) => rpc_result(framing, id, json!({})),
            _ => rpc_error(
                framing,
                id,
                INVALID_PARAMS,
                &format!("params.level must be one of {}", LOG_LEVELS.join(", ")),
            ),
        },
        "tools/list" => rpc_result_raw(framing, id, gw.tools.list_json()),
        "tools/call" => {
            if !ctx.scopes.allows_mcp_call() {
                return insufficient_scope(gw, Scope::McpReadWrite);
            }
            call_tool(gw, ctx, framing, version, id, params).await
        }
        _ => rpc_error(
            framing,
            id,
            METHOD_NOT_FOUND,
            &format!("method {} is not supported", method.chars().take(80).collect::<String>()),
        ),
    }
}

fn tool_error_result(framing: Framing, id: &Value, message: &str) -> Response {
    rpc_result(framing, id, json!({"content": [{"type": "text", "text": message}], "isError": true}))
}

async fn call_tool(
    gw: &Gateway,
    ctx: &RequestContext,
    framing: Framing,
    version: &str,
    id: &Value,
    params: &Value,
) -> Response {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(framing, id, INVALID_PARAMS, "params.name (the tool name) is required");
    };
    let Some(tool) = gw.tools.get(name) else {
        return rpc_error(
            framing,
            id,
            INVALID_PARAMS,
            &format!("unknown tool {}", name.chars().take(80).collect::<String>()),
        );
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a) => a.clone(),
    };
    // Invalid arguments: since 2025-11-25 (SEP-1303) a tool execution error the model can read and
    // correct; before that, a JSON-RPC invalid-params error. Either way the message names the field.
    let invalid = |message: &str| {
        if version >= "2025-11-25" {
            tool_error_result(framing, id, &format!("invalid arguments: {message}"))
        } else {
            rpc_error(framing, id, INVALID_PARAMS, &format!("invalid arguments: {message}"))
        }
    };
    if let Err(why) = crate::schema::validate(&tool.input_schema, &args) {
        return invalid(&why);
    }
    let started = std::time::Instant::now();
    let outcome = tool.handler.call(ctx, &args).await;
    let micros = started.elapsed().as_micros() as u64;
    let (result, reason) = match &outcome {
        Ok(_) => (bk_domain::audit::Outcome::Success, None),
        Err(ToolError::InvalidParams(m)) | Err(ToolError::Failed(m)) => {
            (bk_domain::audit::Outcome::Failure, Some(m.clone()))
        }
    };
    let mut event = gw
        .event("mcp.tools_call", result, ctx)
        .target(name)
        .latency_ms((micros / 1000) as i64)
        .detail("tool", name)
        .detail("provider", "bridgekeeper")
        .detail("latency_us", micros);
    if let Some(r) = reason {
        event = event.detail("error", r);
    }
    gw.emit(event);
    match outcome {
        Ok(out) => {
            let mut result = json!({"content": [{"type": "text", "text": out.text}], "isError": false});
            if let Some(s) = out.structured {
                result["structuredContent"] = s;
            }
            rpc_result(framing, id, result)
        }
        Err(ToolError::InvalidParams(m)) => invalid(&m),
        Err(ToolError::Failed(m)) => tool_error_result(framing, id, &m),
    }
}

/// No server-initiated stream is offered: GET answers 405 (after the same checks as POST).
pub async fn get(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(res) = admit(&gw, &headers, &uri).await {
        return res;
    }
    let mut res = refuse(StatusCode::METHOD_NOT_ALLOWED, INVALID_REQUEST, "this server offers no GET stream; use POST");
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    res
}

/// DELETE ends the caller's session.
pub async fn delete(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    let ctx = match admit(&gw, &headers, &uri).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return refuse(StatusCode::BAD_REQUEST, INVALID_REQUEST, "Mcp-Session-Id header is required");
    };
    match gw.sessions.end(&ctx, id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => refuse(StatusCode::NOT_FOUND, INVALID_REQUEST, "session not found"),
        Err(e) => {
            tracing::error!(error = %e, "ending an MCP session failed");
            refuse(StatusCode::SERVICE_UNAVAILABLE, INTERNAL_ERROR, "the server could not end the session; retry")
        }
    }
}
