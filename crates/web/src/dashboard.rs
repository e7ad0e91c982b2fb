//! The account dashboard (`/account/…`): a signed-in person's own place — overview, authorized
//! apps, personal access tokens, the account's audit log, browser sessions. Server-rendered, no
//! inline scripts; everything goes through the same code as the REST API (`bk_api`) acting as
//! `Caller::Browser`, so quotas, ceilings, tenant checks and audit are the same.
//!
//! Every page needs a live browser sign-in (else `303 /login?next=<the page>`); every form is a
//! POST bound to the session by its CSRF token (a stale or forged one gets "This form has
//! expired" and changes nothing); every id a form names is looked up with the signed-in account
//! first, so another account's grant, token or browser session answers 404, exactly like none.
//! Only the activity page runs a script (`/static/dashboard.js`, its live tail), and only it
//! allows one in its CSP.

mod activity;
mod apps;
mod overview;
mod security;
mod tokens;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bk_access::browser::BrowserSession;
use bk_api::{Api, Caller, Problem};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::StoredAuditEvent;
use bk_domain::ports::AuditQuery;
use bk_domain::restrictions::{ProviderPermission, Restrictions};
use minijinja::Value;
use serde::Serialize;

use crate::pages::{field, session_of, signed_in, with_cookie};
use crate::{WebState, see_other};

/// The dashboard's templates (added to the page environment).
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("account_layout.html", include_str!("templates/account_layout.html")),
    ("account_macros.html", include_str!("templates/account_macros.html")),
    ("account_overview.html", include_str!("templates/account_overview.html")),
    ("account_apps.html", include_str!("templates/account_apps.html")),
    ("account_tokens.html", include_str!("templates/account_tokens.html")),
    ("account_token_created.html", include_str!("templates/account_token_created.html")),
    ("account_activity.html", include_str!("templates/account_activity.html")),
    ("account_security.html", include_str!("templates/account_security.html")),
];

/// The pages, in the order the navigation shows them (the connections page is its own module).
pub(crate) const OVERVIEW: &str = "/account";
pub(crate) const APPS: &str = "/account/apps";
pub(crate) const TOKENS: &str = "/account/tokens";
pub(crate) const ACTIVITY: &str = "/account/activity";
pub(crate) const SECURITY: &str = "/account/security";
const NAV: &[(&str, &str)] = &[
    ("Overview", OVERVIEW),
    ("Connected services", "/connections"),
    ("Apps", APPS),
    ("Tokens", TOKENS),
    ("Activity", ACTIVITY),
    ("Security", SECURITY),
];

/// How many of the account's newest audit events "last used" is looked up in.
const LAST_USED_WINDOW: i64 = 200;

/// What the dashboard routes need: the pages' state and the management API's services.
pub struct Dashboard {
    pub web: Arc<WebState>,
    pub api: Arc<Api>,
}

pub fn router(web: Arc<WebState>, api: Arc<Api>) -> Router {
    Router::new()
        .route(OVERVIEW, get(overview::page))
        .route(APPS, get(apps::page))
        .route("/account/apps/{id}/revoke", post(apps::revoke))
        .route(TOKENS, get(tokens::page).post(tokens::create))
        .route("/account/tokens/{id}/revoke", post(tokens::revoke))
        .route(ACTIVITY, get(activity::page))
        .route(SECURITY, get(security::page))
        .route("/account/sessions/{handle}/end", post(security::end_one))
        .route("/account/sessions/end-all", post(security::end_all))
        .route("/static/dashboard.js", get(script))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(Arc::new(Dashboard { web, api }))
}

/// Marks a response whose page runs `/static/dashboard.js` (its CSP allows that script and the
/// event stream it reads, from this origin only).
#[derive(Clone, Copy)]
struct RunsScript;

/// The pages' headers; forms may only post to this site; the activity page may run its script.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = crate::page_security_headers(req, next).await;
    let csp = if res.extensions().get::<RunsScript>().is_some() {
        "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    } else {
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors 'none'"
    };
    res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
    res
}

/// `/static/dashboard.js`: the activity page's live tail.
async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        include_str!("../static/dashboard.js"),
    )
        .into_response()
}

/// The person looking at a dashboard page: signed in here, in this browser, or handed off by a
/// white-label app (then the pages carry its brand and a way back to it).
pub(crate) struct Viewer {
    pub account: Account,
    pub session: BrowserSession,
    /// Set for a handed-off sign-in: the app's client and its "back" URL.
    pub app: Option<(bk_domain::client::Client, String)>,
}

impl Viewer {
    pub fn caller(&self) -> Caller {
        Caller::Browser { account_id: self.account.id.clone(), email: self.account.email.clone() }
    }
}

