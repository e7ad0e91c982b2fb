//! `/api/v1/auth/pat`: personal access tokens. A PAT owns a session of its own, carries scopes and
//! restrictions like any grant, and works on `/mcp` and the REST API exactly like an access token.
//! Created only by first-party callers (`PatCreator::is_first_party`: the person's browser, one of
//! their PATs, or a white-label client's token with scope `account`) — never wider than the creating
//! token, whose scopes and restrictions are the ceiling, and never outliving its session: a PAT made
//! with a token is revoked with that token's session. Each lives `tokens.pat_default_ttl_days` unless
//! asked otherwise (`"expires_in": "never"` only when asked for); an account holds at most
//! `limits.max_pats_per_account` live PATs. The rules live in [`pat_maker`] / [`PatMaker::create`],
//! [`live_pats`] and [`revoke_pat`], which the REST handlers here and the account dashboard's
//! tokens page both call with their `Caller`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_crypto::secret::{new_token, token_hash};
use bk_domain::audit::Outcome;
use bk_domain::client::ClientRole;
use bk_domain::grant::{Grant, GrantKind};
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::ports::PatCreation;
use bk_domain::restrictions::{ProviderPermission, Restrictions};
use bk_domain::scope::{Scope, ScopeSet};
use bk_domain::token::{PatCreator, PatLifetime, PersonalAccessToken};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Body, PathParam, Problem, json_body};
use bk_access::PAT_PREFIX;

/// The built-in client every personal access token's session belongs to.
pub(crate) const PAT_CLIENT: &str = "cli_personal_access_token";

/// What a new personal access token should be. Unknown scopes are dropped; what the creator may
/// not give is cut away (never refused).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "deploy script", "scopes": ["connections", "providers"], "expires_in": 86400}))]
pub struct CreatePat {
    /// 1 to 100 printable characters.
    name: String,
    /// An array of scope names, or one space-separated string of them.
    #[schema(schema_with = scopes_schema)]
    scopes: Value,
    /// Seconds (60 to 366 days), `"never"`, or absent/null for the server's default lifetime.
    #[schema(schema_with = expires_in_schema)]
    expires_in: Option<Value>,
    /// Permission per provider id (`{"google": "read"}`), as an object or a string holding one.
    #[schema(schema_with = provider_permissions_schema)]
    provider_permissions: Option<Value>,
    /// For providers not named in `provider_permissions` (default `read-write`).
    #[schema(value_type = Option<ProviderPermission>)]
    default_provider_permission: Option<String>,
    /// The agents the token may reach (absent: all), as an array or a string holding one.
    #[schema(schema_with = ids_schema)]
    agent_ids: Option<Value>,
    /// The knowledge bases the token may reach (absent: all), as an array or a string holding one.
    #[schema(schema_with = ids_schema)]
    knowledge_base_ids: Option<Value>,
}

// The schemas of the fields that take more than one form (parsed by hand below).

fn one_of(description: &str, items: Vec<utoipa::openapi::schema::Schema>) -> utoipa::openapi::schema::Schema {
    let mut b = utoipa::openapi::schema::OneOfBuilder::new().description(Some(description));
    for item in items {
        b = b.item(item);
    }
    b.build().into()
}

fn typed(t: utoipa::openapi::schema::Type) -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new().schema_type(t).into()
}

fn strings() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String)).into()
}

fn scopes_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::Type;
    one_of("An array of scope names, or one space-separated string of them.", vec![strings(), typed(Type::String)])
}

fn expires_in_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)));
    let never = ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["never"]));
    one_of(
        "Seconds (60 to 366 days), `\"never\"`, or absent/null for the server's default lifetime.",
        vec![seconds.into(), never.into(), typed(Type::Null)],
    )
}

fn provider_permissions_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let map = ObjectBuilder::new().schema_type(Type::Object).additional_properties(Some(AdditionalProperties::RefOr(
        <ProviderPermission as utoipa::PartialSchema>::schema(),
    )));
    one_of(
        "Permission per provider id (`{\"google\": \"read\"}`), as an object or a string holding one.",
        vec![map.into(), typed(Type::String), typed(Type::Null)],
    )
}

fn ids_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::Type;
    one_of(
        "Ids (absent or null: all), as an array or a string holding one.",
        vec![strings(), typed(Type::String), typed(Type::Null)],
    )
}

