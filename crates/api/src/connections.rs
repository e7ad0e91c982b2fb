//! `/api/v1/connections`: a tenant's connected services (scope `connections`). Every lookup goes
//! through the store with the caller's account id, so another tenant's connection answers 404
//! exactly like one that does not exist.
//!
//! `POST /initiate {providerId, redirectUrl, providerParams}` starts a connection. `redirectUrl`
//! must be one of the calling client's redirect URIs, an https URL on its domains, or a page of this
//! server (`bk_domain::connection::return_url_allowed`): never an open redirect.
//! - `oauth2` providers: answers `{authorizationUrl, providerMetadata}`; the tenant approves at the
//!   provider, which sends the browser to `GET /callback` with a random state (single use, ten
//!   minutes, bound to the account, client and `redirectUrl`, PKCE S256 where the provider takes
//!   it). The callback exchanges the code, reads the user info into `metadata`, seals the tokens
//!   and redirects to `redirectUrl` with `connectionId` and `status`, or with the provider's `error`
//!   and `error_description` — storing nothing then. A state that is unknown, used or expired, or a
//!   browser signed in to another account, gets an error page.
//! - `api_key` providers: the key may come in `providerParams.apiKey`; the connection is created at
//!   once, the key sealed in the vault (201 with the connection, `authorizationUrl: null`).
//! - `mcp` providers (a remote MCP server protecting itself with OAuth): `initiate` discovers its
//!   authorization server (`bk_connections::mcp`), identifies Bridgekeeper there (client metadata
//!   document, the operator's client, or a registration kept per issuer) and answers like
//!   `oauth2`, with `resource` and PKCE; the callback checks `iss` as the server advertises it,
//!   exchanges the code, and confirms the token with one `initialize` (its `serverInfo` becomes
//!   the connection's metadata). What a refresh needs is sealed with the tokens.
//! - `token_exchange` providers: the account's verified email is exchanged at the tenant backend for a
//!   scoped token, sealed; 403 when the address is not verified or the backend refuses the user.
//!
//! The PKCE verifier of a flow is never stored: it is derived from the flow's state under a
//! server key, and only the returning browser carries the state.
//!
//! `DELETE /{id}` revokes the grant at the provider where it has a revocation endpoint (RFC 7009),
//! then deletes the connection and its ciphertext. `PUT /{id}/refresh` refreshes its tokens now —
//! exactly once however many callers ask at the same moment, through the credential broker the
//! gateway uses (`bk_connections::broker`), which also audits the refresh and any status change.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use bk_connections::broker::{BrokerError, RefreshOutcome};
use bk_connections::catalog::{AuthKind, McpServer, OAuth2, Provider};
use bk_connections::mcp::{McpAuth, McpClient, Registration};
use bk_connections::oauth2::{UpstreamError, authorization_url, provider_user_id};
use bk_connections::vault::Credential;
use bk_crypto::secret::{new_token, token_hash};
use bk_domain::audit::Outcome;
use bk_domain::connection::{Connection, ConnectionFlow, ConnectionStatus, FLOW_TTL_SECS, return_url_allowed};
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::{ConnectionQuery, ConnectionSort, MAX_CONNECTIONS_PAGE};
use bk_domain::scope::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;
use utoipa::{IntoParams, ToSchema};

use crate::Api;
use crate::caller::{Caller, caller};
use crate::connect_mcp::{registration_secret, start_mcp};
use crate::problem::{Body, PathParam, Problem, json_body};
use crate::providers::ProviderView;

/// The longest API key accepted (before anything is stored or sealed).
const MAX_API_KEY_BYTES: usize = 4096;
const MAX_REDIRECT_URL_BYTES: usize = 2048;

/// A page of the account's connections.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionPage {
    pub connections: Vec<Connection>,
    #[schema(minimum = 1, maximum = 4294967295_i64, value_type = i64)]
    pub page: u32,
    #[schema(minimum = 1, maximum = 100, value_type = i64)]
    pub limit: u32,
    /// Connections matching the filter, on every page.
    pub total: u64,
    pub total_pages: u64,
}

/// Query parameters of the list, all as text so that each error names its parameter.
#[derive(Deserialize, Default, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// From 1 (default 1).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 4294967295_i64)]
    page: Option<String>,
    /// 1 to 100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `createdAt` (default), `updatedAt`, `expiresAt`, `providerId` or `status`.
    #[param(value_type = Option<SortByName>, inline)]
    sort_by: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(value_type = Option<SortOrderName>, inline)]
    sort_order: Option<String>,
    #[param(value_type = Option<ConnectionStatus>, inline)]
    status: Option<String>,
    /// One provider's connections (`provider` is accepted too).
    #[serde(alias = "provider")]
    #[param(min_length = 1, max_length = 63)]
    provider_id: Option<String>,
    /// Created at or after (Unix seconds).
    #[param(value_type = Option<i64>)]
    created_after: Option<String>,
    /// Created before (Unix seconds).
    #[param(value_type = Option<i64>)]
    created_before: Option<String>,
}

