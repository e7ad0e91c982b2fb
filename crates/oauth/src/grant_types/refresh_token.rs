//! `grant_type=refresh_token`: single use, rotated on every exchange. A token presented twice is a
//! replay: the exchange fails and the whole session is revoked (committed even though the answer is an error).

use axum::response::Response;
use bk_crypto::secret::token_hash;
use bk_domain::audit::Outcome;
use bk_domain::client::Client;
use bk_domain::grant::Grant;
use bk_domain::grant::RevocationReason;
use bk_domain::ids::ClientId;
use bk_domain::refresh::RefreshDecision;

use crate::error::OAuthError;
use crate::form::Params;
use crate::{AuthServer, issue};

/// Rotates a refresh token. A grant bound to a DPoP key (RFC 9449 §5) refreshes only with a proof
/// by that key — checked before anything else, so a stolen refresh token without the key changes
/// nothing (not even the replay detection). An unbound grant's refresh with a proof gets an access
/// token bound to the proof's key.
pub async fn exchange(
    server: &AuthServer,
    client: &Client,
    params: &Params,
    proof: Option<&bk_access::dpop::Proof>,
) -> Result<Response, OAuthError> {
    let now = server.clock.now();
    let presented = params.require("refresh_token")?;
    let hash = token_hash(presented);
    let Some((token, grant)) = server.store.refresh_token(&hash).await? else {
        return Err(OAuthError::invalid_grant("the refresh token is unknown"));
    };
    if let Some(bound) = &grant.dpop_jkt {
        let nonce = server.verifier.dpop.nonce(now);
        match proof {
            None => {
                return Err(OAuthError::dpop(
                    bk_access::dpop::Refusal::Proof(bk_access::dpop::DpopError::Missing(
                        "DPoP header (this refresh token is DPoP-bound)",
                    )),
                    nonce,
                ));
            }
            Some(p) if !bk_crypto::secret::ct_eq(p.jkt.as_bytes(), bound.as_bytes()) => {
                return Err(OAuthError::dpop(bk_access::dpop::Refusal::Proof(bk_access::dpop::DpopError::Key), nonce)
                    .described(
                        "the DPoP proof was made with another key than the one this refresh token is bound to",
                    ));
            }
            Some(_) => {}
        }
    }
    let mut jkt = grant.dpop_jkt.clone().or_else(|| proof.map(|p| p.jkt.clone()));
    let grace = server.lifetimes.refresh_reuse_grace;
    let mut token = token;
    let mut decision = token.decide(&client.id, grant.is_active(), params.get("scope"), now, grace);
    if decision == RefreshDecision::RetryFromSuccessor {
        // A retry of an exchange whose answer was lost (a crash, a dropped connection): continue
        // from the successor if nobody has used it yet; otherwise it is a replay after all.
        decision = match server.store.refresh_successor(&token.id).await? {
            Some(next) if next.used_at.is_none() => {
                let d = next.decide(&client.id, grant.is_active(), params.get("scope"), now, 0);
                token = next;
                tracing::info!(session = %grant.id, "refresh token reused within the grace period: continuing from its successor");
                d
            }
            _ => RefreshDecision::Replay,
        };
    }
    let scopes = match decision {
        RefreshDecision::RetryFromSuccessor => return Err(replay(server, &grant, &client.id, now).await),
        RefreshDecision::Rotate { scopes } => scopes,
        RefreshDecision::Replay => return Err(replay(server, &grant, &client.id, now).await),
        RefreshDecision::Refuse(why) => return Err(OAuthError::invalid_grant(why)),
        RefreshDecision::InvalidScope => {
            return Err(OAuthError::invalid_scope("the requested scope is not within the scope of the grant"));
        }
    };
    if !grant.accepts_resource(params.get("resource")) {
        return Err(OAuthError::invalid_target("resource differs from the one the session was granted for"));
    }
    // Bridge mode: a token the company backend refused since the last refresh is verified again
    // before anything rotates (a refusal ends the grant; a failure changes nothing).
    if let Some(bridge) = &server.bridge {
        bridged_refresh(server, bridge.as_ref(), &grant, &client.id, now).await?;
    }
    // RFC 6749 §6: the new refresh token keeps the scope of the old one; only the access token narrows.
    let (refresh, record) =
        issue::refresh_token(server, &token.session_id, &client.id, &token.scopes, Some(token.id.clone()), now);
    if !server.store.rotate_refresh_token(&token.id, &record, now).await? {
        // Another exchange of the same token won the compare-and-set: this one is a replay.
        return Err(replay(server, &grant, &client.id, now).await);
    }
    // A grant that starts using DPoP at a refresh is bound from now on (RFC 9449 §5): its new refresh
    // token refreshes only with this key. Done once the presented refresh token proved good, so a
    // spent or stolen one cannot bind someone's grant to another key.
    if grant.dpop_jkt.is_none()
        && let Some(p) = proof
    {
        // Should a concurrent refresh have bound it to another key first, the tokens follow that binding.
        jkt = server.store.bind_session_dpop(&grant.id, &p.jkt).await?.or(jkt);
    }
    let access = issue::access_token(server, &grant, &scopes, jkt.as_deref(), now)?;
    let id_token = issue::id_token(server, &grant, &scopes, &access, None, now).await?;
    server.emit(
        server
            .event("token.refreshed", Outcome::Success)
            .account(&grant.account_id)
            .client(&client.id)
            .session(&grant.id)
            .detail("scope", scopes.to_string()),
    );
    Ok(issue::token_response(server, access, jkt.is_some(), refresh, &scopes, id_token))
}

