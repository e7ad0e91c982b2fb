//! The audit log's HTTP face: `GET /api/v1/audit` (the caller's own rows, scope `account`),
//! `GET /api/v1/admin/audit` (operators: every row), `GET /api/v1/events` (a live SSE stream of
//! the caller's own events; operators see all — re-checked twice a second, and before an event goes
//! out, so it ends within about a second of its session's revocation or its credential's expiry;
//! a signed-in browser opens it with its session cookie, as the dashboard's live tail does). Asking
//! for another account's rows yields an empty page, exactly like an account with none — never an
//! error that would confirm it exists. [`own_audit`] and [`newest_own_audit`] are what the REST
//! handler and the account dashboard both call.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::StoredAuditEvent;
use bk_domain::ids::AccountId;
use bk_domain::ports::AuditQuery;
use bk_domain::scope::Scope;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Problem, QueryParams, number_param};

/// The audit log's query parameters, as text so that each error names its parameter.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// From this time on (Unix seconds).
    #[param(value_type = Option<i64>)]
    since: Option<String>,
    /// Before this time (Unix seconds).
    #[param(value_type = Option<i64>)]
    until: Option<String>,
    /// One kind of event (`auth.signin`, `mcp.tools_call`, …).
    #[param(min_length = 1, max_length = 64)]
    kind: Option<String>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<i64>)]
    cursor: Option<String>,
    /// One account's rows (for a person, only their own account has any).
    account_id: Option<String>,
}

/// A filter on the caller's own audit log as a person asks it (times in Unix seconds), before it is
/// checked: the REST query parameters, or the dashboard's activity form.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub kind: Option<String>,
    /// 1 to [`MAX_AUDIT_PAGE`]; 100 when absent.
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// The most rows one page of the audit log holds.
pub const MAX_AUDIT_PAGE: i64 = 1000;

impl AuditFilter {
    /// The store query, or why the filter is refused (the field named).
    pub fn query(&self) -> Result<AuditQuery, Problem> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(Problem::invalid("limit", "limit must be 1 to 1000"));
        }
        if let Some(k) = &self.kind
            && (k.is_empty() || k.len() > 64)
        {
            return Err(Problem::invalid("kind", "kind must be 1 to 64 characters"));
        }
        Ok(AuditQuery {
            since_ms: self.since.map(|s| s.saturating_mul(1000)),
            until_ms: self.until.map(|s| s.saturating_mul(1000)),
            kind: self.kind.clone(),
            after_seq: self.cursor,
            limit,
        })
    }
}

fn filter_of(p: &AuditParams) -> Result<AuditFilter, Problem> {
    let seconds = |name: &str, v: &Option<String>| number_param::<i64>(name, v.as_deref(), "Unix seconds");
    Ok(AuditFilter {
        since: seconds("since", &p.since)?,
        until: seconds("until", &p.until)?,
        kind: p.kind.clone(),
        limit: number_param("limit", p.limit.as_deref(), "a whole number from 1 to 1000")?,
        cursor: number_param("cursor", p.cursor.as_deref(), "the next_cursor of the previous page")?,
    })
}

/// One page of an audit log: rows oldest first, and the cursor of the next page (`None` when this
/// page was not full, so it was the last).
#[derive(Clone, Debug)]
pub struct AuditPage {
    pub events: Vec<StoredAuditEvent>,
    pub next_cursor: Option<i64>,
}

impl AuditPage {
    fn of(events: Vec<StoredAuditEvent>, limit: i64) -> Self {
        let next_cursor = (events.len() as i64 == limit).then(|| events.last().map(|r| r.seq)).flatten();
        Self { events, next_cursor }
    }
}

/// A page of the audit log as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct AuditPageView {
    /// Oldest first.
    pub events: Vec<StoredAuditEvent>,
    /// The `cursor` of the next page; `null` when this page was the last.
    pub next_cursor: Option<i64>,
}

fn page(p: AuditPage) -> Response {
    Json(AuditPageView { events: p.events, next_cursor: p.next_cursor }).into_response()
}

/// A page of the caller's own audit log (scope `account`): what `GET /api/v1/audit` answers and the
/// dashboard's activity page shows.
pub async fn own_audit(server: &Api, who: &Caller, q: &AuditQuery) -> Result<AuditPage, Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    let rows = server.store.query_audit(Some(account_id), q).await?;
    Ok(AuditPage::of(rows, q.limit))
}

/// The newest `n` (at most [`MAX_AUDIT_PAGE`] − 1) rows of the caller's own audit log within `q`'s
/// time range and kind, newest first (`q`'s cursor and limit are not used).
pub async fn newest_own_audit(
    server: &Api,
    who: &Caller,
    q: &AuditQuery,
    n: i64,
) -> Result<Vec<StoredAuditEvent>, Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    let store = server.store.clone();
    let rows = newest_by(q, n, server.clock.now_ms(), |probe| {
        let store = store.clone();
        let tenant = account_id.clone();
        async move { store.query_audit(Some(&tenant), &probe).await }
    })
    .await?;
    Ok(rows)
}

