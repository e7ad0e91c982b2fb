//! Upstream answers: a failure classified (the credential refused, more access asked for, the
//! server answered with an error, the transport failed) and put in words, and a result bounded
//! before a client sees it.

use super::*;

/// Marks a failure the credential explains, from the transport's typed errors only (never from
/// message text, which an upstream writes): `"401"` (the server answered 401: refresh once), or
/// `"insufficient_scope:<scopes>"` (403 with `error="insufficient_scope"`: step-up). `None`: any other
/// failure (a 403 without that error is a plain refusal).
pub(crate) fn auth_failure(root: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
    let mut source = Some(root);
    while let Some(current) = source {
        if current.downcast_ref::<AuthRequiredError>().is_some() {
            return Some("401".to_owned());
        }
        if let Some(e) = current.downcast_ref::<InsufficientScopeError>() {
            return bk_connections::mcp::bearer_challenge(&[&e.www_authenticate_header])
                .filter(|c| c.error.as_deref() == Some("insufficient_scope"))
                .map(|c| format!("{STEP_UP}{}", c.scope.or(e.required_scope.clone()).unwrap_or_default()));
        }
        source = current.source();
    }
    None
}

pub(crate) const STEP_UP: &str = "insufficient_scope:";

/// A request's failure: an auth marker (see `auth_failure`), `"mcp:"` + the server's JSON-RPC
/// error (the server answered: the client stays usable), or the transport's failure.
pub(crate) fn service_failure(e: ServiceError) -> String {
    match &e {
        ServiceError::TransportSend(t) => auth_failure(t.error.as_ref()).unwrap_or_else(|| e.to_string()),
        ServiceError::McpError(m) if m.code == rmcp::model::ErrorCode::INVALID_PARAMS => {
            format!("{ANSWERED}{INVALID_PARAMS}{}", m.message)
        }
        ServiceError::McpError(m) => format!("{ANSWERED}{}", m.message),
        _ => e.to_string(),
    }
}

/// After `ANSWERED`: the server said the request's parameters were invalid (-32602), which the
/// caller reports as its own invalid-params error (a prompt's missing argument).
pub(crate) const INVALID_PARAMS: &str = "invalid params: ";

/// Whether a failure in words (`failure_text`) is the server's invalid-params answer.
pub(crate) fn is_invalid_params(provider: &str, text: &str) -> bool {
    text.starts_with(&format!("the {provider} server answered with an error: {INVALID_PARAMS}"))
}

/// Prefix of a failure the server answered with (a JSON-RPC error): the kept client stays.
pub(crate) const ANSWERED: &str = "mcp:";
/// Prefix of a request that ran out of time (the request is cancelled; the client stays).
pub(crate) const SLOW: &str = "no answer within";

/// Whether the kept client survives this failure: the server answered, or one request was slow.
pub(crate) fn keeps_client(e: &str) -> bool {
    e.starts_with(ANSWERED) || e.starts_with(SLOW)
}

/// How a request ended, for the circuit breaker: the server answered (a result, a JSON-RPC
/// error, a refused credential, a step-up), or the service failed (transport, time-out, 5xx).
pub(crate) fn ending<T>(result: &Result<T, String>) -> breaker::Ending {
    match result {
        Ok(_) => breaker::Ending::Answered,
        Err(e) if e == "401" || e.starts_with(STEP_UP) || e.starts_with(ANSWERED) => breaker::Ending::Answered,
        Err(_) => breaker::Ending::Failed,
    }
}

/// A failure in words for the caller (bounded; the caller redacts it).
pub(crate) fn failure_text(provider: &str, e: &str) -> String {
    let shown = |s: &str| s.chars().filter(|c| !c.is_control()).take(300).collect::<String>();
    match e {
        "401" => format!("the {provider} server refused this connection's credential; reconnect it"),
        _ if e.starts_with(ANSWERED) => {
            format!("the {provider} server answered with an error: {}", shown(&e[ANSWERED.len()..]))
        }
        _ => format!("the {provider} server failed: {}", shown(e)),
    }
}

/// Why a connection's credential cannot be used, in words for the caller.
pub(crate) fn unusable(provider: &str, e: &BrokerError) -> String {
    match e {
        BrokerError::NotUsable { reason, .. } => format!("the {provider} connection cannot be used: {reason}"),
        BrokerError::RetryLater { retry_after, .. } => {
            format!(
                "the {provider} connection is being refreshed and the provider is failing; retry in {retry_after} s"
            )
        }
        BrokerError::Missing => format!("the {provider} connection no longer exists"),
        other => format!("the {provider} connection cannot be used now: {other}"),
    }
}

