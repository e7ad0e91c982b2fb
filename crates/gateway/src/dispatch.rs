//! MCP method dispatch: `initialize`, `ping`, `logging/setLevel`, `tools/list` and `tools/call`.
//! Method-level scope checks (`scope_refusal`) answer 403 `insufficient_scope` (so a client can step
//! up); which tools a caller sees and may call is the registry's, under `crate::policy`. The scope
//! check, the tool list and the tool call are shared with the 2026-07-28 path (`crate::modern`),
//! which frames their answers its own way.

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::response::Response;
use bk_domain::audit::Outcome;
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Gateway;
use crate::auth::insufficient_scope;
use crate::jsonrpc::{self, Framing, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND};
use crate::tools::{Answer, Offer, Round, ToolError};
use crate::transport::{LATEST_VERSION, SESSION_HEADER, SUPPORTED_VERSIONS};
use bk_access::AccessContext;
use bk_domain::mcp_session::McpSession;

/// MCP logging levels, least severe first.
pub(crate) const LOG_LEVELS: &[&str] =
    &["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

pub(crate) const INSTRUCTIONS: &str =
    "Tools of the signed-in account. Call whoami to see who you are and what this session may do.";

/// Who answers (`serverInfo`, an MCP `Implementation`).
pub(crate) fn server_info() -> Value {
    json!({"name": "bridgekeeper", "title": "Bridgekeeper", "version": env!("CARGO_PKG_VERSION")})
}

/// The providers the caller's client may use (`None` = all).
fn client_providers(ctx: &AccessContext) -> Option<&[String]> {
    ctx.client_providers.as_deref()
}

/// What a method asks of the caller's scopes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Need {
    /// See the server and its tools (`universal-mcp-read` or read-write).
    Read,
    /// Call tools (`universal-mcp-read-write`).
    Call,
}

/// The method-level scope check of both protocol eras: the 403 `insufficient_scope` naming the
/// scope that would allow the method, or `None` when the caller may go on.
pub(crate) fn scope_refusal(gw: &Gateway, ctx: &AccessContext, need: Need) -> Option<Response> {
    match need {
        Need::Read if !ctx.scopes.allows_mcp_read() => Some(insufficient_scope(gw, Scope::McpRead)),
        Need::Call if !ctx.scopes.allows_mcp_call() => Some(insufficient_scope(gw, Scope::McpReadWrite)),
        Need::Read | Need::Call => None,
    }
}

/// The answer to a request before it is framed: a result, or a JSON-RPC error; under 2026-07-28
/// also a request for input (sealed into a `requestState` by `crate::modern`) or the client
/// capability a tool needs.
pub(crate) enum Reply {
    Result(Value),
    Error {
        code: i64,
        message: String,
    },
    InputRequired {
        requests: Value,
        state: Value,
    },
    NeedsCapability {
        required: Value,
        message: String,
    },
    /// A JSON-RPC error with `data` (the URL elicitation a legacy client is asked for).
    ErrorData {
        code: i64,
        message: String,
        data: Value,
    },
    /// Over a tool-call limit: HTTP 429 with `Retry-After` on every face.
    Limited(crate::tool_limits::Limited, String),
}

impl Reply {
    /// The 429 of a limited call, in JSON-RPC.
    pub(crate) fn limited_response(id: &Value, limited: &crate::tool_limits::Limited, message: &str) -> Response {
        jsonrpc::limited(id, message, limited.retry_after, limited.data())
    }
}

/// A legacy answer: plain JSON-RPC in the request's framing (a limited call: its 429).
fn framed(framing: Framing, id: &Value, reply: Reply) -> Response {
    match reply {
        Reply::Limited(l, message) => Reply::limited_response(id, &l, &message),
        other => jsonrpc::messages(framing, vec![legacy_message(id, other)]),
    }
}

