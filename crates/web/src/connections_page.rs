//! The connections page (`/connections`): a signed-in account's connected services — provider,
//! status, last error, when created and updated — with a connect button per provider of the
//! catalog (an API-key form for `api_key` providers), disconnect, and reconnect for expired ones.
//! Server-rendered, no JavaScript, every form CSRF-protected. Connecting and disconnecting go
//! through the same code as the REST API (`bk_api::connect_with_key`, `start_oauth2`,
//! `remove_connection`), so quotas, sealing, upstream revocation and audit are the same.
//!
//! It is also what the white-label handoff opens (`GET /connections/handoff?code=…`): the code,
//! issued by `POST /api/v1/auth/handoff/init` to a white-label client for its customer, signs the
//! browser in as that customer for this page only — a server-side browser session under a cookie
//! of its own (`bk_handoff`, path `/connections`, one hour) that the rest of the site does not
//! read — and the page is drawn in the client's branding with a "back to the app" link.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use bk_access::browser::BrowserSession;
use bk_api::handoff::{HandoffCookie, RedeemError, redeem};
use bk_api::{Api, Caller, Problem};
use bk_connections::catalog::{AuthKind, Provider};
use bk_domain::UnixTime;
use bk_domain::account::Account;
use bk_domain::audit::Outcome;
use bk_domain::client::Client;
use bk_domain::connection::{Connection, ConnectionStatus};
use bk_domain::handoff::HandoffIntent;
use bk_domain::ids::ConnectionId;
use bk_domain::ports::{ConnectionQuery, ConnectionSort, MAX_CONNECTIONS_PAGE};
use minijinja::context;
use serde::{Deserialize, Serialize};

use crate::pages::{field, form_pairs, session_of, signed_in, with_cookie};
use crate::{WebState, brand_of, see_other};

/// How long a handed-off sign-in lasts (the app hands off again after that).
const HANDOFF_SESSION_SECS: i64 = 3600;
const PAGE: &str = "/connections";

/// What the connections routes need: the pages' state and the management API's services.
pub struct ConnectionsPage {
    pub web: Arc<WebState>,
    pub api: Arc<Api>,
}

pub fn router(web: Arc<WebState>, api: Arc<Api>) -> Router {
    Router::new()
        .route(PAGE, get(page))
        .route("/connections/connect", post(connect))
        .route("/connections/{id}/disconnect", post(disconnect))
        .route(bk_api::handoff::REDEEM_PATH, get(handoff))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(Arc::new(ConnectionsPage { web, api }))
}

/// The pages' headers, except that provider logos (https URLs in the catalog) may be shown.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut res = crate::page_security_headers(req, next).await;
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data: https:; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    res
}

/// Who is looking at the page: a person signed in here, or a white-label app's customer handed off.
struct Viewer {
    account: Account,
    /// The session whose CSRF tokens the forms carry.
    session: BrowserSession,
    /// Set for a handed-off sign-in: the app's client (branding) and its "back" URL.
    app: Option<(Client, String)>,
}

impl Viewer {
    fn caller(&self) -> Caller {
        Caller::Browser { account_id: self.account.id.clone(), email: self.account.email.clone() }
    }

    /// Stamps an audit event with who acted (and through which app, when handed off).
    fn stamp(&self, e: bk_domain::audit::AuditEvent) -> bk_domain::audit::AuditEvent {
        let e = e.account(&self.account.id);
        match &self.app {
            Some((client, _)) => e.client(&client.id).detail("via", "handoff"),
            None => e.detail("via", "browser"),
        }
    }
}

/// The viewer of a request: a live handed-off sign-in first (it is the more specific), then the
/// site's own browser session.
async fn viewer(s: &ConnectionsPage, headers: &HeaderMap) -> Option<Viewer> {
    let web = &s.web;
    let now = web.auth.clock.now();
    if let Some(h) = HandoffCookie::read(headers, &web.auth.cookie_keys, now) {
        // Same server-side check as a sign-in (ended by a password change, expired, gone).
        if let Some((account, _)) = signed_in(web, &h.session).await
            && let Ok(Some(client)) = web.auth.store.client(&h.client_id).await
            && client.role == bk_domain::client::ClientRole::WhitelabelCustomer
        {
            return Some(Viewer { account, session: h.session, app: Some((client, h.back)) });
        }
    }
    let session = BrowserSession::read(headers, &web.auth.cookie_keys, now)?;
    let (account, _) = signed_in(web, &session).await?;
    Some(Viewer { account, session, app: None })
}