/// A JSON value given as an object/array, or as a string holding JSON (both forms are accepted).
fn json_text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

fn lifetime_of(v: Option<&Value>) -> Result<PatLifetime, Problem> {
    match v {
        None | Some(Value::Null) => Ok(PatLifetime::Default),
        Some(Value::String(s)) if s == "never" => Ok(PatLifetime::Never),
        Some(Value::Number(n)) => n.as_i64().map(PatLifetime::Seconds).ok_or_else(|| {
            Problem::invalid("expires_in", "expires_in must be a whole number of seconds, \"never\", or absent")
        }),
        Some(_) => Err(Problem::invalid("expires_in", "expires_in must be a number of seconds, \"never\", or absent")),
    }
}

/// Who is creating a PAT, as the rule `PatCreator::is_first_party` sees it.
async fn creator_of(server: &Api, who: &Caller) -> Result<PatCreator, Problem> {
    Ok(match who {
        Caller::Browser { .. } => PatCreator::Browser,
        Caller::Token(c) if c.kind == GrantKind::OAuth => PatCreator::Token {
            kind: c.kind,
            client_role: server.store.client(&c.client_id).await?.map(|client| client.role),
        },
        Caller::Token(c) => PatCreator::Token { kind: c.kind, client_role: None },
        Caller::Operator { .. } => {
            return Err(Problem::forbidden("this endpoint acts for an account; an operator token has none"));
        }
    })
}

/// A personal access token as listed (never the token itself).
#[derive(Serialize, ToSchema)]
pub struct PatView {
    /// `pat_…`
    pub id: String,
    pub name: String,
    /// Its own session (revoking the PAT revokes it).
    pub session_id: SessionId,
    pub scopes: Vec<&'static str>,
    pub provider_permissions: std::collections::BTreeMap<String, ProviderPermission>,
    pub default_provider_permission: ProviderPermission,
    /// `null`: every agent.
    pub agent_ids: Option<Vec<String>>,
    /// `null`: every knowledge base.
    pub knowledge_base_ids: Option<Vec<String>>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `null`: never.
    pub expires_at: Option<i64>,
}

fn pat_view(p: &PersonalAccessToken, g: &Grant) -> PatView {
    PatView {
        id: p.id.clone(),
        name: p.name.clone(),
        session_id: p.session_id.clone(),
        scopes: g.scopes.iter().map(|s| s.as_str()).collect(),
        provider_permissions: g.restrictions.provider_permissions.clone(),
        default_provider_permission: g.restrictions.default_provider_permission,
        agent_ids: g.restrictions.allowed_agent_ids.clone(),
        knowledge_base_ids: g.restrictions.allowed_knowledge_base_ids.clone(),
        created_at: p.created_at,
        expires_at: p.expires_at,
    }
}

/// A personal access token just created: `token` is shown this once and never stored.
#[derive(Serialize, ToSchema)]
pub struct CreatedPatView {
    #[serde(flatten)]
    pub pat: PatView,
    /// `bkp_…`: send it as `Authorization: Bearer`.
    pub token: String,
    /// Seconds until it expires; `null`: never.
    pub expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct PatList {
    /// Live (unrevoked, unexpired) tokens, newest first.
    pub tokens: Vec<PatView>,
}

/// What a person asks a new PAT to be, parsed (from the REST body or the dashboard's form); the
/// rules — name, ceilings, lifetime, quota — are applied by [`PatMaker::create`].
#[derive(Clone, Debug)]
pub struct NewPat {
    pub name: String,
    /// As asked; cut to what the creator may give (unknown scopes were already dropped).
    pub scopes: ScopeSet,
    pub lifetime: PatLifetime,
    /// As asked; cut to the creator's own restrictions.
    pub restrictions: Restrictions,
}

/// A PAT just created: the token itself is in `token`, shown once and never stored.
pub struct CreatedPat {
    pub pat: PersonalAccessToken,
    pub grant: Grant,
    pub token: bk_crypto::secret::Secret,
    /// Seconds until it expires (`None`: never).
    pub expires_in: Option<i64>,
}

/// A caller that may create PATs for its account, and that account. Only [`pat_maker`] makes one,
/// after the first-party check, so creating a PAT without that check does not compile.
pub struct PatMaker<'a> {
    who: &'a Caller,
    account_id: AccountId,
}

