//! The operator's accounts API (`/api/v1/admin/accounts…`, an operator token only): list, show,
//! disable, enable, delete. Every route checks the operator token before it reads anything, so a
//! person's token — whatever its scopes — learns nothing (403 on every route, for every id). Disabling
//! revokes everything the account holds in one transaction and drops this instance's cached view of
//! it at once (other instances see it within a second); deleting is irreversible and must be
//! confirmed with `?confirm=<account id>`. [`account_json`] and the `*_event` builders are shared with
//! the command line (`bridgekeeper admin account …`), which acts on the database directly.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::account::{
    AccountEnabling, AccountErasure, AccountOverview, AccountQuery, AccountRevocation, AccountStatus,
    MAX_ACCOUNTS_PAGE, MAX_EMAIL_BYTES,
};
use bk_domain::audit::{AuditEvent, Outcome};
use bk_domain::browser_session::BrowserSessionEnd;
use bk_domain::ids::AccountId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::openapi::AccountStatusName;
use crate::problem::{PathParam, Problem};

/// The longest account id looked up (ids are `acc_` and 32 hex digits): anything longer is not found
/// without a query.
const MAX_ACCOUNT_ID_BYTES: usize = 64;

/// An account as operators see it (the REST API and the command line's `--format json`). Never its
/// password hash.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminAccountView {
    pub id: AccountId,
    pub email: String,
    pub email_verified: bool,
    /// Unix seconds.
    pub created_at: i64,
    #[schema(value_type = AccountStatusName)]
    pub status: &'static str,
    /// Unix seconds.
    pub disabled_at: Option<i64>,
    /// Unix seconds.
    pub deleted_at: Option<i64>,
    /// Unrevoked OAuth grants (authorized apps).
    pub live_grants: u64,
    /// Unrevoked, unexpired personal access tokens.
    pub live_pats: u64,
    /// Connected services.
    pub connections: u64,
}

impl AdminAccountView {
    pub fn of(o: &AccountOverview) -> Self {
        let a = &o.account;
        Self {
            id: a.id.clone(),
            email: a.email.clone(),
            email_verified: a.email_verified(),
            created_at: a.created_at,
            status: a.status().as_str(),
            disabled_at: a.disabled_at,
            deleted_at: a.deleted_at,
            live_grants: o.live_grants,
            live_pats: o.live_pats,
            connections: o.connections,
        }
    }
}

/// [`AdminAccountView`] as JSON (the command line prints it).
pub fn account_json(o: &AccountOverview) -> Value {
    serde_json::to_value(AdminAccountView::of(o)).unwrap_or_default()
}

/// A page of accounts, newest first.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountPage {
    pub accounts: Vec<AdminAccountView>,
    #[schema(minimum = 1, maximum = 4294967295_i64, value_type = i64)]
    pub page: u32,
    #[schema(minimum = 1, maximum = 100, value_type = i64)]
    pub limit: u32,
    /// Accounts matching the filter, on every page.
    pub total: u64,
    pub total_pages: u64,
}

/// `account.disabled`: what was revoked (counts, never a token or the account's email).
pub fn disabled_event(e: AuditEvent, id: &AccountId, r: &AccountRevocation) -> AuditEvent {
    e.account(id)
        .target(id)
        .detail("already_disabled", !r.newly_disabled)
        .detail("sessions_revoked", r.sessions.len())
        .detail("pats_revoked", r.pats)
        .detail("browser_sessions_ended", r.browser_sessions)
}

/// `account.enabled` (a failure when the account is deleted).
pub fn enabled_event(e: AuditEvent, id: &AccountId, outcome: AccountEnabling) -> AuditEvent {
    let e = e.account(id).target(id);
    match outcome {
        AccountEnabling::Enabled => e.detail("already_active", false),
        AccountEnabling::AlreadyActive => e.detail("already_active", true),
        AccountEnabling::Deleted => AuditEvent { outcome: Outcome::Failure, ..e }.detail("reason", "account_deleted"),
    }
}