/// The newest `n` rows within `q`, newest first, found with `probe` — a store query that answers
/// the oldest rows first (`ORDER BY seq`), a few times `n` rows at a time. It looks back from
/// the end of the range in growing windows until one holds at least `n` rows but not a full page
/// (halving between the last too-small and too-large window), so it reads a few pages, not the
/// whole log; where more than a page of rows share one millisecond it pages through them.
async fn newest_by<F, Fut, E>(q: &AuditQuery, n: i64, now_ms: i64, mut probe: F) -> Result<Vec<StoredAuditEvent>, E>
where
    F: FnMut(AuditQuery) -> Fut,
    Fut: Future<Output = Result<Vec<StoredAuditEvent>, E>>,
{
    let n = n.clamp(1, MAX_AUDIT_PAGE - 1);
    // A probe reads at most this many rows: a few times `n`, so finding 10 rows reads tens, not thousands.
    let limit = n.saturating_mul(4).clamp(64, MAX_AUDIT_PAGE).max(n + 1);
    let newest = |rows: Vec<StoredAuditEvent>| -> Vec<StoredAuditEvent> {
        let skip = rows.len().saturating_sub(n as usize);
        rows.into_iter().skip(skip).rev().collect()
    };
    let window = |since_ms: i64, after_seq: Option<i64>| AuditQuery {
        since_ms: Some(since_ms),
        until_ms: q.until_ms,
        kind: q.kind.clone(),
        after_seq,
        limit,
    };
    let floor = q.since_ms.unwrap_or(0).max(0);
    let end = q.until_ms.unwrap_or(now_ms.saturating_add(1)).max(floor);
    // [few, end) is known to hold fewer than n rows; [many, end) at least a full page.
    let (mut few, mut many): (i64, Option<i64>) = (end, None);
    let mut width: i64 = 60_000;
    loop {
        let start = match many {
            None => end.saturating_sub(width).max(floor),
            Some(m) => m + (few - m) / 2,
        };
        let rows = probe(window(start, None)).await?;
        let count = rows.len() as i64;
        if count < n {
            if start <= floor {
                return Ok(newest(rows));
            }
            few = start;
            width = width.saturating_mul(8);
        } else if count < limit {
            return Ok(newest(rows));
        } else {
            many = Some(start);
        }
        if let Some(m) = many
            && few - m <= 1
        {
            // More than a page of rows in the millisecond `m`: read on through them.
            let mut kept = std::collections::VecDeque::with_capacity(n as usize);
            let mut after = None;
            loop {
                let rows = probe(window(m, after)).await?;
                let full = rows.len() as i64 == limit;
                after = rows.last().map(|r| r.seq).or(after);
                for r in rows {
                    if kept.len() == n as usize {
                        kept.pop_front();
                    }
                    kept.push_back(r);
                }
                if !full {
                    return Ok(kept.into_iter().rev().collect());
                }
            }
        }
    }
}

