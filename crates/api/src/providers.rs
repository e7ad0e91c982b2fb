//! `/api/v1/providers`: the provider catalog as a tenant sees it (scope `providers`) — what each
//! service is, how it is connected and whether this server is set up for it. Client ids, secrets and
//! admin tokens never appear; `configured: false` says an operator setting is still missing.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bk_connections::catalog::{AuthKind, Provider, ToolSource};
use bk_domain::scope::Scope;
use serde::Serialize;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::caller;
use crate::openapi::AuthKindName;
use crate::problem::{PathParam, Problem};

/// A provider as the API shows it (never a client id, secret or admin token).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    /// The catalog id (`[a-z0-9][a-z0-9_-]*`).
    pub id: String,
    pub name: String,
    pub description: String,
    pub logo_url: Option<String>,
    #[schema(value_type = AuthKindName)]
    pub auth_kind: &'static str,
    /// `false`: an operator setting is still missing, and connecting it is refused.
    pub configured: bool,
    pub tools: ProviderTools,
    /// Tools that only read.
    pub read_tools: Vec<String>,
    /// Tools that write.
    pub write_tools: Vec<String>,
    /// Scopes asked of the provider (`oauth2` and `mcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The MCP server (`mcp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mcp_url: Option<String>,
    /// The key field of the connect form (`api_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyFieldView>,
}

/// Where a provider's tools come from.
#[derive(Serialize, ToSchema)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum ProviderTools {
    /// None declared.
    None,
    /// An upstream MCP server.
    Mcp { url: String },
    /// Declarative HTTP tools.
    Http { count: usize, tools: Vec<HttpToolView> },
}

/// A declarative HTTP tool.
#[derive(Serialize, ToSchema)]
pub struct HttpToolView {
    pub name: String,
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    pub description: String,
}

/// The key field of an `api_key` provider's connect form.
#[derive(Serialize, ToSchema)]
pub struct ApiKeyFieldView {
    pub label: String,
    /// Where to find or create the key.
    pub help: Option<String>,
}

/// A provider as the API shows it.
pub(crate) fn view(p: &Provider) -> ProviderView {
    let mut v = ProviderView {
        id: p.id.clone(),
        name: p.display.name.clone(),
        description: p.display.description.clone(),
        logo_url: p.display.logo_url.as_ref().map(|u| u.to_string()),
        auth_kind: p.auth.name(),
        configured: p.missing_setting().is_none(),
        tools: match &p.tools {
            ToolSource::None => ProviderTools::None,
            ToolSource::UpstreamMcp { url } => ProviderTools::Mcp { url: url.to_string() },
            ToolSource::Http { tools } => ProviderTools::Http {
                count: tools.len(),
                tools: tools
                    .iter()
                    .map(|t| HttpToolView {
                        name: t.name.clone(),
                        method: t.method.clone(),
                        description: t.description.clone(),
                    })
                    .collect(),
            },
        },
        read_tools: p.read_tools.clone(),
        write_tools: p.write_tools.clone(),
        scopes: None,
        mcp_url: None,
        api_key: None,
    };
    match &p.auth {
        AuthKind::OAuth2(o) => v.scopes = Some(o.scopes.clone()),
        AuthKind::Mcp(m) => {
            v.scopes = Some(m.scopes.clone());
            v.mcp_url = Some(m.url.to_string());
        }
        AuthKind::ApiKey(f) => v.api_key = Some(ApiKeyFieldView { label: f.label.clone(), help: f.help.clone() }),
        AuthKind::TokenExchange(_) => {}
    }
    v
}

#[derive(Serialize, ToSchema)]
pub struct ProviderList {
    pub providers: Vec<ProviderView>,
}

/// The provider catalog.
#[utoipa::path(
    get,
    path = "/api/v1/providers",
    operation_id = "listProviders",
    tag = "providers",
    description = "Every provider an account can connect on this server. Scope `providers`.",
    security(("bearer" = ["providers"])),
    responses(
        (status = 200, description = "The catalog", body = ProviderList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    who.person_with(Scope::Providers)?;
    let providers = server.catalog.iter().map(|p| view(p)).collect();
    Ok(Json(ProviderList { providers }).into_response())
}

/// One provider.
#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}",
    operation_id = "getProvider",
    tag = "providers",
    description = "One provider of the catalog. Scope `providers`.",
    params(("id" = String, Path, description = "The provider id")),
    security(("bearer" = ["providers"])),
    responses(
        (status = 200, description = "The provider", body = ProviderView),
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
    who.person_with(Scope::Providers)?;
    let p = server.catalog.get(&id).ok_or_else(|| Problem::not_found("provider"))?;
    Ok(Json(view(p)).into_response())
}
