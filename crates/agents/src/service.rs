//! Agents as a service: which agent a caller means (its own account's, within the grant's
//! `allowedAgentIds`, `default` resolving to the account's default agent), the usage limits, and a
//! run of the loop over the gateway's tools for the caller's token, billed to the right account,
//! one audit event per model turn (credits, never prompt text).

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use bk_access::AccessContext;
use bk_audit::redact::Redactor;
use bk_domain::access::Clock;
use bk_domain::agent::{Agent, BillingAccountType, BillingUnavailable, MAX_CONVERSATION_MESSAGES, agent_allowed};
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ids::AccountId;
use bk_domain::ports::{AgentStore, StoreError};
use bk_gateway::Gateway;
use bk_gateway::agent_tools::AgentToolCall;
use bk_gateway::relay::Relay;
use bk_gateway::tools::ToolDescriptor;
use serde_json::Value;

use crate::model::{AgentModel, ModelError};
use crate::run::{LoopInput, LoopLimits, LoopOutcome, Stop, ToolHost, run_loop};

/// Why a run or a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No such agent for this caller (unknown, another tenant's, or outside `allowedAgentIds`).
    #[error("no such agent")]
    NotFound,
    #[error("no language model is configured on this server, so agents cannot answer")]
    NoModel,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("the server is not ready to run agents")]
    NotReady,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `owner`-billed agent whose client's billing account cannot pay (disabled, deleted, or
    /// the client deleted): refused, the customer is not charged instead.
    #[error(transparent)]
    BillingUnavailable(#[from] BillingUnavailable),
}

/// What a run produced: an answer from the loop, or the agent's limit message (no model call).
pub enum RunResult {
    Ran(LoopOutcome),
    LimitReached(String),
}

impl RunResult {
    pub fn answer(&self) -> &str {
        match self {
            RunResult::Ran(o) => &o.answer,
            RunResult::LimitReached(m) => m,
        }
    }
}

pub struct Agents {
    pub store: Arc<dyn AgentStore>,
    model: Option<Arc<dyn AgentModel>>,
    gateway: OnceLock<Weak<Gateway>>,
    pub limits: LoopLimits,
    audit: Arc<dyn AuditSink>,
    pub clock: Arc<dyn Clock>,
    redactor: Arc<Redactor>,
}

impl Agents {
    pub fn new(
        store: Arc<dyn AgentStore>,
        model: Option<Arc<dyn AgentModel>>,
        limits: LoopLimits,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
        redactor: Arc<Redactor>,
    ) -> Self {
        Self { store, model, gateway: OnceLock::new(), limits, audit, clock, redactor }
    }

    /// The gateway whose tools agents call (it lists `use-agent`, so it is built after this).
    pub fn attach(&self, gateway: &Arc<Gateway>) {
        let _ = self.gateway.set(Arc::downgrade(gateway));
    }

    pub fn has_model(&self) -> bool {
        self.model.is_some()
    }

    /// The agent `id` (or `default`) of `account`, if `allowed` (a grant's `allowedAgentIds`;
    /// `None`: no grant, the person's own session) reaches it: one outside the list is answered
    /// exactly like one that does not exist.
    pub async fn find(
        &self,
        account: &AccountId,
        allowed: Option<&Option<Vec<String>>>,
        id: &str,
    ) -> Result<Agent, AgentError> {
        let agent = if id == "default" {
            Some(self.store.default_agent(account, &Agent::default_for(account, self.clock.now())).await?)
        } else {
            self.store.agent(account, id).await?
        };
        match agent {
            Some(a) if allowed.is_none_or(|l| agent_allowed(l, &a.id)) => Ok(a),
            _ => Err(AgentError::NotFound),
        }
    }