#[derive(Deserialize, Default)]
pub struct PageQuery {
    /// Set by the connect flow's return: the new connection and its status …
    #[serde(rename = "connectionId")]
    connection_id: Option<String>,
    status: Option<String>,
    /// … or the provider's refusal.
    error: Option<String>,
    error_description: Option<String>,
    /// Set by this page after a disconnect.
    disconnected: Option<String>,
}

#[derive(Serialize)]
struct ConnectionView {
    id: String,
    provider_id: String,
    provider_name: String,
    logo: Option<String>,
    initial: String,
    status: &'static str,
    status_label: &'static str,
    reconnect: bool,
    /// For a key provider: the key field's label (a reconnect asks for the key again).
    key_label: Option<String>,
    last_error: Option<String>,
    account_label: Option<String>,
    created: String,
    updated: String,
}

#[derive(Serialize)]
struct ProviderView {
    id: String,
    name: String,
    description: String,
    logo: Option<String>,
    initial: String,
    /// `oauth2`, `mcp`, `api_key`, `token_exchange`, or `unavailable`.
    kind: &'static str,
    key_label: Option<String>,
    key_help: Option<String>,
}

/// The first letter of a name, shown where a logo is missing or cannot load.
fn initial(name: &str) -> String {
    name.chars().find(|c| c.is_alphanumeric()).map(|c| c.to_uppercase().collect()).unwrap_or_else(|| "?".into())
}

fn logo_of(p: &Provider) -> Option<String> {
    p.display.logo_url.as_ref().map(|u| u.as_str().to_owned())
}

fn status_label(s: ConnectionStatus) -> &'static str {
    match s {
        ConnectionStatus::Active => "Connected",
        ConnectionStatus::Expired => "Expired: reconnect to use it again",
        ConnectionStatus::Revoked => "Revoked",
        ConnectionStatus::Error => "Error",
    }
}

/// `2026-12-03 15:40 UTC` (no time-zone data on the server; the page says UTC).
pub(crate) fn utc(t: UnixTime) -> String {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

fn connection_view(s: &ConnectionsPage, c: &Connection) -> ConnectionView {
    let provider = s.api.catalog.get(&c.provider_id);
    let name = provider.map(|p| p.display.name.clone()).unwrap_or_else(|| c.provider_id.clone());
    let account_label = ["email", "login", "name"]
        .iter()
        .find_map(|k| c.metadata.get(*k).and_then(|v| v.as_str()).map(str::to_owned))
        .or_else(|| c.provider_user_id.clone())
        .map(|l| l.chars().take(120).collect());
    ConnectionView {
        id: c.id.to_string(),
        provider_id: c.provider_id.clone(),
        initial: initial(&name),
        provider_name: name,
        logo: provider.and_then(|p| logo_of(p)),
        status: c.status.as_str(),
        status_label: status_label(c.status),
        reconnect: c.status != ConnectionStatus::Active && provider.is_some_and(|p| connectable(p).is_ok()),
        key_label: provider.and_then(|p| match &p.auth {
            AuthKind::ApiKey(f) => Some(f.label.clone()),
            _ => None,
        }),
        last_error: c.last_error.as_ref().map(|e| e.chars().take(300).collect()),
        account_label,
        created: utc(c.created_at),
        updated: utc(c.updated_at),
    }
}

/// Whether the page can connect this provider, or why not.
fn connectable(p: &Provider) -> Result<&'static str, String> {
    if p.missing_setting().is_some() {
        // The setting itself is named in the log at start and by the API, for the operator.
        return Err("it is not set up on this server yet".into());
    }
    match &p.auth {
        AuthKind::OAuth2(_) => Ok("oauth2"),
        AuthKind::Mcp(_) => Ok("mcp"),
        AuthKind::ApiKey(_) => Ok("api_key"),
        AuthKind::TokenExchange(_) => Ok("token_exchange"),
    }
}

fn provider_view(p: &Provider) -> ProviderView {
    let kind = connectable(p).unwrap_or("unavailable");
    let (key_label, key_help) = match &p.auth {
        AuthKind::ApiKey(f) => (Some(f.label.clone()), f.help.clone()),
        _ => (None, None),
    };
    ProviderView {
        id: p.id.clone(),
        name: p.display.name.clone(),
        description: p.display.description.clone(),
        logo: logo_of(p),
        initial: initial(&p.display.name),
        kind,
        key_label,
        key_help,
    }
}

