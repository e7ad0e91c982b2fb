//! `POST /api/v1/chat/completions` and `GET /api/v1/models` (scope `llm-all`): OpenAI-compatible
//! LLM access, billed to the caller's account in credits (`bk_llm::Llm`). A completion answers with
//! `X-Credits-Consumed` and `X-Credits-Remaining`; a stream (`"stream": true`) with
//! `X-Credits-Reserved` and `X-Credits-Remaining` (after the reservation), and ends with the comment
//! `: credits-consumed=N credits-remaining=M` before `data: [DONE]`. An empty balance is
//! `402 {"error": "CreditsExhaustedError", …}` and nothing is sent upstream.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bk_domain::scope::Scope;
use bk_llm::{ChatRequest, LlmError, UpstreamError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::Api;
use crate::caller::caller;
use crate::problem::{Body, Problem, json_body};

/// The largest chat-completion request body (a long conversation with its tools).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

const CONSUMED: HeaderName = HeaderName::from_static("x-credits-consumed");
const REMAINING: HeaderName = HeaderName::from_static("x-credits-remaining");
const RESERVED: HeaderName = HeaderName::from_static("x-credits-reserved");

/// The 402 body: problem details plus the `error` name OpenAI-style clients look for.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreditsExhausted {
    /// Always `CreditsExhaustedError`.
    pub error: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// The account's balance, in credits (1 credit = $0.0001).
    pub balance: i64,
    /// The credits this request needs to be able to pay (its reservation).
    pub required: i64,
}

fn header_value(n: i64) -> HeaderValue {
    HeaderValue::from(n)
}

/// An LLM error as this face answers it.
pub(crate) fn llm_problem(e: LlmError) -> Response {
    match e {
        LlmError::CreditsExhausted { balance, needed } => {
            let body = CreditsExhausted {
                error: "CreditsExhaustedError",
                kind: "about:blank",
                title: "Credits exhausted",
                status: 402,
                detail: format!(
                    "the balance is {balance} credits and this request needs up to {needed}; ask the operator for credits{}",
                    if balance > 0 { " or lower max_tokens" } else { "" }
                ),
                balance,
                required: needed,
            };
            let mut res = (StatusCode::PAYMENT_REQUIRED, Json(body)).into_response();
            let h = res.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(REMAINING, header_value(balance));
            res
        }
        LlmError::UnknownModel(id) => {
            let mut p = Problem::new(
                StatusCode::NOT_FOUND,
                "Unknown model",
                format!("the model {id:?} is not offered here; GET /api/v1/models lists those that are"),
            );
            p.field = Some("model".into());
            p.into_response()
        }
        LlmError::InvalidRequest { field, detail } => Problem::invalid(field, detail).into_response(),
        LlmError::Upstream(u) => upstream_problem(u).into_response(),
        LlmError::Store(e) => Problem::from(e).into_response(),
    }
}

fn upstream_problem(u: UpstreamError) -> Problem {
    tracing::warn!(error = %u, "LLM upstream failed");
    match u {
        UpstreamError::Rejected { status, message } => Problem::new(
            StatusCode::BAD_REQUEST,
            "Refused by the model",
            format!("the model's server refused the request ({status}): {message}"),
        ),
        UpstreamError::Timeout => {
            Problem::new(StatusCode::GATEWAY_TIMEOUT, "Upstream timeout", "the model's server did not answer in time")
        }
        UpstreamError::Status { status: 429, retry_after } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Upstream busy",
            "the model's server is rate limiting Bridgekeeper; retry later",
        )
        .retry_after(retry_after.unwrap_or(5)),
        UpstreamError::Status { status, .. } => Problem::new(
            StatusCode::BAD_GATEWAY,
            "Upstream failure",
            format!("the model's server answered {status}; nothing was charged"),
        ),
        UpstreamError::Unreachable(_) | UpstreamError::TooLarge(_) | UpstreamError::Malformed(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "Upstream failure", format!("{u}; nothing was charged"))
        }
    }
}