crate::openapi::text_enum!(
    /// What the connections are sorted by.
    SortByName,
    ["createdAt", "updatedAt", "expiresAt", "providerId", "status"]
);
crate::openapi::text_enum!(
    /// `desc` or `asc`.
    SortOrderName,
    ["desc", "asc"]
);

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
        providers: Default::default(),
    })
}

/// 429 with `Retry-After`.
fn too_many(wait: u64, detail: &str) -> Problem {
    Problem::new(StatusCode::TOO_MANY_REQUESTS, "Too many requests", detail).retry_after(wait)
}

/// The caller's connection `id`, if it exists and is of a provider the caller may reach: a
/// connection of a provider the grant disables or the client may not use is answered exactly like
/// one that does not exist (an app kept away from a provider does not learn the account uses it).
async fn reachable(
    server: &Api,
    who: &Caller,
    account_id: &AccountId,
    id: &ConnectionId,
) -> Result<Connection, Problem> {
    match server.store.connection(account_id, id).await? {
        Some(c) if who.reach().allows(&c.provider_id) => Ok(c),
        _ => Err(Problem::not_found("connection")),
    }
}

/// The account's connections.
#[utoipa::path(
    get,
    path = "/api/v1/connections",
    operation_id = "listConnections",
    tag = "connections",
    description = "The account's connected services, a page at a time; those of providers the caller may not reach \
        are left out. Scope `connections`.",
    params(ListParams),
    security(("bearer" = ["connections"])),
    responses(
        (status = 200, description = "A page of connections", body = ConnectionPage, links(
            ("refresh" = (operation_id = "refreshConnection", parameters(("id" = "$response.body#/connections/0/id")),
                description = "Refresh the first connection of the page")),
            ("get" = (operation_id = "getConnection", parameters(("id" = "$response.body#/connections/0/id")),
                description = "Read the first connection of the page"))
        )),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let q = ConnectionQuery { providers: who.reach(), ..query_of(raw.as_deref())? };
    let page = server.store.list_connections(account_id, &q).await?;
    Ok(Json(ConnectionPage {
        total_pages: page.total.div_ceil(u64::from(q.limit)),
        connections: page.items,
        page: q.page,
        limit: q.limit,
        total: page.total,
    })
    .into_response())
}

/// One connection.
#[utoipa::path(
    get,
    path = "/api/v1/connections/{id}",
    operation_id = "getConnection",
    tag = "connections",
    description = "One of the account's connections (never its credential). Another account's, or one of a \
        provider the caller may not reach, is not found. Scope `connections`.",
    params(("id" = String, Path, description = "The connection id, `con_…`")),
    security(("bearer" = ["connections"])),
    responses(
        (status = 200, description = "The connection", body = Connection),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let c = reachable(&server, &who, account_id, &ConnectionId::from_string(id)).await?;
    Ok(Json(c).into_response())
}

