//! `/mcp` under the stateless 2026-07-28 revision, beside the legacy session protocol: discovery,
//! the `_meta` envelope, header checks, version errors, removed methods, the result envelope and
//! caching hints, and that no MCP session is ever involved.

use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{Flow, Server};

const V: &str = "2026-07-28";
const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";
const SERVER_INFO: &str = "io.modelcontextprotocol/serverInfo";

fn meta() -> Value {
    meta_with(json!({}))
}

/// The `_meta` envelope declaring these client capabilities.
pub(crate) fn meta_with(capabilities: Value) -> Value {
    json!({PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: capabilities, CLIENT_INFO: {"name": "it", "version": "1"}})
}

/// A caller speaking 2026-07-28 as the SDKs do: `_meta` in every request, `MCP-Protocol-Version`,
/// `Mcp-Method` and (for calls) `Mcp-Name` headers, no session.
pub(crate) struct Modern {
    pub(crate) url: String,
    pub(crate) token: String,
    /// Declared in every request's `_meta`.
    pub(crate) capabilities: Value,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    /// Every JSON-RPC message of the body (one for JSON, each `data:` for SSE).
    pub(crate) messages: Vec<Value>,
}

impl Answer {
    /// The response (the last message).
    pub(crate) fn body(&self) -> &Value {
        self.messages.last().expect("a JSON-RPC message")
    }
}

impl Modern {
    pub(crate) async fn signed_in(server: &Server, email: &str, scope: &str) -> (Flow, Modern) {
        let flow = Flow::signup(server, email).await;
        let (_, t) = flow.login_client(scope).await;
        let m = Modern { url: flow.url("/mcp"), token: t.access, capabilities: json!({}) };
        (flow, m)
    }

    /// A request builder with the bearer token and `Accept` only.
    pub(crate) fn bare(&self) -> reqwest::RequestBuilder {
        reqwest::Client::new()
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("Accept", "application/json, text/event-stream")
    }

    /// A well-formed request: `_meta` added to `params`, the standard headers set.
    pub(crate) async fn call(&self, id: Value, method: &str, params: Value) -> Answer {
        answer(self.request(id, method, params)).await
    }

    /// The request `call` sends, unsent.
    pub(crate) fn request(&self, id: Value, method: &str, mut params: Value) -> reqwest::RequestBuilder {
        params["_meta"] = meta_with(self.capabilities.clone());
        let mut req = self.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", method);
        if let Some(name) = params.get("name").or_else(|| params.get("uri")).and_then(Value::as_str) {
            req = req.header("Mcp-Name", name);
        }
        req.json(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }
}

pub(crate) async fn answer(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let sse = headers.get("content-type").is_some_and(|c| c.to_str().unwrap().starts_with("text/event-stream"));
    let text = res.text().await.unwrap();
    let messages = if sse {
        text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| serde_json::from_str(d.trim()).unwrap()).collect()
    } else if text.is_empty() {
        Vec::new()
    } else {
        vec![serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))]
    };
    Answer { status, headers, messages }
}

fn assert_error(a: &Answer, status: u16, code: i64, id: &Value) {
    assert_eq!(a.status, status, "{:?}", a.messages);
    assert_eq!(a.body()["error"]["code"], code, "{}", a.body());
    assert_eq!(&a.body()["id"], id, "an error response carries the request id: {}", a.body());
    assert!(a.headers.get("mcp-session-id").is_none());
}

/// `resultType` and `serverInfo` (in `_meta`) on a result; and no session.
fn assert_envelope(a: &Answer) -> &Value {
    assert_eq!(a.status, 200, "{:?}", a.messages);
    assert!(a.headers.get("mcp-session-id").is_none(), "no session is minted or echoed");
    let r = &a.body()["result"];
    assert_eq!(r["resultType"], "complete", "{r}");
    assert_eq!(r["_meta"][SERVER_INFO]["name"], "bridgekeeper", "{r}");
    assert!(r["_meta"][SERVER_INFO]["version"].is_string(), "{r}");
    r
}

