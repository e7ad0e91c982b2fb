//! The operator's accounts API (`/api/v1/admin/accounts…`, an operator token only): list, show,
//! disable, enable, delete. Every route checks the operator token before it reads anything, so a
//! person's token — whatever its scopes — learns nothing (403 on every route, for every id). Disabling
//! revokes everything the account holds in one transaction and drops this instance's cached view of
//! it at once (other instances see it within a second); deleting is irreversible and must be
//! confirmed with `?confirm=<account id>`. [`account_json`] and the `*_event` builders are shared with
//! the command line (`bridgekeeper admin account …`), which acts on the database directly.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::account::{
    AccountEnabling, AccountErasure, AccountOverview, AccountQuery, AccountRevocation, AccountStatus,
    MAX_ACCOUNTS_PAGE, MAX_EMAIL_BYTES,
};
use bk_domain::audit::{AuditEvent, Outcome};
use bk_domain::browser_session::BrowserSessionEnd;
use bk_domain::ids::AccountId;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::Problem;

/// The longest account id looked up (ids are `acc_` and 32 hex digits): anything longer is not found
/// without a query.
const MAX_ACCOUNT_ID_BYTES: usize = 64;

/// An account as operators see it (the REST API and the command line's `--format json`). Never its
/// password hash.
pub fn account_json(o: &AccountOverview) -> Value {
    let a = &o.account;
    json!({
        "id": a.id,
        "email": a.email,
        "emailVerified": a.email_verified(),
        "createdAt": a.created_at,
        "status": a.status().as_str(),
        "disabledAt": a.disabled_at,
        "deletedAt": a.deleted_at,
        "liveGrants": o.live_grants,
        "livePats": o.live_pats,
        "connections": o.connections,
    })
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
    Ok(Json(account_json(&o)).into_response())
}

/// Query parameters of the list, as text so each error names its parameter.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListParams {
    page: Option<String>,
    limit: Option<String>,
    /// A part of the email (any case).
    email: Option<String>,
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
pub async fn list(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    operator(&server, &headers, false).await?;
    let q = query_of(raw.as_deref())?;
    let page = server.store.list_accounts(&q, server.clock.now()).await?;
    Ok(Json(json!({
        "accounts": page.items.iter().map(account_json).collect::<Vec<_>>(),
        "page": q.page,
        "limit": q.limit,
        "total": page.total,
        "totalPages": page.total.div_ceil(u64::from(q.limit)),
    }))
    .into_response())
}

/// `GET /api/v1/admin/accounts/{id}`.
pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
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
pub async fn disable(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
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
pub async fn enable(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteParams {
    confirm: Option<String>,
}

/// `DELETE /api/v1/admin/accounts/{id}?confirm={id}`: irreversible; 204.
pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
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
