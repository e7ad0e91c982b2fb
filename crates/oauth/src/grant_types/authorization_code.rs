//! `grant_type=authorization_code`: redeem a code once, with its PKCE verifier, for the first token pair.
//! A second redemption is a replay: it fails and revokes the session the first one created.

use axum::response::Response;
use bk_crypto::secret::token_hash;
use bk_domain::audit::Outcome;
use bk_domain::client::Client;
use bk_domain::code::AuthorizationCode;
use bk_domain::code::{CodeDecision, CodeRedemption};
use bk_domain::grant::{Grant, GrantKind, RevocationReason};
use bk_domain::ids::ClientId;
use bk_domain::ids::SessionId;

use crate::error::OAuthError;
use crate::form::Params;
use crate::{AuthServer, issue};

/// Redeems a code; with a DPoP proof the new grant is bound to the proof's key.
pub async fn exchange(
    server: &AuthServer,
    client: &Client,
    params: &Params,
    proof: Option<&bk_access::dpop::Proof>,
) -> Result<Response, OAuthError> {
    let now = server.clock.now();
    let code = params.require("code")?;
    let hash = token_hash(code);
    let Some(stored) = server.store.code(&hash).await? else {
        return Err(OAuthError::invalid_grant("the authorization code is unknown"));
    };
    let redemption = CodeRedemption {
        client_id: &client.id,
        redirect_uri: params.get("redirect_uri"),
        code_verifier: params.get("code_verifier"),
    };
    match stored.decide(&redemption, now) {
        CodeDecision::Redeem => {}
        CodeDecision::Replay => return Err(replay(server, &stored, &client.id, stored.session_id.clone(), now).await),
        CodeDecision::Refuse(why) => return Err(OAuthError::invalid_grant(why)),
        CodeDecision::Pkce(e) => return Err(OAuthError::invalid_grant(e.to_string())),
    }
    if let Some(resource) = params.get("resource")
        && resource.trim_end_matches('/') != stored.resource.trim_end_matches('/')
    {
        return Err(OAuthError::invalid_target("resource differs from the one in the authorization request"));
    }
    let grant = Grant {
        id: SessionId::generate(),
        account_id: stored.account_id.clone(),
        client_id: client.id.clone(),
        scopes: stored.scopes.clone(),
        restrictions: stored.restrictions.clone(),
        kind: GrantKind::OAuth,
        resource: stored.resource.clone(),
        auth_time: stored.auth_time,
        created_at: now,
        revoked_at: None,
        dpop_jkt: proof.map(|p| p.jkt.clone()),
    };
    let (refresh, record) = issue::refresh_token(server, &grant.id, &client.id, &grant.scopes, None, now);
    if !server.store.redeem_code(&hash, &grant, &record, now).await? {
        // A concurrent redemption won the compare-and-set: this one is the replay.
        let session = server.store.code(&hash).await?.and_then(|c| c.session_id);
        return Err(replay(server, &stored, &client.id, session, now).await);
    }
    let access = issue::access_token(server, &grant, &grant.scopes, grant.dpop_jkt.as_deref(), now)?;
    tracing::info!(session = %grant.id, client = %client.id, account = %grant.account_id, "authorization code redeemed");
    server.emit(
        server
            .event("auth.code_redeemed", Outcome::Success)
            .account(&grant.account_id)
            .client(&client.id)
            .session(&grant.id),
    );
    server.emit(
        server
            .event("token.issued", Outcome::Success)
            .account(&grant.account_id)
            .client(&client.id)
            .session(&grant.id)
            .detail("grant_type", "authorization_code")
            .detail("scope", grant.scopes.to_string()),
    );
    let id_token = issue::id_token(server, &grant, &grant.scopes, &access, stored.nonce.as_deref(), now).await?;
    Ok(issue::token_response(server, access, grant.dpop_jkt.is_some(), refresh, &grant.scopes, id_token))
}

/// Revokes everything issued from a replayed code. The revocation is committed although the request fails.
async fn replay(
    server: &AuthServer,
    code: &AuthorizationCode,
    presenter: &ClientId,
    session: Option<SessionId>,
    now: i64,
) -> OAuthError {
    let mut event = server
        .event("auth.code_replay", Outcome::Failure)
        .account(&code.account_id)
        .client(presenter)
        .detail("issued_to", code.client_id.to_string())
        .detail("session_revoked", session.is_some());
    if let Some(sid) = &session {
        event = event.session(sid);
    }
    server.emit(event);
    if let Some(sid) = session {
        match server.store.revoke_session(&sid, RevocationReason::CodeReplay, now).await {
            Ok(_) => {
                server.verifier.forget_session(&sid);
                tracing::warn!(session = %sid, "authorization code replayed: session revoked");
            }
            Err(e) => {
                tracing::error!(error = %e, session = %sid, "could not revoke the session of a replayed code")
            }
        }
    }
    OAuthError::invalid_grant("the authorization code was already used; every token issued from it is revoked")
}