fn assert_private_hints(r: &Value) {
    assert!(r["ttlMs"].as_u64().is_some(), "ttlMs is a non-negative integer: {r}");
    assert_eq!(r["cacheScope"], "private", "what a caller sees depends on its grant: {r}");
}

#[tokio::test]
async fn discover_without_a_session() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "disc@example.com", "universal-mcp-read-write").await;
    let a = m.call(json!(1), "server/discover", json!({})).await;
    let r = assert_envelope(&a);
    assert_eq!(r["supportedVersions"], json!([V]));
    for cap in ["tools", "prompts", "resources"] {
        assert!(r["capabilities"][cap].is_object(), "{cap}: {r}");
    }
    assert_eq!(r["capabilities"]["tools"]["listChanged"], true, "subscriptions/listen streams tool-list changes");
    assert!(r["ttlMs"].as_u64().is_some() && r["cacheScope"].is_string(), "{r}");
    assert!(r["instructions"].is_string());
    assert!(r.get("serverInfo").is_none(), "serverInfo lives in _meta");
    // Without clientInfo (optional) the request is served.
    let a = answer(m.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", "server/discover").json(&json!({
            "jsonrpc": "2.0", "id": 2, "method": "server/discover",
            "params": {"_meta": {PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: {}}}})))
    .await;
    assert_envelope(&a);
    // Authentication is exactly as on the legacy path.
    let res = reqwest::Client::new()
        .post(&m.url)
        .header("MCP-Protocol-Version", V)
        .header("Mcp-Method", "server/discover")
        .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "server/discover", "params": {"_meta": meta()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"].to_str().unwrap().contains("resource_metadata="));
}

