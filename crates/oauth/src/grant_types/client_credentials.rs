//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client that an operator created
//! and allowed this grant obtains an access token as itself. No refresh token (§4.4.3): it asks again.
//!
//! Bound by the operator to an account (`boundAccountId`), the token acts for that account within
//! the client's scopes and providers, and hangs off one machine session per client and account: it
//! is listed among the account's apps, and ends (with its tokens, within the verifier's second) when
//! the client is deleted, unbound or rebound, loses the grant, the account is disabled, or the
//! session is revoked — the next request then opens a new one while the binding stands.
//!
//! Bound to no account, the token's subject is the client itself and it hangs off no session
//! (`sid` absent): every face that reaches a tenant's data (`/mcp`, the REST API, userinfo) refuses
//! it, saying so; introspection answers for it while the client lives, keeps the grant and stays
//! unbound.

use axum::response::Response;
use bk_domain::access::AccessTokenClaims;
use bk_domain::audit::Outcome;
use bk_domain::client::{Client, ClientCapabilities, ClientType, GrantType, grant_refusal};
use bk_domain::grant::{Grant, GrantKind};
use bk_domain::ids::SessionId;
use bk_domain::restrictions::Restrictions;

use crate::error::OAuthError;
use crate::form::Params;
use crate::{AuthServer, issue};

pub async fn issue(
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
            GrantType::ClientCredentials.as_str()
        )));
    }
    if let Some(why) = grant_refusal(client, caps, GrantType::ClientCredentials) {
        return Err(OAuthError::unauthorized_client(why));
    }
    let requested = params.get("scope");
    let scopes = client.grantable_scope(requested);
    if scopes.is_empty() {
        return Err(OAuthError::invalid_scope("none of the requested scopes is allowed to this client"));
    }
    let resource = match params.get("resource") {
        None => server.mcp_resource(),
        Some(r) if server.resource_allowed(r) => r.trim_end_matches('/').to_owned(),
        Some(_) => return Err(OAuthError::invalid_target("the requested resource is not served by this server")),
    };
    let now = server.clock.now();
    let (sub, sid, auth_time) = match &caps.bound_account {
        Some(account_id) => {
            match server.store.account(account_id).await? {
                Some(a) if !a.is_disabled() => {}
                _ => {
                    return Err(OAuthError::unauthorized_client(
                        "the account this client is bound to is disabled or gone: it can act for nobody",
                    ));
                }
            }
            let fresh = Grant {
                id: SessionId::generate(),
                account_id: account_id.clone(),
                client_id: client.id.clone(),
                scopes: client.grantable_scope(None),
                restrictions: Restrictions::unrestricted(),
                kind: GrantKind::OAuth,
                resource: resource.clone(),
                auth_time: now,
                created_at: now,
                revoked_at: None,
                dpop_jkt: None,
            };
            let Some(grant) = server.store.open_machine_grant(&fresh).await? else {
                return Err(OAuthError::unauthorized_client(
                    "this client was changed meanwhile (unbound, rebound or no longer allowed client_credentials)",
                ));
            };
            (account_id.to_string(), grant.id.to_string(), grant.auth_time)
        }
        None => (client.id.to_string(), String::new(), now),
    };
    let claims = AccessTokenClaims {
        iss: server.issuer.clone(),
        sub,
        aud: resource.clone(),
        client_id: client.id.to_string(),
        scope: scopes.to_string(),
        sid,
        jti: issue::new_jti(),
        iat: now,
        exp: now + server.lifetimes.access_token,
        auth_time,
        cnf: proof.map(|p| bk_domain::access::Confirmation { jkt: p.jkt.clone() }),
        act: None,
    };
    let access = issue::sign(server, &claims)?;
    let mut event = server
        .event("token.issued", Outcome::Success)
        .client(&client.id)
        .detail("grant_type", GrantType::ClientCredentials.as_str())
        .detail("scope", scopes.to_string())
        .detail("audience", resource);
    match &caps.bound_account {
        Some(account) => {
            event = event.account(account).session(&claims.sid);
        }
        None => event = event.detail("account", "none"),
    }
    server.emit(event);
    tracing::info!(client = %client.id, bound = caps.bound_account.is_some(), "client credentials token issued");
    Ok(issue::access_only_response(server, access, claims.cnf.is_some(), server.lifetimes.access_token, &scopes, None))
}
