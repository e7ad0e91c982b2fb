//! MCP over Streamable HTTP (spec 2025-11-25): JSON-RPC requests on POST answered with
//! `application/json`; notifications and responses acknowledged with 202.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::{authenticate, insufficient_scope};
use crate::context::RequestContext;
use crate::tools::ToolError;

pub const SUPPORTED_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
const LATEST: &str = "2025-11-25";

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;

fn json_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
            .to_string(),
    )
}

/// A result whose JSON is already serialized (the tool list) is spliced in without re-encoding.
fn rpc_result_raw(id: &Value, result_json: &str) -> Response {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
    json_response(
        StatusCode::OK,
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{result_json}}}"),
    )
}

fn rpc_result(id: &Value, result: Value) -> Response {
    json_response(
        StatusCode::OK,
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string(),
    )
}

pub async fn post(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Bytes) -> Response {
    let ctx = match authenticate(&gw, &headers).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"jsonrpc": "2.0", "id": null, "error": {"code": PARSE_ERROR, "message": format!("the body is not JSON: {e}")}}).to_string(),
            );
        }
    };
    let Some(obj) = msg.as_object() else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"jsonrpc": "2.0", "id": null, "error": {"code": INVALID_REQUEST, "message": "expected one JSON-RPC message object (batches are not supported)"}}).to_string(),
        );
    };
    let id = obj.get("id").cloned();
    let method = obj.get("method").and_then(Value::as_str);
    let (Some(id), Some(method)) = (id, method) else {
        // Notifications and responses need no answer.
        return StatusCode::ACCEPTED.into_response();
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return rpc_error(&id, INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    }
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    dispatch(&gw, &ctx, &id, method, &params).await
}

async fn dispatch(
    gw: &Gateway,
    ctx: &RequestContext,
    id: &Value,
    method: &str,
    params: &Value,
) -> Response {
    match method {
        "initialize" | "ping" | "tools/list" | "logging/setLevel"
            if !ctx.scopes.allows_mcp_read() =>
        {
            insufficient_scope(gw, Scope::McpRead)
        }
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or(LATEST);
            let version = if SUPPORTED_VERSIONS.contains(&asked) {
                asked
            } else {
                LATEST
            };
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}, "logging": {}},
                    "serverInfo": {"name": "bridgekeeper", "title": "Bridgekeeper", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Tools of the signed-in account. Call whoami to see who you are and what this session may do.",
                }),
            )
        }
        "ping" | "logging/setLevel" => rpc_result(id, json!({})),
        "tools/list" => rpc_result_raw(id, gw.tools.list_json()),
        "tools/call" => {
            if !ctx.scopes.allows_mcp_call() {
                return insufficient_scope(gw, Scope::McpReadWrite);
            }
            call_tool(gw, ctx, id, params).await
        }
        _ => rpc_error(
            id,
            METHOD_NOT_FOUND,
            &format!(
                "method {} is not supported",
                method.chars().take(80).collect::<String>()
            ),
        ),
    }
}

async fn call_tool(gw: &Gateway, ctx: &RequestContext, id: &Value, params: &Value) -> Response {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(
            id,
            INVALID_PARAMS,
            "params.name (the tool name) is required",
        );
    };
    let Some(tool) = gw.tools.get(name) else {
        return rpc_error(
            id,
            INVALID_PARAMS,
            &format!("unknown tool {}", name.chars().take(80).collect::<String>()),
        );
    };
    let args = params
        .get("arguments")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if !args.is_object() {
        return rpc_error(id, INVALID_PARAMS, "params.arguments must be an object");
    }
    match tool.handler.call(ctx, &args).await {
        Ok(out) => {
            let mut result =
                json!({"content": [{"type": "text", "text": out.text}], "isError": false});
            if let Some(s) = out.structured {
                result["structuredContent"] = s;
            }
            rpc_result(id, result)
        }
        Err(ToolError::InvalidParams(m)) => rpc_error(id, INVALID_PARAMS, &m),
        Err(ToolError::Failed(m)) => rpc_result(
            id,
            json!({"content": [{"type": "text", "text": m}], "isError": true}),
        ),
    }
}

/// No server-initiated stream is offered on GET.
pub async fn get(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(res) = authenticate(&gw, &headers).await {
        return res;
    }
    let mut res = StatusCode::METHOD_NOT_ALLOWED.into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    res
}

pub async fn delete(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    get(State(gw), headers).await
}