#[tokio::test]
async fn missing_meta_keys_are_named() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "meta@example.com", "universal-mcp-read-write").await;
    let send = |id: i64, params: Value| {
        let req = m
            .bare()
            .header("MCP-Protocol-Version", V)
            .header("Mcp-Method", "server/discover")
            .json(&json!({"jsonrpc": "2.0", "id": id, "method": "server/discover", "params": params}));
        answer(req)
    };
    let cases = [
        (json!({}), vec!["_meta"]),
        (json!({"_meta": {CLIENT_CAPABILITIES: {}}}), vec![PROTOCOL_VERSION]),
        (json!({"_meta": {PROTOCOL_VERSION: V}}), vec![CLIENT_CAPABILITIES]),
        (json!({"_meta": {}}), vec![PROTOCOL_VERSION, CLIENT_CAPABILITIES]),
        (json!({"_meta": {PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: "none"}}), vec![CLIENT_CAPABILITIES]),
        (json!({"_meta": {PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud"}}), vec![LOG_LEVEL]),
        (json!({"_meta": {PROTOCOL_VERSION: V, CLIENT_CAPABILITIES: {}, CLIENT_INFO: "it"}}), vec![CLIENT_INFO]),
    ];
    for (i, (params, keys)) in cases.into_iter().enumerate() {
        let id = 100 + i as i64;
        let a = send(id, params).await;
        assert_error(&a, 400, -32602, &json!(id));
        let message = a.body()["error"]["message"].as_str().unwrap();
        for key in &keys {
            assert!(message.contains(key), "{key} named in: {message}");
            assert!(a.body()["error"]["data"]["invalid"][key].is_string(), "{}", a.body());
        }
    }
    // No params at all, and no MCP-Protocol-Version header: server/discover is still modern.
    let a = answer(m.bare().json(&json!({"jsonrpc": "2.0", "id": "d", "method": "server/discover"}))).await;
    assert_error(&a, 400, -32602, &json!("d"));
}

#[tokio::test]
async fn headers_must_match_the_body() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "hdr@example.com", "universal-mcp-read-write").await;
    let body = |id: i64, method: &str, version: &str, params: Value| {
        let mut params = params;
        params["_meta"] = json!({PROTOCOL_VERSION: version, CLIENT_CAPABILITIES: {}});
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
    };
    // The header disagrees with the body's version: -32020, before the version is judged.
    let a = answer(m.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", "server/discover").json(&body(
        1,
        "server/discover",
        "v999.0.0",
        json!({}),
    )))
    .await;
    assert_error(&a, 400, -32020, &json!(1));
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("MCP-Protocol-Version"));
    // Mcp-Method disagrees.
    let a = answer(m.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", "tools/call").json(&body(
        2,
        "tools/list",
        V,
        json!({}),
    )))
    .await;
    assert_error(&a, 400, -32020, &json!(2));
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("Mcp-Method"));
    // Required headers missing.
    let a = answer(m.bare().header("MCP-Protocol-Version", V).json(&body(3, "tools/list", V, json!({})))).await;
    assert_error(&a, 400, -32020, &json!(3));
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("Mcp-Method"));
    let a = answer(m.bare().header("Mcp-Method", "tools/list").json(&body(4, "tools/list", V, json!({})))).await;
    assert_error(&a, 400, -32020, &json!(4));
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("MCP-Protocol-Version"));
    // Mcp-Name: required for tools/call, must equal params.name (base64 sentinel decoded).
    let call = |id: i64| body(id, "tools/call", V, json!({"name": "whoami", "arguments": {}}));
    let with = |name: Option<&str>| {
        let mut r = m.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", "tools/call");
        if let Some(n) = name {
            r = r.header("Mcp-Name", n);
        }
        r
    };
    let a = answer(with(None).json(&call(5))).await;
    assert_error(&a, 400, -32020, &json!(5));
    assert!(a.body()["error"]["message"].as_str().unwrap().contains("Mcp-Name"));
    let a = answer(with(Some("list-connections")).json(&call(6))).await;
    assert_error(&a, 400, -32020, &json!(6));
    let a = answer(with(Some("=?base64?d2hvYW1p?=")).json(&call(7))).await; // "whoami"
    assert_eq!(assert_envelope(&a)["structuredContent"]["email"], "hdr@example.com");
}

#[tokio::test]
async fn unsupported_version_lists_the_supported_ones() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "ver@example.com", "universal-mcp-read-write").await;
    for (id, version) in [(301, "v999.0.0"), (302, "2099-01-01"), (303, "2025-11-25")] {
        let a = answer(m.bare().header("MCP-Protocol-Version", version).header("Mcp-Method", "server/discover").json(
            &json!({
                "jsonrpc": "2.0", "id": id, "method": "server/discover",
                "params": {"_meta": {PROTOCOL_VERSION: version, CLIENT_CAPABILITIES: {}}}}),
        ))
        .await;
        assert_error(&a, 400, -32022, &json!(id));
        let data = &a.body()["error"]["data"];
        assert_eq!(data["supported"], json!([V]), "the same list as server/discover");
        assert_eq!(data["requested"], version);
    }
}

#[tokio::test]
async fn removed_and_unknown_methods_are_404() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "gone@example.com", "universal-mcp-read-write").await;
    for (i, method) in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "resources/unsubscribe",
        "completion/complete",
        "unknown/method",
    ]
    .into_iter()
    .enumerate()
    {
        let id = json!(format!("r{i}"));
        let a = m.call(id.clone(), method, json!({})).await;
        assert_error(&a, 404, -32601, &id);
    }
    // An initialize that carries the 2026 envelope is a 2026 request: 404, no session.
    let a = m.call(json!(9), "initialize", json!({"protocolVersion": "2025-11-25", "capabilities": {}})).await;
    assert_error(&a, 404, -32601, &json!(9));
}