/// `303 /login?next=<page>` (with a fresh anonymous cookie when the browser has none, so the
/// sign-in form's CSRF token works at once).
fn to_login(s: &Dashboard, headers: &HeaderMap, page: &str) -> Response {
    let (session, fresh) = session_of(&s.web, headers);
    let next: String = url::form_urlencoded::byte_serialize(page.as_bytes()).collect();
    let res = see_other(&format!("/login?next={next}"));
    if fresh { with_cookie(res, session.set_cookie(&s.web.auth.cookie_keys)) } else { res }
}

/// A handed-off sign-in (a white-label app's `account` handoff: its cookie covers `/account`),
/// checked server-side like any; never for the security page, which needs a sign-in here.
async fn handed_off(s: &Dashboard, headers: &HeaderMap, page: &str) -> Option<Viewer> {
    if page.starts_with(SECURITY) {
        return None;
    }
    let now = s.web.auth.clock.now();
    let h = bk_api::handoff::HandoffCookie::read(headers, &s.web.auth.cookie_keys, now)?;
    let (account, _) = signed_in(&s.web, &h.session).await?;
    let client = s.web.auth.store.client(&h.client_id).await.ok().flatten()?;
    if client.role != bk_domain::client::ClientRole::WhitelabelCustomer {
        return None;
    }
    Some(Viewer { account, session: h.session, app: Some((client, h.back)) })
}

/// The signed-in viewer of a page, or the way to the sign-in page (back to `page` after).
pub(crate) async fn viewer(s: &Dashboard, headers: &HeaderMap, page: &str) -> Result<Viewer, Response> {
    if let Some(v) = handed_off(s, headers, page).await {
        return Ok(v);
    }
    let now_ms = s.web.auth.clock.now_ms();
    let Some(session) = BrowserSession::read(headers, &s.web.auth.cookie_keys, now_ms.div_euclid(1000)) else {
        return Err(to_login(s, headers, page));
    };
    let Some((account, _)) = signed_in(&s.web, &session).await else {
        return Err(to_login(s, headers, page));
    };
    let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
    s.web.browser_sessions.seen(&session, user_agent, now_ms).await;
    Ok(Viewer { account, session, app: None })
}

/// The viewer of a form POST made from `page`: the form must carry this session's CSRF token
/// (checked before anything else is read), and the session must still be signed in.
pub(crate) async fn form_viewer(
    s: &Dashboard,
    headers: &HeaderMap,
    form: &[(String, String)],
    page: &str,
) -> Result<Viewer, Response> {
    let keys = &s.web.auth.cookie_keys;
    // A handed-off form carries the handed-off session's token.
    if let Some(v) = handed_off(s, headers, page).await
        && field(form, "csrf_token").is_some_and(|t| v.session.csrf_ok(keys, t))
    {
        return Ok(v);
    }
    let now = s.web.auth.clock.now();
    let Some(session) = BrowserSession::read(headers, keys, now) else {
        return Err(crate::pages::form_expired(&s.web));
    };
    if !field(form, "csrf_token").is_some_and(|t| session.csrf_ok(keys, t)) {
        return Err(crate::pages::form_expired(&s.web));
    }
    let Some((account, _)) = signed_in(&s.web, &session).await else {
        return Err(to_login(s, headers, page));
    };
    Ok(Viewer { account, session, app: None })
}

/// Anything serializable as a template value.
pub(crate) fn ser<T: Serialize>(v: T) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// A message shown at the top of a page.
#[derive(Default)]
pub(crate) struct Flash {
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl Flash {
    pub fn notice(text: impl Into<String>) -> Self {
        Self { notice: Some(text.into()), error: None }
    }
    pub fn error(text: impl Into<String>) -> Self {
        Self { notice: None, error: Some(text.into()) }
    }
}

#[derive(Serialize)]
struct NavItem {
    label: &'static str,
    href: &'static str,
    current: bool,
}

/// The navigation, with `current` marked (without the security page for a handed-off sign-in).
fn nav(current: &str, handed_off: bool) -> Vec<NavItem> {
    NAV.iter()
        .filter(|(_, href)| !(handed_off && *href == SECURITY))
        .map(|(label, href)| NavItem { label, href, current: *href == current })
        .collect()
}

/// A page's template context: its own values plus what the layout needs (the navigation with the
/// current page marked, who is signed in, the sign-out form's token, the flash).
fn page_context(current: &str, v: &Viewer, csrf_token: &str, flash: Flash, ctx: Value) -> Value {
    let layout = minijinja::context! {
        nav => ser(nav(current, v.app.is_some())),
        email => v.account.email.clone(),
        csrf_token,
        notice => flash.notice,
        error => flash.error,
        brand => v.app.as_ref().and_then(|(client, _)| crate::brand_of(client)),
        back => v.app.as_ref().map(|(_, back)| back.clone()),
    };
    minijinja::context! { ..layout, ..ctx }
}

impl Dashboard {
    /// Renders a dashboard page: `ctx` plus what the layout needs (navigation, who is signed in,
    /// the sign-out form's token, the flash).
    pub(crate) fn render(
        &self,
        v: &Viewer,
        status: StatusCode,
        template: &str,
        current: &str,
        flash: Flash,
        ctx: Value,
    ) -> Response {
        let csrf_token = v.session.csrf_token(&self.web.auth.cookie_keys);
        self.web.page(status, template, page_context(current, v, &csrf_token, flash, ctx))
    }

