//! The REST face of the gateway: a provider's tools as the caller may use them, and a call to one,
//! for backends that do not speak MCP. The same policy, validation, per-account rate limit and
//! audit as `tools/list` and `tools/call` on `/mcp` (a call goes through `dispatch::call_tool`);
//! errors are problem JSON (RFC 9457).
//!
//! - `GET /api/v1/providers/{id}/tools[?connectionId=…]` (`universal-mcp-read`) →
//!   `{"tools": [{name, mcpName, description, parameters, mode: read|write, connectionId}]}`;
//! - `POST /api/v1/providers/{id}/tools/{tool}[?connectionId=…]` (`universal-mcp-read-write`),
//!   the JSON body the arguments → the MCP `CallToolResult` (`content`, `structuredContent`,
//!   `isError`). `tool` is the name at the provider; `connectionId` picks one of two connections
//!   of a provider (else the first).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::Outcome;
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Gateway;
use crate::dispatch::{self, Reply};
use crate::policy::{Visibility, visibility};
use crate::tools::{Access, Round, ToolDescriptor};
use bk_access::AccessContext;

fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let mut res =
        (status, Json(json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": detail})))
            .into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    res
}

/// The caller (bearer token for this server or `/mcp`, or a DPoP-bound one with its proof for this
/// request), counted against its account's limit.
async fn caller(
    gw: &Gateway,
    headers: &HeaderMap,
    method: &Method,
    uri: &Uri,
    needed: Scope,
) -> Result<AccessContext, Response> {
    let issuer = gw.resource.trim_end_matches("/mcp");
    let url = format!("{issuer}{}", uri.path());
    let ctx = match gw.verifier.verify_request(headers, method.as_str(), &url, &[issuer, gw.resource.as_str()]).await {
        Ok(Some(ctx)) => ctx,
        Ok(None) => {
            return Err(problem(StatusCode::UNAUTHORIZED, "Unauthorized", "a bearer access token is required"));
        }
        Err(bk_access::VerifyError::Unavailable) => {
            return Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the token could not be checked; retry",
            ));
        }
        Err(e) => {
            let mut res = problem(StatusCode::UNAUTHORIZED, "Unauthorized", &e.to_string());
            if let Some(c) = bk_access::dpop::challenge(headers, &e, None) {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, c.header);
                crate::auth::add_nonce(gw, c.with_nonce, &mut res);
            }
            return Err(res);
        }
    };
    let allowed = match needed {
        Scope::McpReadWrite => ctx.scopes.allows_mcp_call(),
        _ => ctx.scopes.allows_mcp_read(),
    };
    if !allowed {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "Insufficient scope",
            &format!("this operation needs the scope {}", needed.as_str()),
        ));
    }
    if let Err(wait) = gw.limiter.check(&ctx.account_id).await {
        gw.emit(gw.event("ratelimit.refused", Outcome::Denied, &ctx).detail("limit", "mcp_requests"));
        let mut res = problem(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests",
            &format!("rate limit exceeded for this account; retry in {wait} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&wait.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Err(res);
    }
    Ok(ctx)
}

fn connection_of(raw: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "connectionId")
        .map(|(_, v)| v.into_owned())
}

/// The provider's tools this caller may see, optionally of one connection.
async fn visible(gw: &Gateway, ctx: &AccessContext, provider: &str, connection: Option<&str>) -> Vec<ToolDescriptor> {
    let cp = ctx.client_providers.as_deref();
    gw.tools
        .descriptors(ctx)
        .await
        .into_iter()
        .filter(|t| t.provider.as_deref() == Some(provider))
        .filter(|t| visibility(&ctx.scopes, &ctx.restrictions, cp, t) == Visibility::Visible)
        .filter(|t| connection.is_none_or(|c| t.upstream.as_ref().is_some_and(|u| u.connection_id == c)))
        .collect()
}

pub async fn list(
    State(gw): State<Arc<Gateway>>,
    Path(provider): Path<String>,
    RawQuery(raw): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let ctx = match caller(&gw, &headers, &method, &uri, Scope::McpRead).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let connection = connection_of(raw.as_deref());
    let tools: Vec<Value> = visible(&gw, &ctx, &provider, connection.as_deref())
        .await
        .iter()
        .map(|t| {
            json!({
                "name": t.upstream.as_ref().map(|u| u.name.as_str()).unwrap_or(t.name.as_str()),
                "mcpName": t.name,
                "description": t.description,
                "parameters": t.input_schema,
                "mode": if t.access == Access::Read { "read" } else { "write" },
                "connectionId": t.upstream.as_ref().map(|u| u.connection_id.clone()),
            })
        })
        .collect();
    Json(json!({ "tools": tools })).into_response()
}

pub async fn call(
    State(gw): State<Arc<Gateway>>,
    Path((provider, tool)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ctx = match caller(&gw, &headers, &method, &uri, Scope::McpReadWrite).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let arguments: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Invalid arguments",
                    "the body must be a JSON object of arguments",
                );
            }
        }
    };
    let connection = connection_of(raw.as_deref());
    let found = visible(&gw, &ctx, &provider, connection.as_deref())
        .await
        .into_iter()
        .find(|t| t.upstream.as_ref().map(|u| u.name.as_str()).unwrap_or(t.name.as_str()) == tool);
    let Some(found) = found else {
        // Unknown and hidden alike.
        let shown: String = tool.chars().take(80).collect();
        return problem(
            StatusCode::NOT_FOUND,
            "Unknown tool",
            &format!("{provider:?} offers no tool {shown:?} to this caller"),
        );
    };
    let params = json!({"name": found.name, "arguments": arguments});
    match dispatch::call_tool(&gw, &ctx, "2025-11-25", &params, &Round::default()).await {
        Reply::Result(r) => Json(r).into_response(),
        Reply::Error { message, .. } => problem(StatusCode::BAD_REQUEST, "Invalid arguments", &message),
        Reply::ErrorData { message, .. } => problem(StatusCode::CONFLICT, "Action needed", &message),
        Reply::Limited(l, message) => {
            let mut res = problem(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded", &message);
            res.headers_mut().insert(axum::http::header::RETRY_AFTER, l.retry_after.into());
            res
        }
        Reply::InputRequired { .. } | Reply::NeedsCapability { .. } => problem(
            StatusCode::CONFLICT,
            "Input required",
            "this tool asks the person for input, which only an MCP client can relay",
        ),
    }
}
