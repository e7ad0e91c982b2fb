//! `/api/v1/auth/pat`: personal access tokens. A PAT owns a session of its own, carries scopes and
//! restrictions like any grant, and works on `/mcp` and the REST API exactly like an access token.
//! Created by a signed-in person (browser) or a token with scope `account` — never wider than that
//! token: its scopes and restrictions are the ceiling.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::{new_token, token_hash};
use bk_domain::audit::Outcome;
use bk_domain::client::ClientRole;
use bk_domain::grant::{Grant, GrantKind};
use bk_domain::ids::{ClientId, SessionId};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::{Scope, ScopeSet};
use bk_domain::token::PersonalAccessToken;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Api;
use crate::caller::caller;
use crate::problem::{Problem, json_body};
use bk_access::PAT_PREFIX;

const PAT_CLIENT: &str = "cli_personal_access_token";
const MAX_LIFETIME_SECS: i64 = 366 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePat {
    name: String,
    /// An array of scopes or a space-separated string.
    scopes: Value,
    expires_in: Option<i64>,
    provider_permissions: Option<Value>,
    default_provider_permission: Option<String>,
    agent_ids: Option<Value>,
    knowledge_base_ids: Option<Value>,
}

/// A JSON value given as an object/array, or as a string holding JSON (both forms are accepted).
fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn pat_view(p: &PersonalAccessToken, g: &Grant) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "session_id": p.session_id,
        "scopes": g.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "provider_permissions": g.restrictions.provider_permissions,
        "default_provider_permission": g.restrictions.default_provider_permission,
        "agent_ids": g.restrictions.allowed_agent_ids,
        "knowledge_base_ids": g.restrictions.allowed_knowledge_base_ids,
        "created_at": p.created_at,
        "expires_at": p.expires_at,
    })
}

pub async fn create(State(server): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let account_id = account_id.clone();
    let req: CreatePat = json_body(&headers, &body)?;
    let name = req.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Problem::invalid("name", "name must be 1 to 100 printable characters"));
    }
    let asked = match &req.scopes {
        Value::String(s) => ScopeSet::parse_lenient(s),
        Value::Array(a) => ScopeSet::from_scopes(a.iter().filter_map(|v| v.as_str()).filter_map(Scope::parse)),
        _ => return Err(Problem::invalid("scopes", "scopes must be an array of scope names")),
    };
    let (scope_ceiling, restriction_ceiling) = who.ceiling();
    // A PAT is a third-party credential of its account: never agents-all, never more than its creator.
    let scopes = asked.intersect(&scope_ceiling.with_implied()).intersect(&ClientRole::ThirdParty.scope_ceiling());
    if scopes.is_empty() {
        return Err(Problem::invalid("scopes", "none of the requested scopes can be granted to this token"));
    }
    let restrictions = Restrictions::from_params(
        json_text(&req.provider_permissions).as_deref(),
        req.default_provider_permission.as_deref(),
        json_text(&req.agent_ids).as_deref(),
        json_text(&req.knowledge_base_ids).as_deref(),
    )
    .map_err(|m| Problem::invalid(m.split([':', ' ']).next().unwrap_or("body"), m.clone()))?
    .intersect(&restriction_ceiling);
    let expires_in = match req.expires_in {
        None => None,
        Some(s) if (60..=MAX_LIFETIME_SECS).contains(&s) => Some(s),
        Some(_) => {
            return Err(Problem::invalid(
                "expires_in",
                format!("expires_in must be 60 to {MAX_LIFETIME_SECS} seconds"),
            ));
        }
    };
    let now = server.clock.now();
    let token = new_token(PAT_PREFIX);
    let grant = Grant {
        id: SessionId::generate(),
        account_id: account_id.clone(),
        client_id: ClientId::from_string(PAT_CLIENT),
        scopes,
        restrictions,
        kind: GrantKind::PersonalAccessToken,
        resource: server.mcp_resource(),
        auth_time: now,
        created_at: now,
        revoked_at: None,
    };
    let pat = PersonalAccessToken {
        id: format!("pat_{}", &bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<12>())),
        account_id,
        session_id: grant.id.clone(),
        name,
        hash: token_hash(token.expose()),
        created_at: now,
        expires_at: expires_in.map(|s| now + s),
        revoked_at: None,
    };
    server.store.create_pat(&pat, &grant).await?;
    tracing::info!(account = %pat.account_id, pat = %pat.id, "personal access token created");
    server.emit(
        who.stamp(server.event("pat.created", Outcome::Success))
            .pat(&pat.id)
            .target(&pat.id)
            .detail("scope", grant.scopes.to_string()),
    );
    let mut out = pat_view(&pat, &grant);
    out["token"] = json!(token.into_string());
    out["expires_in"] = json!(expires_in);
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(out)).into_response())
}

pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    let pats = server.store.list_pats(account_id).await?;
    let now = server.clock.now();
    let live: Vec<Value> =
        pats.iter().filter(|(p, _)| p.expires_at.is_none_or(|e| e > now)).map(|(p, g)| pat_view(p, g)).collect();
    Ok(Json(json!({"tokens": live})).into_response())
}

pub async fn revoke(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Account)?;
    match server.store.revoke_pat(account_id, &id, server.clock.now()).await? {
        Some(sid) => {
            server.verifier.forget_session(&sid);
            tracing::info!(account = %account_id, pat = %id, "personal access token revoked");
            server.emit(who.stamp(server.event("pat.revoked", Outcome::Success)).pat(&id).target(&id));
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        None => Err(Problem::not_found("personal access token")),
    }
}
