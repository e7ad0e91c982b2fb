//! RFC 9457 problem details (`application/problem+json`): the one error type of the REST face,
//! and the JSON body parser that names the offending field.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_access::Challenge;
use bk_domain::ports::StoreError;
use bk_domain::scope::Scope;
use serde_json::{Value, json};

/// An RFC 9457 problem (`application/problem+json`).
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub field: Option<String>,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// With `Retry-After` (at least one second).
    pub fn retry_after(mut self, secs: u64) -> Self {
        if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
            self.headers.push((header::RETRY_AFTER, v));
        }
        self
    }

    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, title, detail: detail.into(), field: None, headers: Vec::new() }
    }
    /// 400 naming the offending field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::BAD_REQUEST, "Invalid request", detail);
        p.field = Some(field.to_owned());
        p
    }
    /// 404 — also the answer for another tenant's object (no existence oracle).
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not found", format!("{what} not found"))
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail);
        p.headers.push((header::WWW_AUTHENTICATE, Challenge::default().to_header_value()));
        p
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }
    pub fn insufficient_scope(scope: Scope) -> Self {
        let mut p =
            Self::new(StatusCode::FORBIDDEN, "Insufficient scope", format!("this request needs the scope {scope}"));
        let challenge =
            Challenge { error: Some("insufficient_scope"), scope: Some(scope.as_str()), ..Default::default() };
        p.headers.push((header::WWW_AUTHENTICATE, challenge.to_header_value()));
        p
    }
    /// 409: a per-account quota is reached (the detail names it); nothing was created.
    pub fn quota(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Quota reached", detail)
    }
    pub fn server_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", "the server could not complete the request")
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        Problem::server_error()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body =
            json!({"type": "about:blank", "title": self.title, "status": self.status.as_u16(), "detail": self.detail});
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        let mut res = (self.status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        res
    }
}

/// Parses a JSON request body, naming what is wrong.
pub fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "the body must be application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = without_values(&e.to_string());
        // serde names the field in messages such as "unknown field `x`" or "missing field `name`".
        let field = msg.split('`').nth(1).unwrap_or("body").to_owned();
        Problem::invalid(&field, format!("the body is not valid: {msg}"))
    })
}

/// A serde message without the values it quotes (`invalid type: string "sk_live_…"`): the value may
/// be a secret sent in the wrong place, and an error body is often logged by the caller.
fn without_values(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quoted = false;
    for c in msg.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_body_is_named_without_echoing_its_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            params: std::collections::BTreeMap<String, String>,
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
        let p = json_body::<Body>(&headers, br#"{"params": "sk_live_secret_value"}"#).unwrap_err();
        let text = format!("{p:?}");
        assert!(!text.contains("sk_live_secret_value"), "{text}");
        assert!(text.contains("invalid type"), "{text}");
        let p = json_body::<Body>(&headers, br#"{"other": 1}"#).unwrap_err();
        assert!(format!("{p:?}").contains("params"), "the missing field is still named");
    }
}
