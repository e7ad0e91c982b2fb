//! `use-agent {prompt, connector?}`: the built-in MCP tool that runs the caller's default agent over
//! the caller's own tools. A source of its own (the gateway lists it right after its built-ins);
//! the policy governs it by scope like every built-in, and `allowedAgentIds` must reach the default
//! agent. Its answer: the text, and as structured content the tool calls made.

use std::sync::Arc;

use async_trait::async_trait;
use bk_access::AccessContext;
use bk_gateway::tools::{Access, Answer, Round, ToolDescriptor, ToolError, ToolListing, ToolOutput, ToolSource};
use serde_json::{Value, json};

use crate::run::USE_AGENT;
use crate::service::{AgentError, Agents, RunResult};

/// The longest prompt accepted.
pub const MAX_PROMPT_CHARS: usize = 20_000;

pub struct UseAgent {
    agents: Arc<Agents>,
    listing: ToolListing,
}

impl UseAgent {
    pub fn new(agents: Arc<Agents>) -> Self {
        let descriptor = ToolDescriptor {
            name: USE_AGENT.to_owned(),
            title: "Use agent".to_owned(),
            description: "Ask your default agent to do something with the tools this session may use; it answers \
                          in text and lists the tool calls it made. `connector` limits it to one provider's tools."
                .to_owned(),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "prompt": {"type": "string", "minLength": 1, "maxLength": MAX_PROMPT_CHARS},
                    "connector": {"type": "string", "minLength": 1, "maxLength": 64,
                                  "description": "a provider id: only its tools are used"},
                },
                "required": ["prompt"],
                "additionalProperties": false,
            }),
            output_schema: Some(json!({
                "type": "object",
                "properties": {
                    "answer": {"type": "string"},
                    "toolCalls": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"}, "arguments": {}, "ok": {"type": "boolean"},
                        "error": {"type": "string"}}, "required": ["name", "arguments", "ok"]}},
                    "steps": {"type": "integer"},
                    "creditsConsumed": {"type": "integer"},
                    "stopReason": {"type": "string"},
                },
                "required": ["answer", "toolCalls"],
            })),
            // It may call write tools (only those the caller itself may call).
            access: Access::Write,
            provider: None,
            agent_id: None,
            knowledge_base_id: None,
            upstream: None,
        };
        Self { agents, listing: ToolListing { version: 1, tools: vec![descriptor].into() } }
    }
}

#[async_trait]
impl ToolSource for UseAgent {
    async fn list(&self, _ctx: &AccessContext) -> ToolListing {
        self.listing.clone()
    }

    async fn call(
        &self,
        ctx: &AccessContext,
        _tool: &ToolDescriptor,
        args: &Value,
        round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        let prompt = args.get("prompt").and_then(Value::as_str).unwrap_or_default();
        if prompt.trim().is_empty() {
            return Err(ToolError::InvalidParams("prompt must not be empty".into()));
        }
        let connector = args.get("connector").and_then(Value::as_str);
        // Checked before anything is counted: without a model there is nothing to run.
        if !self.agents.has_model() {
            return Err(ToolError::Failed(AgentError::NoModel.to_string()));
        }
        let agent = match self.agents.find(&ctx.account_id, Some(&ctx.restrictions.allowed_agent_ids), "default").await
        {
            Ok(a) => a,
            Err(AgentError::NotFound) => {
                return Err(ToolError::Failed("this session may not use the account's default agent".into()));
            }
            Err(e) => return Err(failed(e)),
        };
        match self.agents.run(ctx, &agent, Vec::new(), prompt, connector, round.relay.clone()).await {
            Ok(RunResult::Ran(o)) => {
                Ok(Answer::Complete(ToolOutput { text: o.answer.clone(), structured: Some(o.structured()) }))
            }
            Ok(RunResult::LimitReached(m)) => Ok(Answer::Complete(ToolOutput {
                text: m.clone(),
                structured: Some(json!({"answer": m, "toolCalls": [], "stopReason": "limitReached"})),
            })),
            Err(e) => Err(failed(e)),
        }
    }
}

fn failed(e: AgentError) -> ToolError {
    if let AgentError::Store(s) = &e {
        tracing::error!(error = %s, "use-agent: storage failed");
        return ToolError::Failed("the agent could not run (storage unavailable); retry".into());
    }
    ToolError::Failed(e.to_string())
}
