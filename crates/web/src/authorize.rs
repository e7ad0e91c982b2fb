//! The browser half of the authorization endpoint: sign the person in, ask for consent (unless an
//! identical consent is remembered), then redirect to the client with a code. Each hop re-validates
//! the request from its parameters, so nothing a browser carries between hops is trusted.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_domain::client::Registrant;
use bk_oauth::authorize::{AuthorizeError, AuthorizeRequest, PARAMS};
use minijinja::context;
use serde::Serialize;

use crate::WebState;
use crate::pages::{field, form_pairs, session_of, signed_in, with_cookie};
use crate::see_other;
use bk_access::browser::BrowserSession;

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    form_pairs(q.unwrap_or("").as_bytes())
}

fn encode(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn validate(state: &WebState, pairs: &[(String, String)]) -> Result<AuthorizeRequest, Response> {
    state.auth.validate_authorize(pairs).await.map_err(|e| match e {
        AuthorizeError::Page(msg) => state.message(StatusCode::BAD_REQUEST, "This sign-in link is not valid", &msg),
        AuthorizeError::Redirect(url) => see_other(&url),
    })
}

fn has_prompt(req: &AuthorizeRequest, value: &str) -> bool {
    req.prompt.as_deref().is_some_and(|p| p.split(' ').any(|v| v == value))
}

fn error_to_client(state: &WebState, req: &AuthorizeRequest, code: &str, desc: &str) -> Response {
    let mut pairs = vec![("error", code), ("error_description", desc)];
    if let Some(s) = &req.state {
        pairs.push(("state", s));
    }
    see_other(&state.auth.response_url(&req.redirect_uri, &pairs))
}

/// `GET /api/v1/auth/authorize` (and `/oauth/authorize`).
pub async fn authorize(State(state): State<Arc<WebState>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let req = match validate(&state, &pairs).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let (s, fresh) = session_of(&state, &headers);
    let Some((account, auth_time)) = signed_in(&state, &s).await else {
        if has_prompt(&req, "none") {
            return error_to_client(&state, &req, "login_required", "the person is not signed in");
        }
        let next = format!("/api/v1/auth/authorize?{}", encode(&req.raw));
        let res = see_other(&format!("/login?{}", encode(&[("next".into(), next)])));
        return if fresh { with_cookie(res, s.set_cookie(&state.auth.cookie_keys)) } else { res };
    };
    let remembered = match remembers_consent(&state, &account.id, &req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "consent lookup failed");
            return state.branded_message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The server could not complete the request.",
                crate::brand_of(&req.client),
            );
        }
    };
    if !remembered || has_prompt(&req, "consent") {
        if has_prompt(&req, "none") {
            return error_to_client(&state, &req, "consent_required", "the person has not approved this application");
        }
        return see_other(&format!("/consent?{}", encode(&req.raw)));
    }
    issue(&state, &req, &account.id, auth_time).await
}

/// Has the person approved exactly this grant for this client before, and may that be remembered?
async fn remembers_consent(
    state: &WebState,
    account: &bk_domain::ids::AccountId,
    req: &AuthorizeRequest,
) -> Result<bool, bk_domain::ports::StoreError> {
    if !req.client.remembers_consent() {
        return Ok(false);
    }
    state.auth.store.has_consent(account, &req.client.id, &req.consent_key()).await
}

async fn issue(
    state: &WebState,
    req: &AuthorizeRequest,
    account: &bk_domain::ids::AccountId,
    auth_time: i64,
) -> Response {
    match state.auth.issue_code(req, account, auth_time).await {
        Ok(url) => see_other(&url),
        Err(bk_oauth::authorize::IssueError::Bridge(url)) => see_other(&url),
        Err(e) => {
            tracing::error!(error = %e, "issuing an authorization code failed");
            error_to_client(state, req, "server_error", "the server could not issue a code")
        }
    }
}

#[derive(Serialize)]
struct ScopeLine {
    name: &'static str,
    description: &'static str,
}

/// `GET /consent`: names the client and lists the requested scopes in plain words.
pub async fn consent_page(State(state): State<Arc<WebState>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let pairs = query_pairs(q.as_deref());
    let req = match validate(&state, &pairs).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let (s, _) = session_of(&state, &headers);
    let Some((account, _)) = signed_in(&state, &s).await else {
        let next = format!("/consent?{}", encode(&req.raw));
        return see_other(&format!("/login?{}", encode(&[("next".into(), next)])));
    };
    let scopes: Vec<ScopeLine> =
        req.scopes.iter().map(|sc| ScopeLine { name: sc.as_str(), description: sc.describe() }).collect();
    let redirect_host = url::Url::parse(&req.redirect_uri)
        .ok()
        .map(|u| u.host_str().map(str::to_owned).unwrap_or_else(|| u.scheme().to_owned()))
        .unwrap_or_default();
    let registered_by = registered_by(&state, &req.client).await;
    state.page(
        StatusCode::OK,
        "consent.html",
        context! {
            client_name => req.client.name.clone(),
            registered_by,
            email => account.email,
            scopes => minijinja::Value::from(minijinja::value::Serde(scopes)),
            redirect_host,
            params => req.raw,
            brand => crate::brand_of(&req.client),
            restrictions => restrictions_view(&req.restrictions),
            csrf_token => s.csrf_token(&state.auth.cookie_keys),
        },
    )
}

