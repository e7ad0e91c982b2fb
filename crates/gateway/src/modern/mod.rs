//! The 2026-07-28 revision of `/mcp`, served statelessly beside the legacy session protocol. A POST
//! whose `params._meta` names a protocol version, or whose `MCP-Protocol-Version` names a modern
//! one, or that calls `server/discover`, comes here (`envelope::claims`) after the host check,
//! the bearer token and the rate limit. No session is involved: `Mcp-Session-Id` is never read,
//! minted or echoed; everything a request needs is in the request and its access token.
//!
//! Validation, in this order, each failure naming the key or header and echoing the request id:
//! body (400 -32700 / -32600) → `_meta` envelope (400 -32602) → headers present but disagreeing
//! with the body (400 -32020) → protocol version (400 -32022 listing `SUPPORTED_VERSIONS`) →
//! required headers and `Mcp-Name` (400 -32020) → method (404 -32601 for what this revision
//! removed or this server lacks) → the legacy path's own scope check and tool policy
//! (`crate::dispatch`). Every result carries `resultType` and
//! `_meta["io.modelcontextprotocol/serverInfo"]`; `server/discover` and the list results carry
//! caching hints (`private` where the answer depends on the caller's grant).
//!
//! `subscriptions/listen` streams tool-list changes (`listen`). A tool may answer
//! `resultType: "input_required"` (multi-round-trip requests): its state is sealed into the
//! `requestState` (`crate::rounds`) and verified on the retry; a tool that needs a client
//! capability the request did not declare is -32021 (HTTP 400) naming it.

mod envelope;
mod listen;

use std::sync::LazyLock;
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Gateway;
use crate::dispatch::{self, LOG_LEVELS, Need, Reply};
use crate::jsonrpc::{
    self, Framing, HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND,
    MISSING_CLIENT_CAPABILITY, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION,
};
use crate::tools::{Offer, Round};
use crate::transport::{accepts, header_str, wants_plain_json};
use bk_access::AccessContext;
use bk_domain::audit::Outcome;

pub use envelope::{claims, is_modern_version};
pub use listen::Listeners;

/// The revisions served statelessly (named in `server/discover` and in every -32022). The legacy
/// revisions are reached through `initialize`, not through `_meta`, so they are not listed.
pub const SUPPORTED_VERSIONS: &[&str] = &["2026-07-28"];
const REVISION: &str = "2026-07-28";

const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

/// Caching hints (SEP-2549) of a result.
#[derive(Clone, Copy)]
struct Caching {
    ttl_ms: u64,
    scope: &'static str,
}

/// What depends on the caller's grant (tools, and later prompts and resources of its connections).
const PER_GRANT: Caching = Caching { ttl_ms: 60_000, scope: "private" };
/// The same for every caller.
const DISCOVER: Caching = Caching { ttl_ms: 300_000, scope: "public" };

/// Methods the 2026-07-28 revision removed, answered 404 with a message saying so.
const REMOVED: &[&str] = &["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"];