/// Deletes a connection.
#[utoipa::path(
    delete,
    path = "/api/v1/connections/{id}",
    operation_id = "deleteConnection",
    tag = "connections",
    description = "Revokes the connection's grant at its provider where the provider can (RFC 7009), then deletes \
        it and its sealed credential, whatever the provider answered. Scope `connections`.",
    params(("id" = String, Path, description = "The connection id, `con_…`")),
    security(("bearer" = ["connections"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    remove_connection(&server, &who, account_id, &ConnectionId::from_string(id)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes one of the account's connections the caller may reach: revoked at the provider where it
/// can be, then the row and its ciphertext deleted, audited (`DELETE /{id}` and the connections page).
pub async fn remove_connection(
    server: &Api,
    who: &Caller,
    account_id: &AccountId,
    id: &ConnectionId,
) -> Result<(), Problem> {
    let c = reachable(server, who, account_id, id).await?;
    let upstream = revoke_upstream(server, &c).await;
    // Deleting the row erases its ciphertext, whatever the provider answered: the tenant asked for
    // the connection to be gone, and the audit row says whether the provider confirmed.
    if !server.store.delete_connection(account_id, id).await? {
        return Err(Problem::not_found("connection"));
    }
    tracing::info!(account = %account_id, connection = %id, upstream, "connection deleted");
    server.emit(
        who.stamp(server.event("connection.deleted", Outcome::Success))
            .target(id)
            .detail("provider", c.provider_id.clone())
            .detail("upstream", upstream),
    );
    Ok(())
}

/// Refreshes a connection's tokens now.
#[utoipa::path(
    put,
    path = "/api/v1/connections/{id}/refresh",
    operation_id = "refreshConnection",
    tag = "connections",
    description = "Refreshes the connection's upstream tokens now — exactly once however many callers ask at the \
        same moment. A connection without a usable refresh token answers 409 (reconnect it); a provider that \
        cannot refresh just now, 503 with `Retry-After`. Scope `connections`.",
    params(("id" = String, Path, description = "The connection id, `con_…`")),
    security(("bearer" = ["connections"])),
    responses(
        (status = 200, description = "The connection after the refresh", body = Connection),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn refresh(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let id = ConnectionId::from_string(id);
    reachable(&server, &who, account_id, &id).await?;
    let retry = |secs: i64, detail: &str| {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Try again later", detail).retry_after(secs.max(1) as u64)
    };
    let outcome = server.broker.refresh_now(account_id, &id).await.map_err(|e| match e {
        BrokerError::Store(e) => {
            tracing::error!(error = %e, "refreshing a connection failed");
            Problem::server_error()
        }
        _ => Problem::server_error(),
    })?;
    match outcome {
        RefreshOutcome::Missing => Err(Problem::not_found("connection")),
        RefreshOutcome::Settled { connection, .. } => Ok(Json(connection).into_response()),
        RefreshOutcome::CannotRefresh(c) => Err(Problem::new(
            StatusCode::CONFLICT,
            "Cannot refresh",
            format!(
                "this connection cannot be refreshed (status {}, no usable refresh token); reconnect it",
                c.status.as_str()
            ),
        )),
        RefreshOutcome::RetryLater { retry_after, .. } => {
            Err(retry(retry_after, "the provider could not refresh this connection just now; try again later"))
        }
        RefreshOutcome::Busy => Err(retry(1, "a refresh of this connection is still under way; try again")),
    }
}

/// Revokes the connection's grant at its provider where the provider supports it: `revoked`,
/// `unsupported`, or `failed` (the provider refused or could not be reached; logged).
async fn revoke_upstream(server: &Api, c: &Connection) -> &'static str {
    let catalog_oauth2 = match server.catalog.get(&c.provider_id).map(|p| &p.auth) {
        Some(AuthKind::OAuth2(o)) if o.revoke_url.is_none() => return "unsupported",
        Some(AuthKind::OAuth2(o)) => Some(o),
        Some(AuthKind::Mcp(_)) => None,
        _ => return "unsupported",
    };
    let credential = match server.store.sealed_credential(&c.account_id, &c.id).await {
        Ok(Some(sealed)) => server.vault.open(&c.account_id, &c.id, &sealed),
        Ok(None) => return "unsupported",
        Err(e) => {
            tracing::error!(error = %e, "reading a credential failed");
            return "failed";
        }
    };
    let credential = match credential {
        Ok(cred) => cred,
        Err(e) => {
            tracing::error!(connection = %c.id, error = %e, "a stored credential does not open");
            return "failed";
        }
    };
    // An `mcp` connection revokes where its tokens came from (kept with them).
    let discovered = match (&credential, catalog_oauth2) {
        (Credential::OAuth { upstream: Some(u), .. }, None) => u.auth.oauth2(u.client_secret.as_deref()).ok(),
        _ => None,
    };
    let Some(o) = catalog_oauth2.map(|o| &**o).or(discovered.as_ref()) else {
        return "unsupported";
    };
    match server.upstream.revoke(o, &credential).await {
        Ok(true) => "revoked",
        Ok(false) => "unsupported",
        Err(e) => {
            tracing::warn!(connection = %c.id, provider = %c.provider_id, error = %e, "upstream revocation failed");
            "failed"
        }
    }
}

/// Which provider to connect, and where the person returns afterwards.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
// The example's `redirectUrl` is a page of this server (always allowed); the served document names
// this server's own (`openapi::document`).
#[schema(example = json!({"providerId": "google", "redirectUrl": "https://auth.example.com/connections"}))]
pub struct Initiate {
    /// A provider id of the catalog.
    provider_id: String,
    /// One of the calling client's redirect URIs, an https URL on its domains, or a page of this server
    /// (at most 2048 bytes).
    redirect_url: String,
    #[serde(default)]
    provider_params: ProviderParams,
}

/// What a provider's connect kind needs from the tenant.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProviderParams {
    /// The key of an `api_key` provider, pasted by the tenant (1 to 4096 printable characters; sealed,
    /// never shown again).
    #[schema(format = Password)]
    api_key: Option<String>,
}

/// A connection started: the person goes to `authorizationUrl` (`oauth2`, `mcp`), or — for `api_key`
/// and `token_exchange` providers — the connection exists already (`connection`, with
/// `authorizationUrl` null).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Initiated {
    pub authorization_url: Option<String>,
    pub provider_metadata: ProviderView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
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

/// Starts connecting a provider.
#[utoipa::path(
    post,
    path = "/api/v1/connections/initiate",
    operation_id = "initiateConnection",
    tag = "connections",
    description = "Starts connecting a provider for the account. `oauth2` and `mcp` providers answer 200 with the \
        provider's authorization URL: the person approves there and comes back through \
        `/api/v1/connections/callback` to `redirectUrl` with `connectionId` and `status` (or `error`). `api_key` \
        providers (the key in `providerParams.apiKey`) and `token_exchange` providers are connected at once (201). \
        At most `limits.connects_per_account_per_minute` starts a minute (429) and \
        `limits.max_connections_per_account` connections (409). Scope `connections`.",
    request_body = Initiate,
    security(("bearer" = ["connections"])),
    responses(
        (status = 200, description = "A flow started: send the person to `authorizationUrl`", body = Initiated),
        (status = 201, description = "Connected at once", body = Initiated),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 409, response = crate::problem::Conflict),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 429, response = crate::problem::TooManyRequests),
        (status = 502, response = crate::problem::BadGateway),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn initiate(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (account_id, _) = who.person_with(Scope::Connections)?;
    let account_id = account_id.clone();
    let req: Initiate = json_body(&headers, &body)?;
    let Some(provider) = server.catalog.get(&req.provider_id) else {
        let shown: String = req.provider_id.chars().take(63).collect();
        return Err(Problem::invalid("providerId", format!("unknown provider {shown:?}")));
    };
    let provider = provider.clone();
    if !who.reach().allows(&provider.id) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Provider not allowed",
            format!(
                "this application may not use the provider {:?} (its grant or its client excludes it)",
                provider.id
            ),
        ));
    }
    if let Err(wait) = server
        .limiter
        .acquire("connect_initiate", account_id.as_str(), server.limits.connects_per_account_per_minute, 60)
        .await
    {
        return Err(too_many(wait, "too many connections started from this account; try again later"));
    }
    let redirect_url = return_url(&server, &who, &req.redirect_url).await?;
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
                Json(Initiated {
                    authorization_url: None,
                    provider_metadata: crate::providers::view(&provider),
                    connection: Some(connection),
                }),
            )
                .into_response())
        }
        AuthKind::OAuth2(o) => {
            let url = start_oauth2(&server, &who, &account_id, o, &provider.id, &redirect_url).await?;
            Ok(initiated(&server, &who, &provider, &url))
        }
        AuthKind::Mcp(m) => {
            let url = start_mcp(&server, &who, &account_id, m, &provider.id, &redirect_url).await?;
            Ok(initiated(&server, &who, &provider, &url))
        }
        AuthKind::TokenExchange(t) => {
            let connection = connect_exchanged(&server, &account_id, &provider.id, t).await?;
            server.emit(
                who.stamp(server.event("connection.created", Outcome::Success))
                    .target(&connection.id)
                    .detail("provider", provider.id.clone()),
            );
            Ok((
                StatusCode::CREATED,
                Json(Initiated {
                    authorization_url: None,
                    provider_metadata: crate::providers::view(&provider),
                    connection: Some(connection),
                }),
            )
                .into_response())
        }
    }
}

