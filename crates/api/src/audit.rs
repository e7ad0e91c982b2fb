//! The audit log's HTTP face: `GET /api/v1/audit` (the caller's own rows, scope `account`),
//! `GET /api/v1/admin/audit` (operators: every row), `GET /api/v1/events` (a live SSE stream of
//! the caller's own events; operators see all). Asking for another account's rows yields an empty
//! page, exactly like an account with none — never an error that would confirm it exists.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::StoredAuditEvent;
use bk_domain::ids::AccountId;
use bk_domain::ports::AuditQuery;
use bk_domain::scope::Scope;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::Problem;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Unix seconds.
    since: Option<i64>,
    until: Option<i64>,
    kind: Option<String>,
    limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    account_id: Option<String>,
}

fn query_of(p: &AuditParams) -> Result<AuditQuery, Problem> {
    let limit = p.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "limit must be 1 to 1000"));
    }
    if let Some(k) = &p.kind
        && (k.is_empty() || k.len() > 64)
    {
        return Err(Problem::invalid("kind", "kind must be 1 to 64 characters"));
    }
    Ok(AuditQuery {
        since_ms: p.since.map(|s| s.saturating_mul(1000)),
        until_ms: p.until.map(|s| s.saturating_mul(1000)),
        kind: p.kind.clone(),
        after_seq: p.cursor,
        limit,
    })
}

fn page(rows: Vec<StoredAuditEvent>, limit: i64) -> Response {
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.seq)).flatten();
    Json(json!({"events": rows, "next_cursor": next})).into_response()
}

pub async fn tenant_audit(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Query(p): Query<AuditParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let q = query_of(&p)?;
    if p.account_id.as_deref().is_some_and(|a| a != account_id.as_str()) {
        return Ok(page(Vec::new(), q.limit));
    }
    let rows = server.store.query_audit(Some(account_id), &q).await?;
    Ok(page(rows, q.limit))
}

pub async fn admin_audit(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Query(p): Query<AuditParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    if !matches!(who, Caller::Operator { .. }) {
        return Err(Problem::forbidden("the operator audit log needs an operator token"));
    }
    let q = query_of(&p)?;
    let tenant = p.account_id.map(AccountId::from_string);
    let rows = server.store.query_audit(tenant.as_ref(), &q).await?;
    Ok(page(rows, q.limit))
}

pub async fn events(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let only: Option<AccountId> = match &who {
        Caller::Operator { .. } => None,
        _ => Some(who.person_with(Scope::Account)?.0.clone()),
    };
    let feed = BroadcastStream::new(server.audit.subscribe());
    let closing = server.audit.closing();
    let stream = feed.filter_map(move |item| match item {
        Ok(e) if only.is_none() || e.event.account_id.as_ref() == only.as_ref() => Some(Ok::<_, Infallible>(
            Event::default().event("audit").id(e.seq.to_string()).json_data(&*e).unwrap_or_default(),
        )),
        // Another tenant's event, or a lagging subscriber (events skipped): nothing to send.
        _ => None,
    });
    let stream = futures_util::StreamExt::take_until(stream, closing);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
