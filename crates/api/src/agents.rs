//! `/api/v1/agents…`: the account's agents and chat with them. Creating, changing and deleting an
//! agent takes scope `agents-all` and a token of a white-label client (reference 003: agent
//! management is WHITELABEL_CUSTOMER only); reading and listing take `agents-all` or `agents-use`
//! (or the person's own browser session); chat takes `agents-use` (or `agents-all`) and a token.
//! `default` names the account's default agent (created on first need). Everywhere an agent is
//! named, one outside the grant's `allowedAgentIds` is not found, exactly like one that does not
//! exist — `default` too, when the default agent is outside the list.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bk_access::AccessContext;
use bk_agents::{AgentError, Agents, ModelError, RunResult, Stop};
use bk_domain::agent::{self as rules, Agent, BillingAccountType, MAX_AGENTS_PER_ACCOUNT, UsageLimits, agent_allowed};
use bk_domain::audit::Outcome;
use bk_domain::client::ClientRole;
use bk_domain::ports::AgentCreation;
use bk_domain::scope::Scope;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::Api;
use crate::caller::{Caller, caller};
use crate::problem::{Body, PathParam, Problem, json_body};

/// Request bodies of this API are small; a chat's messages are bounded below too.
pub(crate) const BODY_LIMIT: usize = 256 * 1024;
const MAX_CHAT_MESSAGES: usize = 50;
const MAX_MESSAGE_CHARS: usize = 20_000;
const MAX_CONVERSATION_ID: usize = 100;
const CONVERSATION_HEADER: &str = "x-conversation-id";

/// The built-in tools an agent may enable (never `use-agent`: an agent does not call agents).
pub const AGENT_BUILT_IN_TOOLS: &[&str] = &["whoami", "list-connections", "restrict-access"];

/// An agent as this API shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// `agt_…`
    id: String,
    name: String,
    /// The model id.
    llm: String,
    personality: Option<String>,
    description: Option<String>,
    temperature: Option<f64>,
    first_prompt: Option<String>,
    enabled_built_in_tools: Vec<String>,
    billing_account_type: BillingAccountType,
    usage_limits: UsageLimits,
    /// The account's default agent (also reachable as `default`; not deletable).
    is_default: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<Agent> for AgentView {
    fn from(a: Agent) -> Self {
        Self {
            id: a.id,
            name: a.name,
            llm: a.llm,
            personality: a.personality,
            description: a.description,
            temperature: a.temperature,
            first_prompt: a.first_prompt,
            enabled_built_in_tools: a.enabled_built_in_tools,
            billing_account_type: a.billing_account_type,
            usage_limits: a.usage_limits,
            is_default: a.is_default,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    agents: Vec<AgentView>,
}

/// A new agent, or (every field optional) the fields of one to change.
#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Support", "llm": "gpt-4o-mini", "personality": "You are concise.",
    "billingAccountType": "owner", "usageLimits": {"dailyMessagesPerUser": 50}}))]
pub struct AgentBody {
    /// 1 to 100 characters (required on create).
    name: Option<String>,
    /// The model id (default `default`).
    llm: Option<String>,
    personality: Option<String>,
    description: Option<String>,
    /// 0 to 2.
    temperature: Option<f64>,
    first_prompt: Option<String>,
    /// Of `whoami`, `list-connections`, `restrict-access`.
    enabled_built_in_tools: Option<Vec<String>>,
    /// `owner` (the owner of the white-label client that last changed the agent pays) or `user`
    /// (the caller pays; default).
    billing_account_type: Option<BillingAccountType>,
    usage_limits: Option<UsageLimits>,
}

impl AgentBody {
    fn apply(self, a: &mut Agent) {
        if let Some(v) = self.name {
            a.name = v;
        }
        if let Some(v) = self.llm {
            a.llm = v;
        }
        if self.personality.is_some() {
            a.personality = self.personality;
        }
        if self.description.is_some() {
            a.description = self.description;
        }
        if self.temperature.is_some() {
            a.temperature = self.temperature;
        }
        if self.first_prompt.is_some() {
            a.first_prompt = self.first_prompt;
        }
        if let Some(v) = self.enabled_built_in_tools {
            a.enabled_built_in_tools = v;
        }
        if let Some(v) = self.billing_account_type {
            a.billing_account_type = v;
        }
        if let Some(v) = self.usage_limits {
            a.usage_limits = v;
        }
    }
}