/// A flow started: audited, and the URL the person is sent to.
fn initiated(server: &Api, who: &Caller, provider: &Provider, url: &Url) -> Response {
    server.emit(
        who.stamp(server.event("connection.initiated", Outcome::Success)).detail("provider", provider.id.clone()),
    );
    Json(Initiated {
        authorization_url: Some(url.to_string()),
        provider_metadata: crate::providers::view(provider),
        connection: None,
    })
    .into_response()
}

/// Seals a pasted key and stores the connection (within the account's quota).
pub async fn connect_with_key(
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
    store_connection(server, account_id, provider_id, &Credential::ApiKey { key: key.to_owned() }, None, None).await
}

/// Connects a `token_exchange` provider for the account: its **verified** email goes to the tenant
/// backend's verify endpoint with the operator's admin token, and the scoped token it answers is
/// sealed as the connection's credential. The backend trusts the address it is sent, so an address
/// nobody proved is never exchanged (it would hand the token to whoever signed up with it).
pub async fn connect_exchanged(
    server: &Api,
    account_id: &AccountId,
    provider_id: &str,
    t: &bk_connections::catalog::TokenExchange,
) -> Result<Connection, Problem> {
    let Some(account) = server.store.account(account_id).await? else {
        return Err(Problem::forbidden("the account no longer exists"));
    };
    if !account.email_verified() {
        server.emit(
            server
                .event("connection.refused", Outcome::Denied)
                .account(account_id)
                .detail("provider", provider_id.to_owned())
                .detail("reason", "email_not_verified"),
        );
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Email not verified",
            format!(
                "connecting {provider_id:?} sends this account's email address to the provider, which trusts it: verify \
                 the address first (the link sent at sign-up, or a new one from {}/account/security)",
                server.issuer
            ),
        ));
    }
    let exchanged = match server.upstream.exchange_email(t, &account.email).await {
        Ok(x) => x,
        Err(UpstreamError::Refused { error, .. }) => {
            tracing::info!(account = %account_id, provider = provider_id, %error, "the backend refused a token exchange");
            server.emit(
                server
                    .event("connection.refused", Outcome::Denied)
                    .account(account_id)
                    .detail("provider", provider_id.to_owned())
                    .detail("reason", error.clone()),
            );
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "Refused by the provider",
                format!("{provider_id:?} refused access for this account's email address ({error})"),
            ));
        }
        Err(e) => {
            tracing::warn!(provider = provider_id, error = %e, "token exchange failed");
            return Err(Problem::new(
                StatusCode::BAD_GATEWAY,
                "Provider unavailable",
                format!("{provider_id:?} could not be reached or answered something unexpected; try again"),
            ));
        }
    };
    let expires_at = exchanged.expires_in.map(|s| server.clock.now().saturating_add(s));
    store_connection(server, account_id, provider_id, &exchanged.credential, exchanged.user_id.clone(), expires_at)
        .await
}

