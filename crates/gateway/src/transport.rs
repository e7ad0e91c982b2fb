//! MCP over Streamable HTTP: the POST, GET and DELETE handlers of `/mcp`, and everything about a
//! request before its method is dispatched. Two protocol eras share the endpoint: a POST whose body
//! claims the 2026-07-28 revision (see `modern::claims`) is served statelessly by `crate::modern`;
//! everything else is the legacy session protocol (spec 2025-11-25, also 2025-06-18 and 2025-03-26).
//!
//! Every request passes, in order: host/origin check (403) → bearer token (401/403) → per-account
//! rate limit (429) → [2026-07-28 POSTs leave here for `crate::modern`] → `MCP-Protocol-Version`
//! (400) → body → session (`Mcp-Session-Id` from `initialize` on; 400 without, 404
//! unknown/ended/another account's) → dispatch.
//! Answers are JSON; a `tools/call` from a client that accepts `text/event-stream` is answered as an
//! SSE stream, unless `X-Response-Format: json` asks for plain JSON. A backend sending
//! `X-Response-Format: json` may also call without a session (one-shot requests, as in reference 000).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::Instrument;

use crate::Gateway;
use crate::auth::authenticate;
use crate::dispatch;
use crate::jsonrpc::{self, Framing, INVALID_REQUEST, PARSE_ERROR, refuse};
use crate::modern;
use crate::session::Lookup;
use bk_access::AccessContext;

pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
pub const LATEST_VERSION: &str = "2025-11-25";
/// Assumed when a client sends no `MCP-Protocol-Version` (spec: backwards compatibility).
const DEFAULT_VERSION: &str = "2025-03-26";
pub const SESSION_HEADER: &str = "mcp-session-id";

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub(crate) fn wants_plain_json(headers: &HeaderMap) -> bool {
    header_str(headers, "x-response-format").is_some_and(|v| v.trim().eq_ignore_ascii_case("json"))
}

pub(crate) fn accepts(headers: &HeaderMap, media: &str) -> bool {
    header_str(headers, "accept").is_some_and(|a| {
        a.split(',').any(|part| {
            let m = part.split(';').next().unwrap_or("").trim();
            m.eq_ignore_ascii_case(media) || m == "*/*"
        })
    })
}

/// Steps shared by every method of the legacy protocol: host check, authentication, rate limit,
/// protocol version.
async fn admit(gw: &Gateway, headers: &HeaderMap, uri: &Uri, method: &str) -> Result<AccessContext, Response> {
    let ctx = admit_caller(gw, headers, uri, method).await?;
    match legacy_version_refusal(headers) {
        Some(res) => Err(res),
        None => Ok(ctx),
    }
}

/// Steps shared by every request of both eras: host check, authentication, rate limit.
async fn admit_caller(gw: &Gateway, headers: &HeaderMap, uri: &Uri, method: &str) -> Result<AccessContext, Response> {
    if let Err(why) = gw.hosts.check(headers, uri) {
        tracing::warn!(reason = %why, "refused /mcp request (DNS-rebinding protection)");
        return Err(refuse(StatusCode::FORBIDDEN, INVALID_REQUEST, &format!("forbidden: {why}")));
    }
    let ctx = authenticate(gw, headers, method).await?;
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
    Ok(ctx)
}

/// The legacy protocol's `MCP-Protocol-Version` check (absent: assumed `DEFAULT_VERSION`): the
/// 400 for an unsupported version, or `None`.
fn legacy_version_refusal(headers: &HeaderMap) -> Option<Response> {
    if let Some(v) = header_str(headers, "mcp-protocol-version")
        && !SUPPORTED_VERSIONS.contains(&v)
    {
        return Some(refuse(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            &format!(
                "unsupported MCP-Protocol-Version {}; supported: {}",
                v.chars().take(40).collect::<String>(),
                SUPPORTED_VERSIONS.join(", ")
            ),
        ));
    }
    None
}

/// The live session named by `Mcp-Session-Id`, or the refusal.
async fn session_of(
    gw: &Gateway,
    ctx: &AccessContext,
    headers: &HeaderMap,
) -> Result<Option<bk_domain::mcp_session::McpSession>, Response> {
    let Some(id) = header_str(headers, SESSION_HEADER) else {
        return Ok(None);
    };
    match gw.sessions.find(ctx, id).await {
        Ok(Lookup::Live(s)) => Ok(Some(*s)),
        Ok(Lookup::NotFound) => {
            Err(refuse(StatusCode::NOT_FOUND, INVALID_REQUEST, "session not found; initialize a new one"))
        }
        Err(e) => {
            tracing::error!(error = %e, "MCP session lookup failed");
            Err(jsonrpc::unavailable("the server could not look up the session; retry", None))
        }
    }
}

pub async fn post(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = match admit_caller(&gw, &headers, &uri, "POST").await {
        Ok(c) => c,
        Err(res) => return res,
    };
    // The body decides the era, so it is parsed here; a legacy request's parse error is still
    // reported where it always was (after the version, content-type and Accept checks).
    let parsed = serde_json::from_slice::<Value>(&body);
    let (method, span) = crate::telemetry::mcp_request(parsed.as_ref().ok());
    let started = std::time::Instant::now();
    let res = answer(gw, ctx, headers, parsed).instrument(span).await;
    crate::telemetry::mcp_answered(method, started);
    res
}

async fn answer(
    gw: Arc<Gateway>,
    ctx: AccessContext,
    headers: HeaderMap,
    parsed: Result<Value, serde_json::Error>,
) -> Response {
    if modern::claims(&headers, parsed.as_ref().ok()) {
        return modern::post(&gw, &ctx, &headers, parsed).await;
    }
    if let Some(res) = legacy_version_refusal(&headers) {
        return res;
    }
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
    let msg: Value = match parsed {
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
        return dispatch::initialize(&gw, &ctx, &id, &params).await;
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
    let (Some(id), Some(method)) = (id.clone(), method) else {
        if let Some(s) = &session {
            match (method, &id) {
                (Some("notifications/cancelled"), _) => dispatch::cancelled(&gw, &s.id, &params),
                (None, Some(_)) => dispatch::answered(&gw, &s.id, &msg),
                _ => {}
            }
        }
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
    if framing == Framing::Sse {
        return dispatch::call_tool_relayed(gw.clone(), ctx, session.as_ref(), version, id, params).await;
    }
    dispatch::dispatch(&gw, &ctx, session.as_ref(), version, &id, method, &params).await
}

/// No server-initiated stream is offered: GET answers 405 (after the host check, the token and the
/// rate limit), whichever protocol version it names — 2026-07-28 removed the GET stream
/// (`subscriptions/listen` replaces it), and the legacy revisions make it optional.
pub async fn get(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    if let Err(res) = admit_caller(&gw, &headers, &uri, "GET").await {
        return res;
    }
    let message = if header_str(&headers, "mcp-protocol-version").is_some_and(modern::is_modern_version) {
        "there is no GET stream in MCP 2026-07-28: POST subscriptions/listen for change notifications"
    } else {
        "this server offers no GET stream; use POST"
    };
    let mut res = refuse(StatusCode::METHOD_NOT_ALLOWED, INVALID_REQUEST, message);
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    res
}

/// DELETE ends the caller's session.
pub async fn delete(State(gw): State<Arc<Gateway>>, uri: Uri, headers: HeaderMap) -> Response {
    let ctx = match admit(&gw, &headers, &uri, "DELETE").await {
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
            jsonrpc::unavailable("the server could not end the session; retry", None)
        }
    }
}
