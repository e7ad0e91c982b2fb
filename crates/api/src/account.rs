//! `/api/v1/account` and `/api/v1/sessions`: the caller's account and the apps it authorized
//! (each revocable; its tokens stop working within a second). [`grants_of`] and [`revoke_grant`]
//! are what the REST handlers and the account dashboard's apps page both call.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::grant::RevocationReason;
use bk_domain::ids::SessionId;
use bk_domain::ports::SessionSummary;
use bk_domain::scope::Scope;
use serde_json::json;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::Problem;

pub async fn account(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let a = server.store.account(account_id).await?.ok_or_else(|| Problem::not_found("account"))?;
    Ok(Json(json!({"id": a.id, "email": a.email, "createdAt": a.created_at})).into_response())
}

/// The caller's live grants (authorized apps and PATs' own sessions), newest first.
pub async fn grants_of(server: &Api, who: &Caller) -> Result<Vec<SessionSummary>, Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    Ok(server.store.list_sessions(account_id).await?)
}

/// Revokes one of the caller's grants: its tokens are refused on every instance within a second,
/// and every PAT made with them goes too. Another account's grant is not found, exactly like one
/// that does not exist (the lookup takes the caller's account first).
pub async fn revoke_grant(server: &Api, who: &Caller, sid: &SessionId) -> Result<(), Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    match server.store.session(account_id, sid).await? {
        Some(g) if g.is_active() => {
            server.store.revoke_session(sid, RevocationReason::RevokedByUser, server.clock.now()).await?;
            server.verifier.forget_session(sid);
            tracing::info!(account = %account_id, session = %sid, "session revoked by its account");
            server.emit(who.stamp(server.event("session.revoked", bk_domain::audit::Outcome::Success)).target(sid));
            Ok(())
        }
        _ => Err(Problem::not_found("session")),
    }
}

pub async fn sessions(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let list = grants_of(&server, &who).await?;
    let out: Vec<_> = list
        .iter()
        .map(|s| {
            json!({
                "id": s.grant.id,
                "clientId": s.grant.client_id,
                "clientName": s.client_name,
                "kind": s.grant.kind.as_str(),
                "scopes": s.grant.scopes.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
                "restrictions": s.grant.restrictions,
                "createdAt": s.grant.created_at,
            })
        })
        .collect();
    Ok(Json(json!({"sessions": out})).into_response())
}

pub async fn revoke_session(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    revoke_grant(&server, &who, &SessionId::from_string(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