/// The scopes a PAT may ever carry: a PAT is a third-party credential of its account (never
/// `agents-all`). A creator's own scopes cut this further.
pub fn pat_scope_ceiling() -> ScopeSet {
    ClientRole::ThirdParty.scope_ceiling()
}

/// May `who` create PATs? A person (scope `account`) through a first-party caller: the browser, a
/// PAT, or a white-label client's token — never a third-party app's token (audited when refused).
pub async fn pat_maker<'a>(server: &Api, who: &'a Caller) -> Result<PatMaker<'a>, Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    let account_id = account_id.clone();
    if !creator_of(server, who).await?.is_first_party() {
        server.emit(who.stamp(server.event("pat.created", Outcome::Denied)).detail("reason", "third-party client"));
        return Err(Problem::forbidden(
            "a third-party app's token cannot create personal access tokens, whatever its scopes; create one \
             while signed in to this server in a browser, with a personal access token, or through a white-label client",
        ));
    }
    Ok(PatMaker { who, account_id })
}

/// Creates a PAT for `who` (the REST endpoint and the dashboard's form both come here).
pub async fn create_pat(server: &Api, who: &Caller, req: NewPat) -> Result<CreatedPat, Problem> {
    pat_maker(server, who).await?.create(server, req).await
}

impl PatMaker<'_> {
    /// Creates the PAT: never wider than its creator, within the account's quota, audited.
    pub async fn create(&self, server: &Api, req: NewPat) -> Result<CreatedPat, Problem> {
        let who = self.who;
        let name = req.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Problem::invalid("name", "name must be 1 to 100 printable characters"));
        }
        let (scope_ceiling, restriction_ceiling) = who.ceiling();
        // Never agents-all, never more than its creator.
        let scopes = req.scopes.intersect(&scope_ceiling.with_implied()).intersect(&pat_scope_ceiling());
        if scopes.is_empty() {
            return Err(Problem::invalid("scopes", "none of the requested scopes can be granted to this token"));
        }
        let restrictions = req.restrictions.intersect(&restriction_ceiling);
        let now = server.clock.now();
        let expires_at = req
            .lifetime
            .expires_at(now, server.limits.pat_default_ttl_secs)
            .map_err(|m| Problem::invalid("expires_in", m))?;
        let token = new_token(PAT_PREFIX);
        let grant = Grant {
            id: SessionId::generate(),
            account_id: self.account_id.clone(),
            client_id: ClientId::from_string(PAT_CLIENT),
            scopes,
            restrictions,
            kind: GrantKind::PersonalAccessToken,
            resource: server.mcp_resource(),
            auth_time: now,
            created_at: now,
            revoked_at: None,
            dpop_jkt: None,
        };
        let pat = PersonalAccessToken {
            id: format!("pat_{}", &bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<12>())),
            account_id: self.account_id.clone(),
            session_id: grant.id.clone(),
            // A PAT made with a token dies with that token's session; one made in the browser stands alone.
            parent_session_id: match who {
                Caller::Token(c) => Some(c.session_id.clone()),
                _ => None,
            },
            name,
            hash: token_hash(token.expose()),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        match server.store.create_pat(&pat, &grant, server.limits.max_pats_per_account).await? {
            PatCreation::Created => {}
            PatCreation::QuotaReached => {
                return Err(Problem::quota(format!(
                    "this account already holds {} live personal access tokens, the most it may \
                     (limits.max_pats_per_account); revoke one first",
                    server.limits.max_pats_per_account
                )));
            }
            PatCreation::ParentRevoked => {
                return Err(Problem::unauthorized("the access token's session has been revoked"));
            }
        }
        tracing::info!(account = %pat.account_id, pat = %pat.id, "personal access token created");
        server.emit(
            who.stamp(server.event("pat.created", Outcome::Success))
                .pat(&pat.id)
                .target(&pat.id)
                .detail("scope", grant.scopes.to_string()),
        );
        Ok(CreatedPat { expires_in: expires_at.map(|e| e - now), pat, grant, token })
    }
}