/// A legacy reply as the last message of a relayed call's stream.
fn legacy_message(id: &Value, reply: Reply) -> String {
    match reply {
        Reply::Result(r) => jsonrpc::result_text(id, r),
        Reply::Error { code, message } => jsonrpc::error_text(id, code, &message, None),
        Reply::ErrorData { code, message, data } => jsonrpc::error_text(id, code, &message, Some(data)),
        // A legacy request never gets a round (`Round::modern` is false): tools answer with an error.
        Reply::InputRequired { .. } => {
            legacy_message(id, tool_error_result("this tool needs input, which needs MCP 2026-07-28"))
        }
        Reply::NeedsCapability { message, .. } => legacy_message(id, tool_error_result(&message)),
        Reply::Limited(l, message) => jsonrpc::error_text(id, jsonrpc::INVALID_REQUEST, &message, Some(l.data())),
    }
}

struct LegacyFrame {
    id: Value,
}

impl crate::relay::Frame for LegacyFrame {
    fn respond(self, reply: Reply) -> Response {
        framed(Framing::Sse, &self.id, reply)
    }
    fn messages(self, reply: Reply) -> Vec<String> {
        vec![legacy_message(&self.id, reply)]
    }
}

/// A legacy `tools/call` answered as an event stream: run in a task of its own, its upstream
/// progress and log messages (at the level the session's `logging/setLevel` asked for, `info`
/// until it does) relayed before the result, cancellable by the session's `notifications/cancelled`
/// and by the client going away.
pub(crate) async fn call_tool_relayed(
    gw: Arc<Gateway>,
    ctx: AccessContext,
    session: Option<&McpSession>,
    version: &str,
    id: Value,
    params: Value,
) -> Response {
    let features = session.map(|s| s.client_features).unwrap_or_default();
    let log_level = session.and_then(|s| s.log_level.clone()).unwrap_or_else(|| "info".to_owned());
    let session = session.map(|s| s.id.as_str());
    if let Some(res) = scope_refusal(&gw, &ctx, Need::Call) {
        return res;
    }
    let progress = params.pointer("/_meta/progressToken").filter(|t| t.is_string() || t.is_number()).cloned();
    let cancellable = session.map(|s| (gw.in_flight.clone(), s, &id));
    let asker = session.map(|s| crate::relay::Asker {
        via: crate::relay::AskVia::Session { pending: gw.pending.clone(), session: s.to_owned() },
        features,
    });
    let version = version.to_owned();
    let frame = LegacyFrame { id: id.clone() };
    let work = {
        let gw = gw.clone();
        move |relay| async move {
            let round = Round { relay: Some(relay), ..Round::for_client(false, features) };
            call_tool(&gw, &ctx, &version, &params, &round).await
        }
    };
    crate::relay::run(progress, Some(&log_level), asker, cancellable, None, features, work, frame).await
}

/// A response POSTed on a legacy session: the answer to a request relayed to its client.
pub(crate) fn answered(gw: &Gateway, session: &str, message: &Value) {
    if gw.pending.answer(session, message) {
        return;
    }
    // Asked by another instance, perhaps (a load balancer without affinity).
    if !gw.publish(|from| crate::relay::BusMessage::Answer {
        from,
        session: session.to_owned(),
        message: message.clone(),
    }) {
        tracing::debug!("a response on an MCP session answered nothing waiting here");
    }
}

/// `notifications/cancelled` on a legacy session: the call it names stops (its upstream request
/// is cancelled in turn), if it runs here.
pub(crate) fn cancelled(gw: &Gateway, session: &str, params: &Value) {
    let Some(id) = params.get("requestId").filter(|i| i.is_string() || i.is_number()) else { return };
    if gw.in_flight.cancel(session, id) {
        tracing::debug!(request = %id, "a tool call was cancelled by its client");
    } else {
        gw.publish(|from| crate::relay::BusMessage::Cancel { from, session: session.to_owned(), request: id.clone() });
    }
}

/// `{"tools":[…]}` as this caller may see it (serialised once per visible set, see `Tools::list_json`).
pub(crate) async fn tool_list(gw: &Gateway, ctx: &AccessContext) -> Arc<str> {
    gw.tools.list_json(ctx, client_providers(ctx)).await
}

