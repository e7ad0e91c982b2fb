//! `GET|POST /api/v1/auth/userinfo` (OpenID Connect Core §5.3): claims about the token's subject,
//! as far as its scopes allow.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use serde_json::json;

use bk_access::Challenge;

use crate::AuthServer;

fn challenge(status: StatusCode, error: &str, desc: &str) -> Response {
    let challenge = Challenge { error: Some(error), description: Some(desc), ..Default::default() };
    let mut res = (status, Json(json!({"error": error, "error_description": desc}))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, challenge.to_header_value());
    res
}

pub async fn userinfo(State(server): State<Arc<AuthServer>>, method: Method, headers: HeaderMap) -> Response {
    let mcp = server.mcp_resource();
    let url = format!("{}/api/v1/auth/userinfo", server.issuer);
    let audiences = [server.issuer.as_str(), mcp.as_str()];
    let ctx = match server.verifier.verify_request(&headers, method.as_str(), &url, &audiences).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            let mut res = (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response();
            res.headers_mut().insert(header::WWW_AUTHENTICATE, Challenge::default().to_header_value());
            return res;
        }
        Err(e) => {
            let dpop = bk_access::dpop::challenge(&headers, &e, None);
            let code = dpop.as_ref().map_or("invalid_token", |c| c.code);
            let mut res = challenge(StatusCode::UNAUTHORIZED, code, &e.to_string());
            if let Some(c) = dpop {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, c.header);
                if c.with_nonce
                    && let Some(n) = server
                        .verifier
                        .dpop
                        .nonce(server.clock.now())
                        .and_then(|n| header::HeaderValue::from_str(&n).ok())
                {
                    res.headers_mut().insert("dpop-nonce", n);
                }
            }
            return res;
        }
    };
    if !ctx.scopes.contains(Scope::OpenId) {
        return challenge(StatusCode::FORBIDDEN, "insufficient_scope", "userinfo needs the scope openid");
    }
    let mut claims = json!({"sub": ctx.account_id});
    // An account made by a wallet has no address (its placeholder is never shown): no email claims.
    let has_email = !bk_domain::wallet::is_placeholder_email(&ctx.email);
    if ctx.scopes.contains(Scope::Email) && has_email {
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
    if ctx.scopes.contains(Scope::Profile) && has_email {
        claims["preferred_username"] = json!(ctx.email);
        claims["name"] = json!(ctx.email);
    }
    let mut res = Json(claims).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    res
}