pub async fn post(
    gw: &std::sync::Arc<Gateway>,
    ctx: &AccessContext,
    headers: &HeaderMap,
    msg: Result<Value, serde_json::Error>,
) -> Response {
    let id = msg.as_ref().ok().and_then(|m| m.get("id")).filter(|i| i.is_string() || i.is_number()).cloned();
    let echo = id.clone().unwrap_or(Value::Null);
    let plain_json = wants_plain_json(headers);
    if let Some(ct) = header_str(headers, "content-type")
        && !ct.to_ascii_lowercase().starts_with("application/json")
    {
        return jsonrpc::error_status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &echo,
            INVALID_REQUEST,
            "the body must be application/json",
            None,
        );
    }
    if !plain_json
        && headers.contains_key(axum::http::header::ACCEPT)
        && !accepts(headers, "application/json")
        && !accepts(headers, "text/event-stream")
    {
        return jsonrpc::error_status(
            StatusCode::NOT_ACCEPTABLE,
            &echo,
            INVALID_REQUEST,
            "Accept must include application/json or text/event-stream",
            None,
        );
    }
    let msg = match msg {
        Ok(m) => m,
        Err(e) => return bad_request(&Value::Null, PARSE_ERROR, &format!("the body is not JSON: {e}")),
    };
    let Some(obj) = msg.as_object() else {
        return bad_request(&echo, INVALID_REQUEST, "expected one JSON-RPC message object (batches are not supported)");
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return bad_request(&echo, INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    }
    if obj.contains_key("id") && id.is_none() {
        return bad_request(&echo, INVALID_REQUEST, "id must be a string or a number");
    }
    let (Some(id), Some(method)) = (id, obj.get("method").and_then(Value::as_str)) else {
        // Notifications (and stray responses) need no answer; none has an effect here.
        return StatusCode::ACCEPTED.into_response();
    };
    let params = obj.get("params");
    let env = match envelope::read(params) {
        Ok(e) => e,
        Err(problems) => {
            let (message, data) = envelope::describe(&problems);
            return jsonrpc::error_status(StatusCode::BAD_REQUEST, &id, INVALID_PARAMS, &message, Some(data));
        }
    };
    if let Err(message) = envelope::headers_agree(headers, env.version, method) {
        return bad_request(&id, HEADER_MISMATCH, &message);
    }
    if !SUPPORTED_VERSIONS.contains(&env.version) {
        return jsonrpc::error_status(
            StatusCode::BAD_REQUEST,
            &id,
            UNSUPPORTED_PROTOCOL_VERSION,
            &format!(
                "Unsupported protocol version {}; supported: {} (earlier revisions: initialize)",
                env.version.chars().take(40).collect::<String>(),
                SUPPORTED_VERSIONS.join(", ")
            ),
            Some(json!({"supported": SUPPORTED_VERSIONS, "requested": env.version})),
        );
    }
    if let Err(message) = envelope::headers_present(headers, method, params) {
        return bad_request(&id, HEADER_MISMATCH, &message);
    }
    let request = Request { id: &id, method, params, log_level: env.log_level, features: env.features, headers };
    route(gw, ctx, &request).await
}

/// A request that passed validation.
struct Request<'a> {
    id: &'a Value,
    method: &'a str,
    params: Option<&'a Value>,
    log_level: Option<&'a str>,
    features: bk_domain::mcp_session::ClientFeatures,
    headers: &'a HeaderMap,
}

fn bad_request(id: &Value, code: i64, message: &str) -> Response {
    jsonrpc::error_status(StatusCode::BAD_REQUEST, id, code, message, None)
}

/// An error about the request's content, answered in-band (HTTP 200) as the reference SDK does.
fn invalid_params(id: &Value, message: &str, data: Value) -> Response {
    jsonrpc::error_status(StatusCode::OK, id, INVALID_PARAMS, message, Some(data))
}

async fn route(gw: &std::sync::Arc<Gateway>, ctx: &AccessContext, r: &Request<'_>) -> Response {
    let need = match r.method {
        "server/discover"
        | "subscriptions/listen"
        | "tools/list"
        | "prompts/list"
        | "prompts/get"
        | "resources/list"
        | "resources/templates/list"
        | "resources/read" => Need::Read,
        "tools/call" => Need::Call,
        other => return method_not_found(r.id, other),
    };
    if let Some(res) = dispatch::scope_refusal(gw, ctx, need) {
        return res;
    }
    let id = r.id;
    let field = |name: &str| r.params.and_then(|p| p.get(name)).and_then(Value::as_str);
    match r.method {
        "server/discover" => jsonrpc::result(Framing::Json, id, complete(discover_result(), Some(DISCOVER))),
        "tools/list" => {
            jsonrpc::result_raw(Framing::Json, id, &complete_raw(&dispatch::tool_list(gw, ctx).await, &LIST_TAIL))
        }
        "tools/call" => call_tool(gw, ctx, r).await,
        "subscriptions/listen" => {
            let streams_ok = !wants_plain_json(r.headers) && accepts(r.headers, "text/event-stream");
            listen::listen(gw, ctx, id, r.params, streams_ok, r.headers).await
        }
        // Prompts and resources come from tenants' upstream servers, under the same policy.
        "prompts/list" => offered(gw, ctx, id, Offer::Prompts).await,
        "resources/list" => offered(gw, ctx, id, Offer::Resources).await,
        "resources/templates/list" => offered(gw, ctx, id, Offer::ResourceTemplates).await,
        "prompts/get" => match field("name") {
            Some(_) => reply(id, dispatch::get_prompt(gw, ctx, r.params.unwrap_or(&Value::Null)).await),
            None => invalid_params(id, "params.name (the prompt name) is required", json!({})),
        },
        // SEP-2164: an unknown resource is -32602 naming the URI (never an empty `contents`).
        "resources/read" => match field("uri") {
            Some(uri) => {
                match dispatch::read_resource(gw, ctx, r.params.unwrap_or(&Value::Null), INVALID_PARAMS).await {
                    Reply::Error { code: INVALID_PARAMS, .. } => {
                        invalid_params(id, "Resource not found", json!({"uri": uri}))
                    }
                    other => reply(id, other),
                }
            }
            None => invalid_params(id, "params.uri (the resource URI) is required", json!({})),
        },
        other => method_not_found(id, other),
    }
}

