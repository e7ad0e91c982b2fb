//! `GET /account/activity`: the account's own audit log, through the same query as
//! `GET /api/v1/audit` (`bk_api::own_audit`): filtered by kind and date range (UTC days), oldest
//! first, a page at a time (the cursor is the last row's sequence number), or the newest page of
//! the range. On the newest page a small script (`/static/dashboard.js`) appends new events as
//! they happen, read from the account's live stream (`GET /api/v1/events`, opened with the
//! session cookie); everything else works without it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_api::{AuditFilter, AuditPage};
use bk_domain::audit::StoredAuditEvent;
use bk_domain::ids::ClientId;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{ACTIVITY, Dashboard, Flash, RunsScript, When, date_of, parse_date, ser, viewer, when_ms};

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// Days the page shows when no date is chosen: the last week.
const DEFAULT_DAYS: i64 = 7;
/// The most characters of one detail value shown.
const MAX_DETAIL_CHARS: usize = 200;
/// The client every personal access token's session belongs to.
const PAT_CLIENT: &str = "cli_personal_access_token";
/// The most details shown per event.
const MAX_DETAILS: usize = 12;

/// The event kinds a person sees in their log, in words (the filter's suggestions, and the live
/// tail's labels). A kind not listed is shown as it is.
pub(crate) const KINDS: &[(&str, &str)] = &[
    ("auth.signin", "Signed in"),
    ("auth.signout", "Signed out"),
    ("auth.consent", "Approved an app"),
    ("auth.code_issued", "App authorization started"),
    ("auth.code_redeemed", "App received its tokens"),
    ("auth.code_replay", "An authorization code was used twice"),
    ("token.issued", "Token issued"),
    ("token.refreshed", "Token refreshed"),
    ("token.refresh_replay", "A refresh token was used twice"),
    ("token.revoked", "Token revoked"),
    ("session.revoked", "App access revoked"),
    ("pat.created", "Personal access token created"),
    ("pat.revoked", "Personal access token revoked"),
    ("mcp.tools_call", "Tool called"),
    ("mcp.resources_read", "Resource read"),
    ("mcp.prompts_get", "Prompt used"),
    ("grant.narrowed", "App access narrowed"),
    ("connection.initiated", "Connection started"),
    ("connection.created", "Service connected"),
    ("connection.deleted", "Service disconnected"),
    ("connection.failed", "Connection failed"),
    ("connection.refreshed", "Service credential refreshed"),
    ("connection.status_changed", "Connection status changed"),
    ("client.created", "Client created"),
    ("client.updated", "Client updated"),
    ("client.deleted", "Client deleted"),
    ("client.secret_rotated", "Client secret rotated"),
    ("account.signup", "Sign-up"),
    ("account.password_changed", "Password changed"),
    ("account.password_reset_requested", "Password reset requested"),
    ("account.password_reset", "Password reset"),
    ("account.email_verification_sent", "Verification link sent"),
    ("account.email_verified", "Email address verified"),
    ("handoff.issued", "App opened your connections"),
    ("handoff.redeemed", "App handoff used"),
    ("ratelimit.refused", "Refused: too many attempts"),
];

pub(crate) fn kind_label(kind: &str) -> Option<&'static str> {
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, l)| *l)
}

/// One audit event as the pages show it.
#[derive(Serialize, Debug)]
pub(crate) struct EventView {
    pub seq: i64,
    pub at: When,
    pub kind: String,
    pub label: Option<&'static str>,
    pub outcome: &'static str,
    /// Who acted, in words: the browser, an app (by name), a personal access token.
    pub by: Option<String>,
    pub target: Option<String>,
    pub ip: Option<String>,
    pub details: Vec<(String, String)>,
}

fn bounded(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control()).take(MAX_DETAIL_CHARS).collect();
    if s.chars().count() > MAX_DETAIL_CHARS {
        out.push('…');
    }
    out
}

fn detail_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => bounded(s),
        other => bounded(&other.to_string()),
    }
}