/// The caller's own audit log.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "getAudit",
    tag = "audit",
    description = "The caller's own audit log, oldest first, a page at a time (follow `next_cursor`). Asking for \
        another account's rows gives an empty page. Scope `account`.",
    params(AuditParams),
    security(("bearer" = ["account"])),
    responses(
        (status = 200, description = "A page of events", body = AuditPageView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn tenant_audit(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let q = filter_of(&p)?.query()?;
    if p.account_id.as_deref().is_some_and(|a| a != account_id.as_str()) {
        return Ok(page(AuditPage::of(Vec::new(), q.limit)));
    }
    Ok(page(own_audit(&server, &who, &q).await?))
}

/// The whole audit log.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    operation_id = "adminGetAudit",
    tag = "admin",
    description = "Every account's audit log (or one account's, with `account_id`), oldest first, a page at a \
        time. An operator token.",
    params(AuditParams),
    security(("operator" = [])),
    responses(
        (status = 200, description = "A page of events", body = AuditPageView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn admin_audit(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    if !matches!(who, Caller::Operator { .. }) {
        return Err(Problem::forbidden("the operator audit log needs an operator token"));
    }
    let q = filter_of(&p)?.query()?;
    let tenant = p.account_id.map(AccountId::from_string);
    let rows = server.store.query_audit(tenant.as_ref(), &q).await?;
    Ok(page(AuditPage::of(rows, q.limit)))
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

/// The live stream of audit events.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "streamEvents",
    tag = "audit",
    description = "A live stream (Server-Sent Events) of audit events as they are recorded: the caller's own \
        (scope `account`), or everyone's (an operator token). Each is an `audit` event whose data is a stored \
        event (`StoredAuditEvent`) and whose id is its `seq`. The credential is checked again twice a second: when \
        it is revoked or expires, a last `closed` event is sent and the stream ends.",
    security(("bearer" = ["account"]), ("operator" = [])),
    responses(
        (status = 200, description = "The stream (it does not end by itself)", content_type = "text/event-stream",
            body = String),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use bk_domain::audit::{AuditEvent, Outcome};

    fn log(times: &[i64]) -> Vec<StoredAuditEvent> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| StoredAuditEvent {
                seq: i as i64 + 1,
                event: AuditEvent::new(if i % 3 == 0 { "auth.signin" } else { "mcp.tools_call" }, Outcome::Success, *t),
                prev_hash: String::new(),
                hash: String::new(),
                redacted_at: None,
            })
            .collect()
    }

    /// The store's query over a vector (oldest first, by seq), counting the probes.
    async fn newest(rows: &[StoredAuditEvent], q: &AuditQuery, n: i64, now_ms: i64) -> (Vec<i64>, usize) {
        let probes = std::cell::Cell::new(0);
        let found = newest_by(q, n, now_ms, |p: AuditQuery| {
            probes.set(probes.get() + 1);
            let out: Vec<StoredAuditEvent> = rows
                .iter()
                .filter(|r| p.since_ms.is_none_or(|s| r.event.at_ms >= s))
                .filter(|r| p.until_ms.is_none_or(|u| r.event.at_ms < u))
                .filter(|r| p.kind.as_ref().is_none_or(|k| &r.event.kind == k))
                .filter(|r| p.after_seq.is_none_or(|a| r.seq > a))
                .take(p.limit as usize)
                .cloned()
                .collect();
            async move { Ok::<_, ()>(out) }
        })
        .await
        .unwrap();
        (found.iter().map(|r| r.seq).collect(), probes.get())
    }

    fn expected(rows: &[StoredAuditEvent], q: &AuditQuery, n: usize) -> Vec<i64> {
        let mut v: Vec<i64> = rows
            .iter()
            .filter(|r| q.since_ms.is_none_or(|s| r.event.at_ms >= s))
            .filter(|r| q.until_ms.is_none_or(|u| r.event.at_ms < u))
            .filter(|r| q.kind.as_ref().is_none_or(|k| &r.event.kind == k))
            .map(|r| r.seq)
            .collect();
        v.reverse();
        v.truncate(n);
        v
    }

    #[tokio::test]
    async fn the_newest_rows_are_found_without_reading_the_whole_log() {
        let now = 1_800_000_000_000;
        // A year of events, one every 10 minutes, then a busy last hour (one a second), and a burst
        // of 2,500 in a single millisecond a day ago.
        let mut times: Vec<i64> = (0..52_560).map(|i| now - 366 * 86_400_000 + i * 600_000).collect();
        times.extend(std::iter::repeat_n(now - 86_400_000, 2_500));
        times.sort();
        times.extend((0..3_600).map(|i| now - 3_600_000 + i * 1000));
        let rows = log(&times);
        let all = AuditQuery::default();
        for n in [1, 10, 50, 300, 999] {
            let (got, probes) = newest(&rows, &all, n, now).await;
            assert_eq!(got, expected(&rows, &all, n as usize), "n = {n}");
            assert!(probes <= 40, "n = {n}: {probes} probes");
        }
        // A kind, a time range ending in the past (through the burst), a range holding fewer than n.
        let signins = AuditQuery { kind: Some("auth.signin".into()), ..AuditQuery::default() };
        assert_eq!(newest(&rows, &signins, 20, now).await.0, expected(&rows, &signins, 20));
        let past = AuditQuery { until_ms: Some(now - 86_400_000 + 1), ..AuditQuery::default() };
        assert_eq!(newest(&rows, &past, 30, now).await.0, expected(&rows, &past, 30));
        let narrow = AuditQuery { since_ms: Some(now - 2_000), until_ms: Some(now), ..AuditQuery::default() };
        assert_eq!(newest(&rows, &narrow, 10, now).await.0, expected(&rows, &narrow, 10));
        assert_eq!(newest(&rows, &narrow, 10, now).await.0.len(), 2);
        // An empty log, and one whose events are all older than any window.
        assert!(newest(&[], &all, 10, now).await.0.is_empty());
        let old = log(&[5, 6, 7]);
        assert_eq!(newest(&old, &all, 10, now).await.0, vec![3, 2, 1]);
    }

    #[test]
    fn filters_are_checked() {
        assert!(AuditFilter { limit: Some(0), ..AuditFilter::default() }.query().is_err());
        assert!(AuditFilter { limit: Some(1001), ..AuditFilter::default() }.query().is_err());
        assert!(AuditFilter { kind: Some(String::new()), ..AuditFilter::default() }.query().is_err());
        assert!(AuditFilter { kind: Some("k".repeat(65)), ..AuditFilter::default() }.query().is_err());
        let q = AuditFilter { since: Some(10), until: Some(20), cursor: Some(7), ..AuditFilter::default() }
            .query()
            .unwrap();
        assert_eq!((q.since_ms, q.until_ms, q.after_seq, q.limit), (Some(10_000), Some(20_000), Some(7), 100));
    }
}