    pub(crate) fn unavailable(&self, what: &str, e: &dyn std::fmt::Display) -> Response {
        tracing::error!(error = %e, "{what} failed");
        self.web.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The server could not do this right now. Try again in a moment.",
        )
    }

    pub(crate) fn not_found(&self, what: &str) -> Response {
        self.web.message(StatusCode::NOT_FOUND, "Not found", &format!("There is no such {what} in this account."))
    }

    /// When each of the account's sessions (grants, PATs' own sessions) last showed in its audit
    /// log, among the newest [`LAST_USED_WINDOW`] events: tool calls, token refreshes, … Unknown
    /// when older (the page says so).
    pub(crate) async fn last_used(&self, v: &Viewer) -> HashMap<String, i64> {
        let q = AuditQuery::default();
        match bk_api::newest_own_audit(&self.api, &v.caller(), &q, LAST_USED_WINDOW).await {
            Ok(events) => last_used_of(&events),
            Err(p) => {
                tracing::warn!(error = %p.detail, "reading recent activity for last use failed");
                HashMap::new()
            }
        }
    }
}

/// Session id → newest `at_ms` among `events`.
fn last_used_of(events: &[StoredAuditEvent]) -> HashMap<String, i64> {
    let mut out: HashMap<String, i64> = HashMap::new();
    for e in events {
        if let Some(sid) = &e.event.actor.session_id {
            let at = out.entry(sid.clone()).or_insert(e.event.at_ms);
            *at = (*at).max(e.event.at_ms);
        }
    }
    out
}

/// A time for the pages: `2026-12-03 15:40 UTC`, and the `datetime` attribute of its `<time>`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct When {
    pub text: String,
    pub iso: String,
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's days-to-civil).
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01 (the inverse of [`civil`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as shown on the pages (to the minute).
pub(crate) fn when(t: UnixTime) -> When {
    let (y, m, d) = civil(t.div_euclid(86_400));
    let secs = t.rem_euclid(86_400);
    let (h, min, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    When {
        text: format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02} UTC"),
        iso: format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z"),
    }
}

/// Unix milliseconds as the activity list shows them (to the second).
pub(crate) fn when_ms(at_ms: i64) -> When {
    let t = at_ms.div_euclid(1000);
    let w = when(t);
    let secs = t.rem_euclid(86_400);
    let text = format!("{}:{:02} UTC", w.text.trim_end_matches(" UTC"), secs % 60);
    When { text, iso: w.iso }
}

/// `YYYY-MM-DD` (a date input's value) → Unix seconds at 00:00 UTC that day.
pub(crate) fn parse_date(s: &str) -> Option<UnixTime> {
    let mut it = s.trim().splitn(3, '-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    // 2026-02-31 is not a day: it must read back as itself.
    (civil(days) == (y, m, d)).then_some(days * 86_400)
}

/// Unix seconds → `YYYY-MM-DD` (UTC).
pub(crate) fn date_of(t: UnixTime) -> String {
    let (y, m, d) = civil(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// What a grant's restrictions allow, in words, for the apps and tokens pages.
#[derive(Serialize, Debug, PartialEq, Eq)]
pub(crate) struct RestrictionsView {
    /// `(provider, permission in words)` for the providers named.
    providers: Vec<(String, &'static str)>,
    /// What every other service gets.
    others: &'static str,
    agents: IdsView,
    knowledge_bases: IdsView,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub(crate) struct IdsView {
    all: bool,
    ids: Vec<String>,
}

fn permission_words(p: ProviderPermission) -> &'static str {
    match p {
        ProviderPermission::ReadWrite => "read and write",
        ProviderPermission::Read => "read only",
        ProviderPermission::Disabled => "no access",
    }
}

pub(crate) fn restrictions_view(r: &Restrictions, name_of: impl Fn(&str) -> String) -> RestrictionsView {
    let ids = |v: &Option<Vec<String>>| IdsView { all: v.is_none(), ids: v.clone().unwrap_or_default() };
    RestrictionsView {
        providers: r.provider_permissions.iter().map(|(p, perm)| (name_of(p), permission_words(*perm))).collect(),
        others: permission_words(r.default_provider_permission),
        agents: ids(&r.allowed_agent_ids),
        knowledge_bases: ids(&r.allowed_knowledge_base_ids),
    }
}

/// A problem's detail as a sentence for a page.
pub(crate) fn sentence(p: &Problem) -> String {
    let mut d = p.detail.clone();
    if let Some(first) = d.get(..1) {
        let upper = first.to_uppercase();
        d.replace_range(..1, &upper);
    }
    if !d.ends_with('.') {
        d.push('.');
    }
    d
}

#[cfg(test)]
mod tests;