/// A message shown at the top of the page: what just happened, in words.
struct Flash {
    notice: Option<String>,
    error: Option<String>,
}

fn flash_of(s: &ConnectionsPage, q: &PageQuery, connections: &[Connection]) -> Flash {
    let bounded = |t: &str| t.chars().filter(|c| !c.is_control()).take(200).collect::<String>();
    if let Some(error) = q.error.as_deref() {
        let what = match error {
            "access_denied" => "The service was not connected: access was denied at the provider.".to_owned(),
            "temporarily_unavailable" => "The service could not be reached. Try again in a moment.".to_owned(),
            "quota_exceeded" => "This account holds the most connections it may. Disconnect one first.".to_owned(),
            other => format!("The service was not connected ({}).", bounded(other)),
        };
        let detail = q.error_description.as_deref().map(bounded).filter(|d| !d.is_empty());
        return Flash {
            notice: None,
            error: Some(match detail {
                Some(d) => format!("{what} The provider said: {d}"),
                None => what,
            }),
        };
    }
    if let Some(id) = q.connection_id.as_deref() {
        // Only the viewer's own connection is named (another id says nothing).
        if let Some(c) = connections.iter().find(|c| c.id.as_str() == id) {
            let name =
                s.api.catalog.get(&c.provider_id).map(|p| p.display.name.clone()).unwrap_or(c.provider_id.clone());
            let replaced = connections
                .iter()
                .any(|o| o.provider_id == c.provider_id && o.id != c.id && o.status != ConnectionStatus::Active);
            let mut notice = format!("Connected {name}.");
            if q.status.as_deref() == Some("active") && replaced {
                notice.push_str(" You can now disconnect the connection it replaces.");
            }
            return Flash { notice: Some(notice), error: None };
        }
    }
    if q.disconnected.is_some() {
        return Flash { notice: Some("Disconnected.".into()), error: None };
    }
    Flash { notice: None, error: None }
}

async fn render(s: &ConnectionsPage, v: &Viewer, status: StatusCode, flash: Option<Flash>, q: &PageQuery) -> Response {
    let query = ConnectionQuery {
        sort_by: ConnectionSort::CreatedAt,
        descending: true,
        page: 1,
        limit: MAX_CONNECTIONS_PAGE,
        ..ConnectionQuery::default()
    };
    let listed = match s.api.store.list_connections(&v.account.id, &query).await {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "listing connections failed");
            return s.web.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not read your connections right now.",
            );
        }
    };
    let flash = flash.unwrap_or_else(|| flash_of(s, q, &listed.items));
    let connections: Vec<ConnectionView> = listed.items.iter().map(|c| connection_view(s, c)).collect();
    let (providers, unavailable): (Vec<ProviderView>, Vec<ProviderView>) =
        s.api.catalog.iter().map(|p| provider_view(p)).partition(|p| p.kind != "unavailable");
    let unavailable: Vec<String> = unavailable.into_iter().map(|p| p.name).collect();
    let (brand, back) = match &v.app {
        Some((client, back)) => (brand_of(client), Some(context! { name => client.name.clone(), url => back.clone() })),
        None => (None, None),
    };
    s.web.page(
        status,
        "connections.html",
        context! {
            email => v.account.email.clone(),
            connections => minijinja::Value::from(minijinja::value::Serde(&connections)),
            more => listed.total > u64::from(MAX_CONNECTIONS_PAGE),
            providers => minijinja::Value::from(minijinja::value::Serde(&providers)),
            unavailable,
            notice => flash.notice,
            error => flash.error,
            brand,
            back,
            csrf_token => v.session.csrf_token(&s.web.auth.cookie_keys),
            handed_off => v.app.is_some(),
        },
    )
}

/// `GET /connections`.
pub async fn page(State(s): State<Arc<ConnectionsPage>>, headers: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let Some(v) = viewer(&s, &headers).await else {
        let (session, fresh) = session_of(&s.web, &headers);
        let res = see_other("/login?next=%2Fconnections");
        return if fresh { with_cookie(res, session.set_cookie(&s.web.auth.cookie_keys)) } else { res };
    };
    render(&s, &v, StatusCode::OK, None, &q).await
}

