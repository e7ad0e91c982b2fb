//! `/api/v1/providers`: the provider catalog as a tenant sees it (scope `providers`) — what each
//! service is, how it is connected and whether this server is set up for it. Client ids, secrets and
//! admin tokens never appear; `configured: false` says an operator setting is still missing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bk_connections::catalog::{AuthKind, Provider, ToolSource};
use bk_domain::scope::Scope;
use serde_json::{Value, json};

use crate::Api;
use crate::caller::caller;
use crate::problem::Problem;

/// A provider as the API shows it.
pub(crate) fn view(p: &Provider) -> Value {
    let mut v = json!({
        "id": p.id,
        "name": p.display.name,
        "description": p.display.description,
        "logoUrl": p.display.logo_url.as_ref().map(|u| u.as_str()),
        "authKind": p.auth.name(),
        "configured": p.missing_setting().is_none(),
        "tools": match &p.tools {
            ToolSource::None => json!({"source": "none"}),
            ToolSource::UpstreamMcp { url } => json!({"source": "mcp", "url": url.as_str()}),
            ToolSource::Http { tools } => json!({
                "source": "http",
                "count": tools.len(),
                "tools": tools.iter().map(|t| json!({"name": t.name, "method": t.method, "description": t.description})).collect::<Vec<_>>(),
            }),
        },
        "readTools": p.read_tools,
        "writeTools": p.write_tools,
    });
    match &p.auth {
        AuthKind::OAuth2(o) => v["scopes"] = json!(o.scopes),
        AuthKind::Mcp(m) => {
            v["scopes"] = json!(m.scopes);
            v["mcpUrl"] = json!(m.url.as_str());
        }
        AuthKind::ApiKey(f) => v["apiKey"] = json!({"label": f.label, "help": f.help}),
        AuthKind::TokenExchange(_) => {}
    }
    v
}

pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    who.person_with(Scope::Providers)?;
    let providers: Vec<Value> = server.catalog.iter().map(|p| view(p)).collect();
    Ok(Json(json!({"providers": providers})).into_response())
}

pub async fn get(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    who.person_with(Scope::Providers)?;
    let p = server.catalog.get(&id).ok_or_else(|| Problem::not_found("provider"))?;
    Ok(Json(view(p)).into_response())
}