/// The token of a white-label client with `agents-all`: the only caller that manages agents.
async fn manager(server: &Api, who: &Caller) -> Result<(AccessContext, Option<bk_domain::ids::AccountId>), Problem> {
    let ctx = match who {
        Caller::Token(ctx) => ctx,
        Caller::Operator { .. } => {
            return Err(Problem::forbidden("this endpoint acts for an account; an operator token has none"));
        }
        Caller::Browser { .. } => {
            return Err(Problem::forbidden("agents are managed with a white-label client's token (scope agents-all)"));
        }
    };
    if !ctx.scopes.contains(Scope::AgentsAll) {
        return Err(Problem::insufficient_scope(Scope::AgentsAll));
    }
    match server.store.client(&ctx.client_id).await? {
        Some(c) if c.role == ClientRole::WhitelabelCustomer => Ok((ctx.clone(), c.owner)),
        _ => Err(Problem::forbidden("only a white-label client's token may manage agents (agents-all)")),
    }
}

/// A token with `agents-use` or `agents-all`, or the person's own browser session (read only).
/// An account and the grant's `allowedAgentIds` (`None`: no grant, the person's own session).
type Reader<'a> = (&'a bk_domain::ids::AccountId, Option<&'a Option<Vec<String>>>);

fn reader(who: &Caller) -> Result<Reader<'_>, Problem> {
    match who {
        Caller::Token(ctx) if ctx.scopes.contains(Scope::AgentsAll) || ctx.scopes.contains(Scope::AgentsUse) => {
            Ok((&ctx.account_id, Some(&ctx.restrictions.allowed_agent_ids)))
        }
        Caller::Token(_) => Err(Problem::insufficient_scope(Scope::AgentsUse)),
        Caller::Browser { account_id, .. } => Ok((account_id, None)),
        Caller::Operator { .. } => {
            Err(Problem::forbidden("this endpoint acts for an account; an operator token has none"))
        }
    }
}

fn agents_of(server: &Api) -> &Agents {
    &server.agents
}

/// The agent `id` (or `default`) of `account`, within `allowed` (`None`: unrestricted).
async fn find(
    server: &Api,
    account: &bk_domain::ids::AccountId,
    allowed: Option<&Option<Vec<String>>>,
    id: &str,
) -> Result<Agent, Problem> {
    agents_of(server).find(account, allowed, id).await.map_err(run_problem)
}

fn invalid(e: rules::InvalidAgent) -> Problem {
    let field = e.0.split([' ', ':']).next().unwrap_or("body").to_owned();
    Problem::invalid(&field, e.0)
}

