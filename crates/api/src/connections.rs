//! `/api/v1/connections`: a tenant's connected services (scope `connections`). Every lookup goes
//! through the store with the caller's account id, so another tenant's connection answers 404
//! exactly like one that does not exist.
//!
//! `POST /initiate {providerId, redirectUrl, providerParams}` starts a connection. `redirectUrl`
//! must be one of the calling client's redirect URIs, an https URL on its domains, or a page of this
//! server (`bk_domain::connection::return_url_allowed`): never an open redirect. For an `api_key`
//! provider the key may come in `providerParams.apiKey`; the connection is then created at once,
//! the key sealed in the vault (201 with the connection, `authorizationUrl: null`). The upstream
//! authorization flows of the other kinds are not served yet (501 naming the kind).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_connections::catalog::AuthKind;
use bk_connections::vault::Credential;
use bk_domain::audit::Outcome;
use bk_domain::connection::{Connection, ConnectionStatus, return_url_allowed};
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::{ConnectionQuery, ConnectionSort, MAX_CONNECTIONS_PAGE};
use bk_domain::scope::Scope;
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Problem, json_body};

/// The longest API key accepted (before anything is stored or sealed).
const MAX_API_KEY_BYTES: usize = 4096;
const MAX_REDIRECT_URL_BYTES: usize = 2048;

/// A connection as the API shows it (its serde form: camelCase, never a credential).
fn view(c: &Connection) -> Value {
    json!(c)
}

/// Query parameters of the list, all as text so that each error names its parameter.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListParams {
    page: Option<String>,
    limit: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    status: Option<String>,
    #[serde(alias = "provider")]
    provider_id: Option<String>,
    /// Unix seconds.
    created_after: Option<String>,
    created_before: Option<String>,
}

fn number<T: std::str::FromStr>(name: &str, v: &Option<String>, what: &str) -> Result<Option<T>, Problem> {
    v.as_deref()
        .map(|s| s.parse::<T>().map_err(|_| Problem::invalid(name, format!("{name} must be {what}"))))
        .transpose()
}

fn query_of(raw: Option<&str>) -> Result<ConnectionQuery, Problem> {
    let p: ListParams = serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| {
        let msg = e.to_string();
        let field = msg.split('`').nth(1).unwrap_or("query").to_owned();
        Problem::invalid(&field, format!("the query is not valid: {msg}"))
    })?;
    let page = number::<u32>("page", &p.page, "a whole number from 1")?.unwrap_or(1);
    if page == 0 {
        return Err(Problem::invalid("page", "page must be a whole number from 1"));
    }
    let limit = number::<u32>("limit", &p.limit, "a whole number from 1 to 100")?.unwrap_or(20);
    if !(1..=MAX_CONNECTIONS_PAGE).contains(&limit) {
        return Err(Problem::invalid("limit", "limit must be a whole number from 1 to 100"));
    }
    let sort_by = match p.sort_by.as_deref() {
        None | Some("createdAt") => ConnectionSort::CreatedAt,
        Some("updatedAt") => ConnectionSort::UpdatedAt,
        Some("expiresAt") => ConnectionSort::ExpiresAt,
        Some("providerId") => ConnectionSort::ProviderId,
        Some("status") => ConnectionSort::Status,
        Some(_) => {
            return Err(Problem::invalid(
                "sortBy",
                "sortBy must be one of createdAt, updatedAt, expiresAt, providerId, status",
            ));
        }
    };
    let descending = match p.sort_order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(_) => return Err(Problem::invalid("sortOrder", "sortOrder must be asc or desc")),
    };
    let status = p
        .status
        .as_deref()
        .map(|s| {
            ConnectionStatus::parse(s)
                .ok_or_else(|| Problem::invalid("status", "status must be one of active, expired, revoked, error"))
        })
        .transpose()?;
    if p.provider_id.as_ref().is_some_and(|id| id.is_empty() || id.len() > 63) {
        return Err(Problem::invalid("providerId", "providerId must be 1 to 63 characters"));
    }
    Ok(ConnectionQuery {
        status,
        provider_id: p.provider_id,
        created_after: number("createdAfter", &p.created_after, "Unix seconds")?,
        created_before: number("createdBefore", &p.created_before, "Unix seconds")?,
        sort_by,
        descending,
        page,
        limit,
    })
}

pub async fn list(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let q = query_of(raw.as_deref())?;
    let page = server.store.list_connections(account_id, &q).await?;
    let items: Vec<Value> = page.items.iter().map(view).collect();
    Ok(Json(json!({
        "connections": items,
        "page": q.page,
        "limit": q.limit,
        "total": page.total,
        "totalPages": page.total.div_ceil(u64::from(q.limit)),
    }))
    .into_response())
}

pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let c = server
        .store
        .connection(account_id, &ConnectionId::from_string(id))
        .await?
        .ok_or_else(|| Problem::not_found("connection"))?;
    Ok(Json(view(&c)).into_response())
}

pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let id = ConnectionId::from_string(id);
    // Deleting the row erases its ciphertext. (Revoking upstream first, where the provider
    // supports it, comes with the upstream OAuth client.)
    if !server.store.delete_connection(account_id, &id).await? {
        return Err(Problem::not_found("connection"));
    }
    tracing::info!(account = %account_id, connection = %id, "connection deleted");
    server.emit(who.stamp(server.event("connection.deleted", Outcome::Success)).target(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Initiate {
    provider_id: String,
    redirect_url: String,
    #[serde(default)]
    provider_params: ProviderParams,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProviderParams {
    /// The key of an `api_key` provider, pasted by the tenant.
    api_key: Option<String>,
}

/// The return URL, if the caller may be sent there.
async fn return_url(server: &Api, who: &Caller, raw: &str) -> Result<Url, Problem> {
    let refuse = || {
        Problem::invalid(
            "redirectUrl",
            "redirectUrl must be one of the calling client's redirect URIs, an https URL on its domains, or a page of this server",
        )
    };
    if raw.len() > MAX_REDIRECT_URL_BYTES {
        return Err(refuse());
    }
    let url = Url::parse(raw).map_err(|_| refuse())?;
    let client = match who {
        Caller::Token(c) => server.store.client(&c.client_id).await?,
        _ => None,
    };
    let (redirects, domains) = client.map(|c| (c.redirect_uris, c.domains)).unwrap_or_default();
    if return_url_allowed(&url, &redirects, &domains, &server.issuer_origin()) { Ok(url) } else { Err(refuse()) }
}

pub async fn initiate(State(server): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let account_id = account_id.clone();
    let req: Initiate = json_body(&headers, &body)?;
    let Some(provider) = server.catalog.get(&req.provider_id) else {
        let shown: String = req.provider_id.chars().take(63).collect();
        return Err(Problem::invalid("providerId", format!("unknown provider {shown:?}")));
    };
    let provider = provider.clone();
    return_url(&server, &who, &req.redirect_url).await?;
    if let Some(setting) = provider.missing_setting() {
        return Err(Problem::invalid(
            "providerId",
            format!("the provider {:?} is not set up on this server yet: the operator must set {setting}", provider.id),
        ));
    }
    match &provider.auth {
        AuthKind::ApiKey(_) => {
            let Some(key) = req.provider_params.api_key else {
                return Err(Problem::invalid(
                    "providerParams.apiKey",
                    format!("the provider {:?} is connected with a key: send it in providerParams.apiKey", provider.id),
                ));
            };
            let connection = connect_with_key(&server, &account_id, &provider.id, key).await?;
            server.emit(
                who.stamp(server.event("connection.created", Outcome::Success))
                    .target(&connection.id)
                    .detail("provider", provider.id.clone()),
            );
            Ok((
                StatusCode::CREATED,
                Json(json!({
                    "authorizationUrl": null,
                    "providerMetadata": crate::providers::view(&provider),
                    "connection": view(&connection),
                })),
            )
                .into_response())
        }
        other => Err(Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "Not implemented",
            format!("connecting {} providers is not available yet", other.name()),
        )),
    }
}

/// Seals a pasted key and stores the connection (within the account's quota).
async fn connect_with_key(
    server: &Api,
    account_id: &AccountId,
    provider_id: &str,
    key: String,
) -> Result<Connection, Problem> {
    let key = zeroize::Zeroizing::new(key);
    let key = key.trim();
    if key.is_empty() || key.len() > MAX_API_KEY_BYTES || key.chars().any(char::is_control) {
        return Err(Problem::invalid("providerParams.apiKey", "the key must be 1 to 4096 printable characters"));
    }
    let credential = Credential::ApiKey { key: key.to_owned() };
    let now = server.clock.now();
    let connection = Connection {
        id: ConnectionId::generate(),
        account_id: account_id.clone(),
        provider_id: provider_id.to_owned(),
        provider_user_id: None,
        scopes: Vec::new(),
        status: ConnectionStatus::Active,
        expires_at: None,
        can_refresh: false,
        metadata: json!({}),
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    let sealed = server.vault.seal(account_id, &connection.id, &credential).map_err(|e| {
        tracing::error!(error = %e, "sealing a credential failed");
        Problem::server_error()
    })?;
    let max = server.limits.max_connections_per_account;
    if !server.store.insert_connection(account_id, &connection, &sealed, max).await? {
        return Err(Problem::quota(format!(
            "this account already holds {max} connections, the most it may (limits.max_connections_per_account); delete one first"
        )));
    }
    tracing::info!(account = %account_id, connection = %connection.id, provider = provider_id, "connection created");
    Ok(connection)
}