/// A signed-in viewer whose form carries a valid CSRF token, or the page that says why not.
async fn form_viewer(s: &ConnectionsPage, headers: &HeaderMap, form: &[(String, String)]) -> Result<Viewer, Response> {
    let Some(v) = viewer(s, headers).await else {
        return Err(s.web.message(
            StatusCode::UNAUTHORIZED,
            "You are signed out",
            "Sign in again (or go back to the application) and try again.",
        ));
    };
    if !field(form, "csrf_token").is_some_and(|t| v.session.csrf_ok(&s.web.auth.cookie_keys, t)) {
        return Err(s.web.message(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "The page you submitted is out of date or was not sent by this site. Go back, reload the page and try again.",
        ));
    }
    Ok(v)
}

fn error_flash(message: String) -> Option<Flash> {
    Some(Flash { notice: None, error: Some(message) })
}

/// `POST /connections/connect` (`provider`, and `api_key` for key providers; `replaces`: the
/// expired connection a reconnect replaces).
pub async fn connect(State(s): State<Arc<ConnectionsPage>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let none = PageQuery::default();
    let provider_id = field(&form, "provider").unwrap_or("");
    let Some(provider) = s.api.catalog.get(provider_id).cloned() else {
        let shown: String = provider_id.chars().take(63).collect();
        return render(&s, &v, StatusCode::BAD_REQUEST, error_flash(format!("Unknown service {shown:?}.")), &none)
            .await;
    };
    if let Err(why) = connectable(&provider) {
        return render(
            &s,
            &v,
            StatusCode::BAD_REQUEST,
            error_flash(format!("{} cannot be connected: {why}.", provider.display.name)),
            &none,
        )
        .await;
    }
    // The same per-account limit as `initiate`.
    let limit = s.api.limits.connects_per_account_per_minute;
    if let Err(wait) = s.api.limiter.acquire("connect_initiate", v.account.id.as_str(), limit, 60).await {
        let msg = format!("Too many connections were started from this account. Try again in {} seconds.", wait.max(1));
        return render(&s, &v, StatusCode::TOO_MANY_REQUESTS, error_flash(msg), &none).await;
    }
    let who = v.caller();
    // Connected at once: a pasted key, or a token the provider's backend issues for the account's
    // verified email.
    let connected = match &provider.auth {
        AuthKind::ApiKey(f) => {
            let key = field(&form, "api_key").unwrap_or("").to_owned();
            if key.trim().is_empty() {
                let msg = format!("Enter your {} to connect {}.", f.label, provider.display.name);
                return render(&s, &v, StatusCode::BAD_REQUEST, error_flash(msg), &none).await;
            }
            Some(bk_api::connect_with_key(&s.api, &v.account.id, &provider.id, key).await)
        }
        AuthKind::TokenExchange(t) => Some(bk_api::connect_exchanged(&s.api, &v.account.id, &provider.id, t).await),
        AuthKind::OAuth2(_) | AuthKind::Mcp(_) => None,
    };
    if let Some(result) = connected {
        return match result {
            Ok(c) => {
                s.api.emit(
                    v.stamp(s.api.event("connection.created", Outcome::Success))
                        .target(&c.id)
                        .detail("provider", provider.id.clone()),
                );
                // A reconnect replaces the expired connection it was asked from.
                if let Some(old) = field(&form, "replaces").filter(|o| !o.is_empty()) {
                    replace(&s, &v, &who, &ConnectionId::from_string(old), &c).await;
                }
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("connectionId", c.id.as_str()).append_pair("status", c.status.as_str());
                see_other(&format!("{PAGE}?{}", q.finish()))
            }
            Err(p) => render(&s, &v, problem_status(&p), error_flash(sentence(&p)), &none).await,
        };
    }
    match &provider.auth {
        AuthKind::OAuth2(_) | AuthKind::Mcp(_) => {
            let back = match url::Url::parse(&format!("{}{PAGE}", s.api.issuer)) {
                Ok(u) => u,
                Err(_) => {
                    return s.web.message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "The server is misconfigured.");
                }
            };
            // An OAuth provider's authorization page, or a remote MCP server's authorization
            // server (discovered from the server now).
            let started = match &provider.auth {
                AuthKind::OAuth2(o) => bk_api::start_oauth2(&s.api, &who, &v.account.id, o, &provider.id, &back).await,
                AuthKind::Mcp(m) => bk_api::start_mcp(&s.api, &who, &v.account.id, m, &provider.id, &back).await,
                _ => Err(Problem::server_error()),
            };
            match started {
                Ok(url) => {
                    s.api.emit(
                        v.stamp(s.api.event("connection.initiated", Outcome::Success))
                            .detail("provider", provider.id.clone()),
                    );
                    see_other(url.as_str())
                }
                Err(p) => render(&s, &v, problem_status(&p), error_flash(sentence(&p)), &none).await,
            }
        }
        _ => s.web.message(StatusCode::INTERNAL_SERVER_ERROR, "Error", "This service cannot be connected here."),
    }
}

