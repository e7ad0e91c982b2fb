//! MCP method dispatch: `initialize`, `ping`, `logging/setLevel`, `tools/list` and `tools/call`.
//! Method-level scope checks answer 403 `insufficient_scope` (so a client can step up); which tools
//! a caller sees and may call is the registry's, under `crate::policy`.

use axum::http::HeaderValue;
use axum::response::Response;
use bk_domain::audit::Outcome;
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::insufficient_scope;
use crate::jsonrpc::{self, Framing, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::tools::ToolError;
use crate::transport::{LATEST_VERSION, SESSION_HEADER, SUPPORTED_VERSIONS};
use bk_access::AccessContext;

const LOG_LEVELS: &[&str] = &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/// The providers the caller's client may use (`None` = all).
fn client_providers(ctx: &AccessContext) -> Option<&[String]> {
    ctx.client_providers.as_deref()
}

pub async fn initialize(gw: &Gateway, ctx: &AccessContext, id: &Value, params: &Value) -> Response {
    if !ctx.scopes.allows_mcp_read() {
        return insufficient_scope(gw, Scope::McpRead);
    }
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(LATEST_VERSION);
    let version = if SUPPORTED_VERSIONS.contains(&asked) { asked } else { LATEST_VERSION };
    let client_name = params.pointer("/clientInfo/name").and_then(Value::as_str).map(str::to_owned);
    let session = match gw.sessions.create(ctx, version, client_name).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "creating an MCP session failed");
            return jsonrpc::unavailable("the server could not create a session; retry", None);
        }
    };
    let mut res = jsonrpc::result(
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

pub async fn dispatch(
    gw: &Gateway,
    ctx: &AccessContext,
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
        "ping" => jsonrpc::result(framing, id, json!({})),
        "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
            Some(l) if LOG_LEVELS.contains(&l) => jsonrpc::result(framing, id, json!({})),
            _ => jsonrpc::error(
                framing,
                id,
                INVALID_PARAMS,
                &format!("params.level must be one of {}", LOG_LEVELS.join(", ")),
            ),
        },
        "tools/list" => jsonrpc::result_raw(framing, id, &gw.tools.list_json(ctx, client_providers(ctx)).await),
        "tools/call" => {
            if !ctx.scopes.allows_mcp_call() {
                return insufficient_scope(gw, Scope::McpReadWrite);
            }
            call_tool(gw, ctx, framing, version, id, params).await
        }
        _ => jsonrpc::error(
            framing,
            id,
            METHOD_NOT_FOUND,
            &format!("method {} is not supported", method.chars().take(80).collect::<String>()),
        ),
    }
}

fn tool_error_result(framing: Framing, id: &Value, message: &str) -> Response {
    jsonrpc::result(framing, id, json!({"content": [{"type": "text", "text": message}], "isError": true}))
}

async fn call_tool(
    gw: &Gateway,
    ctx: &AccessContext,
    framing: Framing,
    version: &str,
    id: &Value,
    params: &Value,
) -> Response {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return jsonrpc::error(framing, id, INVALID_PARAMS, "params.name (the tool name) is required");
    };
    // A tool the policy hides is answered exactly like one that does not exist.
    let Some(tool) = gw.tools.resolve(ctx, client_providers(ctx), name).await else {
        return jsonrpc::error(
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
            jsonrpc::error(framing, id, INVALID_PARAMS, &format!("invalid arguments: {message}"))
        }
    };
    if let Err(why) = crate::schema::validate(&tool.descriptor().input_schema, &args) {
        return invalid(&why);
    }
    let started = std::time::Instant::now();
    let outcome = gw.tools.call(ctx, &tool, &args).await;
    let micros = started.elapsed().as_micros() as u64;
    let (result, reason) = match &outcome {
        Ok(_) => (Outcome::Success, None),
        Err(ToolError::InvalidParams(m)) | Err(ToolError::Failed(m)) => (Outcome::Failure, Some(m.clone())),
    };
    let mut event = gw
        .event("mcp.tools_call", result, ctx)
        .target(name)
        .latency_ms((micros / 1000) as i64)
        .detail("tool", name)
        .detail("provider", tool.descriptor().provider.as_deref().unwrap_or("bridgekeeper"))
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
            jsonrpc::result(framing, id, result)
        }
        Err(ToolError::InvalidParams(m)) => invalid(&m),
        Err(ToolError::Failed(m)) => tool_error_result(framing, id, &m),
    }
}