pub async fn initialize(gw: &Gateway, ctx: &AccessContext, id: &Value, params: &Value) -> Response {
    if let Some(res) = scope_refusal(gw, ctx, Need::Read) {
        return res;
    }
    let asked = params.get("protocolVersion").and_then(Value::as_str).unwrap_or(LATEST_VERSION);
    let version = if SUPPORTED_VERSIONS.contains(&asked) { asked } else { LATEST_VERSION };
    let client_name = params.pointer("/clientInfo/name").and_then(Value::as_str).map(str::to_owned);
    let features = bk_domain::mcp_session::ClientFeatures::from_capabilities(params.get("capabilities"));
    let session = match gw.sessions.create(ctx, version, client_name, features).await {
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
            "capabilities": {"tools": {"listChanged": false}, "prompts": {}, "resources": {}, "logging": {}},
            "serverInfo": server_info(),
            "instructions": INSTRUCTIONS,
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&session.id) {
        res.headers_mut().insert(SESSION_HEADER, v);
    }
    res
}

/// A legacy request answered as plain JSON (a `tools/call` read as a stream goes through
/// `call_tool_relayed`).
pub async fn dispatch(
    gw: &Gateway,
    ctx: &AccessContext,
    session: Option<&McpSession>,
    version: &str,
    id: &Value,
    method: &str,
    params: &Value,
) -> Response {
    let framing = Framing::Json;
    let features = session.map(|s| s.client_features).unwrap_or_default();
    let need = match method {
        "ping"
        | "tools/list"
        | "logging/setLevel"
        | "prompts/list"
        | "prompts/get"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read" => Some(Need::Read),
        "tools/call" => Some(Need::Call),
        _ => None,
    };
    if let Some(res) = need.and_then(|need| scope_refusal(gw, ctx, need)) {
        return res;
    }
    match method {
        "ping" => jsonrpc::result(framing, id, json!({})),
        "logging/setLevel" => match params.get("level").and_then(Value::as_str) {
            Some(l) if LOG_LEVELS.contains(&l) => {
                // Kept with the session: the level relayed upstream log messages are filtered at.
                if let Some(s) = session
                    && let Err(e) = gw.sessions.set_log_level(ctx, &s.id, l).await
                {
                    tracing::error!(error = %e, "keeping an MCP session's log level failed");
                    return jsonrpc::unavailable("the server could not keep the log level; retry", None);
                }
                jsonrpc::result(framing, id, json!({}))
            }
            _ => jsonrpc::error(
                framing,
                id,
                INVALID_PARAMS,
                &format!("params.level must be one of {}", LOG_LEVELS.join(", ")),
            ),
        },
        "tools/list" => jsonrpc::result_raw(framing, id, &tool_list(gw, ctx).await),
        "prompts/list" => jsonrpc::result(framing, id, offered(gw, ctx, Offer::Prompts).await),
        "resources/list" => jsonrpc::result(framing, id, offered(gw, ctx, Offer::Resources).await),
        "resources/templates/list" => jsonrpc::result(framing, id, offered(gw, ctx, Offer::ResourceTemplates).await),
        "prompts/get" => framed(framing, id, get_prompt(gw, ctx, params).await),
        // 2025-11-25: an unknown resource is -32002.
        "resources/read" => framed(framing, id, read_resource(gw, ctx, params, RESOURCE_NOT_FOUND).await),
        "tools/call" => {
            framed(framing, id, call_tool(gw, ctx, version, params, &Round::for_client(false, features)).await)
        }
        _ => jsonrpc::error(
            framing,
            id,
            METHOD_NOT_FOUND,
            &format!("method {} is not supported", method.chars().take(80).collect::<String>()),
        ),
    }
}

/// URLElicitationRequiredError (2025-11-25).
const URL_ELICITATION_REQUIRED: i64 = -32042;

/// The legacy revision's "resource not found".
const RESOURCE_NOT_FOUND: i64 = -32002;

/// What the caller may read of `kind` (prompts, resources, resource templates) from every source.
pub(crate) async fn offered(gw: &Gateway, ctx: &AccessContext, kind: Offer) -> Value {
    gw.tools.offered_json(ctx, client_providers(ctx), kind).await
}

