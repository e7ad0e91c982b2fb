//! One OAuth error type (RFC 6749 §5.2) for the token, revocation, introspection and registration endpoints.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub code: &'static str,
    pub description: String,
    /// Set for `invalid_client` after HTTP Basic authentication failed (RFC 6749 §5.2).
    pub basic_challenge: bool,
    pub retry_after: Option<i64>,
    /// Set for `invalid_token` at the client configuration endpoint (RFC 6750 §3).
    pub bearer_challenge: bool,
    /// Members added to the error object (what a limit is, its window, when to retry).
    pub extra: Option<serde_json::Map<String, serde_json::Value>>,
    /// A fresh server nonce for the client's next DPoP proof (`DPoP-Nonce`, RFC 9449 §8).
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            code,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
            bearer_challenge: false,
            extra: None,
            dpop_nonce: None,
        }
    }
    /// A refused DPoP proof at the token endpoint (RFC 9449 §5): `invalid_dpop_proof`, or
    /// `use_dpop_nonce` with the nonce to use.
    pub fn dpop(refusal: bk_access::dpop::Refusal, nonce: Option<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, refusal.code(), refusal.to_string());
        e.dpop_nonce = nonce;
        e
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", d)
    }
    pub fn unsupported_token_type(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_token_type", d)
    }
    pub fn invalid_redirect_uri(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client_metadata", d)
    }
    pub fn too_many_requests(d: impl Into<String>, retry_after: i64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", d);
        e.retry_after = Some(retry_after);
        e
    }
    /// A missing, wrong or dead registration access token (RFC 7592 §2: 401).
    pub fn invalid_token(d: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_token", d);
        e.bearer_challenge = true;
        e
    }
    /// Adds members to the error object.
    pub fn with_extra(mut self, extra: serde_json::Value) -> Self {
        if let serde_json::Value::Object(m) = extra {
            self.extra = Some(m);
        }
        self
    }
    /// Something the grant depends on failed for now (bridge mode: the company backend); the
    /// client may retry. Not among RFC 6749 §5.2's codes, which have none for this: the code of
    /// §4.1.2.1 is used, with 503.
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", d)
    }
    pub fn server_error() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "the server could not complete the request")
    }
    /// The same error with another description.
    pub fn described(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }
    pub fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }
}

impl From<bk_domain::ports::StoreError> for OAuthError {
    fn from(e: bk_domain::ports::StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        OAuthError::server_error()
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "error_description": self.description });
        if let (Some(extra), Some(obj)) = (self.extra, body.as_object_mut()) {
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
        let mut res = (self.status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"bridgekeeper\""));
        }
        if self.bearer_challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
        }
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        if let Some(n) = self.dpop_nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            h.insert("dpop-nonce", n);
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(e: OAuthError) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let res = e.into_response();
        let (parts, body) = res.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024).await.unwrap();
        (parts.status, parts.headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[test]
    fn each_error_has_its_rfc_status_and_code() {
        let cases = [
            (OAuthError::invalid_request("d"), StatusCode::BAD_REQUEST, "invalid_request"),
            (OAuthError::invalid_client("d"), StatusCode::UNAUTHORIZED, "invalid_client"),
            (OAuthError::invalid_grant("d"), StatusCode::BAD_REQUEST, "invalid_grant"),
            (OAuthError::unauthorized_client("d"), StatusCode::BAD_REQUEST, "unauthorized_client"),
            (OAuthError::unsupported_grant_type("d"), StatusCode::BAD_REQUEST, "unsupported_grant_type"),
            (OAuthError::invalid_scope("d"), StatusCode::BAD_REQUEST, "invalid_scope"),
            (OAuthError::invalid_target("d"), StatusCode::BAD_REQUEST, "invalid_target"),
            (OAuthError::unsupported_token_type("d"), StatusCode::BAD_REQUEST, "unsupported_token_type"),
            (OAuthError::invalid_redirect_uri("d"), StatusCode::BAD_REQUEST, "invalid_redirect_uri"),
            (OAuthError::invalid_client_metadata("d"), StatusCode::BAD_REQUEST, "invalid_client_metadata"),
            (OAuthError::too_many_requests("d", 5), StatusCode::TOO_MANY_REQUESTS, "too_many_requests"),
            (OAuthError::server_error(), StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status, e.code), (status, code));
        }
    }

    #[test]
    fn store_errors_are_server_errors() {
        let e = OAuthError::from(bk_domain::ports::StoreError::Conflict("x"));
        assert_eq!((e.status, e.code), (StatusCode::INTERNAL_SERVER_ERROR, "server_error"));
        assert_eq!(e.description, "the server could not complete the request");
    }

    #[tokio::test]
    async fn error_response_is_json_and_never_cached() {
        let (status, h, body) = parts(OAuthError::invalid_grant("the refresh token has expired")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body, json!({"error": "invalid_grant", "error_description": "the refresh token has expired"}));
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::PRAGMA], "no-cache");
        assert!(h.get(header::WWW_AUTHENTICATE).is_none());
        assert!(h.get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn basic_challenge_and_retry_after_headers() {
        let (status, h, _) =
            parts(OAuthError::invalid_client("client authentication failed").with_basic_challenge()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(h[header::WWW_AUTHENTICATE], "Basic realm=\"bridgekeeper\"");

        let (status, h, body) = parts(OAuthError::too_many_requests("slow down", 17)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(h[header::RETRY_AFTER], "17");
        assert_eq!(body["error"], "too_many_requests");
    }
}
