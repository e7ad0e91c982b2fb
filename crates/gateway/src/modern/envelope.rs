//! What a 2026-07-28 request carries besides its method, and the pure checks of it: which era a
//! POST belongs to (`claims`), the per-request `_meta` envelope (protocol version, client
//! capabilities, optional client info and log level) and the standard headers that repeat the body
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`). Every failure names the key or header at fault.

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use bk_domain::mcp_session::ClientFeatures;
use serde_json::{Map, Value, json};

use crate::dispatch::LOG_LEVELS;

pub const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
pub const CLIENT_INFO: &str = "io.modelcontextprotocol/clientInfo";
pub const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// The first revision served statelessly. Any version that sorts at or after it (ISO dates, and
/// also a label such as `v999.0.0`) names the modern era, as the reference SDK classifies: such a
/// request is answered in modern terms (e.g. -32022), never as a legacy one.
const FIRST_MODERN: &str = "2026-07-28";

const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

/// Values that are not plain visible ASCII travel as `=?base64?{Base64(UTF-8)}?=`.
const SENTINEL_START: &str = "=?base64?";
const SENTINEL_END: &str = "?=";

pub fn is_modern_version(v: &str) -> bool {
    v >= FIRST_MODERN
}

/// Does this POST belong to the 2026-07-28 era? (`msg` is `None` when the body is not JSON.)
/// A request whose `params._meta` names a protocol version is modern, whatever its method
/// (`initialize` included: it is then answered 404). Otherwise an `initialize` is the legacy
/// handshake, `server/discover` is modern, and anything else is modern only when
/// `MCP-Protocol-Version` names a modern version. A batch (array) stays legacy, which refuses it.
pub fn claims(headers: &HeaderMap, msg: Option<&Value>) -> bool {
    let header_modern =
        headers.get(VERSION_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| is_modern_version(v.trim()));
    let Some(msg) = msg else {
        return header_modern;
    };
    let Some(obj) = msg.as_object() else {
        return false;
    };
    let claim = obj
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(PROTOCOL_VERSION));
    if claim {
        return true;
    }
    match obj.get("method").and_then(Value::as_str) {
        Some("initialize") => false,
        Some("server/discover") => true,
        _ => header_modern,
    }
}

/// The validated per-request envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// As the client sent it (checked against the supported versions after the headers).
    pub version: &'a str,
    /// The least severe level the client wants log notifications for; none without it.
    pub log_level: Option<&'a str>,
    /// What the client declared it can answer (sampling, form- and URL-mode elicitation;
    /// `elicitation: {}` means form, as the schema says).
    pub features: ClientFeatures,
}

/// One thing wrong with the envelope: the key, and what is wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct Problem {
    pub key: &'static str,
    pub problem: &'static str,
}

const LEVEL_PROBLEM: &str = "must be one of debug, info, notice, warning, error, critical, alert, emergency";

/// Reads `params._meta`; every problem is reported, not only the first.
pub fn read(params: Option<&Value>) -> Result<Envelope<'_>, Vec<Problem>> {
    let Some(meta) = params.and_then(|p| p.get("_meta")) else {
        return Err(vec![Problem {
            key: "_meta",
            problem: "is required: params._meta must carry io.modelcontextprotocol/protocolVersion and io.modelcontextprotocol/clientCapabilities",
        }]);
    };
    let Some(meta) = meta.as_object() else {
        return Err(vec![Problem { key: "_meta", problem: "must be an object" }]);
    };
    let mut problems = Vec::new();
    let version = match meta.get(PROTOCOL_VERSION) {
        None => {
            problems.push(Problem { key: PROTOCOL_VERSION, problem: "is required" });
            None
        }
        Some(Value::String(v)) => Some(v.as_str()),
        Some(_) => {
            problems.push(Problem { key: PROTOCOL_VERSION, problem: "must be a string" });
            None
        }
    };
    let mut features = ClientFeatures::default();
    match meta.get(CLIENT_CAPABILITIES) {
        None => problems.push(Problem { key: CLIENT_CAPABILITIES, problem: "is required" }),
        Some(caps @ Value::Object(_)) => {
            features = ClientFeatures::from_capabilities(Some(caps));
        }
        Some(_) => problems.push(Problem { key: CLIENT_CAPABILITIES, problem: "must be an object" }),
    }
    if let Some(info) = meta.get(CLIENT_INFO) {
        let named = |k: &str| info.get(k).is_some_and(Value::is_string);
        if !(info.is_object() && named("name") && named("version")) {
            problems.push(Problem { key: CLIENT_INFO, problem: "must be an object with string name and version" });
        }
    }
    let log_level = match meta.get(LOG_LEVEL) {
        None => None,
        Some(Value::String(l)) if LOG_LEVELS.contains(&l.as_str()) => Some(l.as_str()),
        Some(_) => {
            problems.push(Problem { key: LOG_LEVEL, problem: LEVEL_PROBLEM });
            None
        }
    };
    match version {
        Some(version) if problems.is_empty() => Ok(Envelope { version, log_level, features }),
        _ => Err(problems),
    }
}

/// The -32602 message and `data` for envelope problems: `{"invalid": {key: problem, …}}`.
pub fn describe(problems: &[Problem]) -> (String, Value) {
    let list: Vec<String> = problems.iter().map(|p| format!("{} {}", p.key, p.problem)).collect();
    let invalid: Map<String, Value> = problems.iter().map(|p| (p.key.to_owned(), json!(p.problem))).collect();
    (format!("Invalid _meta for protocol revision 2026-07-28: {}", list.join("; ")), json!({ "invalid": invalid }))
}

/// At most 80 characters of a client's value, for messages.
fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

/// A header's value as visible ASCII, or the -32020 message.
fn visible<'h>(value: &'h HeaderValue, name: &str) -> Result<&'h str, String> {
    value.to_str().map(str::trim).map_err(|_| format!("Header mismatch: the {name} header has invalid characters"))
}

/// Headers that are present must agree with the body (checked before the version gate, so a
/// body/header disagreement is -32020 even when the body's version is unsupported).
pub fn headers_agree(headers: &HeaderMap, version: &str, method: &str) -> Result<(), String> {
    for (header, name, body) in
        [(VERSION_HEADER, "MCP-Protocol-Version", version), (METHOD_HEADER, "Mcp-Method", method)]
    {
        if let Some(value) = headers.get(header) {
            let value = visible(value, name)?;
            if value != body {
                return Err(format!(
                    "Header mismatch: {name} header value '{}' does not match body value '{}'",
                    clip(value),
                    clip(body)
                ));
            }
        }
    }
    Ok(())
}

/// The body field `Mcp-Name` repeats for `method`, if any.
fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// Decodes a base64-sentinel header value (`=?base64?…?=`); any other value is itself.
fn decode(value: &str, name: &str) -> Result<String, String> {
    let Some(encoded) = value.strip_prefix(SENTINEL_START).and_then(|v| v.strip_suffix(SENTINEL_END)) else {
        return Ok(value.to_owned());
    };
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| format!("Header mismatch: the {name} header is not valid base64-encoded UTF-8"))
}

/// The standard headers every request needs (`MCP-Protocol-Version`, `Mcp-Method`) are present,
/// and `Mcp-Name`, for the methods that have one, is present and (decoded) equals the body's.
pub fn headers_present(headers: &HeaderMap, method: &str, params: Option<&Value>) -> Result<(), String> {
    for (header, name) in [(VERSION_HEADER, "MCP-Protocol-Version"), (METHOD_HEADER, "Mcp-Method")] {
        if !headers.contains_key(header) {
            return Err(format!("Header mismatch: the {name} header is required"));
        }
    }
    let Some(field) = name_field(method) else {
        return Ok(());
    };
    let body = params.and_then(|p| p.get(field)).and_then(Value::as_str);
    let Some(value) = headers.get(NAME_HEADER) else {
        // Without the field in the body the method itself answers -32602.
        return match body {
            Some(_) => Err(format!("Header mismatch: the Mcp-Name header is required for {method}")),
            None => Ok(()),
        };
    };
    let value = decode(visible(value, "Mcp-Name")?, "Mcp-Name")?;
    if Some(value.as_str()) != body {
        return Err(format!(
            "Header mismatch: Mcp-Name header value '{}' does not match body value '{}'",
            clip(&value),
            clip(body.unwrap_or(""))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn meta(m: Value) -> Value {
        json!({ "_meta": m })
    }

    #[test]
    fn era_is_claimed_by_meta_header_or_discover() {
        let none = HeaderMap::new();
        let modern = headers(&[("mcp-protocol-version", "2026-07-28")]);
        let claimed = json!({"method": "tools/list", "params": meta(json!({PROTOCOL_VERSION: "x"}))});
        let plain = json!({"method": "tools/list", "params": {}});
        let init = json!({"method": "initialize", "params": {"protocolVersion": "2025-11-25"}});
        let init_claimed = json!({"method": "initialize", "params": meta(json!({PROTOCOL_VERSION: "2026-07-28"}))});
        assert!(claims(&none, Some(&claimed)));
        assert!(!claims(&none, Some(&plain)));
        assert!(claims(&modern, Some(&plain)));
        assert!(!claims(&modern, Some(&init)), "an initialize handshake is legacy");
        assert!(claims(&none, Some(&init_claimed)));
        assert!(claims(&none, Some(&json!({"method": "server/discover"}))));
        assert!(!claims(&modern, Some(&json!([claimed]))), "batches stay legacy");
        assert!(claims(&modern, None) && !claims(&none, None));
        assert!(!claims(&headers(&[("mcp-protocol-version", "2025-11-25")]), Some(&plain)));
        assert!(claims(&headers(&[("mcp-protocol-version", "v999.0.0")]), Some(&plain)));
        assert!(!claims(&headers(&[("mcp-protocol-version", "1999-01-01")]), Some(&plain)));
    }

    #[test]
    fn envelope_names_every_missing_or_bad_key() {
        let ok = meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}}));
        assert_eq!(
            read(Some(&ok)),
            Ok(Envelope { version: "2026-07-28", log_level: None, features: ClientFeatures::default() })
        );
        let forms = |caps: Value| {
            read(Some(&meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: caps}))))
                .unwrap()
                .features
                .elicit_form
        };
        assert!(forms(json!({"elicitation": {}})), "an empty elicitation object means form mode");
        assert!(forms(json!({"elicitation": {"form": {}, "url": {}}})));
        assert!(!forms(json!({"elicitation": {"url": {}}})));
        assert!(!forms(json!({"sampling": {}})));
        let keys = |p: Value| read(Some(&p)).unwrap_err().into_iter().map(|p| p.key).collect::<Vec<_>>();
        assert_eq!(keys(json!({})), ["_meta"]);
        assert_eq!(keys(meta(json!([]))), ["_meta"]);
        assert_eq!(keys(meta(json!({}))), [PROTOCOL_VERSION, CLIENT_CAPABILITIES]);
        assert_eq!(keys(meta(json!({CLIENT_CAPABILITIES: {}}))), [PROTOCOL_VERSION]);
        assert_eq!(keys(meta(json!({PROTOCOL_VERSION: "2026-07-28"}))), [CLIENT_CAPABILITIES]);
        assert_eq!(
            keys(meta(json!({PROTOCOL_VERSION: 2026, CLIENT_CAPABILITIES: []}))),
            [PROTOCOL_VERSION, CLIENT_CAPABILITIES]
        );
        assert_eq!(
            keys(meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, CLIENT_INFO: {"name": "x"}}))),
            [CLIENT_INFO]
        );
        assert_eq!(
            keys(meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, LOG_LEVEL: "loud"}))),
            [LOG_LEVEL]
        );
        assert!(read(None).is_err());
        let with_level = meta(json!({PROTOCOL_VERSION: "2026-07-28", CLIENT_CAPABILITIES: {}, LOG_LEVEL: "debug",
            CLIENT_INFO: {"name": "c", "version": "1"}}));
        assert_eq!(read(Some(&with_level)).unwrap().log_level, Some("debug"));
        let (message, data) = describe(&read(Some(&meta(json!({})))).unwrap_err());
        assert!(message.contains(PROTOCOL_VERSION) && message.contains(CLIENT_CAPABILITIES), "{message}");
        assert_eq!(data["invalid"][PROTOCOL_VERSION], "is required");
    }

    #[test]
    fn present_headers_must_agree_with_the_body() {
        let h = headers(&[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/list")]);
        assert_eq!(headers_agree(&h, "2026-07-28", "tools/list"), Ok(()));
        assert!(headers_agree(&h, "v999.0.0", "tools/list").unwrap_err().contains("MCP-Protocol-Version"));
        assert!(headers_agree(&h, "2026-07-28", "tools/call").unwrap_err().contains("Mcp-Method"));
        assert_eq!(headers_agree(&HeaderMap::new(), "2026-07-28", "tools/list"), Ok(()), "absence is checked later");
    }

    #[test]
    fn required_headers_and_mcp_name() {
        let base = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")];
        let call = json!({"name": "whoami"});
        assert!(headers_present(&headers(&base[..1]), "tools/call", Some(&call)).unwrap_err().contains("Mcp-Method"));
        assert!(headers_present(&headers(&base[1..]), "tools/call", Some(&call)).unwrap_err().contains("Protocol"));
        assert!(headers_present(&headers(&base), "tools/call", Some(&call)).unwrap_err().contains("Mcp-Name"));
        let named = |v: &str| {
            let mut h = headers(&base);
            h.insert("mcp-name", HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(headers_present(&named("whoami"), "tools/call", Some(&call)), Ok(()));
        assert!(headers_present(&named("other"), "tools/call", Some(&call)).unwrap_err().contains("'other'"));
        // The base64 sentinel is decoded before comparing (here: " café").
        let cafe = json!({"uri": " café"});
        let encoded = format!("=?base64?{}?=", base64::engine::general_purpose::STANDARD.encode(" café"));
        assert_eq!(headers_present(&named(&encoded), "resources/read", Some(&cafe)), Ok(()));
        assert!(headers_present(&named("=?base64?!!?="), "resources/read", Some(&cafe)).is_err());
        // No name in the body and no header: the method answers; other methods need no Mcp-Name.
        assert_eq!(headers_present(&headers(&base), "tools/call", Some(&json!({}))), Ok(()));
        assert_eq!(headers_present(&headers(&base), "tools/list", None), Ok(()));
    }
}
