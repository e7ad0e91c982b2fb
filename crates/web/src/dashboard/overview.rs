//! `GET /account`: the overview — the email address and whether it is verified, how many services
//! are connected, which apps hold access, how many tokens exist, and the latest activity.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_domain::grant::GrantKind;
use bk_domain::ports::{AuditQuery, ConnectionQuery};
use minijinja::context;
use serde::Serialize;

use super::activity::{EventView, event_views};
use super::{Dashboard, Flash, OVERVIEW, When, ser, viewer, when};

/// How many apps and events the overview lists (the other pages list them all).
const APPS_SHOWN: usize = 5;
const EVENTS_SHOWN: i64 = 10;

#[derive(Serialize)]
struct AppLine {
    id: String,
    name: String,
    created: When,
}

pub async fn page(State(s): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    let v = match viewer(&s, &headers, OVERVIEW).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let who = v.caller();
    let connected =
        match s.api.store.list_connections(&v.account.id, &ConnectionQuery { limit: 1, ..Default::default() }).await {
            Ok(page) => page.total,
            Err(e) => return s.unavailable("counting connections", &e),
        };
    let grants = match bk_api::grants_of(&s.api, &who).await {
        Ok(g) => g,
        Err(p) => return s.unavailable("listing authorized apps", &p.detail),
    };
    let apps: Vec<AppLine> = grants
        .iter()
        .filter(|g| g.grant.kind == GrantKind::OAuth)
        .map(|g| AppLine { id: g.grant.id.to_string(), name: g.client_name.clone(), created: when(g.grant.created_at) })
        .collect();
    let tokens = match bk_api::live_pats(&s.api, &who).await {
        Ok(p) => p.len(),
        Err(p) => return s.unavailable("listing tokens", &p.detail),
    };
    let recent = match bk_api::newest_own_audit(&s.api, &who, &AuditQuery::default(), EVENTS_SHOWN).await {
        Ok(events) => events,
        Err(p) => return s.unavailable("reading recent activity", &p.detail),
    };
    let recent: Vec<EventView> = event_views(&s, &recent).await;
    s.render(
        &v,
        StatusCode::OK,
        "account_overview.html",
        OVERVIEW,
        Flash::default(),
        context! {
            account_email => v.account.email.clone(),
            email_verified => v.account.email_verified(),
            member_since => ser(when(v.account.created_at)),
            connected,
            apps_total => apps.len(),
            apps => ser(apps.iter().take(APPS_SHOWN).collect::<Vec<_>>()),
            tokens,
            mcp_url => format!("{}/mcp", s.api.issuer),
            recent => ser(&recent),
        },
    )
}
