//! `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a confidential client an
//! operator created and allowed this grant trades a person's access token (the subject token) for a
//! narrower one it will use itself — delegation, with the client named in `act` (§4.1; an `act`
//! already in the subject token is nested inside, at most four deep).
//!
//! Never wider than the subject token: scopes within its scopes (and the client's; `account`, the
//! management of the person's apps, clients and tokens, is never delegated), one audience this server
//! serves (its `/mcp` URL or the issuer's REST API; anything else is `invalid_target`), a life no
//! longer than the subject token's rest (nor the configured access-token life), and the same session
//! (`sid`): revoking it ends both. No refresh token. The subject must be a live access token of this
//! server that acts for an account and is not DPoP-bound (its holder's key cannot be proved here);
//! anything else about it is `invalid_request` (§2.2.2). Every exchange, and every refusal after
//! the client authenticated, is audited.

use axum::response::Response;
use bk_access::{PAT_PREFIX, VerifyError};
use bk_domain::access::{AccessTokenClaims, Actor};
use bk_domain::audit::Outcome;
use bk_domain::client::{Client, ClientCapabilities, ClientType, GrantType, grant_refusal};
use bk_domain::scope::{Scope, ScopeSet};

use crate::error::OAuthError;
use crate::form::Params;
use crate::{AuthServer, issue};

/// RFC 8693 §3: the token type of an OAuth access token (the only type taken and issued).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// At most this many actors in an exchanged token's chain.
const MAX_ACTORS: usize = 4;

pub async fn exchange(
    server: &AuthServer,
    client: &Client,
    caps: &ClientCapabilities,
    params: &Params,
    proof: Option<&bk_access::dpop::Proof>,
) -> Result<Response, OAuthError> {
    match exchange_checked(server, client, caps, params, proof).await {
        Ok(res) => Ok(res),
        Err(e) => {
            if e.code != "server_error" {
                server.emit(
                    server
                        .event("token.exchange_refused", Outcome::Denied)
                        .client(&client.id)
                        .detail("error", e.code)
                        .detail("reason", e.description.clone()),
                );
            }
            Err(e)
        }
    }
}

