//! Operators' upstream API keys of the configured LLM models:
//! `PUT /api/v1/admin/llm/models/{id}/api-key` (sealed under the master key, never returned) and
//! `DELETE` of the same path (the configured `api_key_env` / `api_key_file` applies again). An
//! operator token; audited as `llm.api_key.set` / `llm.api_key.cleared`, without the key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_domain::audit::Outcome;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::llm::llm_problem;
use crate::problem::{Body, PathParam, Problem, json_body};

/// A model's upstream API key. No `Debug`: it never prints.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetApiKeyRequest {
    /// The key the upstream expects (sent as `Authorization: Bearer KEY`, or in the model's
    /// `api_key_header`), 1 to 4096 bytes, one line.
    pub api_key: String,
}

async fn operator(server: &Api, headers: &HeaderMap) -> Result<Caller, Problem> {
    let who = caller(server, headers, true).await?;
    if !matches!(who, Caller::Operator { .. }) {
        return Err(Problem::forbidden("a model's API key is set by an operator token"));
    }
    Ok(who)
}

/// Sets a model's upstream API key.
#[utoipa::path(
    put,
    path = "/api/v1/admin/llm/models/{id}/api-key",
    operation_id = "adminSetLlmApiKey",
    summary = "Sets a model's upstream API key",
    tag = "admin",
    description = "Seals the key under the master key (bound to the model id) and stores it; it takes \
        precedence over the model's configured `api_key_env` / `api_key_file` on every instance within \
        two seconds. The key is never returned or logged; audited as `llm.api_key.set`. The model must \
        be one of `[[llm.models]]`. An operator token.",
    params(("id" = String, Path, description = "The model id clients name (percent-encode a `/`)")),
    request_body(content = SetApiKeyRequest, content_type = "application/json"),
    security(("operator" = [])),
    responses(
        (status = 204, description = "Stored"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn set_api_key(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = operator(&server, &headers).await?;
    let req: SetApiKeyRequest = json_body(&headers, &body)?;
    if let Err(e) = server.llm.set_api_key(&id, bk_llm::ApiKey::new(req.api_key)).await {
        return Ok(llm_problem(e));
    }
    server.emit(who.stamp(server.event("llm.api_key.set", Outcome::Success)).target(&id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Clears a model's stored upstream API key.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/llm/models/{id}/api-key",
    operation_id = "adminClearLlmApiKey",
    summary = "Clears a model's stored upstream API key",
    tag = "admin",
    description = "Removes the stored key: the model's configured `api_key_env` / `api_key_file` (or no \
        key) applies again on every instance within two seconds. Audited as `llm.api_key.cleared` \
        (`removed`: whether a key was stored). An operator token.",
    params(("id" = String, Path, description = "The model id clients name (percent-encode a `/`)")),
    security(("operator" = [])),
    responses(
        (status = 204, description = "No stored key any more"),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn clear_api_key(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = operator(&server, &headers).await?;
    let removed = match server.llm.clear_api_key(&id).await {
        Ok(r) => r,
        Err(e) => return Ok(llm_problem(e)),
    };
    server
        .emit(who.stamp(server.event("llm.api_key.cleared", Outcome::Success)).target(&id).detail("removed", removed));
    Ok(StatusCode::NO_CONTENT.into_response())
}
