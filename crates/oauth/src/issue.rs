//! Minting what the token endpoint hands out: RS256 access tokens (RFC 9068) and opaque refresh tokens.

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::{Secret, b64url, new_token, random_bytes, token_hash};
use bk_domain::UnixTime;
use bk_domain::access::AccessTokenClaims;
use bk_domain::grant::Grant;
use bk_domain::ids::{ClientId, RefreshTokenId, SessionId};
use bk_domain::refresh::RefreshToken;
use bk_domain::scope::ScopeSet;
use serde_json::json;

use crate::AuthServer;
use crate::error::OAuthError;

pub const REFRESH_TOKEN_PREFIX: &str = "bkr_";
pub const CODE_PREFIX: &str = "bkc_";

pub fn access_token(
    server: &AuthServer,
    grant: &Grant,
    scopes: &ScopeSet,
    now: UnixTime,
) -> Result<String, OAuthError> {
    let claims = AccessTokenClaims {
        iss: server.issuer.clone(),
        sub: grant.account_id.to_string(),
        aud: grant.resource.clone(),
        client_id: grant.client_id.to_string(),
        scope: scopes.to_string(),
        sid: grant.id.to_string(),
        jti: b64url(&random_bytes::<16>()),
        iat: now,
        exp: now + server.lifetimes.access_token,
        auth_time: grant.auth_time,
    };
    bk_crypto::jwt::sign(server.keys.active(), "at+jwt", &claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::server_error()
    })
}

pub fn refresh_token(
    server: &AuthServer,
    session: &SessionId,
    client: &ClientId,
    scopes: &ScopeSet,
    parent: Option<RefreshTokenId>,
    now: UnixTime,
) -> (Secret, RefreshToken) {
    let secret = new_token(REFRESH_TOKEN_PREFIX);
    let record = RefreshToken {
        id: RefreshTokenId::generate(),
        hash: token_hash(secret.expose()),
        session_id: session.clone(),
        client_id: client.clone(),
        scopes: scopes.clone(),
        expires_at: now + server.lifetimes.refresh_token,
        used_at: None,
        parent_id: parent,
        created_at: now,
    };
    (secret, record)
}

/// The RFC 6749 §5.1 token response, never cached.
pub fn token_response(
    server: &AuthServer,
    access: String,
    refresh: Secret,
    scopes: &ScopeSet,
) -> Response {
    let mut res = Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": server.lifetimes.access_token,
        "refresh_token": refresh.into_string(),
        "scope": scopes.to_string(),
    }))
    .into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}