#[utoipa::path(
    get,
    path = "/api/v1/agents",
    operation_id = "listAgents",
    tag = "agents",
    description = "The account's agents (the default one included, created on first need), less those outside the \
        token's `allowedAgentIds`. Scope `agents-use` or `agents-all`.",
    security(("bearer" = ["agents-use"]), ("bearer" = ["agents-all"])),
    responses(
        (status = 200, description = "The agents", body = AgentList),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn list(State(server): State<Arc<Api>>, headers: HeaderMap) -> Result<Response, Problem> {
    let who = caller(&server, &headers, false).await?;
    let (account, allowed) = reader(&who)?;
    let store = &agents_of(&server).store;
    store.default_agent(account, &Agent::default_for(account, server.clock.now())).await?;
    let agents = store
        .agents(account)
        .await?
        .into_iter()
        .filter(|a| allowed.is_none_or(|l| agent_allowed(l, &a.id)))
        .map(AgentView::from)
        .collect();
    Ok(Json(AgentList { agents }).into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/agents",
    operation_id = "createAgent",
    tag = "agents",
    description = "Creates an agent of the account. Only a white-label client's token with scope `agents-all`. \
        `billingAccountType: owner` bills the billing account an operator set on the client (`billingAccountId`; \
        else the client's owner, else the agent's own account), `user` (the default) the caller.",
    request_body = AgentBody,
    security(("bearer" = ["agents-all"])),
    responses(
        (status = 201, description = "The new agent", body = AgentView),
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
    let (ctx, client_owner) = manager(&server, &who).await?;
    let body: AgentBody = json_body(&headers, &body)?;
    if body.name.is_none() {
        return Err(Problem::invalid("name", "name is required"));
    }
    let now = server.clock.now();
    let mut agent = Agent::default_for(&ctx.account_id, now);
    agent.is_default = false;
    agent.description = None;
    agent.billing_owner = client_owner;
    agent.created_by_client = Some(ctx.client_id.clone());
    body.apply(&mut agent);
    rules::validate(&agent, AGENT_BUILT_IN_TOOLS).map_err(invalid)?;
    match agents_of(&server).store.create_agent(&agent, MAX_AGENTS_PER_ACCOUNT).await? {
        AgentCreation::Created => {}
        AgentCreation::QuotaReached => {
            return Err(Problem::quota(format!("an account may own at most {MAX_AGENTS_PER_ACCOUNT} agents")));
        }
    }
    server.emit(who.stamp(server.event("agent.created", Outcome::Success)).target(&agent.id));
    Ok((StatusCode::CREATED, Json(AgentView::from(agent))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/v1/agents/{id}",
    operation_id = "getAgent",
    tag = "agents",
    description = "One agent (`default`: the account's default agent). Another account's, or one outside the \
        token's `allowedAgentIds`, is not found. Scope `agents-use` or `agents-all`.",
    params(("id" = String, Path, description = "The agent id, `agt_…`, or `default`")),
    security(("bearer" = ["agents-use"]), ("bearer" = ["agents-all"])),
    responses(
        (status = 200, description = "The agent", body = AgentView),
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
    let (account, allowed) = reader(&who)?;
    let agent = find(&server, account, allowed, &id).await?;
    Ok(Json(AgentView::from(agent)).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/v1/agents/{id}",
    operation_id = "updateAgent",
    tag = "agents",
    description = "Changes the fields given (`default`: the default agent). Only a white-label client's token with \
        scope `agents-all`.",
    params(("id" = String, Path, description = "The agent id, `agt_…`, or `default`")),
    request_body = AgentBody,
    security(("bearer" = ["agents-all"])),
    responses(
        (status = 200, description = "The agent as changed", body = AgentView),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn update(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (ctx, client_owner) = manager(&server, &who).await?;
    let mut agent = find(&server, &ctx.account_id, Some(&ctx.restrictions.allowed_agent_ids), &id).await?;
    let body: AgentBody = json_body(&headers, &body)?;
    body.apply(&mut agent);
    // `owner` billing charges the owner of the client that last changed the agent: another
    // white-label client of the same account cannot make the first one's owner pay.
    if agent.created_by_client.as_ref() != Some(&ctx.client_id) {
        agent.created_by_client = Some(ctx.client_id.clone());
        agent.billing_owner = client_owner;
    }
    rules::validate(&agent, AGENT_BUILT_IN_TOOLS).map_err(invalid)?;
    agent.updated_at = server.clock.now();
    if !agents_of(&server).store.update_agent(&ctx.account_id, &agent).await? {
        return Err(Problem::not_found("agent"));
    }
    server.emit(who.stamp(server.event("agent.updated", Outcome::Success)).target(&agent.id));
    Ok(Json(AgentView::from(agent)).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/v1/agents/{id}",
    operation_id = "deleteAgent",
    tag = "agents",
    description = "Deletes an agent with its conversations. The default agent cannot be deleted (409). Only a \
        white-label client's token with scope `agents-all`.",
    params(("id" = String, Path, description = "The agent id, `agt_…`")),
    security(("bearer" = ["agents-all"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 409, response = crate::problem::Conflict),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn delete(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let (ctx, _) = manager(&server, &who).await?;
    let agent = find(&server, &ctx.account_id, Some(&ctx.restrictions.allowed_agent_ids), &id).await?;
    if agent.is_default {
        return Err(Problem::new(StatusCode::CONFLICT, "Conflict", "the default agent cannot be deleted"));
    }
    if !agents_of(&server).store.delete_agent(&ctx.account_id, &agent.id).await? {
        return Err(Problem::not_found("agent"));
    }
    server.emit(who.stamp(server.event("agent.deleted", Outcome::Success)).target(&agent.id));
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// An OpenAI chat-completions request to an agent.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"messages": [{"role": "user", "content": "What is on my calendar today?"}],
    "conversationId": "c-42"}))]
pub struct ChatRequest {
    /// `user` and `assistant` messages; the last is the user's new message. With a stored
    /// conversation, only the last one is used (the conversation holds the rest).
    messages: Vec<ChatMessage>,
    /// Continue (or start, under this id) a conversation; also `X-Conversation-Id`.
    conversation_id: Option<String>,
    /// Ignored: the agent's model answers.
    #[allow(dead_code)]
    model: Option<String>,
    /// Only `false` (streaming is not offered).
    stream: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `user` or `assistant`.
    role: String,
    content: String,
}

/// An OpenAI `chat.completion`, plus the conversation id and the tool calls the agent made.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatResponse {
    id: String,
    object: &'static str,
    created: i64,
    model: String,
    #[schema(value_type = Vec<Object>)]
    choices: Value,
    conversation_id: String,
    #[schema(value_type = Vec<Object>)]
    tool_calls: Value,
    /// Credits this answer cost.
    credits_consumed: i64,
}

fn conversation_id(headers: &HeaderMap, body: Option<String>) -> Result<String, Problem> {
    let given = body.or_else(|| headers.get(CONVERSATION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned));
    match given {
        None => Ok(format!("conv_{}", uuid_like())),
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CONVERSATION_ID
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(c)
        }
        Some(_) => Err(Problem::invalid(
            "conversationId",
            format!("conversationId must be 1 to {MAX_CONVERSATION_ID} letters, digits, '-' or '_'"),
        )),
    }
}

fn uuid_like() -> String {
    bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<16>()).replace(['-', '_'], "x")
}

#[utoipa::path(
    post,
    path = "/api/v1/agents/{id}/chat/completions",
    operation_id = "chatWithAgent",
    tag = "agents",
    description = "OpenAI-compatible chat with an agent (`default`: the default agent), which may call the tools this \
        token may call (its MCP scopes and provider permissions decide). Conversations are kept per account and \
        agent (`conversationId` or `X-Conversation-Id`; the answer's `X-Conversation-Id` names it). A reached usage \
        limit answers the agent's `limitReachedMessage` without calling the model. Scope `agents-use` (or `agents-all`).",
    params(("id" = String, Path, description = "The agent id, `agt_…`, or `default`")),
    request_body = ChatRequest,
    security(("bearer" = ["agents-use"]), ("bearer" = ["agents-all"])),
    responses(
        (status = 200, description = "The agent's answer", body = ChatResponse,
            headers(("X-Conversation-Id" = String, description = "The conversation"))),
        (status = 400, response = crate::problem::BadRequest),
        (status = 401, response = crate::problem::Unauthorized),
        (status = 402, description = "CreditsExhaustedError: the billed account has no credits left; \
            BillingAccountUnavailableError: the billing account of an `owner` agent's client is disabled or gone",
            content_type = "application/problem+json", body = crate::problem::ProblemDetails),
        (status = 403, response = crate::problem::Forbidden),
        (status = 404, response = crate::problem::NotFound),
        (status = 413, response = crate::problem::PayloadTooLarge),
        (status = 415, response = crate::problem::UnsupportedMediaType),
        (status = 502, response = crate::problem::BadGateway),
        (status = 503, response = crate::problem::Unavailable),
    )
)]
pub async fn chat(
    State(server): State<Arc<Api>>,
    headers: HeaderMap,
    PathParam(id): PathParam<String>,
    Body(body): Body,
) -> Result<Response, Problem> {
    let who = caller(&server, &headers, true).await?;
    let ctx = match &who {
        Caller::Token(ctx) if ctx.scopes.contains(Scope::AgentsUse) || ctx.scopes.contains(Scope::AgentsAll) => ctx,
        Caller::Token(_) => return Err(Problem::insufficient_scope(Scope::AgentsUse)),
        _ => return Err(Problem::forbidden("agent chat takes a bearer token with scope agents-use")),
    };
    let agent = find(&server, &ctx.account_id, Some(&ctx.restrictions.allowed_agent_ids), &id).await?;
    let req: ChatRequest = json_body(&headers, &body)?;
    if req.stream == Some(true) {
        return Err(Problem::invalid("stream", "streaming answers are not offered; send stream: false"));
    }
    if req.messages.is_empty() || req.messages.len() > MAX_CHAT_MESSAGES {
        return Err(Problem::invalid("messages", format!("messages must hold 1 to {MAX_CHAT_MESSAGES} messages")));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if m.role != "user" && m.role != "assistant" {
            return Err(Problem::invalid(&format!("messages[{i}].role"), "a message's role must be user or assistant"));
        }
        if m.content.chars().count() > MAX_MESSAGE_CHARS {
            return Err(Problem::invalid(
                &format!("messages[{i}].content"),
                format!("a message is at most {MAX_MESSAGE_CHARS} characters"),
            ));
        }
    }
    let last = req.messages.last().filter(|m| m.role == "user" && !m.content.trim().is_empty());
    let Some(prompt) = last.map(|m| m.content.clone()) else {
        return Err(Problem::invalid("messages", "the last message must be the user's, and not empty"));
    };
    let conversation = conversation_id(&headers, req.conversation_id)?;
    let agents = agents_of(&server);
    if !agents.has_model() {
        return Err(no_model());
    }
    let stored = agents.store.conversation(&ctx.account_id, &agent.id, &ctx.account_id, &conversation).await?;
    let history: Vec<Value> = match stored {
        Some(h) => h,
        None => req.messages[..req.messages.len() - 1]
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect(),
    };
    let result = agents.run(ctx, &agent, history.clone(), &prompt, None, None).await.map_err(run_problem)?;
    let (answer, calls, credits, finish) = match &result {
        RunResult::Ran(o) => (
            o.answer.clone(),
            json!(o.tool_calls),
            o.credits_consumed,
            if o.stop == Stop::Answered { "stop" } else { "length" },
        ),
        RunResult::LimitReached(m) => (m.clone(), json!([]), 0, "stop"),
    };
    let new = [json!({"role": "user", "content": prompt}), json!({"role": "assistant", "content": result.answer()})];
    let kept = Agents::extend_conversation(history, &new);
    let now = server.clock.now();
    agents.store.save_conversation(&ctx.account_id, &agent.id, &ctx.account_id, &conversation, &kept, now).await?;
    let body = ChatResponse {
        id: format!("chatcmpl-{}", uuid_like()),
        object: "chat.completion",
        created: now,
        model: agent.llm.clone(),
        choices: json!([{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}]),
        conversation_id: conversation.clone(),
        tool_calls: calls,
        credits_consumed: credits,
    };
    let mut res = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&conversation) {
        res.headers_mut().insert(CONVERSATION_HEADER, v);
    }
    Ok(res)
}

fn no_model() -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, "No language model", AgentError::NoModel.to_string())
}

fn run_problem(e: AgentError) -> Problem {
    match e {
        AgentError::NotFound => Problem::not_found("agent"),
        AgentError::NoModel => no_model(),
        AgentError::NotReady => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", e.to_string()),
        AgentError::Model(ModelError::CreditsExhausted) => {
            Problem::new(StatusCode::PAYMENT_REQUIRED, "CreditsExhaustedError", e.to_string())
        }
        AgentError::Model(ModelError::UnknownModel(m)) => Problem::invalid(
            "llm",
            format!("the agent's model {} is not offered here", m.chars().take(100).collect::<String>()),
        ),
        AgentError::Model(ModelError::Unavailable(_)) => {
            Problem::new(StatusCode::BAD_GATEWAY, "Bad gateway", "the language model is unavailable; retry")
        }
        AgentError::Store(s) => s.into(),
        AgentError::BillingUnavailable(_) => {
            Problem::new(StatusCode::PAYMENT_REQUIRED, "BillingAccountUnavailableError", e.to_string())
        }
    }
}
