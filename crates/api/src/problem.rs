//! RFC 9457 problem details (`application/problem+json`): the one error type of the REST face,
//! its OpenAPI description (the schema and one reusable response per status), the JSON body parser
//! that names the offending field, and the extractors whose rejections are problems too (a path,
//! a query string or a body that cannot be read never answers in plain text).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_access::Challenge;
use bk_domain::ports::StoreError;
use bk_domain::scope::Scope;
use serde::Serialize;
use utoipa::{ToResponse, ToSchema};

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

/// The body of every error of the REST face (RFC 9457 problem details).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Invalid request", "status": 400,
    "detail": "limit must be 1 to 1000", "field": "limit"}))]
pub struct ProblemDetails {
    /// Always `about:blank`: the status and the title say what kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The HTTP status phrase, or a more specific one (`Insufficient scope`, `Quota reached`).
    pub title: &'static str,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong, in words fit to show a person (never a secret the request carried).
    pub detail: String,
    /// The request field or parameter at fault (`branding.logo`, `limit`), on a 400.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDetails {
            kind: "about:blank",
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail,
            field: self.field,
        };
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

/// A JSON body as bytes, read within the route's size limit; a body that is too large or cannot
/// be read is a problem (413 or 400). Parsed by [`json_body`] once the caller is known.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        Bytes::from_request(req, state).await.map(Body).map_err(|e| {
            let status = e.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(status, "Payload too large", "the body is larger than this endpoint accepts")
            } else {
                Problem::new(StatusCode::BAD_REQUEST, "Invalid request", "the body could not be read")
            }
        })
    }
}

/// The path's parameters (`axum::extract::Path`); one that cannot be decoded (not UTF-8 once
/// percent-decoded) is a 400 problem naming it (`field`).
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(e) if e.status().is_server_error() => {
                tracing::error!(error = %e.body_text(), "a route's path parameters do not match its handler");
                Err(Problem::server_error())
            }
            Err(e) => {
                // axum names the parameter: "Invalid URL: Invalid UTF-8 in `id`".
                let msg = without_values(&e.body_text());
                let field = msg.split('`').nth(1).unwrap_or("path").to_owned();
                Err(Problem::invalid(&field, format!("the path is not valid: {msg}")))
            }
        }
    }
}

/// The query string parsed into `T` (whose fields are text, so that each value's own check can
/// name its parameter); an unknown parameter or a repeated one is a 400 problem naming it.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        query(parts.uri.query()).map(QueryParams)
    }
}

/// Parses a query string (none: every parameter absent), naming what is wrong.
pub fn query<T: serde::de::DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, Problem> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else { return Ok(T::default()) };
    serde_urlencoded::from_str(raw).map_err(|e| {
        let msg = without_values(&e.to_string());
        // serde names the parameter in messages such as "unknown field `x`" or "duplicate field `x`".
        let field = msg.split('`').nth(1).unwrap_or("query").to_owned();
        Problem::invalid(&field, format!("the query is not valid: {msg}"))
    })
}

/// A query parameter given as text, as a number (`None` when absent); the error names it.
pub fn number_param<T: std::str::FromStr>(name: &str, v: Option<&str>, what: &str) -> Result<Option<T>, Problem> {
    v.map(|s| s.parse::<T>().map_err(|_| Problem::invalid(name, format!("{name} must be {what}")))).transpose()
}

// What each error status means on this API, once, as reusable OpenAPI responses
// (`#/components/responses/…`); each operation lists those it can really answer.

/// The request is not valid: a malformed or unknown parameter, a body that is not what the
/// operation takes, or a value refused by its rules. `field` names the culprit.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub ProblemDetails);

/// No credential, or one that is unknown, expired or revoked.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer`, with `resource_metadata` naming this server's protected-resource metadata"
    ))
)]
pub struct Unauthorized(pub ProblemDetails);

/// The credential is good but may not do this: it lacks the operation's scope (then
/// `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` names it), it is of the wrong
/// kind (an operator token where an account acts, or a person's where an operator token is
/// needed), or the operation's own rule refuses it.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "On a missing scope: `Bearer error=\"insufficient_scope\", scope=\"…\"`"
    ))
)]
pub struct Forbidden(pub ProblemDetails);

/// Not found — also the answer for another account's object, so that its existence is not told.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub ProblemDetails);

/// The request conflicts with the object's state, or a per-account quota is reached; nothing changed.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Conflict(pub ProblemDetails);

/// The body is larger than this operation accepts.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(pub ProblemDetails);

/// The body is not `application/json`.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct UnsupportedMediaType(pub ProblemDetails);

/// A rate limit is reached; `Retry-After` says when to try again.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub struct TooManyRequests(pub ProblemDetails);

/// The provider or upstream server could not be reached or answered something unexpected.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadGateway(pub ProblemDetails);

/// The server could not check the credential or complete the request just now; retry (after
/// `Retry-After` when it is sent).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait, when known"))
)]
pub struct Unavailable(pub ProblemDetails);

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
