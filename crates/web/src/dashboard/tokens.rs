//! `/account/tokens`: the account's personal access tokens — the list (name, scopes, provider
//! permissions, agent / knowledge-base restrictions, created, expires, last used when the recent
//! log shows it), a form to create one, and revoke. Creating and revoking go through the same code
//! as `POST`/`DELETE /api/v1/auth/pat` (`bk_api::create_pat`, `bk_api::revoke_pat`): the same
//! name rules, scope ceiling (never `agents-all`), lifetimes, per-account quota and audit. A new
//! token is shown once, on the answer to the form (never in a URL, never again; the page is
//! `Cache-Control: no-store` like every page).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bk_api::NewPat;
use bk_domain::restrictions::{ProviderPermission, Restrictions};
use bk_domain::scope::{Scope, ScopeSet};
use bk_domain::token::PatLifetime;
use minijinja::context;
use serde::{Deserialize, Serialize};

use super::apps::{ScopeView, scope_views};
use super::{
    Dashboard, Flash, RestrictionsView, TOKENS, Viewer, When, form_viewer, restrictions_view, ser, viewer, when,
};
use crate::pages::{field, form_pairs};
use crate::see_other;

/// The lifetimes the form offers: (value, label); `default` is the server's configured one.
const LIFETIMES: &[(&str, &str)] =
    &[("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("366", "1 year"), ("never", "Never")];

/// The most agent or knowledge-base ids one field may list (the grant rules allow 100).
const MAX_LISTED_IDS: usize = 100;

/// What the creation form holds: its defaults, or what was sent when it is shown again.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub(crate) struct TokenForm {
    name: String,
    scopes: Vec<String>,
    expires: String,
    default_permission: String,
    /// Provider id → `read-write` | `read` | `disabled` (absent: as the default).
    providers: BTreeMap<String, String>,
    agents: String,
    agent_ids: String,
    knowledge_bases: String,
    knowledge_base_ids: String,
}

impl Default for TokenForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            scopes: vec![Scope::McpRead.as_str().to_owned()],
            expires: "default".into(),
            default_permission: "read-write".into(),
            providers: BTreeMap::new(),
            agents: "all".into(),
            agent_ids: String::new(),
            knowledge_bases: "all".into(),
            knowledge_base_ids: String::new(),
        }
    }
}