/// The JSON body of `POST /api/v1/auth/pat`, parsed (unknown scopes dropped, restrictions checked).
fn new_pat_of(req: CreatePat) -> Result<NewPat, Problem> {
    let scopes = match &req.scopes {
        Value::String(s) => ScopeSet::parse_lenient(s),
        Value::Array(a) => ScopeSet::from_scopes(a.iter().filter_map(|v| v.as_str()).filter_map(Scope::parse)),
        _ => return Err(Problem::invalid("scopes", "scopes must be an array of scope names")),
    };
    let restrictions = Restrictions::from_params(
        json_text(&req.provider_permissions).as_deref(),
        req.default_provider_permission.as_deref(),
        json_text(&req.agent_ids).as_deref(),
        json_text(&req.knowledge_base_ids).as_deref(),
    )
    .map_err(|m| Problem::invalid(m.split([':', ' ']).next().unwrap_or("body"), m.clone()))?;
    let lifetime = lifetime_of(req.expires_in.as_ref())?;
    Ok(NewPat { name: req.name, scopes, lifetime, restrictions })
}

/// Creates a personal access token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/pat",
    operation_id = "createPat",
    tag = "tokens",
    description = "Creates a personal access token for the caller's account, never wider than the caller's own \
        scopes and restrictions, and (made with a token) revoked with that token's session. Scope `account`, and \
        only through a first-party caller: the person's browser, one of their personal access tokens, or a \
        white-label client's token (a third-party app's token gets 403 whatever its scopes). At most \
        `limits.max_pats_per_account` live tokens (409).",
    request_body = CreatePat,
    security(("bearer" = ["account"])),
    responses(
        (status = 201, description = "Created; the token is in `token`, shown once", body = CreatedPatView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 409, response = crate::problem::Conflict),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn create(State(server): State<Arc<Api>>, headers: HeaderMap, Body(body): Body) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    // Who may create comes first: a third-party app is refused whatever it sends.
    let maker = pat_maker(&server, &who).await?;
    let req: CreatePat = json_body(&headers, &body)?;
    let created = maker.create(&server, new_pat_of(req)?).await?;
    let out = CreatedPatView {
        pat: pat_view(&created.pat, &created.grant),
        token: created.token.into_string(),
        expires_in: created.expires_in,
    };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, "no-store")], Json(out)).into_response())
}

/// The account's live PATs (unrevoked, unexpired) with their sessions, newest first.
pub async fn live_pats(server: &Api, who: &Caller) -> Result<Vec<(PersonalAccessToken, Grant)>, Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    let now = server.clock.now();
    let mut pats = server.store.list_pats(account_id).await?;
    pats.retain(|(p, _)| p.expires_at.is_none_or(|e| e > now));
    Ok(pats)
}

/// Revokes one of the caller's PATs (and its session, and the PATs it made). Another account's PAT
/// is not found, exactly like one that does not exist: the store matches the account.
pub async fn revoke_pat(server: &Api, who: &Caller, id: &str) -> Result<(), Problem> {
    let (account_id, _) = who.person_with(Scope::Account)?;
    match server.store.revoke_pat(account_id, id, server.clock.now()).await? {
        Some(sid) => {
            server.verifier.forget_session(&sid);
            tracing::info!(account = %account_id, pat = %id, "personal access token revoked");
            server.emit(who.stamp(server.event("pat.revoked", Outcome::Success)).pat(id).target(id));
            Ok(())
        }
        None => Err(Problem::not_found("personal access token")),
    }
}

/// The account's live personal access tokens.
#[utoipa::path(
    get,
    path = "/api/v1/auth/pat",
    operation_id = "listPats",
    tag = "tokens",
    description = "The account's live (unrevoked, unexpired) personal access tokens, newest first; never the tokens \
        themselves. Scope `account`.",
    security(("bearer" = ["account"])),
    responses(
        (status = 200, description = "The live tokens", body = PatList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let tokens = live_pats(&server, &who).await?.iter().map(|(p, g)| pat_view(p, g)).collect();
    Ok(Json(PatList { tokens }).into_response())
}

/// Revokes a personal access token.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/pat/{id}",
    operation_id = "revokePat",
    tag = "tokens",
    description = "Revokes one of the account's personal access tokens, its session, and the tokens made with it. \
        Another account's token is not found. Scope `account`.",
    params(("id" = String, Path, description = "The token's id, `pat_…` (not the token)")),
    security(("bearer" = ["account"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn revoke(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    revoke_pat(&server, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
