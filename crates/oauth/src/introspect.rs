//! `POST /api/v1/auth/introspect` (RFC 7662) for authenticated (confidential) clients. A token's
//! state is told only to those it concerns (§2.2, §4): the client it was issued to, or a resource
//! server registered for its audience. Everyone else gets `{"active": false}`, as for an unknown
//! token, so introspection reveals nothing about other clients' tokens or their people.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bk_access::PAT_PREFIX;
use bk_crypto::secret::token_hash;
use bk_domain::access::may_introspect;
use bk_domain::ids::ClientId;
use serde_json::{Value, json};

use crate::AuthServer;
use crate::client_auth::{self, Method};
use crate::error::OAuthError;
use crate::form::Params;
use crate::issue::REFRESH_TOKEN_PREFIX;

pub async fn introspect(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = Params::parse(&headers, &body)?;
    let (client, method) =
        client_auth::authenticate(&server, &headers, &params, peer.ip(), client_auth::Endpoint::Introspection).await?;
    if method == Method::None {
        return Err(OAuthError::invalid_client("introspection requires an authenticated (confidential) client"));
    }
    let token = params.require("token")?;
    let answer = if token.starts_with(REFRESH_TOKEN_PREFIX) {
        refresh_token(&server, &client.id, token).await?
    } else if token.starts_with(PAT_PREFIX) {
        personal_access_token(&server, &client.id, token).await
    } else {
        access_token(&server, &client.id, token).await
    };
    let mut res = Json(answer.unwrap_or_else(|| json!({ "active": false }))).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// A refresh token is meant for this server alone: only the client it was issued to learns of it.
async fn refresh_token(server: &AuthServer, requester: &ClientId, token: &str) -> Result<Option<Value>, OAuthError> {
    let now = server.clock.now();
    Ok(match server.store.refresh_token(&token_hash(token)).await? {
        Some((t, g)) if t.client_id == *requester && t.used_at.is_none() && t.expires_at > now && g.is_active() => {
            Some(json!({
                "active": true,
                "token_type": "refresh_token",
                "scope": t.scopes.to_string(),
                "client_id": t.client_id,
                "sub": g.account_id,
                "exp": t.expires_at,
                "iat": t.created_at,
                "iss": server.issuer,
                "sid": g.id,
            }))
        }
        _ => None,
    })
}

/// An access token: the rule is checked on its (signed) claims before its session is looked up.
async fn access_token(server: &AuthServer, requester: &ClientId, token: &str) -> Option<Value> {
    let claims = server.verifier.decode_unchecked_expiry(token)?;
    if !may_introspect(
        requester,
        &ClientId::from_string(claims.client_id.clone()),
        &claims.aud,
        &server.resource_servers,
    ) {
        return None;
    }
    if claims.acts_for_no_account() {
        return machine_token(server, token, &claims.aud).await;
    }
    let ctx = server.verifier.verify(token, &claims.aud).await.ok()?;
    let c = ctx.claims.as_ref()?;
    let mut answer = json!({
        "active": true,
        // RFC 9449 §6.2: a DPoP-bound token says so, with the key it is bound to.
        "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
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
    });
    if let Some(cnf) = &c.cnf {
        answer["cnf"] = json!({ "jkt": cnf.jkt });
    }
    // RFC 8693 §4.1: an exchanged token names who acts for the subject.
    if let Some(act) = &c.act {
        answer["act"] = json!(act);
    }
    Some(answer)
}

/// The token of a machine client bound to no account: active while the client lives, keeps the
/// `client_credentials` grant and stays unbound. Its subject is the client; it has no session and
/// no user.
async fn machine_token(server: &AuthServer, token: &str, audience: &str) -> Option<Value> {
    let c = server.verifier.verify_machine(token, &[audience]).await.ok()?;
    let mut answer = json!({
        "active": true,
        "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
        "scope": c.scope,
        "client_id": c.client_id,
        "sub": c.sub,
        "aud": c.aud,
        "iss": c.iss,
        "exp": c.exp,
        "iat": c.iat,
        "jti": c.jti,
    });
    if let Some(cnf) = &c.cnf {
        answer["cnf"] = json!({ "jkt": cnf.jkt });
    }
    Some(answer)
}

/// A personal access token is issued to no client that can authenticate, and is meant for `/mcp`:
/// only a resource server registered for that resource may learn of it.
async fn personal_access_token(server: &AuthServer, requester: &ClientId, token: &str) -> Option<Value> {
    // No lookup at all for a client that is no resource server.
    if !server.resource_servers.iter().any(|rs| rs.client_id == *requester) {
        return None;
    }
    let resource = server.mcp_resource();
    let ctx = server.verifier.verify_bearer(token, &[]).await.ok()?;
    if !may_introspect(requester, &ctx.client_id, &resource, &server.resource_servers) {
        return None;
    }
    Some(json!({
        "active": true,
        "token_type": "Bearer",
        "scope": ctx.scopes.to_string(),
        "client_id": ctx.client_id,
        "sub": ctx.account_id,
        "aud": resource,
        "iss": server.issuer,
        "sid": ctx.session_id,
        "username": ctx.email,
    }))
}