async fn replay(server: &AuthServer, grant: &Grant, presenter: &ClientId, now: i64) -> OAuthError {
    let session = &grant.id;
    server.emit(
        server
            .event("token.refresh_replay", Outcome::Failure)
            .account(&grant.account_id)
            .client(presenter)
            .session(session)
            .detail("session_revoked", true),
    );
    match server.store.revoke_session(session, RevocationReason::RefreshReplay, now).await {
        Ok(_) => {
            server.verifier.forget_session(session);
            tracing::warn!(session = %session, "refresh token replayed: session revoked");
        }
        Err(e) => {
            tracing::error!(error = %e, session = %session, "could not revoke the session of a replayed refresh token")
        }
    }
    OAuthError::invalid_grant("the refresh token was already used; the session is revoked")
}

/// Bridge mode at a refresh: tokens marked after a refusal are verified again.
async fn bridged_refresh(
    server: &AuthServer,
    bridge: &dyn bk_domain::bridge::SignInBridge,
    grant: &Grant,
    presenter: &ClientId,
    now: i64,
) -> Result<(), OAuthError> {
    use bk_domain::bridge::BridgeRefusal;
    match bridge.at_refresh(grant).await {
        Ok(()) => Ok(()),
        Err(BridgeRefusal::Denied { provider, why }) => {
            // The backend no longer lets this user in: the grant ends, and its token with it.
            match server.store.revoke_session(&grant.id, RevocationReason::BridgeRefused, now).await {
                Ok(_) => server.verifier.forget_session(&grant.id),
                Err(e) => {
                    tracing::error!(error = %e, session = %grant.id, "could not revoke a session the backend refused")
                }
            }
            tracing::info!(session = %grant.id, provider = %provider, why = %why, "bridge mode: refused at re-verification; session revoked");
            server.emit(
                server
                    .event("auth.bridge_refused", Outcome::Denied)
                    .account(&grant.account_id)
                    .client(presenter)
                    .session(&grant.id)
                    .detail("provider", provider.clone())
                    .detail("session_revoked", true),
            );
            Err(OAuthError::invalid_grant(format!(
                "{provider} no longer grants this account access; the session is ended: sign in again"
            )))
        }
        Err(BridgeRefusal::Unavailable { provider, why }) => {
            tracing::warn!(session = %grant.id, provider = %provider, why = %why, "bridge mode: re-verification failed for now");
            Err(OAuthError::temporarily_unavailable(format!(
                "{provider} could not verify the account now; retry the refresh later"
            )))
        }
        Err(BridgeRefusal::Store(e)) => Err(e.into()),
    }
}