fn method_not_found(id: &Value, method: &str) -> Response {
    let method = method.chars().take(80).collect::<String>();
    let message = if REMOVED.contains(&method.as_str()) {
        format!("method {method} was removed in protocol revision {REVISION}")
    } else {
        format!("method {method} is not supported")
    };
    jsonrpc::error_status(StatusCode::NOT_FOUND, id, METHOD_NOT_FOUND, &message, None)
}

fn discover_result() -> Value {
    json!({
        "supportedVersions": SUPPORTED_VERSIONS,
        // `logging`: log notifications are sent, but only to a request that set a log level.
        "capabilities": {"tools": {"listChanged": true}, "prompts": {}, "resources": {"subscribe": true}, "logging": {}},
        "instructions": dispatch::INSTRUCTIONS,
    })
}

async fn offered(gw: &Gateway, ctx: &AccessContext, id: &Value, kind: Offer) -> Response {
    jsonrpc::result(Framing::Json, id, complete(dispatch::offered(gw, ctx, kind).await, Some(PER_GRANT)))
}

/// A prompt or resource answer in the 2026-07-28 envelope.
fn reply(id: &Value, r: Reply) -> Response {
    match r {
        Reply::Result(v) => jsonrpc::result(Framing::Json, id, complete(v, None)),
        Reply::Error { code, message } | Reply::ErrorData { code, message, .. } => {
            jsonrpc::error(Framing::Json, id, code, &message)
        }
        Reply::InputRequired { .. } | Reply::NeedsCapability { .. } => {
            jsonrpc::error(Framing::Json, id, INTERNAL_ERROR, "the answer needs input, which is not relayed")
        }
        Reply::Limited(l, message) => Reply::limited_response(id, &l, &message),
    }
}

/// Adds the 2026-07-28 result envelope: `resultType`, caching hints when given, and `serverInfo`
/// in `_meta`.
fn complete(mut result: Value, caching: Option<Caching>) -> Value {
    if let Some(obj) = result.as_object_mut() {
        obj.insert("resultType".into(), json!("complete"));
        if let Some(c) = caching {
            obj.insert("ttlMs".into(), json!(c.ttl_ms));
            obj.insert("cacheScope".into(), json!(c.scope));
        }
        let meta = obj.entry("_meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(SERVER_INFO.into(), dispatch::server_info());
        }
    }
    result
}

/// The envelope members of a per-grant list result, serialised once (without braces).
static LIST_TAIL: LazyLock<String> = LazyLock::new(|| envelope_members(Some(PER_GRANT)));
/// The envelope members of any other complete result.
static RESULT_TAIL: LazyLock<String> = LazyLock::new(|| envelope_members(None));

fn envelope_members(caching: Option<Caching>) -> String {
    let members = complete(json!({}), caching).to_string();
    members[1..members.len() - 1].to_owned()
}

/// A complete result, serialised with its envelope spliced in (no `serverInfo` value is built and
/// escaped per request). A result that has its own `_meta` gets the envelope merged the slow way.
fn complete_json(result: Value) -> String {
    if result.get("_meta").is_some() || !result.is_object() {
        return complete(result, None).to_string();
    }
    complete_raw(&result.to_string(), &RESULT_TAIL)
}

/// `complete` for a result already serialised (the shared tool list): the envelope members are
/// spliced in before the object's closing brace, so the list is not parsed or re-encoded.
fn complete_raw(object_json: &str, tail: &str) -> String {
    let members = object_json.trim_end();
    let members = members.strip_suffix('}').unwrap_or(members).trim_end();
    let sep = if members.ends_with('{') { "" } else { "," };
    format!("{members}{sep}{tail}}}")
}

