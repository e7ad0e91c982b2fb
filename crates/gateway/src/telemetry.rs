//! Each MCP message on `/mcp`: counted by method in `/metrics`, and served in a span that continues
//! the trace its sender named in `params._meta` (`traceparent`/`tracestate`, the W3C trace-context
//! keys MCP carries there, SEP-414) — or else the HTTP request's.

use std::time::Instant;

use serde_json::Value;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Methods named as themselves in `/metrics`; anything else a client sends is `other`.
const METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "prompts/list",
    "prompts/get",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
];

fn method_label(msg: Option<&Value>) -> &'static str {
    match msg.and_then(|m| m.get("method")) {
        Some(Value::String(m)) => METHODS.iter().find(|k| **k == m).copied().unwrap_or("other"),
        Some(_) => "invalid",
        None if msg.is_some_and(|m| m.get("result").is_some() || m.get("error").is_some()) => "response",
        None => "invalid",
    }
}

struct MetaCarrier<'a>(&'a serde_json::Map<String, Value>);

impl opentelemetry::propagation::Extractor for MetaCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The message's method label and its span.
pub(crate) fn mcp_request(msg: Option<&Value>) -> (&'static str, tracing::Span) {
    let method = method_label(msg);
    let span = tracing::info_span!("mcp", method);
    if let Some(meta) = msg.and_then(|m| m.pointer("/params/_meta")).and_then(Value::as_object)
        && meta.get("traceparent").is_some_and(Value::is_string)
    {
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetaCarrier(meta)));
        let _ = span.set_parent(parent);
    }
    (method, span)
}

pub(crate) fn mcp_answered(method: &'static str, started: Instant) {
    metrics::counter!("bridgekeeper_mcp_requests_total", "method" => method).increment(1);
    metrics::histogram!("bridgekeeper_mcp_request_duration_seconds", "method" => method)
        .record(started.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn methods_are_a_closed_set() {
        let label = |v: Value| super::method_label(Some(&v));
        use serde_json::Value;
        assert_eq!(label(json!({"method": "tools/call"})), "tools/call");
        assert_eq!(label(json!({"method": "x/".repeat(50)})), "other");
        assert_eq!(label(json!({"id": 1, "result": {}})), "response");
        assert_eq!(label(json!({"method": 7})), "invalid");
        assert_eq!(super::method_label(None), "invalid");
    }
}