/// Seals `credential` and stores a new active connection holding it, within the account's quota.
async fn store_connection(
    server: &Api,
    account_id: &AccountId,
    provider_id: &str,
    credential: &Credential,
    provider_user_id: Option<String>,
    expires_at: Option<i64>,
) -> Result<Connection, Problem> {
    let now = server.clock.now();
    let connection = Connection {
        id: ConnectionId::generate(),
        account_id: account_id.clone(),
        provider_id: provider_id.to_owned(),
        provider_user_id,
        scopes: Vec::new(),
        status: ConnectionStatus::Active,
        expires_at,
        can_refresh: false,
        metadata: json!({}),
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    let sealed = server.vault.seal(account_id, &connection.id, credential).map_err(|e| {
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

/// Where providers send the browser back.
pub(crate) fn callback_url(server: &Api) -> String {
    format!("{}/api/v1/connections/callback", server.issuer)
}

/// The PKCE verifier of the flow with this state: derived under a server key, never stored.
pub(crate) fn pkce_verifier(server: &Api, state: &str) -> zeroize::Zeroizing<String> {
    let key = bk_crypto::mac::MacKey::derive(server.master.raw(), "connect-pkce-verifier");
    zeroize::Zeroizing::new(bk_crypto::secret::b64url(&key.sign(state.as_bytes())))
}

/// Records a flow under a new state (its digest, the account, client and return URL, and for
/// `mcp` what discovery found) and returns the state.
pub(crate) async fn record_flow(
    server: &Api,
    who: &Caller,
    account_id: &AccountId,
    provider_id: &str,
    redirect_url: &Url,
    upstream: Option<String>,
) -> Result<bk_crypto::secret::Secret, Problem> {
    let state = new_token("");
    let now = server.clock.now();
    let flow = ConnectionFlow {
        state_hash: token_hash(state.expose()),
        account_id: account_id.clone(),
        client_id: match who {
            Caller::Token(c) => Some(c.client_id.clone()),
            _ => None,
        },
        provider_id: provider_id.to_owned(),
        redirect_url: redirect_url.to_string(),
        upstream,
        created_at: now,
        expires_at: now + FLOW_TTL_SECS,
    };
    server.store.insert_connection_flow(account_id, &flow).await?;
    Ok(state)
}

/// Records the flow and builds the provider's URL.
pub async fn start_oauth2(
    server: &Api,
    who: &Caller,
    account_id: &AccountId,
    o: &OAuth2,
    provider_id: &str,
    redirect_url: &Url,
) -> Result<Url, Problem> {
    let client_id = o.client.client_id.as_deref().ok_or_else(Problem::server_error)?;
    let state = record_flow(server, who, account_id, provider_id, redirect_url, None).await?;
    let challenge = o.pkce.then(|| bk_domain::pkce::s256(&pkce_verifier(server, state.expose())));
    Ok(authorization_url(o, client_id, &callback_url(server), state.expose(), challenge.as_deref()))
}

/// What the provider sends back (providers add parameters of their own: unknown ones are ignored).
#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The flow's state, as sent to the provider (without it, the answer cannot be matched to a flow).
    #[param(required = true, min_length = 1, max_length = 256)]
    state: Option<String>,
    /// RFC 9207: the authorization server that answered.
    iss: Option<String>,
    /// The authorization code.
    code: Option<String>,
    /// The provider's refusal (`access_denied`, …).
    error: Option<String>,
    error_description: Option<String>,
}

/// The page a browser gets when there is no safe place to send it back to.
fn error_page(message: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Connection failed</title></head>\
         <body><h1>Connection failed</h1><p>{message}</p><p>Start the connection again from the application.</p></body></html>"
    );
    (StatusCode::BAD_REQUEST, [(header::CACHE_CONTROL, "no-store")], Html(html)).into_response()
}

/// The longest callback query that is sent through the sign-in page.
const MAX_CALLBACK_QUERY: usize = 8192;

/// A browser that is not signed in here signs in first and comes back to the same callback.
fn sign_in_first(query: &str) -> Response {
    if query.len() > MAX_CALLBACK_QUERY {
        return error_page("The answer from the service is too large.");
    }
    let next = format!("/api/v1/connections/callback?{query}");
    let to = format!("/login?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.as_str()), (header::CACHE_CONTROL, "no-store")]).into_response()
}

/// Sends the browser back to the flow's return URL with `params` added.
fn back_to(redirect_url: &Url, params: &[(&str, &str)]) -> Response {
    let mut url = redirect_url.clone();
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str()), (header::CACHE_CONTROL, "no-store")]).into_response()
}