/// Removes the connection a reconnect replaced, if it is the viewer's, of the same provider, and not active.
async fn replace(s: &ConnectionsPage, v: &Viewer, who: &Caller, old: &ConnectionId, new: &Connection) {
    match s.api.store.connection(&v.account.id, old).await {
        Ok(Some(o)) if o.provider_id == new.provider_id && o.status != ConnectionStatus::Active => {
            if let Err(p) = bk_api::remove_connection(&s.api, who, &v.account.id, old).await {
                tracing::warn!(connection = %old, error = %p.detail, "removing a replaced connection failed");
            }
        }
        _ => {}
    }
}

fn problem_status(p: &Problem) -> StatusCode {
    if p.status.is_server_error() { p.status } else { StatusCode::BAD_REQUEST }
}

/// A problem's detail as a sentence for the page.
fn sentence(p: &Problem) -> String {
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

/// `POST /connections/{id}/disconnect`.
pub async fn disconnect(
    State(s): State<Arc<ConnectionsPage>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    match bk_api::remove_connection(&s.api, &v.caller(), &v.account.id, &ConnectionId::from_string(id)).await {
        Ok(()) => see_other(&format!("{PAGE}?disconnected=1")),
        // Another account's connection answers exactly like one that does not exist.
        Err(p) if p.status == StatusCode::NOT_FOUND => {
            s.web.message(StatusCode::NOT_FOUND, "Not found", "There is no such connection in this account.")
        }
        Err(p) => render(&s, &v, problem_status(&p), error_flash(sentence(&p)), &PageQuery::default()).await,
    }
}

#[derive(Deserialize)]
pub struct HandoffQuery {
    code: Option<String>,
}

/// `GET /connections/handoff?code=…`: redeems a white-label handoff code and opens the page.
pub async fn handoff(State(s): State<Arc<ConnectionsPage>>, Query(q): Query<HandoffQuery>) -> Response {
    let handoff = match redeem(&s.api, q.code.as_deref().unwrap_or("")).await {
        Ok(h) => h,
        Err(RedeemError::Invalid) => {
            return s.web.message(
                StatusCode::BAD_REQUEST,
                "This link has expired",
                "Links to manage your connections work once, for 30 seconds. Go back to the application and open the page again.",
            );
        }
        Err(RedeemError::Unavailable) => {
            return s.web.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not open the page right now.",
            );
        }
    };
    let now = s.web.auth.clock.now();
    let mut session = match s.web.browser_sessions.sign_in(handoff.account.id.clone(), now).await {
        Ok(session) => session,
        Err(e) => {
            tracing::error!(error = %e, "storing a handed-off browser session failed");
            return s.web.message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not open the page right now.",
            );
        }
    };
    session.expires_at = session.expires_at.min(now + HANDOFF_SESSION_SECS);
    let cookie = HandoffCookie { session, client_id: handoff.client.id.clone(), back: handoff.redirect_uri };
    let keys = &s.web.auth.cookie_keys;
    // The page, and the connect callback (an oauth2 provider sends the browser back there); for
    // the account intent, the dashboard too, where the browser lands.
    let landing = match handoff.intent {
        HandoffIntent::Connections => PAGE,
        HandoffIntent::Account => crate::dashboard::OVERVIEW,
    };
    let mut res = with_cookie(see_other(landing), cookie.encode(keys, PAGE, HANDOFF_SESSION_SECS));
    if handoff.intent == HandoffIntent::Account {
        res = with_cookie(res, cookie.encode(keys, crate::dashboard::OVERVIEW, HANDOFF_SESSION_SECS));
    }
    with_cookie(res, cookie.encode(keys, bk_api::handoff::CALLBACK_PATH, HANDOFF_SESSION_SECS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_unix_seconds() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_312_400), "2026-12-03 15:40 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn initial_is_the_first_letter() {
        assert_eq!(initial("github"), "G");
        assert_eq!(initial("  (acme)"), "A");
        assert_eq!(initial(""), "?");
    }
}
