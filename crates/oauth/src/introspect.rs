//! `POST /api/v1/auth/introspect` (RFC 7662) for authenticated (confidential) clients such as resource servers.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::token_hash;
use serde_json::json;

use crate::AuthServer;
use crate::client_auth::{self, Method};
use crate::error::OAuthError;
use crate::form::Params;
use crate::issue::REFRESH_TOKEN_PREFIX;

pub async fn introspect(
    State(server): State<Arc<AuthServer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = Params::parse(&headers, &body)?;
    let (client, method) = client_auth::authenticate(&server, &headers, &params).await?;
    if method == Method::None {
        return Err(OAuthError::invalid_client("introspection requires an authenticated (confidential) client"));
    }
    let token = params.require("token")?;
    let now = server.clock.now();
    let inactive = json!({ "active": false });
    let answer = if token.starts_with(REFRESH_TOKEN_PREFIX) {
        match server.store.refresh_token(&token_hash(token)).await? {
            Some((t, g)) if t.client_id == client.id && t.used_at.is_none() && t.expires_at > now && g.is_active() => {
                json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "scope": t.scopes.to_string(),
                    "client_id": t.client_id,
                    "sub": g.account_id,
                    "exp": t.expires_at,
                    "iat": t.created_at,
                    "iss": server.issuer,
                    "sid": g.id,
                })
            }
            _ => inactive,
        }
    } else {
        let aud = server.verifier.decode_unchecked_expiry(token).map(|c| c.aud);
        match aud {
            Some(aud) => match server.verifier.verify(token, &aud).await {
                Ok(ctx) => match &ctx.claims {
                    Some(c) => json!({
                        "active": true,
                        "token_type": "Bearer",
                        "scope": c.scope,
                        "client_id": c.client_id,
                        "sub": c.sub,
                        "aud": c.aud,
                        "iss": c.iss,
                        "exp": c.exp,
                        "iat": c.iat,
                        "jti": c.jti,
                        "sid": c.sid,
                        "username": ctx.email,
                    }),
                    None => inactive,
                },
                Err(_) => inactive,
            },
            None => inactive,
        }
    };
    let mut res = Json(answer).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}