/// Who registered a client the operator has not vetted, for the consent page's warning (nothing
/// for an operator's client): the app itself (dynamic registration), the host of its metadata
/// document, or the owner's email.
async fn registered_by(state: &WebState, client: &bk_domain::client::Client) -> Option<minijinja::Value> {
    match client.registrant() {
        Registrant::Operator => None,
        Registrant::ItSelf => Some(context! { by_itself => true }),
        Registrant::Document { host } => Some(context! { by_itself => false, document_host => host }),
        Registrant::Account(owner) => {
            let email = match state.auth.store.account(&owner).await {
                Ok(Some(a)) => a.email,
                Ok(None) => "an account that no longer exists".to_owned(),
                Err(e) => {
                    tracing::error!(error = %e, "client owner lookup failed");
                    "a person with an account here".to_owned()
                }
            };
            Some(context! { by_itself => false, email })
        }
    }
}

/// `POST /consent` with `decision=approve|deny`.
pub async fn consent_decision(State(state): State<Arc<WebState>>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.auth.clock.now();
    let form = form_pairs(&body);
    let Some(s) = BrowserSession::read(&headers, &state.auth.cookie_keys, now) else {
        return state.message(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back to the application and start again.",
        );
    };
    if !field(&form, "csrf_token").is_some_and(|t| s.csrf_ok(&state.auth.cookie_keys, t)) {
        return state.message(
            StatusCode::BAD_REQUEST,
            "This form has expired",
            "Go back to the application and start again.",
        );
    }
    let pairs: Vec<(String, String)> = form.iter().filter(|(k, _)| PARAMS.contains(&k.as_str())).cloned().collect();
    let req = match validate(&state, &pairs).await {
        Ok(r) => r,
        Err(res) => return res,
    };
    let Some((account, auth_time)) = signed_in(&state, &s).await else {
        let next = format!("/api/v1/auth/authorize?{}", encode(&req.raw));
        return see_other(&format!("/login?{}", encode(&[("next".into(), next)])));
    };
    match field(&form, "decision") {
        Some("approve") => {
            if req.client.remembers_consent()
                && let Err(e) =
                    state.auth.store.remember_consent(&account.id, &req.client.id, &req.consent_key(), now).await
            {
                tracing::error!(error = %e, "remembering consent failed");
            }
            tracing::info!(account = %account.id, client = %req.client.id, scopes = %req.scopes, "consent granted");
            state.auth.emit(
                state
                    .auth
                    .event("auth.consent", bk_domain::audit::Outcome::Success)
                    .account(&account.id)
                    .client(&req.client.id)
                    .detail("scope", req.scopes.to_string()),
            );
            issue(&state, &req, &account.id, auth_time).await
        }
        Some("deny") => {
            tracing::info!(account = %account.id, client = %req.client.id, "consent denied");
            state.auth.emit(
                state
                    .auth
                    .event("auth.consent", bk_domain::audit::Outcome::Denied)
                    .account(&account.id)
                    .client(&req.client.id),
            );
            see_other(&state.auth.denied_url(&req))
        }
        _ => state.branded_message(
            StatusCode::BAD_REQUEST,
            "No decision",
            "Choose Approve or Deny.",
            crate::brand_of(&req.client),
        ),
    }
}

/// The consent page's description of a grant's restrictions, or nothing when it has none.
fn restrictions_view(r: &bk_domain::restrictions::Restrictions) -> Option<minijinja::Value> {
    if *r == bk_domain::restrictions::Restrictions::unrestricted() {
        return None;
    }
    let providers: Vec<(String, &'static str)> =
        r.provider_permissions.iter().map(|(p, perm)| (p.clone(), perm.as_str())).collect();
    Some(minijinja::context! {
        providers,
        default => r.default_provider_permission.as_str(),
        agents => r.allowed_agent_ids.clone(),
        knowledge_bases => r.allowed_knowledge_base_ids.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bk_domain::restrictions::{ProviderPermission, Restrictions};

    #[test]
    fn unrestricted_grant_shows_no_restrictions() {
        assert!(restrictions_view(&Restrictions::unrestricted()).is_none());
    }

    #[test]
    fn consent_page_names_every_restriction() {
        let mut r = Restrictions::unrestricted();
        r.provider_permissions.insert("github".into(), ProviderPermission::Read);
        r.default_provider_permission = ProviderPermission::Disabled;
        r.allowed_agent_ids = Some(vec!["ag_1".into(), "ag_2".into()]);
        r.allowed_knowledge_base_ids = Some(vec![]);
        let html = crate::templates()
            .get_template("consent.html")
            .and_then(|t| {
                t.render(context! {
                    client_name => "x", scopes => Vec::<String>::new(), params => Vec::<(String, String)>::new(),
                    restrictions => restrictions_view(&r),
                })
            })
            .unwrap();
        for needle in [
            "<strong>github</strong>: read",
            "Other services: <strong>disabled</strong>",
            "Agents: only ag_1, ag_2",
            "Knowledge bases: none",
        ] {
            assert!(html.contains(needle), "missing {needle:?} in {html}");
        }
    }
}