/// The events as shown, with the names of the apps that acted (looked up once per client).
pub(crate) async fn event_views(s: &Dashboard, events: &[StoredAuditEvent]) -> Vec<EventView> {
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    for e in events {
        if let Some(c) = &e.event.actor.client_id
            && !names.contains_key(c)
        {
            let name = s.api.store.client(&ClientId::from_string(c.clone())).await.ok().flatten().map(|c| c.name);
            names.insert(c.clone(), name);
        }
    }
    events.iter().map(|e| event_view(e, &names)).collect()
}

fn event_view(e: &StoredAuditEvent, names: &HashMap<String, Option<String>>) -> EventView {
    let ev = &e.event;
    let via_browser = ev.details.get("via").and_then(|v| v.as_str()) == Some("browser");
    let by = if let Some(c) = &ev.actor.client_id {
        Some(match names.get(c).cloned().flatten() {
            _ if c == PAT_CLIENT => "a personal access token".to_owned(),
            Some(name) => format!("app {name}"),
            None => format!("app {c}"),
        })
    } else if via_browser {
        Some("this site, in a browser".to_owned())
    } else {
        None
    };
    let details = match &ev.details {
        serde_json::Value::Object(m) => m
            .iter()
            .filter(|(k, _)| k.as_str() != "via")
            .take(MAX_DETAILS)
            .map(|(k, v)| (bounded(k), detail_text(v)))
            .collect(),
        _ => Vec::new(),
    };
    EventView {
        seq: e.seq,
        at: when_ms(ev.at_ms),
        kind: bounded(&ev.kind),
        label: kind_label(&ev.kind),
        outcome: ev.outcome.as_str(),
        by,
        target: ev.target.as_deref().map(bounded),
        ip: ev.ip.clone(),
        details,
    }
}

#[derive(Deserialize, Default)]
pub struct ActivityQuery {
    kind: Option<String>,
    /// `YYYY-MM-DD`, UTC, inclusive.
    from: Option<String>,
    to: Option<String>,
    /// The last row of the previous page (a number; anything else is ignored).
    cursor: Option<String>,
    /// Set: the newest page of the range instead of its first.
    latest: Option<String>,
}

/// The filter as the form shows it back, and the query string of the same filter.
#[derive(Serialize)]
struct FilterView {
    kind: String,
    from: String,
    to: String,
    query: String,
}

