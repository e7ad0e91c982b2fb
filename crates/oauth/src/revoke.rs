//! `POST /api/v1/auth/revoke` (RFC 7009). Revoking any token of a session revokes the whole session
//! (its refresh-token family and, within a second, its access tokens). Unknown tokens, and tokens of
//! other clients, get 200 too: the answer reveals nothing.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::token_hash;
use bk_domain::grant::RevocationReason;
use bk_domain::ids::SessionId;

use crate::error::OAuthError;
use crate::form::Params;
use crate::issue::REFRESH_TOKEN_PREFIX;
use crate::{AuthServer, client_auth};

pub async fn revoke(
    State(server): State<Arc<AuthServer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let params = Params::parse(&headers, &body)?;
    let (client, _) =
        client_auth::authenticate(&server, &headers, &params, peer.ip(), client_auth::Endpoint::Revocation).await?;
    let token = params.require("token")?;
    let hint = params.get("token_type_hint");
    if let Some(h) = hint
        && !matches!(h, "access_token" | "refresh_token")
    {
        return Err(OAuthError::unsupported_token_type(format!(
            "token_type_hint {} is not supported",
            h.chars().take(40).collect::<String>()
        )));
    }
    let session = if token.starts_with(REFRESH_TOKEN_PREFIX) {
        server
            .store
            .refresh_token(&token_hash(token))
            .await?
            .filter(|(t, _)| t.client_id == client.id)
            .map(|(t, _)| t.session_id)
    } else {
        match server.verifier.decode_unchecked_expiry(token).filter(|c| c.client_id == client.id.as_str()) {
            // RFC 7009 §2.2.1: a token that hangs off no session cannot be revoked by itself.
            Some(c) if c.acts_for_no_account() => {
                return Err(OAuthError::unsupported_token_type(
                    "an unbound machine client's access token cannot be revoked by itself: it hangs off no \
                     session and lives at most the access-token lifetime; deleting the client, or taking \
                     client_credentials away from it, ends all of them",
                ));
            }
            // An exchanged token hangs off the session of the person's grant: revoking it ends
            // that session, as revoking any of its tokens does.
            c => c.map(|c| SessionId::from_string(c.sid)),
        }
    };
    if let Some(sid) = session {
        if server.store.revoke_session(&sid, RevocationReason::RevokedByClient, server.clock.now()).await? {
            tracing::info!(session = %sid, client = %client.id, "session revoked by its client");
            server.emit(
                server.event("token.revoked", bk_domain::audit::Outcome::Success).client(&client.id).session(&sid),
            );
        }
        server.verifier.forget_session(&sid);
    }
    Ok((StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response())
}
