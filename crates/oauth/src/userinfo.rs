//! `GET|POST /api/v1/auth/userinfo` (OpenID Connect Core §5.3): claims about the token's subject,
//! as far as its scopes allow.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::json;

use bk_access::{Challenge, bearer_token};

use crate::AuthServer;

fn challenge(status: StatusCode, error: &str, desc: &str) -> Response {
    let challenge = Challenge { error: Some(error), description: Some(desc), ..Default::default() };
    let mut res = (status, Json(json!({"error": error, "error_description": desc}))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    res
}

pub async fn userinfo(State(server): State<Arc<AuthServer>>, headers: HeaderMap) -> Response {
    let Some(token) = bearer_token(&headers) else {
        let mut res = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
        res.headers_mut().insert(header::WWW_AUTHENTICATE, Challenge::default().to_header_value());
        return res;
    };
    let mcp = server.mcp_resource();
    let ctx = match server.verifier.verify_bearer(token, &[server.issuer.as_str(), &mcp]).await {
        Ok(c) => c,
        Err(e) => return challenge(StatusCode::UNAUTHORIZED, "invalid_token", &e.to_string()),
    };
    if !ctx.scopes.contains(Scope::OpenId) {
        return challenge(StatusCode::FORBIDDEN, "insufficient_scope", "userinfo needs the scope openid");
    }
    let mut claims = json!({"sub": ctx.account_id});
    if ctx.scopes.contains(Scope::Email) {
        // Read now, not from the token's session: whether the address is proved changes while tokens live.
        let verified = match server.store.account(&ctx.account_id).await {
            Ok(Some(a)) => a.email == ctx.email && a.email_verified(),
            Ok(None) => false,
            Err(e) => {
                tracing::error!(error = %e, "account lookup for userinfo failed");
                return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "temporarily_unavailable"})))
                    .into_response();
            }
        };
        claims["email"] = json!(ctx.email);
        claims["email_verified"] = json!(verified);
    }
    if ctx.scopes.contains(Scope::Profile) {
        claims["preferred_username"] = json!(ctx.email);
        claims["name"] = json!(ctx.email);
    }
    let mut res = Json(claims).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    res
}