async fn call_tool(gw: &std::sync::Arc<Gateway>, ctx: &AccessContext, r: &Request<'_>) -> Response {
    let framing = if !wants_plain_json(r.headers) && accepts(r.headers, "text/event-stream") {
        Framing::Sse
    } else {
        Framing::Json
    };
    let started = Instant::now();
    let params = r.params.unwrap_or(&Value::Null);
    let tool = params.get("name").and_then(Value::as_str).unwrap_or("");
    // The arguments as the tool sees them (see `dispatch::call_tool`), which a state is bound to.
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a) => a.clone(),
    };
    let responses = params.get("inputResponses");
    if responses.is_some_and(|v| !v.is_object()) {
        return invalid_params(r.id, "params.inputResponses must be an object", json!({}));
    }
    let state = match params.get("requestState") {
        None => None,
        Some(Value::String(sealed)) => match gw.states.open(ctx, tool, &args, sealed, gw.clock.now_ms()) {
            Ok(data) => Some(data),
            Err(why) => {
                gw.emit(
                    gw.event("mcp.request_state_refused", Outcome::Denied, ctx)
                        .target(tool.chars().take(80).collect::<String>())
                        .detail("reason", why.message()),
                );
                return invalid_params(r.id, why.message(), json!({"field": "requestState"}));
            }
        },
        Some(_) => return invalid_params(r.id, "params.requestState must be a string", json!({})),
    };
    // One `info` notification about the call, only for a client that asked for logs at that level
    // and reads a stream.
    let log = framing == Framing::Sse && r.log_level.is_some_and(|l| at_or_below(l, "info"));
    let frame = ModernFrame {
        gw: gw.clone(),
        ctx: ctx.clone(),
        id: r.id.clone(),
        tool: tool.to_owned(),
        args,
        log,
        started,
        framing,
    };
    let features = r.features;
    // The retry of a call parked for the client's answers (an upstream server's question): the
    // answers go to it and it goes on.
    if let Some(id) = state.as_ref().and_then(|d| d.get(crate::relay::RESUME)).and_then(Value::as_str) {
        return match gw.parked.resume(id, responses) {
            Some(running) => crate::relay::drive(running, Some(gw.parked.clone()), None, frame).await,
            None => invalid_params(
                r.id,
                "the call this requestState continues is no longer waiting here (it ended, expired, or another instance holds it); call the tool again",
                json!({"field": "requestState"}),
            ),
        };
    }
    let progress = params.pointer("/_meta/progressToken").filter(|t| t.is_string() || t.is_number()).cloned();
    let streams = framing == Framing::Sse && (progress.is_some() || r.log_level.is_some());
    let asks = features.sampling || features.elicit_form || features.elicit_url;
    if streams || asks {
        // Relayed: upstream progress and log messages reach a client reading a stream while the
        // call runs (closing the stream cancels it), and an upstream server's question to a
        // client that can answer it becomes an input round.
        let (progress, log_level) = if framing == Framing::Sse { (progress, r.log_level) } else { (None, None) };
        let responses = responses.cloned();
        let parked = Some(gw.parked.clone());
        let (gw, ctx, params) = (gw.clone(), ctx.clone(), params.clone());
        let work = move |relay| async move {
            let round =
                Round { state, responses: responses.as_ref(), relay: Some(relay), ..Round::for_client(true, features) };
            dispatch::call_tool(&gw, &ctx, REVISION, &params, &round).await
        };
        return crate::relay::run(progress, log_level, None, None, parked, features, work, frame).await;
    }
    let round = Round { state, responses, ..Round::for_client(true, features) };
    let reply = dispatch::call_tool(gw, ctx, REVISION, params, &round).await;
    crate::relay::Frame::respond(frame, reply)
}

/// How a 2026-07-28 `tools/call` is answered once its reply is known.
struct ModernFrame {
    gw: std::sync::Arc<Gateway>,
    ctx: AccessContext,
    id: Value,
    tool: String,
    args: Value,
    log: bool,
    started: Instant,
    framing: Framing,
}

/// The messages of a 200 answer, or an answer with a status of its own (and the same as one
/// message, for a stream that already started).
enum Answered {
    Messages(Vec<String>),
    Status(Response, String),
}