/// A chat completion (OpenAI-compatible), billed in credits.
#[utoipa::path(
    post,
    path = "/api/v1/chat/completions",
    operation_id = "createChatCompletion",
    summary = "Creates a chat completion",
    tag = "llm",
    description = "OpenAI-compatible chat completions over the models the operator configured (`GET /api/v1/models`): \
        `messages` (with `tool_calls` and `tool` messages), `tools`, `temperature`, `max_tokens`, `stream`; other \
        fields pass through to the model. Billed to the caller's account: before the model is called, credits for \
        the most the request can cost are reserved (the prompt's size and `max_tokens`, or a default lowered to \
        what the balance affords); afterwards the reported usage is charged, \
        `ceil((prompt_tokens × prompt_rate + completion_tokens × completion_rate) / 1e6)`, and the rest given back. \
        The answer carries `X-Credits-Consumed` and `X-Credits-Remaining`; a stream (`text/event-stream`) carries \
        `X-Credits-Reserved` and ends with the comment `: credits-consumed=N credits-remaining=M`. Scope `llm-all`.",
    request_body(content = Object, content_type = "application/json", description = "An OpenAI chat-completions request"),
    security(("bearer" = ["llm-all"])),
    responses(
        (status = 200, description = "The completion (or, with `stream: true`, its server-sent events)", content_type = "application/json", body = Object,
            headers(("X-Credits-Consumed" = i64, description = "Credits charged"), ("X-Credits-Remaining" = i64, description = "The balance afterwards"))),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 402, description = "The balance cannot pay for the request; nothing was sent to the model", content_type = "application/problem+json", body = CreditsExhausted),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 502, response = crate::problem::BadGateway),
        (status = 503, response = crate::problem::Unavailable),
        (status = 504, description = "The model did not answer in time; nothing was charged", content_type = "application/problem+json", body = crate::problem::ProblemDetails),
    )
)]
pub async fn chat_completions(State(server): State<Arc<Api>>, headers: HeaderMap, Body(body): Body) -> Response {
    match complete(&server, &headers, &body).await {
        Ok(r) => r,
        Err(r) => r,
    }
}

async fn complete(server: &Api, headers: &HeaderMap, body: &[u8]) -> Result<Response, Response> {
    let who = caller(server, headers, true).await.map_err(IntoResponse::into_response)?;
    let (account, _) = who.person_with(Scope::LlmAll).map_err(IntoResponse::into_response)?;
    let request: ChatRequest = json_body(headers, body).map_err(IntoResponse::into_response)?;
    if request.is_stream() {
        let s = server.llm.stream_billed(account, request).await.map_err(llm_problem)?;
        let events = futures_util::stream::unfold(s.events, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
        });
        let mut res = axum::body::Body::from_stream(events).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(RESERVED, header_value(s.credits_reserved));
        h.insert(REMAINING, header_value(s.credits_remaining));
        return Ok(res);
    }
    let billed = server.llm.complete_billed(account, request).await.map_err(llm_problem)?;
    let mut res = Json(billed.value).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(CONSUMED, header_value(billed.credits_consumed));
    h.insert(REMAINING, header_value(billed.credits_remaining));
    Ok(res)
}

/// A model (`GET /api/v1/models`).
#[derive(Serialize, ToSchema)]
pub struct ModelView {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    pub created: i64,
    pub owned_by: String,
    /// Credits per million prompt tokens (1 credit = $0.0001).
    pub prompt_credits_per_million: u64,
    /// Credits per million completion tokens.
    pub completion_credits_per_million: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
}

/// The list of models (OpenAI's shape).
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    pub data: Vec<ModelView>,
}

/// The models offered.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "listModels",
    summary = "Lists the models",
    tag = "llm",
    description = "The models `POST /api/v1/chat/completions` accepts, with their prices in credits. Scope `llm-all`.",
    security(("bearer" = ["llm-all"])),
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn models(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    who.person_with(Scope::LlmAll)?;
    let data = server
        .llm
        .models()
        .map(|m| ModelView {
            id: m.id.clone(),
            object: "model",
            created: 0,
            owned_by: m.owned_by.clone(),
            prompt_credits_per_million: m.price.prompt_per_million,
            completion_credits_per_million: m.price.completion_per_million,
            max_output_tokens: m.max_output_tokens,
        })
        .collect();
    Ok(Json(ModelList { object: "list", data }).into_response())
}