/// `prompts/get`: a prompt of a provider the caller may read (an unknown one and a hidden one
/// answer alike: -32602 naming it).
pub(crate) async fn get_prompt(gw: &Gateway, ctx: &AccessContext, params: &Value) -> Reply {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return invalid_params("params.name (the prompt name) is required".into());
    };
    let args = params.get("arguments").cloned().unwrap_or_else(|| json!({}));
    let found = gw.tools.get_prompt(ctx, client_providers(ctx), name, &args).await;
    if let Some(r) = &found {
        let outcome = if r.is_ok() { Outcome::Success } else { Outcome::Failure };
        gw.emit(gw.event("mcp.prompts_get", outcome, ctx).target(name.chars().take(128).collect::<String>()));
    }
    match found {
        Some(Ok(v)) => Reply::Result(v),
        Some(Err(ToolError::InvalidParams(m))) => invalid_params(m),
        Some(Err(
            ToolError::Failed(m)
            | ToolError::NeedsCapability { message: m, .. }
            | ToolError::NeedsUrl { message: m, .. },
        )) => Reply::Error { code: INTERNAL_ERROR, message: m },
        None => invalid_params(format!("unknown prompt {}", name.chars().take(80).collect::<String>())),
    }
}

/// `resources/read`: a resource of a provider the caller may read; `not_found` is the code for
/// an unknown (or hidden) URI.
pub(crate) async fn read_resource(gw: &Gateway, ctx: &AccessContext, params: &Value, not_found: i64) -> Reply {
    let Some(uri) = params.get("uri").and_then(Value::as_str) else {
        return invalid_params("params.uri (the resource URI) is required".into());
    };
    let found = gw.tools.read_resource(ctx, client_providers(ctx), uri).await;
    if let Some(r) = &found {
        let outcome = if r.is_ok() { Outcome::Success } else { Outcome::Failure };
        gw.emit(gw.event("mcp.resources_read", outcome, ctx).target(uri.chars().take(256).collect::<String>()));
    }
    match found {
        Some(Ok(v)) => Reply::Result(v),
        Some(Err(ToolError::InvalidParams(m))) => invalid_params(m),
        Some(Err(
            ToolError::Failed(m)
            | ToolError::NeedsCapability { message: m, .. }
            | ToolError::NeedsUrl { message: m, .. },
        )) => Reply::Error { code: INTERNAL_ERROR, message: m },
        None => Reply::Error {
            code: not_found,
            message: format!("resource not found: {}", uri.chars().take(200).collect::<String>()),
        },
    }
}

fn tool_error_result(message: &str) -> Reply {
    Reply::Result(json!({"content": [{"type": "text", "text": message}], "isError": true}))
}

/// What of an upstream `CallToolResult` reaches the client: its content of every type, structured
/// content, error flag and `_meta`, unchanged; the envelope (`resultType`) is this server's own.
fn upstream_result(r: Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Value::Object(m) = r {
        for (k, v) in m {
            if matches!(k.as_str(), "content" | "structuredContent" | "isError" | "_meta") {
                out.insert(k, v);
            }
        }
    }
    out.entry("content").or_insert_with(|| json!([]));
    Value::Object(out)
}

fn invalid_params(message: String) -> Reply {
    Reply::Error { code: INVALID_PARAMS, message }
}

/// Records a call that was dropped before it ended (the client cancelled or went away): the
/// upstream may have acted already, so it is audited like any other call.
struct Unfinished<'a> {
    gw: &'a Gateway,
    ctx: &'a AccessContext,
    tool: &'a str,
    provider: &'a str,
    started: std::time::Instant,
    armed: bool,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let micros = self.started.elapsed().as_micros() as u64;
        self.gw.emit(
            self.gw
                .event("mcp.tools_call", Outcome::Failure, self.ctx)
                .target(self.tool)
                .latency_ms((micros / 1000) as i64)
                .detail("tool", self.tool)
                .detail("provider", self.provider)
                .detail("latency_us", micros)
                .detail("error", "cancelled by the client before it ended"),
        );
    }
}

