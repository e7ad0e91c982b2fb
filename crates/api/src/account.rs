//! `/api/v1/account` and `/api/v1/sessions`: the caller's account and the apps it authorized
//! (each revocable; its tokens stop working within a second). [`grants_of`] and [`revoke_grant`]
//! are what the REST handlers and the account dashboard's apps page both call.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::grant::RevocationReason;
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::ports::SessionSummary;
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{PathParam, Problem};

/// The caller's account.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountView {
    pub id: AccountId,
    /// Absent for an account made by an Ethereum wallet that has not added an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// The caller's account.
#[utoipa::path(
    get,
    path = "/api/v1/account",
    operation_id = "getAccount",
    tag = "account",
    description = "The caller's account. Scope `account`.",
    security(("bearer" = ["account"])),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn account(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let a = server.store.account(account_id).await?.ok_or_else(|| Problem::not_found("account"))?;
    let email = Some(a.email).filter(|e| !bk_domain::wallet::is_placeholder_email(e));
    Ok(Json(AccountView { id: a.id, email, created_at: a.created_at }).into_response())
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

/// One grant of the account: an app it authorized, or a personal access token's own session.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: SessionId,
    pub client_id: ClientId,
    pub client_name: String,
    /// `oauth` (an app) or `pat` (a personal access token).
    #[schema(examples("oauth", "pat"))]
    pub kind: &'static str,
    pub scopes: Vec<&'static str>,
    pub restrictions: Restrictions,
    /// Unix seconds.
    pub created_at: i64,
}

impl SessionView {
    fn of(s: &SessionSummary) -> Self {
        Self {
            id: s.grant.id.clone(),
            client_id: s.grant.client_id.clone(),
            client_name: s.client_name.clone(),
            kind: s.grant.kind.as_str(),
            scopes: s.grant.scopes.iter().map(|x| x.as_str()).collect(),
            restrictions: s.grant.restrictions.clone(),
            created_at: s.grant.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<SessionView>,
}

/// The apps the account authorized, and its personal access tokens' sessions.
#[utoipa::path(
    get,
    path = "/api/v1/sessions",
    operation_id = "listSessions",
    tag = "account",
    description = "The account's live grants (authorized apps and personal access tokens' own sessions), newest \
        first. Scope `account`.",
    security(("bearer" = ["account"])),
    responses(
        (status = 200, description = "The live grants", body = SessionList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn sessions(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let list = grants_of(&server, &who).await?;
    Ok(Json(SessionList { sessions: list.iter().map(SessionView::of).collect() }).into_response())
}

/// Revokes one of the account's grants.
#[utoipa::path(
    delete,
    path = "/api/v1/sessions/{id}",
    operation_id = "revokeSession",
    tag = "account",
    description = "Revokes one of the account's grants: its tokens are refused on every instance within a second, \
        and every personal access token made with them goes too. Another account's grant is not found. Scope \
        `account`.",
    params(("id" = String, Path, description = "The session (grant) id, `ses_…`")),
    security(("bearer" = ["account"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn revoke_session(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    revoke_grant(&server, &who, &SessionId::from_string(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
