//! The REST face shared by the JSON APIs (`/api/v1/auth-clients`, PATs, account, sessions):
//! who is calling (operator token, access token, PAT or signed-in browser), and RFC 9457 problem
//! details for every error.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::grant::GrantKind;
use bk_domain::ids::AccountId;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::{Scope, ScopeSet};
use serde_json::{Value, json};

use crate::{AccessContext, AuthServer};
use bk_access::browser::BrowserSession;
use bk_access::operator::{is_operator_token, verify_operator_token};
use bk_access::{Challenge, bearer_token};

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
    pub fn server_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error", "the server could not complete the request")
    }
}

impl From<bk_domain::ports::StoreError> for Problem {
    fn from(e: bk_domain::ports::StoreError) -> Self {
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

/// Who is calling a REST endpoint.
#[derive(Clone, Debug)]
pub enum Caller {
    /// An operator API token: may manage every client.
    Operator { token_id: String },
    /// A person, through an access token or PAT (with its scopes and restrictions) …
    Token(AccessContext),
    /// … or signed in to these pages in this browser (acts with every scope, unrestricted).
    Browser { account_id: AccountId, email: String },
}

impl Caller {
    /// The account acting, if a person is calling.
    pub fn account(&self) -> Option<&AccountId> {
        match self {
            Caller::Operator { .. } => None,
            Caller::Token(c) => Some(&c.account_id),
            Caller::Browser { account_id, .. } => Some(account_id),
        }
    }

    /// Requires a person with `scope` (a browser session has every scope).
    pub fn person_with(&self, scope: Scope) -> Result<(&AccountId, &str), Problem> {
        match self {
            Caller::Operator { .. } => {
                Err(Problem::forbidden("this endpoint acts for an account; an operator token has none"))
            }
            Caller::Token(c) if !c.scopes.contains(scope) => Err(Problem::insufficient_scope(scope)),
            Caller::Token(c) => Ok((&c.account_id, &c.email)),
            Caller::Browser { account_id, email } => Ok((account_id, email)),
        }
    }

    /// The most a PAT created by this caller may carry.
    pub fn ceiling(&self) -> (ScopeSet, Restrictions) {
        match self {
            Caller::Token(c) => (c.scopes.clone(), c.restrictions.clone()),
            _ => (ScopeSet::all(), Restrictions::unrestricted()),
        }
    }

    /// Stamps an audit event with who acted.
    pub fn stamp(&self, e: bk_domain::audit::AuditEvent) -> bk_domain::audit::AuditEvent {
        match self {
            Caller::Operator { token_id } => e.operator(token_id),
            Caller::Token(c) => e.account(&c.account_id).client(&c.client_id).session(&c.session_id),
            Caller::Browser { account_id, .. } => e.account(account_id).detail("via", "browser"),
        }
    }

    pub fn is_pat(&self) -> bool {
        matches!(self, Caller::Token(c) if c.kind == GrantKind::PersonalAccessToken)
    }
}

/// Identifies the caller: a bearer credential if one is sent, else the browser session cookie.
/// Cookie-authenticated writes must come from our own origin (a cross-site page cannot send JSON
/// with cookies without a CORS preflight we never grant, and `Origin`, when sent, must be ours).
pub async fn caller(server: &AuthServer, headers: &HeaderMap, writes: bool) -> Result<Caller, Problem> {
    if let Some(token) = bearer_token(headers) {
        if is_operator_token(token) {
            return match verify_operator_token(server.store.as_ref(), token).await? {
                Some(token_id) => Ok(Caller::Operator { token_id }),
                None => Err(Problem::unauthorized("the operator token is unknown or revoked")),
            };
        }
        let issuer = server.issuer.as_str();
        let mcp = server.mcp_resource();
        return match server.verifier.verify_bearer(token, &[issuer, &mcp]).await {
            Ok(ctx) => Ok(Caller::Token(ctx)),
            Err(crate::VerifyError::Unavailable) => Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Unavailable",
                "the server could not check the token; retry",
            )),
            Err(e) => Err(Problem::unauthorized(e.to_string())),
        };
    }
    let now = server.clock.now();
    if let Some(s) = BrowserSession::read(headers, &server.cookie_keys, now)
        && let Some((account_id, _)) = s.account
    {
        if writes
            && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
            && origin.trim_end_matches('/') != server.issuer_origin()
        {
            return Err(Problem::forbidden("cross-origin request refused"));
        }
        if let Some(a) = server.store.account(&account_id).await? {
            return Ok(Caller::Browser { account_id: a.id, email: a.email });
        }
    }
    Err(Problem::unauthorized("a bearer token (or a signed-in browser session) is required"))
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
        let msg = e.to_string();
        // serde names the field in messages such as "unknown field `x`" or "missing field `name`".
        let field = msg.split('`').nth(1).unwrap_or("body").to_owned();
        Problem::invalid(&field, format!("the body is not valid: {msg}"))
    })
}