/// `account.deleted`: what was revoked and erased (counts only).
pub fn deleted_event(e: AuditEvent, id: &AccountId, x: &AccountErasure) -> AuditEvent {
    e.account(id)
        .target(id)
        .detail("already_deleted", !x.newly_deleted)
        .detail("sessions_revoked", x.revoked.sessions.len())
        .detail("connections_erased", x.connections)
        .detail("pats_erased", x.pats)
        .detail("email_links_erased", x.email_links)
        .detail("browser_sessions_erased", x.browser_sessions)
        .detail("audit_rows_redacted", x.audit_rows_redacted)
}

/// Deletes the account's connections the way their owner would (revoking each grant at its provider,
/// audited), before the account itself goes. A failure is logged: the deletion erases them anyway.
async fn revoke_connections_upstream(server: &Api, id: &AccountId, who: &Caller) -> u64 {
    let mut removed = 0;
    let query =
        bk_domain::ports::ConnectionQuery { limit: bk_domain::ports::MAX_CONNECTIONS_PAGE, ..Default::default() };
    // Each round removes what it listed, so the first page is always the next one (bounded all the same).
    for _ in 0..100 {
        let page = match server.store.list_connections(id, &query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, account = %id, "listing connections before deletion failed");
                return removed;
            }
        };
        if page.items.is_empty() {
            return removed;
        }
        for c in &page.items {
            if let Err(p) = crate::remove_connection(server, who, id, &c.id).await {
                tracing::warn!(error = %p.detail, account = %id, connection = %c.id, "removing a connection before deletion failed");
                return removed;
            }
            removed += 1;
        }
    }
    removed
}

/// The operator token's id, or 403 for anyone else (401 without a credential), before anything is read.
async fn operator(server: &Api, headers: &HeaderMap, writes: bool) -> Result<String, Problem> {
    match caller(server, headers, writes).await? {
        Caller::Operator { token_id } => Ok(token_id),
        Caller::Token(_) | Caller::Browser { .. } => {
            Err(Problem::forbidden("account administration needs an operator token"))
        }
    }
}

fn account_id(raw: String) -> Result<AccountId, Problem> {
    if raw.is_empty() || raw.len() > MAX_ACCOUNT_ID_BYTES {
        return Err(Problem::not_found("account"));
    }
    Ok(AccountId::from_string(raw))
}

async fn overview(server: &Api, id: &AccountId) -> Result<Response, Problem> {
    let o =
        server.store.account_overview(id, server.clock.now()).await?.ok_or_else(|| Problem::not_found("account"))?;
    Ok(Json(AdminAccountView::of(&o)).into_response())
}

/// Query parameters of the list, as text so each error names its parameter.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// From 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    page: Option<String>,
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// A part of the email (any case), at most 254 bytes.
    email: Option<String>,
    #[param(value_type = Option<AccountStatusName>, inline)]
    status: Option<String>,
}

fn query_of(raw: Option<&str>) -> Result<AccountQuery, Problem> {
    let p: ListParams = serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("query").to_owned();
        Problem::invalid(&field, format!("the query is not valid: {msg}"))
    })?;
    let page = match p.page.as_deref().map(str::parse::<u32>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return Err(Problem::invalid("page", "page must be a whole number from 1")),
    };
    let limit = match p.limit.as_deref().map(str::parse::<u32>) {
        None => 20,
        Some(Ok(n)) if (1..=MAX_ACCOUNTS_PAGE).contains(&n) => n,
        Some(_) => return Err(Problem::invalid("limit", "limit must be a whole number from 1 to 100")),
    };
    let email = match p.email {
        Some(e) if e.len() > MAX_EMAIL_BYTES => {
            return Err(Problem::invalid("email", "email is at most 254 bytes"));
        }
        Some(e) if e.trim().is_empty() => None,
        e => e.map(|e| e.trim().to_lowercase()),
    };
    let status = p
        .status
        .as_deref()
        .map(|s| {
            AccountStatus::parse(s)
                .ok_or_else(|| Problem::invalid("status", "status must be one of active, disabled, deleted"))
        })
        .transpose()?;
    Ok(AccountQuery { email_contains: email, status, page, limit })
}