pub async fn page(State(s): State<Arc<Dashboard>>, headers: HeaderMap, Query(q): Query<ActivityQuery>) -> Response {
    let v = match viewer(&s, &headers, &page_path(&q)).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let now = s.web.auth.clock.now();
    let today = now.div_euclid(86_400) * 86_400;
    let mut problems: Vec<String> = Vec::new();
    // Bounded before it is used or shown back (the filter refuses more than 64 characters).
    let kind =
        q.kind.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(|k| k.chars().take(65).collect::<String>());
    let date = |text: &Option<String>, name: &str, problems: &mut Vec<String>| -> Option<i64> {
        let t = text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
        let parsed = parse_date(t);
        if parsed.is_none() {
            problems.push(format!("The {name} date must be a day such as 2026-01-31."));
        }
        parsed
    };
    let cursor = q.cursor.as_deref().and_then(|c| c.trim().parse::<i64>().ok());
    let from_given = date(&q.from, "from", &mut problems);
    let to = date(&q.to, "to", &mut problems);
    // With no start chosen, the last week (so the first page is not the account's first day).
    let from = from_given.unwrap_or(today - (DEFAULT_DAYS - 1) * 86_400);
    let filter = AuditFilter {
        since: Some(from),
        // The "to" day is included: the range ends at the next midnight.
        until: to.map(|t| t + 86_400),
        kind: kind.clone(),
        limit: Some(PAGE_SIZE),
        cursor,
    };
    let latest = q.latest.is_some() && cursor.is_none();
    let query = match filter.query() {
        Ok(query) => query,
        Err(p) => {
            problems.push(super::sentence(&p));
            AuditFilter { kind: None, ..filter.clone() }.query().unwrap_or_default()
        }
    };
    let who = v.caller();
    let page = if latest {
        match bk_api::newest_own_audit(&s.api, &who, &query, PAGE_SIZE).await {
            Ok(mut rows) => {
                rows.reverse();
                Ok(AuditPage { events: rows, next_cursor: None })
            }
            Err(p) => Err(p),
        }
    } else {
        bk_api::own_audit(&s.api, &who, &query).await
    };
    let page = match page {
        Ok(p) => p,
        Err(p) => return s.unavailable("reading the audit log", &p.detail),
    };
    let filter_view = FilterView {
        kind: kind.clone().unwrap_or_default(),
        from: date_of(from),
        to: to.map(date_of).unwrap_or_default(),
        query: filter_query(kind.as_deref(), Some(from).filter(|_| from_given.is_some()), to),
    };
    // The newest rows are on this page when it is not full; new ones can only follow when the
    // range reaches today.
    let last_page = page.next_cursor.is_none();
    let live = last_page && to.is_none_or(|t| t >= today);
    let next = page.next_cursor.map(|c| with_param(&filter_view.query, "cursor", &c.to_string()));
    let newest = (!latest && (page.next_cursor.is_some() || cursor.is_some()))
        .then(|| with_param(&filter_view.query, "latest", "1"));
    let last_seq = page.events.last().map(|e| e.seq).unwrap_or(0);
    let events = event_views(&s, &page.events).await;
    let kinds: Vec<(&str, &str)> = KINDS.to_vec();
    let flash = if problems.is_empty() { Flash::default() } else { Flash::error(problems.join(" ")) };
    let status = if problems.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let mut res = s.render(
        &v,
        status,
        "account_activity.html",
        ACTIVITY,
        flash,
        context! {
            filter => ser(&filter_view),
            events => ser(&events),
            kinds,
            latest,
            continued => cursor.is_some(),
            next,
            newest,
            live,
            last_seq,
        },
    );
    if live {
        res.extensions_mut().insert(RunsScript);
    }
    res
}

/// The page's path with its query (where sign-in sends the person back to).
fn page_path(q: &ActivityQuery) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("kind", &q.kind), ("from", &q.from), ("to", &q.to)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            ser.append_pair(k, &v.chars().take(64).collect::<String>());
        }
    }
    let query = ser.finish();
    if query.is_empty() { ACTIVITY.to_owned() } else { format!("{ACTIVITY}?{query}") }
}

/// `/account/activity?kind=…&from=…&to=…` for a filter (dates as the form writes them).
fn filter_query(kind: Option<&str>, from: Option<i64>, to: Option<i64>) -> String {
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    if let Some(k) = kind {
        ser.append_pair("kind", k);
    }
    if let Some(f) = from {
        ser.append_pair("from", &date_of(f));
    }
    if let Some(t) = to {
        ser.append_pair("to", &date_of(t));
    }
    let query = ser.finish();
    if query.is_empty() { ACTIVITY.to_owned() } else { format!("{ACTIVITY}?{query}") }
}

fn with_param(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut ser = url::form_urlencoded::Serializer::new(String::new());
    ser.append_pair(key, value);
    format!("{path}{sep}{}", ser.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filter() {
        let q = filter_query(Some("pat.created"), Some(86_400), None);
        assert_eq!(q, "/account/activity?kind=pat.created&from=1970-01-02");
        assert_eq!(with_param(&q, "cursor", "42"), "/account/activity?kind=pat.created&from=1970-01-02&cursor=42");
        assert_eq!(with_param(ACTIVITY, "latest", "1"), "/account/activity?latest=1");
        let back = page_path(&ActivityQuery {
            kind: Some("a&b".into()),
            to: Some("2026-01-02".into()),
            ..ActivityQuery::default()
        });
        assert_eq!(back, "/account/activity?kind=a%26b&to=2026-01-02");
    }

    #[test]
    fn every_kind_has_words() {
        assert_eq!(kind_label("pat.created"), Some("Personal access token created"));
        assert_eq!(kind_label("something.new"), None);
        let mut seen = std::collections::HashSet::new();
        assert!(KINDS.iter().all(|(k, _)| seen.insert(*k)), "no kind listed twice");
    }
}
