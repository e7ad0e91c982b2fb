//! `GET /account/apps`: the apps that hold access to the account — each grant of an OAuth client
//! with the client's name and where it sends the person back to, its scopes, provider permissions
//! and agent / knowledge-base restrictions, when it was made and last used — and
//! `POST /account/apps/{id}/revoke`, which revokes one through the same code as
//! `DELETE /api/v1/sessions/{id}` (`bk_api::revoke_grant`): its tokens are refused everywhere
//! within a second, and every PAT made with them goes too.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_domain::client::{Client, ClientOrigin};
use bk_domain::grant::GrantKind;
use bk_domain::ids::{ClientId, SessionId};
use bk_domain::ports::SessionSummary;
use bk_domain::scope::Scope;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::{
    APPS, Dashboard, Flash, RestrictionsView, Viewer, When, form_viewer, restrictions_view, ser, viewer, when,
};
use crate::pages::form_pairs;
use crate::see_other;

#[derive(Serialize)]
pub(crate) struct ScopeView {
    pub name: &'static str,
    pub description: &'static str,
}

pub(crate) fn scope_views(scopes: impl Iterator<Item = Scope>) -> Vec<ScopeView> {
    scopes.map(|s| ScopeView { name: s.as_str(), description: s.describe() }).collect()
}

#[derive(Serialize)]
struct AppView {
    id: String,
    name: String,
    /// Where the app sends the person back to (the hosts of its redirect URIs).
    hosts: Vec<String>,
    /// Who registered the client, when not the operator.
    registered: Option<&'static str>,
    scopes: Vec<ScopeView>,
    restrictions: RestrictionsView,
    created: When,
    last_used: Option<When>,
}

/// The distinct hosts of a client's redirect URIs (for a client known only by its metadata
/// document URL, that URL's host).
fn hosts_of(client_id: &ClientId, client: Option<&Client>) -> Vec<String> {
    let mut hosts: Vec<String> = Vec::new();
    let uris: Vec<&str> = match client {
        Some(c) => c.redirect_uris.iter().map(String::as_str).collect(),
        None => vec![client_id.as_str()],
    };
    for u in uris {
        if let Some(h) = url::Url::parse(u).ok().and_then(|u| u.host_str().map(str::to_owned))
            && !hosts.contains(&h)
        {
            hosts.push(h);
        }
    }
    hosts
}

fn registered_by(client: Option<&Client>) -> Option<&'static str> {
    match client.map(|c| c.origin) {
        Some(ClientOrigin::Dynamic) => Some("It registered itself (dynamic registration)."),
        Some(ClientOrigin::Document) => Some("It is described by its own metadata document."),
        _ => None,
    }
}

async fn app_views(s: &Dashboard, grants: &[SessionSummary], last_used: &HashMap<String, i64>) -> Vec<AppView> {
    let mut clients: HashMap<ClientId, Option<Client>> = HashMap::new();
    let mut out = Vec::new();
    for g in grants.iter().filter(|g| g.grant.kind == GrantKind::OAuth) {
        let id = &g.grant.client_id;
        if !clients.contains_key(id) {
            let c = s.api.store.client(id).await.ok().flatten();
            clients.insert(id.clone(), c);
        }
        let client = clients.get(id).and_then(Option::as_ref);
        let provider_name =
            |p: &str| s.api.catalog.get(p).map(|p| p.display.name.clone()).unwrap_or_else(|| p.to_owned());
        out.push(AppView {
            id: g.grant.id.to_string(),
            name: g.client_name.clone(),
            hosts: hosts_of(id, client),
            registered: registered_by(client),
            scopes: scope_views(g.grant.scopes.iter()),
            restrictions: restrictions_view(&g.grant.restrictions, provider_name),
            created: when(g.grant.created_at),
            last_used: last_used.get(g.grant.id.as_str()).map(|ms| when(ms.div_euclid(1000))),
        });
    }
    out
}

#[derive(Deserialize, Default)]
pub struct AppsQuery {
    revoked: Option<String>,
}

async fn render(s: &Dashboard, v: &Viewer, status: StatusCode, flash: Flash) -> Response {
    let grants = match bk_api::grants_of(&s.api, &v.caller()).await {
        Ok(g) => g,
        Err(p) => return s.unavailable("listing authorized apps", &p.detail),
    };
    let last_used = s.last_used(v).await;
    let apps = app_views(s, &grants, &last_used).await;
    s.render(v, status, "account_apps.html", APPS, flash, context! { apps => ser(&apps) })
}

pub async fn page(State(s): State<Arc<Dashboard>>, headers: HeaderMap, Query(q): Query<AppsQuery>) -> Response {
    let v = match viewer(&s, &headers, APPS).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let flash = if q.revoked.is_some() {
        Flash::notice("Access revoked. The app's tokens no longer work.")
    } else {
        Flash::default()
    };
    render(&s, &v, StatusCode::OK, flash).await
}

/// `POST /account/apps/{id}/revoke`.
pub async fn revoke(
    State(s): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form, APPS).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let who = v.caller();
    let sid = SessionId::from_string(id);
    // Only an app's grant is revoked here (a token's session goes with its token, on the tokens
    // page); the revocation itself looks the grant up with this account first.
    let is_app = match bk_api::grants_of(&s.api, &who).await {
        Ok(grants) => grants.iter().any(|g| g.grant.id == sid && g.grant.kind == GrantKind::OAuth),
        Err(p) => return s.unavailable("listing authorized apps", &p.detail),
    };
    if !is_app {
        return s.not_found("app");
    }
    match bk_api::revoke_grant(&s.api, &who, &sid).await {
        Ok(()) => see_other(&format!("{APPS}?revoked=1")),
        Err(p) if p.status == StatusCode::NOT_FOUND => s.not_found("app"),
        Err(p) if p.status.is_server_error() => s.unavailable("revoking an app", &p.detail),
        Err(p) => render(&s, &v, StatusCode::BAD_REQUEST, Flash::error(super::sentence(&p))).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_distinct_and_come_from_the_redirect_uris() {
        let mut c = Client {
            id: ClientId::from_string("cli_1"),
            name: "n".into(),
            client_type: bk_domain::client::ClientType::Public,
            role: bk_domain::client::ClientRole::ThirdParty,
            origin: ClientOrigin::Dynamic,
            redirect_uris: vec![
                "https://app.example/cb".into(),
                "https://app.example/other".into(),
                "http://127.0.0.1:1234/cb".into(),
            ],
            allowed_scopes: bk_domain::scope::ScopeSet::all(),
            allowed_providers: None,
            domains: vec![],
            branding: None,
            secret: None,
            owner: None,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(hosts_of(&c.id, Some(&c)), vec!["app.example", "127.0.0.1"]);
        assert_eq!(registered_by(Some(&c)), Some("It registered itself (dynamic registration)."));
        c.origin = ClientOrigin::Manual;
        assert_eq!(registered_by(Some(&c)), None);
        let doc = ClientId::from_string("https://tool.example/client.json");
        assert_eq!(hosts_of(&doc, None), vec!["tool.example"]);
    }
}