/// `GET /api/v1/admin/accounts?page=&limit=&email=&status=`: newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/accounts",
    operation_id = "adminListAccounts",
    summary = "Lists accounts",
    tag = "admin",
    description = "Every account, newest first, filtered by a part of the email and by status. An operator token.",
    params(ListParams),
    security(("operator" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = AccountPage),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    operator(&server, &headers, false).await?;
    let q = query_of(raw.as_deref())?;
    let page = server.store.list_accounts(&q, server.clock.now()).await?;
    Ok(Json(AccountPage {
        accounts: page.items.iter().map(AdminAccountView::of).collect(),
        page: q.page,
        limit: q.limit,
        total: page.total,
        total_pages: page.total.div_ceil(u64::from(q.limit)),
    })
    .into_response())
}

/// `GET /api/v1/admin/accounts/{id}`.
#[utoipa::path(
    get,
    path = "/api/v1/admin/accounts/{id}",
    operation_id = "adminGetAccount",
    summary = "One account",
    tag = "admin",
    description = "One account. An operator token.",
    params(("id" = String, Path, description = "The account id, `acc_…`")),
    security(("operator" = [])),
    responses(
        (status = 200, description = "The account", body = AdminAccountView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    operator(&server, &headers, false).await?;
    overview(&server, &account_id(id)?).await
}

/// Drops what this instance has cached about the account's sessions and browser sessions, so its
/// revoked tokens and cookies are refused here at once.
async fn forget(server: &Api, id: &AccountId, r: &AccountRevocation, now: i64) {
    for sid in &r.sessions {
        server.verifier.forget_session(sid);
    }
    // The store has ended them already; this drops the cache (and ends one signed in meanwhile).
    if let Err(e) = server.browser_sessions.end_all_of(id, BrowserSessionEnd::SignedOut, now).await {
        tracing::warn!(account = %id, error = %e, "ending a disabled account's browser sessions again failed");
    }
}

/// `POST /api/v1/admin/accounts/{id}/disable`: idempotent; answers the account.
#[utoipa::path(
    post,
    path = "/api/v1/admin/accounts/{id}/disable",
    operation_id = "adminDisableAccount",
    summary = "Disables an account",
    tag = "admin",
    description = "Disables an account: every grant, personal access token and browser session it holds is revoked \
        at once, and signing in is refused. Idempotent. An operator token.",
    params(("id" = String, Path, description = "The account id, `acc_…`")),
    security(("operator" = [])),
    responses(
        (status = 200, description = "The account as it now is", body = AdminAccountView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn disable(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let token_id = operator(&server, &headers, true).await?;
    let id = account_id(id)?;
    let now = server.clock.now();
    let r = server.store.disable_account(&id, now).await?.ok_or_else(|| Problem::not_found("account"))?;
    forget(&server, &id, &r, now).await;
    tracing::info!(account = %id, operator = %token_id, sessions = r.sessions.len(), pats = r.pats, "account disabled");
    server.emit(disabled_event(server.event("account.disabled", Outcome::Success).operator(&token_id), &id, &r));
    overview(&server, &id).await
}

/// `POST /api/v1/admin/accounts/{id}/enable`: nothing revoked comes back; 409 for a deleted account.
#[utoipa::path(
    post,
    path = "/api/v1/admin/accounts/{id}/enable",
    operation_id = "adminEnableAccount",
    summary = "Enables an account",
    tag = "admin",
    description = "Enables a disabled account (nothing revoked comes back). A deleted account cannot be enabled \
        (409). An operator token.",
    params(("id" = String, Path, description = "The account id, `acc_…`")),
    security(("operator" = [])),
    responses(
        (status = 200, description = "The account as it now is", body = AdminAccountView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn enable(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let token_id = operator(&server, &headers, true).await?;
    let id = account_id(id)?;
    let outcome = server.store.enable_account(&id).await?.ok_or_else(|| Problem::not_found("account"))?;
    server.emit(enabled_event(server.event("account.enabled", Outcome::Success).operator(&token_id), &id, outcome));
    if outcome == AccountEnabling::Deleted {
        return Err(Problem::new(StatusCode::CONFLICT, "Account deleted", "a deleted account cannot be enabled"));
    }
    tracing::info!(account = %id, operator = %token_id, "account enabled");
    overview(&server, &id).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// The account id again: deleting cannot be undone.
    #[param(required = true)]
    confirm: Option<String>,
}

/// `DELETE /api/v1/admin/accounts/{id}?confirm={id}`: irreversible; 204.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/accounts/{id}",
    operation_id = "adminDeleteAccount",
    summary = "Deletes an account",
    tag = "admin",
    description = "Deletes an account, irreversibly: its connections are revoked at their providers where they can \
        be and erased, its grants, tokens and sessions revoked, its email redacted from the audit log. The id must \
        be repeated as `confirm`. An operator token.",
    params(("id" = String, Path, description = "The account id, `acc_…`"), DeleteParams),
    security(("operator" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    params: Result<Query<DeleteParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Problem> {
    let token_id = operator(&server, &headers, true).await?;
    let confirmed = params.ok().and_then(|Query(p)| p.confirm).is_some_and(|c| c == id);
    if !confirmed {
        return Err(Problem::invalid(
            "confirm",
            "deleting an account cannot be undone: repeat its id as ?confirm=<account id>",
        ));
    }
    let id = account_id(id)?;
    let now = server.clock.now();
    // Each connection's grant is revoked at its provider first, where the provider can (best
    // effort: the rows and their ciphertexts are erased below whatever the providers answer).
    let removed = revoke_connections_upstream(&server, &id, &Caller::Operator { token_id: token_id.clone() }).await;
    // Events about the account still in the writer's buffer reach the table first, so that the
    // redaction of its email covers them.
    server.audit.flush().await;
    let mut x = server.store.delete_account(&id, now).await?.ok_or_else(|| Problem::not_found("account"))?;
    x.connections += removed;
    forget(&server, &id, &x.revoked, now).await;
    tracing::info!(account = %id, operator = %token_id, connections = x.connections, "account deleted");
    server.emit(deleted_event(server.event("account.deleted", Outcome::Success).operator(&token_id), &id, &x));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bk_domain::account::Account;
    use serde_json::json;

    #[test]
    fn the_view_never_carries_the_password_hash() {
        let mut a =
            Account::with_password(AccountId::from_string("acc_1"), "a@b.co".into(), "$argon2id$SECRET".into(), 7);
        a.disabled_at = Some(9);
        let v = account_json(&AccountOverview { account: a, live_grants: 1, live_pats: 2, connections: 3 });
        assert!(!v.to_string().contains("SECRET"), "{v}");
        assert_eq!(v["status"], "disabled");
        assert_eq!((v["emailVerified"].clone(), v["disabledAt"].clone()), (json!(false), json!(9)));
        assert_eq!(
            (v["liveGrants"].clone(), v["livePats"].clone(), v["connections"].clone()),
            (json!(1), json!(2), json!(3))
        );
    }

    #[test]
    fn list_filters_are_checked_and_named() {
        let q = query_of(Some("page=2&limit=5&email=%20Bob%40Example%20&status=disabled")).unwrap();
        assert_eq!(
            (q.page, q.limit, q.email_contains.as_deref(), q.status),
            (2, 5, Some("bob@example"), Some(AccountStatus::Disabled))
        );
        let q = query_of(None).unwrap();
        assert_eq!((q.page, q.limit, q.email_contains, q.status), (1, 20, None, None));
        for (raw, field) in [
            ("page=0", "page"),
            ("limit=101", "limit"),
            ("limit=x", "limit"),
            ("status=gone", "status"),
            ("sort=email", "sort"),
        ] {
            assert_eq!(query_of(Some(raw)).unwrap_err().field.as_deref(), Some(field), "{raw}");
        }
        let long = format!("email={}", "a".repeat(255));
        assert_eq!(query_of(Some(&long)).unwrap_err().field.as_deref(), Some("email"));
    }

    #[test]
    fn events_carry_counts_and_never_the_email() {
        let id = AccountId::from_string("acc_1");
        let r = AccountRevocation { newly_disabled: true, sessions: vec![], pats: 2, browser_sessions: 1 };
        let e = disabled_event(AuditEvent::new("account.disabled", Outcome::Success, 1).operator("opt_1"), &id, &r);
        assert_eq!((e.account_id.as_ref(), e.target.as_deref()), (Some(&id), Some("acc_1")));
        assert_eq!(e.details["pats_revoked"], 2);
        let e = enabled_event(AuditEvent::new("account.enabled", Outcome::Success, 1), &id, AccountEnabling::Deleted);
        assert_eq!(e.outcome, Outcome::Failure);
    }
}