async fn exchange_checked(
    server: &AuthServer,
    client: &Client,
    caps: &ClientCapabilities,
    params: &Params,
    proof: Option<&bk_access::dpop::Proof>,
) -> Result<Response, OAuthError> {
    // RFC 6749 §4.4: a public client has no credentials; for it the grant does not exist.
    if client.client_type != ClientType::Confidential {
        return Err(OAuthError::unsupported_grant_type(format!(
            "{} is only for confidential clients",
            GrantType::TokenExchange.as_str()
        )));
    }
    if let Some(why) = grant_refusal(client, caps, GrantType::TokenExchange) {
        return Err(OAuthError::unauthorized_client(why));
    }
    if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
        return Err(OAuthError::invalid_request(
            "actor_token is not supported: the authenticated client is the actor (it is named in act)",
        ));
    }
    if params.get("requested_token_type").is_some_and(|t| t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthError::invalid_request(format!(
            "requested_token_type must be {ACCESS_TOKEN_TYPE}, the only type issued"
        )));
    }
    let subject = params.require("subject_token")?;
    match params.get("subject_token_type") {
        Some(ACCESS_TOKEN_TYPE) => {}
        None => return Err(OAuthError::invalid_request("subject_token_type is required")),
        Some(_) => {
            return Err(OAuthError::invalid_request(format!(
                "subject_token_type must be {ACCESS_TOKEN_TYPE}: only this server's access tokens are exchanged"
            )));
        }
    }
    let refuse = |why: &str| OAuthError::invalid_request(format!("the subject token cannot be exchanged: {why}"));
    if subject.starts_with(PAT_PREFIX) {
        return Err(refuse("a personal access token is not exchanged"));
    }
    let Some(claims) = server.verifier.decode_unchecked_expiry(subject) else {
        return Err(refuse("it is not an access token issued by this server"));
    };
    if claims.acts_for_no_account() {
        return Err(refuse("it acts for no account, so there is nobody to act for"));
    }
    if claims.cnf.is_some() {
        return Err(refuse("it is DPoP-bound, and only the holder of its key may use it"));
    }
    if claims.act.as_ref().is_some_and(|a| a.depth() >= MAX_ACTORS) {
        return Err(refuse("it was exchanged too many times already"));
    }
    if !server.resource_allowed(&claims.aud) {
        return Err(refuse("it is meant for another resource"));
    }
    // Signature, expiry, issuer, and a live session that acts for its account (the cache of the
    // verifier: a revocation is seen within a second).
    let ctx = server.verifier.verify(subject, &claims.aud).await.map_err(|e| match e {
        VerifyError::Unavailable => OAuthError::server_error(),
        e => refuse(&e.to_string()),
    })?;
    let now = server.clock.now();

    // Scopes: within the subject token's and the client's, never `account`.
    let ceiling = client.grantable_scope(None);
    let subject_scopes = ctx.scopes.with_implied();
    let scopes = match params.get("scope").filter(|s| !s.trim().is_empty()) {
        Some(requested) => {
            let requested = ScopeSet::parse_lenient(requested);
            for s in requested.iter() {
                if s == Scope::Account {
                    return Err(OAuthError::invalid_scope(
                        "account is never delegated by a token exchange (it manages the person's apps, clients and tokens)",
                    ));
                }
                if !subject_scopes.contains(s) {
                    return Err(OAuthError::invalid_scope(format!(
                        "{} is not among the subject token's scopes: an exchange only narrows",
                        s.as_str()
                    )));
                }
                if !ceiling.contains(s) {
                    return Err(OAuthError::invalid_scope(format!("this client may not hold {}", s.as_str())));
                }
            }
            requested
        }
        // Everything both allow (read-only listing when the client may not call tools), but account.
        None => {
            let both = subject_scopes.intersect(&ceiling);
            let implied_only = |s: Scope| {
                s == Scope::McpRead && both.contains(Scope::McpReadWrite) && !ctx.scopes.contains(Scope::McpRead)
            };
            ScopeSet::from_scopes(both.iter().filter(|s| *s != Scope::Account && !implied_only(*s)))
        }
    };
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("no scope of the subject token can be delegated to this client"));
    }

    // One audience this server serves.
    let norm = |t: &str| t.trim_end_matches('/').to_owned();
    let audience = match (params.get("resource"), params.get("audience")) {
        (Some(r), Some(a)) if norm(r) != norm(a) => {
            return Err(OAuthError::invalid_target("resource and audience name different targets: give one"));
        }
        (Some(t), _) | (None, Some(t)) if server.resource_allowed(t) => norm(t),
        (Some(_), _) | (None, Some(_)) => {
            return Err(OAuthError::invalid_target(format!(
                "the target is not served by this server: use {} or {}",
                server.mcp_resource(),
                server.issuer
            )));
        }
        (None, None) => norm(&claims.aud),
    };

    let exp = (now + server.lifetimes.access_token).min(claims.exp);
    let act = Actor { sub: client.id.to_string(), act: claims.act.clone().map(Box::new) };
    let depth = act.depth();
    let issued = AccessTokenClaims {
        iss: server.issuer.clone(),
        sub: claims.sub.clone(),
        aud: audience.clone(),
        client_id: client.id.to_string(),
        scope: scopes.to_string(),
        sid: claims.sid.clone(),
        jti: issue::new_jti(),
        iat: now,
        exp,
        auth_time: claims.auth_time,
        cnf: proof.map(|p| bk_domain::access::Confirmation { jkt: p.jkt.clone() }),
        act: Some(act),
    };
    let access = issue::sign(server, &issued)?;
    server.emit(
        server
            .event("token.exchanged", Outcome::Success)
            .account(&ctx.account_id)
            .client(&client.id)
            .session(&claims.sid)
            .detail("subject_client", claims.client_id.clone())
            .detail("scope", scopes.to_string())
            .detail("audience", audience)
            .detail("actors", depth)
            .detail("expires_in", exp - now),
    );
    tracing::info!(client = %client.id, account = %ctx.account_id, session = %ctx.session_id, "token exchanged");
    Ok(issue::access_only_response(server, access, issued.cnf.is_some(), exp - now, &scopes, Some(ACCESS_TOKEN_TYPE)))
}