/// `tools/call` (the caller's `Need::Call` is checked): resolves the tool under the policy,
/// validates the arguments, calls it and records the audit event. `version` is the protocol
/// revision the call is made under.
pub(crate) async fn call_tool(
    gw: &Gateway,
    ctx: &AccessContext,
    version: &str,
    params: &Value,
    round: &Round<'_>,
) -> Reply {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return invalid_params("params.name (the tool name) is required".into());
    };
    // A tool the policy hides is answered exactly like one that does not exist.
    let Some(tool) = gw.tools.resolve(ctx, client_providers(ctx), name).await else {
        return invalid_params(format!("unknown tool {}", name.chars().take(80).collect::<String>()));
    };
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a) => a.clone(),
    };
    // Invalid arguments: since 2025-11-25 (SEP-1303) a tool execution error the model can read and
    // correct; before that, a JSON-RPC invalid-params error. Either way the message names the field.
    let invalid = |message: &str| {
        if version >= "2025-11-25" {
            tool_error_result(&format!("invalid arguments: {message}"))
        } else {
            invalid_params(format!("invalid arguments: {message}"))
        }
    };
    if let Err(why) = crate::schema::validate(&tool.descriptor().input_schema, &args) {
        return invalid(&why);
    }
    // A retry carrying a verified `requestState` continues a call already counted.
    if round.state.is_none()
        && let Err(limited) = gw.tool_limits.check(ctx, name).await
    {
        let message = limited.message(name);
        gw.emit(
            gw.event("ratelimit.refused", Outcome::Denied, ctx)
                .target(name)
                .detail("limit", format!("tool_calls.{}", limited.which))
                .detail("rule", limited.rule.clone())
                .detail("provider", tool.descriptor().provider.as_deref().unwrap_or("bridgekeeper")),
        );
        return Reply::Limited(limited, message);
    }
    let started = std::time::Instant::now();
    let provider = tool.descriptor().provider.as_deref().unwrap_or("bridgekeeper");
    let mut unfinished = Unfinished { gw, ctx, tool: name, provider, started, armed: true };
    let outcome = gw.tools.call(ctx, &tool, &args, round).await;
    unfinished.armed = false;
    let micros = started.elapsed().as_micros() as u64;
    let (result, reason) = match &outcome {
        Ok(Answer::Complete(_)) => (Outcome::Success, None),
        Ok(Answer::Upstream(r)) if r.get("isError") == Some(&Value::Bool(true)) => {
            (Outcome::Failure, Some("the upstream tool reported an error".to_owned()))
        }
        Ok(Answer::Upstream(_)) => (Outcome::Success, None),
        Ok(Answer::InputRequired { .. }) => (Outcome::Success, Some("input required".to_owned())),
        Err(
            ToolError::InvalidParams(m)
            | ToolError::Failed(m)
            | ToolError::NeedsCapability { message: m, .. }
            | ToolError::NeedsUrl { message: m, .. },
        ) => (Outcome::Failure, Some(m.clone())),
    };
    let mut event = gw
        .event("mcp.tools_call", result, ctx)
        .target(name)
        .latency_ms((micros / 1000) as i64)
        .detail("tool", name)
        .detail("provider", provider)
        .detail("latency_us", micros);
    if let Some(r) = reason {
        event = event.detail("error", r);
    }
    gw.emit(event);
    match outcome {
        Ok(Answer::Complete(out)) => {
            let mut result = json!({"content": [{"type": "text", "text": out.text}], "isError": false});
            if let Some(s) = out.structured {
                result["structuredContent"] = s;
            }
            Reply::Result(result)
        }
        Ok(Answer::Upstream(r)) => Reply::Result(upstream_result(r)),
        Ok(Answer::InputRequired { requests, state }) => Reply::InputRequired { requests, state },
        Err(ToolError::InvalidParams(m)) => invalid(&m),
        Err(ToolError::Failed(m)) => tool_error_result(&m),
        Err(ToolError::NeedsCapability { required, message }) => Reply::NeedsCapability { required, message },
        // Legacy revisions (2025-11-25): URLElicitationRequiredError, which the client resolves by
        // opening the URL and retrying.
        Err(ToolError::NeedsUrl { url, message }) => Reply::ErrorData {
            code: URL_ELICITATION_REQUIRED,
            data: json!({"elicitations": [{
                "mode": "url",
                "elicitationId": bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>()),
                "url": url,
                "message": message,
            }]}),
            message,
        },
    }
}
