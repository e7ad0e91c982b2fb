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
use bk_domain::scope::{Scope, ScopeSet};
use serde_json::json;

use crate::AuthServer;
use crate::error::OAuthError;

pub const REFRESH_TOKEN_PREFIX: &str = "bkr_";
pub const CODE_PREFIX: &str = "bkc_";

/// An access token for `grant`; bound to the key `jkt` (RFC 9449 `cnf.jkt`) when given.
pub fn access_token(
    server: &AuthServer,
    grant: &Grant,
    scopes: &ScopeSet,
    jkt: Option<&str>,
    now: UnixTime,
) -> Result<String, OAuthError> {
    let claims = AccessTokenClaims {
        iss: server.issuer.clone(),
        sub: grant.account_id.to_string(),
        aud: grant.resource.clone(),
        client_id: grant.client_id.to_string(),
        scope: scopes.to_string(),
        sid: grant.id.to_string(),
        jti: new_jti(),
        iat: now,
        exp: now + server.lifetimes.access_token,
        auth_time: grant.auth_time,
        cnf: jkt.map(|jkt| bk_domain::access::Confirmation { jkt: jkt.to_owned() }),
        act: None,
    };
    sign(server, &claims)
}

/// A fresh token id.
pub fn new_jti() -> String {
    b64url(&random_bytes::<16>())
}

/// Signs access-token claims (`typ` `at+jwt`, RFC 9068) with the active key.
pub fn sign(server: &AuthServer, claims: &AccessTokenClaims) -> Result<String, OAuthError> {
    bk_crypto::jwt::sign(server.keys.current().active(), "at+jwt", claims).map_err(|e| {
        tracing::error!(error = %e, "signing an access token failed");
        OAuthError::server_error()
    })
}

/// A token response without a refresh token (client credentials, RFC 6749 §4.4.3; token
/// exchange, RFC 8693 §2.2.1 with its `issued_token_type`), never cached.
pub fn access_only_response(
    server: &AuthServer,
    access: String,
    bound: bool,
    expires_in: i64,
    scopes: &ScopeSet,
    issued_token_type: Option<&str>,
) -> Response {
    let mut body = json!({
        "access_token": access,
        "token_type": if bound { "DPoP" } else { "Bearer" },
        "expires_in": expires_in,
        "scope": scopes.to_string(),
    });
    if let Some(t) = issued_token_type {
        body["issued_token_type"] = json!(t);
    }
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(n) = server.verifier.dpop.nonce(server.clock.now()).and_then(|n| HeaderValue::from_str(&n).ok()) {
        res.headers_mut().insert("dpop-nonce", n);
    }
    res
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
    bound: bool,
    refresh: Secret,
    scopes: &ScopeSet,
    id_token: Option<String>,
) -> Response {
    let mut body = json!({
        "access_token": access,
        // RFC 9449 §5: a DPoP-bound access token is of type DPoP.
        "token_type": if bound { "DPoP" } else { "Bearer" },
        "expires_in": server.lifetimes.access_token,
        "refresh_token": refresh.into_string(),
        "scope": scopes.to_string(),
    });
    if let Some(t) = id_token {
        body["id_token"] = json!(t);
    }
    let mut res = Json(body).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(n) = server.verifier.dpop.nonce(server.clock.now()).and_then(|n| HeaderValue::from_str(&n).ok()) {
        res.headers_mut().insert("dpop-nonce", n);
    }
    res
}

/// An OpenID Connect ID token (RS256) for grants with scope `openid`; `None` otherwise.
pub async fn id_token(
    server: &AuthServer,
    grant: &Grant,
    scopes: &ScopeSet,
    access_token: &str,
    nonce: Option<&str>,
    now: UnixTime,
) -> Result<Option<String>, OAuthError> {
    if !scopes.contains(Scope::OpenId) {
        return Ok(None);
    }
    let (email, email_verified) = match server.store.account(&grant.account_id).await? {
        Some(a) => (a.email.clone(), a.email_verified()),
        None => return Err(OAuthError::invalid_grant("the account no longer exists")),
    };
    let digest = bk_crypto::secret::sha256(access_token.as_bytes());
    let mut claims = json!({
        "iss": server.issuer,
        "sub": grant.account_id,
        "aud": grant.client_id,
        "azp": grant.client_id,
        "iat": now,
        "exp": now + server.lifetimes.access_token,
        "auth_time": grant.auth_time,
        "at_hash": b64url(&digest[..16]),
        "sid": grant.id,
    });
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    // An account made by a wallet has no address (its placeholder is never shown): no email claims.
    let has_email = !bk_domain::wallet::is_placeholder_email(&email);
    if scopes.contains(Scope::Email) && has_email {
        claims["email"] = json!(email);
        claims["email_verified"] = json!(email_verified);
    }
    if scopes.contains(Scope::Profile) && has_email {
        claims["preferred_username"] = json!(email);
        claims["name"] = json!(email);
    }
    bk_crypto::jwt::sign(server.keys.current().active(), "JWT", &claims).map(Some).map_err(|e| {
        tracing::error!(error = %e, "signing an ID token failed");
        OAuthError::server_error()
    })
}