/// The provider's error text as passed on: printable, at most 200 characters.
fn bounded(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// What is kept of a provider's user info as a connection's metadata: strings cut at
/// `MAX_METADATA_CHARS` (control characters dropped), objects of at most `MAX_METADATA_FIELDS`
/// members, arrays of at most `MAX_METADATA_ITEMS`, three levels deep; secrets redacted as in the
/// audit log. Whatever the provider sends, a connection's metadata stays small and printable.
const MAX_METADATA_CHARS: usize = 256;
const MAX_METADATA_FIELDS: usize = 32;
const MAX_METADATA_ITEMS: usize = 16;
const MAX_METADATA_DEPTH: usize = 3;

fn bounded_json(v: Value, depth: usize) -> Option<Value> {
    match v {
        Value::String(s) => {
            Some(Value::String(s.chars().filter(|c| !c.is_control()).take(MAX_METADATA_CHARS).collect()))
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => Some(v),
        _ if depth >= MAX_METADATA_DEPTH => None,
        Value::Array(a) => Some(Value::Array(
            a.into_iter().take(MAX_METADATA_ITEMS).filter_map(|x| bounded_json(x, depth + 1)).collect(),
        )),
        Value::Object(m) => Some(Value::Object(
            m.into_iter()
                .filter(|(k, _)| k.len() <= 64)
                .take(MAX_METADATA_FIELDS)
                .filter_map(|(k, x)| bounded_json(x, depth + 1).map(|x| (k, x)))
                .collect(),
        )),
    }
}

fn metadata_of(server: &Api, info: Option<Value>) -> Value {
    let mut v = match info.and_then(|i| bounded_json(i, 0)) {
        Some(v @ Value::Object(_)) => v,
        _ => json!({}),
    };
    server.audit.redact_json(&mut v);
    v
}

/// The scopes a provider says it granted, bounded (it may say anything).
fn bounded_scopes(scopes: Vec<String>) -> Vec<String> {
    scopes.into_iter().filter(|s| !s.is_empty() && s.len() <= 256).take(100).collect()
}

/// Where providers send the person's browser back.
#[utoipa::path(
    get,
    path = "/api/v1/connections/callback",
    operation_id = "connectCallback",
    tag = "connections",
    description = "Not for API clients: the redirect URI providers send the person's browser back to. It finishes \
        the flow `initiate` started, for a browser signed in to this server as the account that started it (else \
        it sends the browser to sign in first), and sends it on to the flow's `redirectUrl` with `connectionId` and \
        `status`, or with the provider's `error` and `error_description`. An answer that cannot be sent back \
        anywhere safe (an unknown, used or expired state; another account's flow) gets a page saying so; so does \
        a source sending more than `limits.connect_callbacks_per_source_per_minute` a minute (429).",
    params(CallbackParams),
    responses(
        (status = 303, description = "On to the flow's return URL, or to the sign-in page first",
            headers(("Location" = String, description = "Where the browser goes next"))),
        (status = 400, description = "A page saying why the connection failed", content_type = "text/html",
            body = String),
        (status = 429, description = "A page saying to wait", content_type = "text/html", body = String,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    )
)]
pub async fn callback(
    State(server): State<Arc<Api>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    // Anyone can send a callback, and each reaches the database: counted per source first.
    let source = bk_domain::rate_limit::source_key(peer.ip());
    let limit = server.limits.connect_callbacks_per_source_per_minute;
    if let Err(wait) = server.limiter.acquire("connect_callback", &source, limit, 60).await {
        let mut res = error_page("Too many connection answers from this address; wait a minute and try again.");
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = header::HeaderValue::from_str(&wait.max(1).to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return res;
    }
    // Finished in a task of its own: a browser that goes away mid-way does not cancel a code
    // exchange the provider has already answered (its tokens are stored, or revoked).
    let finish = tokio::spawn(async move { finish_oauth2(&server, &headers, raw.as_deref()).await });
    match finish.await {
        Ok(Ok(r) | Err(r)) => r,
        Err(e) => {
            tracing::error!(error = %e, "a connect callback failed");
            error_page("The server could not complete the connection; try again.")
        }
    }
}

async fn finish_oauth2(server: &Api, headers: &HeaderMap, raw: Option<&str>) -> Result<Response, Response> {
    let p: CallbackParams = serde_urlencoded::from_str(raw.unwrap_or("")).unwrap_or_default();
    let state = p
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(|| error_page("The answer from the service carries no valid request state."))?;
    // Only a browser signed in here as the account that started the flow finishes it. Otherwise
    // whoever starts a flow could send its authorization URL to someone else and attach that
    // person's upstream account to their own (or use the callback to bounce them to the flow's
    // return URL). Checked before the state is used, so signing in first keeps the flow alive.
    // A customer handed off to the connections page by a white-label app counts too (its own cookie).
    let mut signed_in = Vec::new();
    if let Ok(Caller::Browser { account_id, .. }) = caller(server, headers, false).await {
        signed_in.push(account_id);
    }
    if let Some(account_id) = crate::handoff::handed_off_account(server, headers).await {
        signed_in.push(account_id);
    }
    if signed_in.is_empty() {
        return Err(sign_in_first(raw.unwrap_or("")));
    }
    let now = server.clock.now();
    let flow = server
        .store
        .take_connection_flow(&token_hash(state), now)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "reading a connect flow failed");
            error_page("The server could not complete the connection; try again.")
        })?
        .ok_or_else(|| error_page("This connection request is unknown or was already used."))?;
    if !flow.is_current(now) {
        return Err(error_page("This connection request has expired."));
    }
    if !signed_in.contains(&flow.account_id) {
        tracing::warn!(flow_account = %flow.account_id, browser_account = %signed_in[0], "a connect flow came back to another account's browser");
        return Err(error_page("This connection request belongs to another account."));
    }
    let back = Url::parse(&flow.redirect_url).map_err(|_| error_page("The connection request is damaged."))?;
    let fail = |event: &str, error: &str, description: Option<&str>| {
        server.emit(
            server
                .event("connection.failed", Outcome::Failure)
                .account(&flow.account_id)
                .detail("provider", flow.provider_id.clone())
                .detail("stage", event.to_owned())
                .detail("error", error.to_owned()),
        );
        let mut params = vec![("error", error)];
        if let Some(d) = description {
            params.push(("error_description", d));
        }
        back_to(&back, &params)
    };
    let provider: Option<Arc<Provider>> = server.catalog.get(&flow.provider_id).cloned();
    // The provider's OAuth client: from the catalog, or (`mcp`) as discovery found it.
    let discovered: OAuth2;
    let mut mcp: Option<(McpClient, &McpServer)> = None;
    let o: &OAuth2 = match (provider.as_ref().map(|p| &p.auth), flow.upstream.as_deref()) {
        (Some(AuthKind::OAuth2(o)), None) => o,
        (Some(AuthKind::Mcp(m)), Some(raw)) => {
            let auth: McpAuth =
                serde_json::from_str(raw).map_err(|_| error_page("The connection request is damaged."))?;
            // RFC 9207 as the server advertises it, before anything else of the answer is used.
            if let Err(why) = auth.check_iss(p.iss.as_deref()) {
                tracing::warn!(provider = %flow.provider_id, "a connect callback's iss was refused");
                return Err(fail("authorize", "invalid_request", Some(why)));
            }
            let secret = match auth.registration {
                Registration::Document => None,
                Registration::Preregistered => m.client.client_secret.as_ref().map(|s| s.expose().to_owned()),
                Registration::Dynamic => match registration_secret(server, &auth).await {
                    Ok(s) => s,
                    Err(why) => return Err(fail("token", "server_error", Some(why))),
                },
            };
            discovered = match auth.oauth2(secret.as_deref()) {
                Ok(o) => o,
                Err(_) => return Err(error_page("The connection request is damaged.")),
            };
            mcp = Some((McpClient { auth, client_secret: secret }, m));
            &discovered
        }
        _ => return Err(fail("provider", "server_error", Some("the provider is no longer offered"))),
    };
    // RFC 9207: a provider that names itself must be the one that answered, error or code.
    if let Some(expected) = &o.issuer
        && p.iss.as_deref() != Some(expected.as_str())
    {
        tracing::warn!(provider = %flow.provider_id, "a connect callback did not carry the provider's issuer");
        return Err(fail(
            "authorize",
            "invalid_request",
            Some("the answer did not come from the provider's authorization server (iss)"),
        ));
    }
    if let Some(error) = p.error.as_deref() {
        let (error, description) = (bounded(error), p.error_description.as_deref().map(bounded));
        return Err(fail("authorize", &error, description.as_deref()));
    }
    let Some(code) = p.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 4096) else {
        return Err(fail("authorize", "invalid_request", Some("the provider sent no authorization code")));
    };
    let tokens = match server
        .upstream
        .exchange_code(
            o,
            code,
            &callback_url(server),
            o.pkce.then(|| pkce_verifier(server, state)).as_deref().map(|v| v.as_str()),
        )
        .await
    {
        Ok(t) => t,
        Err(UpstreamError::Refused { error, description }) => {
            return Err(fail("token", &error, description.as_deref()));
        }
        Err(e @ UpstreamError::Unavailable(_)) => {
            tracing::warn!(provider = %flow.provider_id, error = %e, "code exchange failed");
            return Err(fail("token", "temporarily_unavailable", Some("the provider could not be reached; try again")));
        }
        Err(e @ UpstreamError::Malformed(_)) => {
            tracing::warn!(provider = %flow.provider_id, error = %e, "code exchange failed");
            return Err(fail("token", "server_error", Some("the provider's answer was not understood")));
        }
    };
    let mut tokens = tokens;
    let info = match &mcp {
        None => server.upstream.user_info(o, &tokens.credential).await,
        // The MCP server must take the token its authorization server issued; what it says of
        // itself is the connection's metadata.
        Some((_, m)) => {
            let Credential::OAuth { access_token, .. } = &tokens.credential else {
                return Err(fail("token", "server_error", Some("the provider's answer was not understood")));
            };
            match server.upstream.probe_mcp(&m.url, access_token).await {
                Ok(info) => Some(info),
                Err(why) if why.contains("HTTP 401") => {
                    tracing::warn!(provider = %flow.provider_id, "the MCP server refused its new token");
                    if let Err(e) = server.upstream.revoke(o, &tokens.credential).await {
                        tracing::info!(error = %e, "revoking the refused grant failed");
                    }
                    return Err(fail(
                        "probe",
                        "access_denied",
                        Some("the MCP server did not accept the token its authorization server issued"),
                    ));
                }
                Err(why) => {
                    tracing::info!(provider = %flow.provider_id, why = %why, "the MCP server did not answer initialize");
                    None
                }
            }
        }
    };
    if let (Credential::OAuth { upstream, .. }, Some((client, _))) = (&mut tokens.credential, mcp.take()) {
        *upstream = Some(Box::new(client));
    }
    let connection = Connection {
        id: ConnectionId::generate(),
        account_id: flow.account_id.clone(),
        provider_id: flow.provider_id.clone(),
        provider_user_id: info.as_ref().and_then(provider_user_id),
        scopes: bounded_scopes(tokens.scopes.clone().unwrap_or_else(|| o.scopes.clone())),
        status: ConnectionStatus::Active,
        expires_at: tokens.expires_in.map(|s| now.saturating_add(s)),
        can_refresh: matches!(&tokens.credential, Credential::OAuth { refresh_token: Some(_), .. }),
        metadata: metadata_of(server, info),
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    let refusal = match server.vault.seal(&flow.account_id, &connection.id, &tokens.credential) {
        Err(e) => {
            tracing::error!(error = %e, "sealing a credential failed");
            Some(("server_error", "the connection could not be stored"))
        }
        Ok(sealed) => {
            let max = server.limits.max_connections_per_account;
            match server.store.insert_connection(&flow.account_id, &connection, &sealed, max).await {
                Ok(true) => None,
                Ok(false) => Some(("quota_exceeded", "this account holds the most connections it may")),
                Err(e) => {
                    tracing::error!(error = %e, "storing a connection failed");
                    Some(("server_error", "the connection could not be stored"))
                }
            }
        }
    };
    if let Some((error, description)) = refusal {
        // The provider granted what is not kept here: give it back rather than leave it orphaned.
        if let Err(e) = server.upstream.revoke(o, &tokens.credential).await {
            tracing::warn!(provider = %flow.provider_id, error = %e, "revoking an unstored grant failed");
        }
        return Err(fail("store", error, Some(description)));
    }
    tracing::info!(account = %flow.account_id, connection = %connection.id, provider = %flow.provider_id, "connection created");
    let mut event = server
        .event("connection.created", Outcome::Success)
        .account(&flow.account_id)
        .target(&connection.id)
        .detail("provider", flow.provider_id.clone());
    if let Some(c) = &flow.client_id {
        event = event.client(c);
    }
    server.emit(event);
    Ok(back_to(&back, &[("connectionId", connection.id.as_str()), ("status", connection.status.as_str())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_user_info_is_kept_small_and_printable() {
        let big = "x".repeat(10_000);
        let info = json!({
            "sub": "u1",
            "name": format!("Ann\u{7}{big}"),
            "nested": {"a": {"b": {"c": {"d": 1}}}},
            "list": (0..100).collect::<Vec<_>>(),
            "k".repeat(100): "long key",
        });
        let v = bounded_json(info, 0).unwrap();
        assert_eq!(v["sub"], "u1");
        assert_eq!(v["name"].as_str().unwrap().chars().count(), MAX_METADATA_CHARS);
        assert!(!v["name"].as_str().unwrap().contains('\u{7}'));
        assert_eq!(v["nested"]["a"], json!({}), "three levels deep (the document, nested, a), no more");
        assert_eq!(v["list"].as_array().unwrap().len(), MAX_METADATA_ITEMS);
        assert_eq!(v.as_object().unwrap().len(), 4, "an over-long key is dropped: {v}");
        let wide: serde_json::Map<String, Value> = (0..100).map(|i| (format!("f{i:03}"), json!(i))).collect();
        assert_eq!(bounded_json(Value::Object(wide), 0).unwrap().as_object().unwrap().len(), MAX_METADATA_FIELDS);
        let scopes = bounded_scopes(vec!["".into(), "a".into(), "s".repeat(300)]);
        assert_eq!(scopes, ["a"]);
        assert_eq!(bounded_scopes((0..500).map(|i| i.to_string()).collect()).len(), 100);
    }
}