impl TokenForm {
    /// The form as sent (bounded: what is shown back is never longer than the fields allow).
    fn of(form: &[(String, String)]) -> Self {
        let text = |name: &str, max: usize| field(form, name).unwrap_or("").chars().take(max).collect::<String>();
        let choice = |name: &str, default: &str| {
            let v = text(name, 16);
            if v.is_empty() { default.to_owned() } else { v }
        };
        Self {
            name: text("name", 300),
            scopes: form
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.chars().take(64).collect())
                .take(32)
                .collect(),
            expires: choice("expires", "default"),
            default_permission: choice("default_permission", "read-write"),
            providers: form
                .iter()
                .filter_map(|(k, v)| {
                    Some((k.strip_prefix("provider.")?.chars().take(64).collect(), v.chars().take(16).collect()))
                })
                .filter(|(_, v): &(String, String)| !v.is_empty())
                .take(100)
                .collect(),
            agents: choice("agents", "all"),
            agent_ids: text("agent_ids", 4000),
            knowledge_bases: choice("knowledge_bases", "all"),
            knowledge_base_ids: text("knowledge_base_ids", 4000),
        }
    }

    /// The request the form makes, or what to fix, in words.
    fn request(&self) -> Result<NewPat, String> {
        let lifetime = match self.expires.as_str() {
            "default" => PatLifetime::Default,
            "never" => PatLifetime::Never,
            days => match days.parse::<i64>() {
                Ok(d) if LIFETIMES.iter().any(|(v, _)| *v == days) => PatLifetime::Seconds(d * 86_400),
                _ => return Err("Choose when the token expires.".into()),
            },
        };
        let default = ProviderPermission::parse(&self.default_permission)
            .ok_or("Choose what the token may do with other services.")?;
        let providers = serde_json::to_string(&self.providers).map_err(|_| "The service permissions are not valid.")?;
        let ids = |mode: &str, list: &str, what: &str| -> Result<Option<String>, String> {
            match mode {
                "all" => Ok(None),
                "none" => Ok(Some("[]".into())),
                "only" => {
                    let ids: Vec<&str> =
                        list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect();
                    if ids.is_empty() {
                        return Err(format!("List the {what} IDs the token may use, or choose every one or none."));
                    }
                    if ids.len() > MAX_LISTED_IDS {
                        return Err(format!("List at most {MAX_LISTED_IDS} {what} IDs."));
                    }
                    Ok(Some(serde_json::to_string(&ids).map_err(|_| format!("The {what} IDs are not valid."))?))
                }
                _ => Err(format!("Choose which {what}s the token may use.")),
            }
        };
        let agents = ids(&self.agents, &self.agent_ids, "agent")?;
        let knowledge_bases = ids(&self.knowledge_bases, &self.knowledge_base_ids, "knowledge base")?;
        let restrictions = Restrictions::from_params(
            Some(&providers),
            Some(default.as_str()),
            agents.as_deref(),
            knowledge_bases.as_deref(),
        )
        .map_err(|m| format!("{}.", capitalized(&m)))?;
        Ok(NewPat {
            name: self.name.clone(),
            scopes: ScopeSet::from_scopes(self.scopes.iter().filter_map(|s| Scope::parse(s))),
            lifetime,
            restrictions,
        })
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[derive(Serialize)]
struct TokenView {
    id: String,
    name: String,
    scopes: Vec<ScopeView>,
    restrictions: RestrictionsView,
    created: When,
    expires: Option<When>,
    last_used: Option<When>,
    /// Made with another token (it ends with that token's session).
    made_by_token: bool,
}

#[derive(Serialize)]
struct ProviderChoice {
    id: String,
    name: String,
}

#[derive(Serialize)]
struct ScopeChoice {
    name: &'static str,
    description: &'static str,
}

#[derive(Deserialize, Default)]
pub struct TokensQuery {
    revoked: Option<String>,
}

async fn render(s: &Dashboard, v: &Viewer, status: StatusCode, flash: Flash, form: &TokenForm) -> Response {
    let pats = match bk_api::live_pats(&s.api, &v.caller()).await {
        Ok(p) => p,
        Err(p) => return s.unavailable("listing tokens", &p.detail),
    };
    let last_used = s.last_used(v).await;
    let provider_name = |p: &str| s.api.catalog.get(p).map(|p| p.display.name.clone()).unwrap_or_else(|| p.to_owned());
    let tokens: Vec<TokenView> = pats
        .iter()
        .map(|(p, g)| TokenView {
            id: p.id.clone(),
            name: p.name.clone(),
            scopes: scope_views(g.scopes.iter()),
            restrictions: restrictions_view(&g.restrictions, provider_name),
            created: when(p.created_at),
            expires: p.expires_at.map(when),
            last_used: last_used.get(p.session_id.as_str()).map(|ms| when(ms.div_euclid(1000))),
            made_by_token: p.parent_session_id.is_some(),
        })
        .collect();
    let scope_choices: Vec<ScopeChoice> = bk_api::pat_scope_ceiling()
        .iter()
        .map(|s| ScopeChoice { name: s.as_str(), description: s.describe() })
        .collect();
    let providers: Vec<ProviderChoice> =
        s.api.catalog.iter().map(|p| ProviderChoice { id: p.id.clone(), name: p.display.name.clone() }).collect();
    let default_days = s.api.limits.pat_default_ttl_secs / 86_400;
    s.render(
        v,
        status,
        "account_tokens.html",
        TOKENS,
        flash,
        context! {
            tokens => ser(&tokens),
            form => ser(form),
            scope_choices => ser(&scope_choices),
            providers => ser(&providers),
            lifetimes => LIFETIMES.to_vec(),
            default_days,
            max_tokens => s.api.limits.max_pats_per_account,
        },
    )
}

pub async fn page(State(s): State<Arc<Dashboard>>, headers: HeaderMap, Query(q): Query<TokensQuery>) -> Response {
    let v = match viewer(&s, &headers, TOKENS).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let flash = if q.revoked.is_some() {
        Flash::notice("Token revoked. It no longer works anywhere.")
    } else {
        Flash::default()
    };
    render(&s, &v, StatusCode::OK, flash, &TokenForm::default()).await
}

/// `POST /account/tokens`: creates a token and shows it, once.
pub async fn create(State(s): State<Arc<Dashboard>>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &pairs, TOKENS).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let form = TokenForm::of(&pairs);
    let req = match form.request() {
        Ok(r) => r,
        Err(msg) => return render(&s, &v, StatusCode::BAD_REQUEST, Flash::error(msg), &form).await,
    };
    let created = match bk_api::create_pat(&s.api, &v.caller(), req).await {
        Ok(c) => c,
        Err(p) if p.status.is_server_error() => return s.unavailable("creating a token", &p.detail),
        Err(p) => {
            let status = if p.status == StatusCode::CONFLICT { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            return render(&s, &v, status, Flash::error(super::sentence(&p)), &form).await;
        }
    };
    let provider_name = |p: &str| s.api.catalog.get(p).map(|p| p.display.name.clone()).unwrap_or_else(|| p.to_owned());
    s.render(
        &v,
        StatusCode::CREATED,
        "account_token_created.html",
        TOKENS,
        Flash::default(),
        context! {
            token => created.token.expose(),
            name => created.pat.name.clone(),
            scopes => ser(scope_views(created.grant.scopes.iter())),
            limits => ser(restrictions_view(&created.grant.restrictions, provider_name)),
            expires => created.pat.expires_at.map(when).map(ser),
            mcp_url => format!("{}/mcp", s.api.issuer),
        },
    )
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke(
    State(s): State<Arc<Dashboard>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = form_pairs(&body);
    let v = match form_viewer(&s, &headers, &form, TOKENS).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    // The store revokes only a PAT of this account: another account's id is not found.
    match bk_api::revoke_pat(&s.api, &v.caller(), &id).await {
        Ok(()) => see_other(&format!("{TOKENS}?revoked=1")),
        Err(p) if p.status == StatusCode::NOT_FOUND => s.not_found("token"),
        Err(p) if p.status.is_server_error() => s.unavailable("revoking a token", &p.detail),
        Err(p) => {
            render(&s, &v, StatusCode::BAD_REQUEST, Flash::error(super::sentence(&p)), &TokenForm::default()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_form_becomes_the_same_request_as_the_api_takes() {
        let form = TokenForm::of(&pairs(&[
            ("csrf_token", "t"),
            ("name", "  CI deploy "),
            ("scope", "universal-mcp-read"),
            ("scope", "account"),
            ("scope", "no-such-scope"),
            ("expires", "30"),
            ("default_permission", "read"),
            ("provider.github", "disabled"),
            ("provider.google", ""),
            ("agents", "only"),
            ("agent_ids", "agt_1, agt_2\nagt_3"),
            ("knowledge_bases", "none"),
        ]));
        let req = form.request().unwrap();
        assert_eq!(req.name, "  CI deploy ", "the name rules (trim, length) are the API's");
        assert_eq!(req.scopes.to_string(), "universal-mcp-read account");
        assert_eq!(req.lifetime, PatLifetime::Seconds(30 * 86_400));
        let expected = Restrictions::from_params(
            Some(r#"{"github":"disabled"}"#),
            Some("read"),
            Some(r#"["agt_1","agt_2","agt_3"]"#),
            Some("[]"),
        )
        .unwrap();
        assert_eq!(req.restrictions, expected);
        assert_eq!(TokenForm::of(&pairs(&[("expires", "never")])).request().unwrap().lifetime, PatLifetime::Never);
        let plain = TokenForm::of(&pairs(&[("name", "x")])).request().unwrap();
        assert_eq!(plain.lifetime, PatLifetime::Default);
        assert_eq!(plain.restrictions, Restrictions::unrestricted());
    }

    #[test]
    fn the_form_refuses_what_it_does_not_offer() {
        for (k, v, says) in [
            ("expires", "5", "Choose when the token expires."),
            ("expires", "-1", "Choose when the token expires."),
            ("default_permission", "admin", "Choose what the token may do with other services."),
            ("agents", "some", "Choose which agents the token may use."),
        ] {
            assert_eq!(TokenForm::of(&pairs(&[(k, v)])).request().unwrap_err(), says, "{k}={v}");
        }
        let empty_list = TokenForm::of(&pairs(&[("agents", "only"), ("agent_ids", " , ")])).request();
        assert!(empty_list.unwrap_err().starts_with("List the agent IDs"));
        let bad_provider = TokenForm::of(&pairs(&[("provider.Not A Provider", "read")])).request();
        assert!(bad_provider.unwrap_err().starts_with("Provider_permissions: "), "the grant rules' own words");
        let bad_permission = TokenForm::of(&pairs(&[("provider.github", "admin")])).request();
        assert!(bad_permission.is_err());
    }

    #[test]
    fn what_is_shown_back_is_bounded() {
        let long = "x".repeat(10_000);
        let form = TokenForm::of(&pairs(&[("name", &long), ("agent_ids", &long), ("expires", &long)]));
        assert_eq!(form.name.chars().count(), 300);
        assert_eq!(form.agent_ids.chars().count(), 4000);
        assert_eq!(form.expires.chars().count(), 16);
    }
}
