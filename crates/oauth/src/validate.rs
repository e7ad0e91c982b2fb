//! `GET /api/v1/auth/validate?<authorization request>`: what the consent screen will show for a
//! request — the client (with its branding), the scopes in plain words and the restrictions — or the
//! error the request would get.

use std::sync::Arc;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AuthServer;
use crate::authorize::AuthorizeError;

pub async fn validate(State(server): State<Arc<AuthServer>>, RawQuery(q): RawQuery) -> Response {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    match server.validate_authorize(&pairs).await {
        Ok(req) => Json(json!({
            "valid": true,
            "client": {
                "id": req.client.id,
                "name": req.client.name,
                "role": req.client.role.as_str(),
                "dynamicallyRegistered": req.client.origin == bk_domain::client::ClientOrigin::Dynamic,
                "branding": req.client.branding,
            },
            "redirectUri": req.redirect_uri,
            "scopes": req.scopes.iter().map(|s| json!({"name": s.as_str(), "description": s.describe()})).collect::<Vec<_>>(),
            "providerPermissions": req.restrictions.provider_permissions,
            "defaultProviderPermission": req.restrictions.default_provider_permission,
            "agentIds": req.restrictions.allowed_agent_ids,
            "knowledgeBaseIds": req.restrictions.allowed_knowledge_base_ids,
            "resource": req.resource,
        }))
        .into_response(),
        Err(AuthorizeError::Page(msg)) => {
            (StatusCode::BAD_REQUEST, Json(json!({"valid": false, "error": "invalid_request", "error_description": msg})))
                .into_response()
        }
        Err(AuthorizeError::Redirect(url)) => {
            let u = url::Url::parse(&url).ok();
            let get = |k: &str| u.as_ref().and_then(|u| u.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned()));
            (
                StatusCode::BAD_REQUEST,
                Json(json!({"valid": false, "error": get("error"), "error_description": get("error_description")})),
            )
                .into_response()
        }
    }
}