#[tokio::test]
async fn lists_carry_result_type_caching_hints_and_server_info() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "list@example.com", "universal-mcp-read").await;
    let names = |a: &Answer| -> Vec<String> {
        a.body()["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
    };
    let first = m.call(json!(1), "tools/list", json!({})).await;
    let r = assert_envelope(&first);
    assert_private_hints(r);
    for tool in r["tools"].as_array().unwrap() {
        assert_eq!(tool["inputSchema"]["type"], "object");
        assert!(tool["description"].is_string());
    }
    assert_eq!(
        names(&first),
        [
            "whoami",
            "list-connections",
            "restrict-access",
            "use-agent",
            "add-to-knowledge-base",
            "search-knowledge-base"
        ]
    );
    for id in 2..4 {
        assert_eq!(names(&m.call(json!(id), "tools/list", json!({})).await), names(&first), "deterministic order");
    }
    for (method, key) in [
        ("prompts/list", "prompts"),
        ("resources/list", "resources"),
        ("resources/templates/list", "resourceTemplates"),
    ] {
        let a = m.call(json!(5), method, json!({})).await;
        let r = assert_envelope(&a);
        assert_private_hints(r);
        assert_eq!(r[key], json!([]), "{method}");
    }
    // SEP-2164: an unknown resource is -32602 naming its URI.
    let uri = "test://nonexistent-resource-for-conformance-testing";
    let a = m.call(json!(6), "resources/read", json!({"uri": uri})).await;
    assert_error(&a, 200, -32602, &json!(6));
    assert_eq!(a.body()["error"]["data"]["uri"], uri);
}

#[tokio::test]
async fn whoami_without_any_session() {
    let server = Server::start();
    let (flow, m) = Modern::signed_in(&server, "stateless@example.com", "universal-mcp-read-write account").await;
    let a = m.call(json!(1), "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    assert_eq!(a.messages.len(), 1, "no log notification without a log level: {:?}", a.messages);
    let r = assert_envelope(&a);
    assert_eq!(r["isError"], false);
    assert_eq!(r["structuredContent"]["email"], "stateless@example.com");
    // A session id sent along is ignored, never echoed; plain JSON on request.
    let params = json!({"name": "whoami", "arguments": {}, "_meta": meta()});
    let a = answer(
        m.bare()
            .header("MCP-Protocol-Version", V)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", "whoami")
            .header("Mcp-Session-Id", "made-up-session")
            .header("X-Response-Format", "json")
            .json(&json!({"jsonrpc": "2.0", "id": "j", "method": "tools/call", "params": params})),
    )
    .await;
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(assert_envelope(&a)["structuredContent"]["email"], "stateless@example.com");
    // With a log level, one notifications/message precedes the result on the stream.
    let mut params = json!({"name": "whoami", "arguments": {}, "_meta": meta()});
    params["_meta"][LOG_LEVEL] = json!("info");
    let a = answer(
        m.bare()
            .header("MCP-Protocol-Version", V)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", "whoami")
            .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": params})),
    )
    .await;
    assert_eq!(a.messages.len(), 2, "{:?}", a.messages);
    assert_eq!(a.messages[0]["method"], "notifications/message");
    assert_eq!(a.messages[0]["params"]["level"], "info");
    assert_envelope(&a);
    // A level above info asks for nothing this call logs.
    params["_meta"][LOG_LEVEL] = json!("error");
    let a = answer(
        m.bare()
            .header("MCP-Protocol-Version", V)
            .header("Mcp-Method", "tools/call")
            .header("Mcp-Name", "whoami")
            .json(&json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params})),
    )
    .await;
    assert_eq!(a.messages.len(), 1, "{:?}", a.messages);
    // Unknown tools and bad arguments: as on the legacy path (2025-11-25 rules), with the id.
    let a = m.call(json!("u"), "tools/call", json!({"name": "nope", "arguments": {}})).await;
    assert_error(&a, 200, -32602, &json!("u"));
    let a = m.call(json!(4), "tools/call", json!({"name": "whoami", "arguments": {"account_id": "x"}})).await;
    assert_eq!(assert_envelope(&a)["isError"], true);
    // Notifications are accepted without a session.
    let res = m
        .bare()
        .header("MCP-Protocol-Version", V)
        .header("Mcp-Method", "notifications/cancelled")
        .json(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "_meta": meta()}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    assert!(res.headers().get("mcp-session-id").is_none());
    // The calls are audited like legacy ones.
    let mut kinds = Vec::new();
    for _ in 0..50 {
        let page: Value = reqwest::Client::new()
            .get(flow.url("/api/v1/audit"))
            .bearer_auth(&m.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        kinds =
            page["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap_or("").to_owned()).collect();
        if kinds.iter().any(|k| k == "mcp.tools_call") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(kinds.iter().any(|k| k == "mcp.tools_call"), "{kinds:?}");
}

#[tokio::test]
async fn scopes_are_checked_as_on_the_legacy_path() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "ro@example.com", "universal-mcp-read").await;
    assert_envelope(&m.call(json!(1), "tools/list", json!({})).await);
    let a = m.call(json!(2), "tools/call", json!({"name": "whoami", "arguments": {}})).await;
    assert_eq!(a.status, 403);
    let h = a.headers["www-authenticate"].to_str().unwrap();
    assert!(h.contains("error=\"insufficient_scope\"") && h.contains("scope=\"universal-mcp-read-write\""), "{h}");
    // A token without any MCP scope cannot even discover (as it cannot initialize).
    let (_, account_only) = Modern::signed_in(&server, "acct@example.com", "account").await;
    let a = account_only.call(json!(3), "server/discover", json!({})).await;
    assert_eq!(a.status, 403);
}

