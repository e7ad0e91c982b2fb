//! The audit log's HTTP face: `GET /api/v1/audit` (the caller's own rows, scope `account`),
//! `GET /api/v1/admin/audit` (operators: every row), `GET /api/v1/events` (a live SSE stream of
//! the caller's own events; operators see all — re-checked twice a second, and before an event goes
//! out, so it ends within about a second of its session's revocation or its credential's expiry). Asking for another account's rows yields an empty
//! page, exactly like an account with none — never an error that would confirm it exists.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use tokio::sync::broadcast;

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

/// How often a live stream re-checks its caller. With the verifier's own cache (500 ms) a revoked
/// session or an expired token ends the stream within about a second, the bound every bearer request has.
const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// An event arriving later than this after the last check triggers a check before it is sent.
const RECHECK_ON_EVENT_AFTER: Duration = Duration::from_millis(250);

/// Whose events a stream carries: everyone's (operators) or one account's (scope `account`).
fn stream_account(who: &Caller) -> Result<Option<AccountId>, Problem> {
    match who {
        Caller::Operator { .. } => Ok(None),
        _ => Ok(Some(who.person_with(Scope::Account)?.0.clone())),
    }
}

/// Is the credential that opened the stream still good — same principal, same session, still allowed?
/// It is checked again exactly as a new request would be (token expiry, session or PAT revocation,
/// a browser cookie's expiry), through the verifier.
async fn still_allowed(server: &Api, headers: &HeaderMap, opened_by: &Caller) -> bool {
    let Ok(now) = caller(server, headers, false).await else { return false };
    let same = match (opened_by, &now) {
        (Caller::Operator { token_id: a }, Caller::Operator { token_id: b }) => a == b,
        (Caller::Token(a), Caller::Token(b)) => a.session_id == b.session_id && a.account_id == b.account_id,
        (Caller::Browser { account_id: a, .. }, Caller::Browser { account_id: b, .. }) => a == b,
        _ => false,
    };
    same && stream_account(&now).ok() == stream_account(opened_by).ok()
}

struct LiveStream {
    server: Arc<Api>,
    headers: HeaderMap,
    opened_by: Caller,
    only: Option<AccountId>,
    feed: broadcast::Receiver<Arc<StoredAuditEvent>>,
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    recheck: tokio::time::Interval,
    checked_at: Instant,
    ended: bool,
}

impl LiveStream {
    /// The next SSE event, or None when the stream is over: the server is shutting down, or the caller's
    /// credential no longer holds (then a last `closed` event says so).
    async fn next(&mut self) -> Option<Event> {
        if self.ended {
            return None;
        }
        loop {
            tokio::select! {
                _ = &mut self.closing => return None,
                _ = self.recheck.tick() => {
                    if !self.check().await {
                        return Some(self.end());
                    }
                }
                item = self.feed.recv() => match item {
                    Ok(e) if self.only.is_none() || e.event.account_id.as_ref() == self.only.as_ref() => {
                        if self.checked_at.elapsed() >= RECHECK_ON_EVENT_AFTER && !self.check().await {
                            return Some(self.end());
                        }
                        return Some(Event::default().event("audit").id(e.seq.to_string()).json_data(&*e).unwrap_or_default());
                    }
                    // Another tenant's event, or a lagging subscriber (events skipped): nothing to send.
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }

    async fn check(&mut self) -> bool {
        self.checked_at = Instant::now();
        still_allowed(&self.server, &self.headers, &self.opened_by).await
    }

    fn end(&mut self) -> Event {
        self.ended = true;
        Event::default()
            .event("closed")
            .data(r#"{"reason":"the credential that opened this stream was revoked or has expired"}"#)
    }
}

pub async fn events(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let only = stream_account(&who)?;
    let live = LiveStream {
        feed: server.audit.subscribe(),
        closing: Box::pin(server.audit.closing()),
        recheck: {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_EVERY, RECHECK_EVERY);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        },
        checked_at: Instant::now(),
        server,
        headers,
        opened_by: who,
        only,
        ended: false,
    };
    let stream = futures_util::stream::unfold(live, |mut live| async move {
        live.next().await.map(|e| (Ok::<_, Infallible>(e), live))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}