impl ModernFrame {
    fn answered(&self, reply: Reply) -> Answered {
        let id = &self.id;
        let result = match reply {
            Reply::Result(result) => result,
            Reply::Error { code, message } => {
                return Answered::Messages(vec![jsonrpc::error_text(id, code, &message, None)]);
            }
            Reply::ErrorData { code, message, data } => {
                return Answered::Messages(vec![jsonrpc::error_text(id, code, &message, Some(data))]);
            }
            Reply::Limited(l, message) => {
                return Answered::Status(
                    Reply::limited_response(id, &l, &message),
                    jsonrpc::error_text(id, INVALID_REQUEST, &message, Some(l.data())),
                );
            }
            Reply::InputRequired { requests, state } => {
                let sealed = self.gw.states.seal(&self.ctx, &self.tool, &self.args, state, self.gw.clock.now_ms());
                let mut result =
                    json!({"resultType": "input_required", "inputRequests": requests, "requestState": sealed});
                result["_meta"] = json!({SERVER_INFO: dispatch::server_info()});
                return Answered::Messages(vec![jsonrpc::result_text(id, result)]);
            }
            Reply::NeedsCapability { required, message } => {
                let data = json!({"requiredCapabilities": required});
                return Answered::Status(
                    jsonrpc::error_status(
                        StatusCode::BAD_REQUEST,
                        id,
                        MISSING_CLIENT_CAPABILITY,
                        &message,
                        Some(data.clone()),
                    ),
                    jsonrpc::error_text(id, MISSING_CLIENT_CAPABILITY, &message, Some(data)),
                );
            }
        };
        if !self.log {
            let id = serde_json::to_string(id).unwrap_or_else(|_| "null".into());
            return Answered::Messages(vec![format!(
                "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{}}}",
                complete_json(result)
            )]);
        }
        let note = jsonrpc::notification_text(
            "notifications/message",
            json!({
                "level": "info",
                "logger": "bridgekeeper",
                "data": {
                    "message": format!("called tool {}", self.tool.chars().take(80).collect::<String>()),
                    "isError": result.get("isError") == Some(&Value::Bool(true)),
                    "latencyMs": self.started.elapsed().as_millis() as u64,
                },
            }),
        );
        Answered::Messages(vec![note, jsonrpc::result_text(id, complete(result, None))])
    }
}

impl crate::relay::Frame for ModernFrame {
    fn respond(self, reply: Reply) -> Response {
        let framing = self.framing;
        match self.answered(reply) {
            Answered::Status(res, _) => res,
            Answered::Messages(messages) => jsonrpc::messages(framing, messages),
        }
    }

    fn messages(self, reply: Reply) -> Vec<String> {
        match self.answered(reply) {
            Answered::Status(_, message) => vec![message],
            Answered::Messages(messages) => messages,
        }
    }
}

/// Is `requested` (a valid level) at or below `level` in severity, i.e. does it ask for `level`?
fn at_or_below(requested: &str, level: &str) -> bool {
    let rank = |l: &str| LOG_LEVELS.iter().position(|x| *x == l);
    matches!((rank(requested), rank(level)), (Some(a), Some(b)) if a <= b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spliced_envelope_equals_the_built_one() {
        let list = json!({"tools": [{"name": "whoami", "inputSchema": {"type": "object"}}]});
        let spliced: Value = serde_json::from_str(&complete_raw(&list.to_string(), &LIST_TAIL)).unwrap();
        assert_eq!(spliced, complete(list, Some(PER_GRANT)));
        assert_eq!(spliced["cacheScope"], "private");
        assert_eq!(spliced["resultType"], "complete");
        assert_eq!(spliced["_meta"][SERVER_INFO]["name"], "bridgekeeper");
        let empty: Value = serde_json::from_str(&complete_raw("{}", &LIST_TAIL)).unwrap();
        assert_eq!(empty, complete(json!({}), Some(PER_GRANT)));
        for result in [json!({"content": [], "isError": false}), json!({"_meta": {"x": 1}, "content": []})] {
            let spliced: Value = serde_json::from_str(&complete_json(result.clone())).unwrap();
            assert_eq!(spliced, complete(result, None));
        }
    }

    #[test]
    fn log_levels_ask_for_what_is_at_least_as_severe() {
        assert!(at_or_below("debug", "info") && at_or_below("info", "info"));
        assert!(!at_or_below("warning", "info") && !at_or_below("nonsense", "info"));
    }
}