#[tokio::test]
async fn legacy_initialize_path_is_unchanged() {
    let server = Server::start();
    let (flow, m) = Modern::signed_in(&server, "legacy@example.com", "universal-mcp-read-write").await;
    let sid = flow.mcp_initialize(&m.token, "2025-11-25").await;
    let res = flow.mcp_in(&m.token, &sid, "2025-11-25", "tools/list", json!({})).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(v["result"]["tools"].is_array());
    for key in ["resultType", "ttlMs", "cacheScope", "_meta"] {
        assert!(v["result"].get(key).is_none(), "legacy results stay as they were: {v}");
    }
    // Legacy methods keep working in the session, and a legacy version refusal is unchanged.
    assert_eq!(flow.mcp_in(&m.token, &sid, "2025-11-25", "ping", json!({})).await.status(), 200);
    let res = flow.mcp_in(&m.token, &sid, "1999-01-01", "tools/list", json!({})).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"]["code"], -32600);
    // The same token serves a 2026 request right after, without the session.
    assert_envelope(&m.call(json!(1), "tools/list", json!({})).await);
}

#[tokio::test]
async fn malformed_modern_requests_are_refused_with_their_id() {
    let server = Server::start();
    let (_, m) = Modern::signed_in(&server, "bad@example.com", "universal-mcp-read-write").await;
    let modern = || m.bare().header("MCP-Protocol-Version", V).header("Mcp-Method", "tools/list");
    // Not JSON: no id to echo.
    let a = answer(modern().header("Content-Type", "application/json").body("{not json")).await;
    assert_error(&a, 400, -32700, &Value::Null);
    // Not application/json, and jsonrpc not "2.0": the id is echoed.
    let body = json!({"jsonrpc": "2.0", "id": 11, "method": "tools/list", "params": {"_meta": meta()}});
    let a = answer(modern().header("Content-Type", "text/plain").body(body.to_string())).await;
    assert_error(&a, 415, -32600, &json!(11));
    let a = answer(
        modern().json(&json!({"jsonrpc": "1.0", "id": 12, "method": "tools/list", "params": {"_meta": meta()}})),
    )
    .await;
    assert_error(&a, 400, -32600, &json!(12));
}