    /// One message to `agent` from the caller: usage limits, then the loop (`history`: the
    /// conversation so far).
    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        ctx: &AccessContext,
        agent: &Agent,
        history: Vec<Value>,
        prompt: &str,
        connector: Option<&str>,
        relay: Option<Relay>,
    ) -> Result<RunResult, AgentError> {
        let Some(model) = self.model.clone() else { return Err(AgentError::NoModel) };
        // Who pays, read now (an operator may have changed or cleared the client's billing
        // account), before anything is counted.
        let client_billing = match (&agent.billing_account_type, &agent.created_by_client) {
            (BillingAccountType::Owner, Some(client)) => self.store.client_billing(client).await?,
            _ => None,
        };
        let bill_to = match agent.bill_to(&ctx.account_id, client_billing.as_ref()) {
            Ok(a) => a,
            Err(e) => {
                self.emit(self.event("agent.run", Outcome::Denied, ctx, agent).detail("error", e.to_string()));
                return Err(e.into());
            }
        };
        let now_ms = self.clock.now_ms();
        let month = month_of(now_ms);
        let limits = &agent.usage_limits;
        if let Some(cap) = limits.monthly_credits_cap
            && self.store.agent_credits(&agent.account_id, &agent.id, month).await? >= cap
        {
            self.emit(
                self.event("agent.limit_reached", Outcome::Denied, ctx, agent).detail("limit", "monthlyCreditsCap"),
            );
            return Ok(RunResult::LimitReached(limits.message().to_owned()));
        }
        let day = now_ms.div_euclid(86_400_000);
        if !self
            .store
            .count_agent_message(&agent.account_id, &agent.id, &ctx.account_id, day, limits.daily_messages_per_user)
            .await?
        {
            self.emit(
                self.event("agent.limit_reached", Outcome::Denied, ctx, agent).detail("limit", "dailyMessagesPerUser"),
            );
            return Ok(RunResult::LimitReached(limits.message().to_owned()));
        }
        let gw = self.gateway.get().and_then(Weak::upgrade).ok_or(AgentError::NotReady)?;
        let host = GatewayHost { gw, ctx, relay, agents: self, agent, month };
        let input = LoopInput {
            bill_to,
            model: &agent.llm,
            temperature: agent.temperature,
            personality: agent.personality.as_deref(),
            history,
            prompt,
            connector,
            enabled_builtins: &agent.enabled_built_in_tools,
        };
        let outcome = run_loop(model.as_ref(), &host, &self.limits, input, &self.redactor).await;
        let mut e = self.event(
            "agent.run",
            if matches!(&outcome, Ok(o) if o.stop == Stop::Answered) { Outcome::Success } else { Outcome::Failure },
            ctx,
            agent,
        );
        e = e.detail("bill_to", bill_to.to_string());
        match &outcome {
            Ok(o) => {
                e = e
                    .detail("steps", o.steps)
                    .detail("tool_calls", o.tool_calls.len() as u64)
                    .detail("credits", o.credits_consumed)
                    .detail("stop", serde_json::to_value(o.stop).unwrap_or_default());
            }
            Err(err) => e = e.detail("error", err.to_string()),
        }
        self.emit(e);
        Ok(RunResult::Ran(outcome?))
    }

    /// The conversation with its new messages, oldest dropped beyond the bound.
    pub fn extend_conversation(mut history: Vec<Value>, new: &[Value]) -> Vec<Value> {
        history.extend_from_slice(new);
        let over = history.len().saturating_sub(MAX_CONVERSATION_MESSAGES);
        history.drain(..over);
        history
    }

    fn event(&self, kind: &str, outcome: Outcome, ctx: &AccessContext, agent: &Agent) -> AuditEvent {
        AuditEvent::new(kind, outcome, self.clock.now_ms())
            .account(&ctx.account_id)
            .client(&ctx.client_id)
            .session(&ctx.session_id)
            .target(&agent.id)
            .detail("billing", agent.billing_account_type.as_str())
    }

    fn emit(&self, e: AuditEvent) {
        self.audit.record(e);
    }
}

/// `yyyymm` (UTC) of a time in milliseconds.
pub fn month_of(now_ms: i64) -> i64 {
    match time::OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000)) {
        Ok(t) => i64::from(t.year()) * 100 + i64::from(u8::from(t.month())),
        Err(_) => 0,
    }
}

/// The gateway's tools for one caller's token.
struct GatewayHost<'a> {
    gw: Arc<Gateway>,
    ctx: &'a AccessContext,
    relay: Option<Relay>,
    agents: &'a Agents,
    agent: &'a Agent,
    month: i64,
}

#[async_trait]
impl ToolHost for GatewayHost<'_> {
    async fn tools(&self) -> Vec<ToolDescriptor> {
        self.gw.visible_tools(self.ctx).await
    }

    async fn call(&self, name: &str, args: &Value) -> AgentToolCall {
        self.gw.call_tool(self.ctx, name, args, None).await
    }

    fn progress(&self, step: u32, max: u32, message: String) {
        if let Some(r) = &self.relay {
            r.progress(f64::from(step), Some(f64::from(max)), Some(message));
        }
    }

    async fn turn_taken(&self, step: u32, credits: i64) {
        self.agents.emit(
            self.agents
                .event("agent.turn", Outcome::Success, self.ctx, self.agent)
                .detail("step", step)
                .detail("credits", credits)
                .detail("model", self.agent.llm.chars().take(100).collect::<String>()),
        );
        if credits > 0
            && let Err(e) =
                self.agents.store.add_agent_credits(&self.agent.account_id, &self.agent.id, self.month, credits).await
        {
            tracing::error!(error = %e, "could not count an agent's credits");
        }
    }
}