/// The most one binary block (image, audio, blob) may carry on to the client.
pub(crate) const MAX_BINARY_BYTES: usize = 1 << 20;
/// The most `structuredContent` may weigh (serialised).
pub(crate) const MAX_STRUCTURED_BYTES: usize = 256 << 10;

/// Bounds an answer: the text of `list`'s items (text blocks, a prompt message's content, an
/// embedded resource's text) at `max_text` bytes in all; a binary block over 1 MB and
/// `structuredContent` over 256 KB replaced by notices.
pub(crate) fn cap_answer(v: &mut Value, list: &str, max_text: usize) {
    let mut notices = Vec::new();
    if v.get("structuredContent").is_some_and(|s| s.to_string().len() > MAX_STRUCTURED_BYTES) {
        if let Some(o) = v.as_object_mut() {
            o.remove("structuredContent");
        }
        notices.push(format!("[the gateway left out the structured content: over {} KB]", MAX_STRUCTURED_BYTES / 1024));
    }
    let Some(items) = v.get_mut(list).and_then(Value::as_array_mut) else { return };
    let mut left = max_text;
    let mut cut = 0usize;
    for item in items.iter_mut() {
        // The block itself, a prompt message's content, or an embedded resource.
        let inner = ["content", "resource"].into_iter().find(|k| item.get(*k).is_some_and(Value::is_object));
        let holder = match inner {
            Some(k) => &item[k],
            None => &*item,
        };
        let too_big = ["data", "blob"]
            .iter()
            .any(|k| holder.get(*k).and_then(Value::as_str).is_some_and(|d| d.len() > MAX_BINARY_BYTES));
        if too_big {
            let kind = holder.get("mimeType").and_then(Value::as_str).unwrap_or("binary").to_owned();
            // The whole block goes (a message keeps its role).
            let notice = json!({"type": "text", "text": format!("[the gateway left out a {kind} block over {} KB]", MAX_BINARY_BYTES / 1024)});
            match inner {
                Some("content") => item["content"] = notice,
                _ => *item = notice,
            }
            continue;
        }
        let holder = match inner {
            Some(k) => &mut item[k],
            None => item,
        };
        let Some(Value::String(s)) = holder.get_mut("text") else { continue };
        if s.len() <= left {
            left -= s.len();
            continue;
        }
        let mut end = left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        cut += s.len() - end;
        s.truncate(end);
        left = 0;
    }
    if cut > 0 {
        notices.push(format!(
            "[the gateway cut {} KB of this answer: at most {} KB of text are passed on]",
            cut.div_ceil(1024),
            max_text / 1024
        ));
    }
    for n in notices {
        items.push(json!({"type": "text", "text": n}));
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn answers_are_bounded_text_binary_and_structured() {
        let mut v = serde_json::json!({
            "content": [
                {"type": "text", "text": "a".repeat(30)},
                {"type": "resource", "resource": {"uri": "x://1", "text": "b".repeat(30)}},
                {"type": "image", "mimeType": "image/png", "data": "c".repeat(super::MAX_BINARY_BYTES + 1)},
                {"type": "image", "mimeType": "image/png", "data": "small"},
                {"type": "resource", "resource": {"uri": "x://2", "blob": "e".repeat(super::MAX_BINARY_BYTES + 1)}},
            ],
            "structuredContent": {"big": "d".repeat(super::MAX_STRUCTURED_BYTES + 1)},
        });
        super::cap_answer(&mut v, "content", 40);
        let c = v["content"].as_array().unwrap();
        assert_eq!(c[0]["text"].as_str().unwrap().len(), 30);
        assert_eq!(c[1]["resource"]["text"].as_str().unwrap().len(), 10, "embedded text counts toward the cap");
        assert!(c[2]["text"].as_str().unwrap().contains("left out a image/png block"));
        assert_eq!(c[3]["data"], "small");
        assert_eq!(c[4]["type"], "text", "an oversized embedded resource goes whole: {}", c[4]);
        assert!(v.get("structuredContent").is_none());
        let notes: Vec<&str> = c[5..].iter().map(|n| n["text"].as_str().unwrap()).collect();
        assert!(
            notes.iter().any(|n| n.contains("structured content")) && notes.iter().any(|n| n.contains("cut 1 KB")),
            "{notes:?}"
        );
    }
}
