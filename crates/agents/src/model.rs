//! The seam to the language model: one chat-completions turn in the OpenAI shape, billed to an
//! account. The LLM service implements it; the loop only calls it.

use async_trait::async_trait;
use bk_domain::ids::AccountId;
use serde_json::Value;

/// One assistant turn and what it cost.
#[derive(Clone, Debug)]
pub struct Turn {
    /// The assistant message (`role`, `content`, and `tool_calls` when it wants tools called).
    pub message: Value,
    pub credits_consumed: i64,
    pub credits_remaining: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The billed account has no credits left.
    #[error("the account billed for this agent has no credits left")]
    CreditsExhausted,
    #[error("unknown model {0}")]
    UnknownModel(String),
    #[error("the language model is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait AgentModel: Send + Sync {
    /// One chat-completions turn in the OpenAI shape (messages with role/content/tool_calls/
    /// tool_call_id; tools as OpenAI function tools), billed to `bill_to`. Returns the assistant
    /// message and the credits it cost.
    async fn turn(
        &self,
        bill_to: &AccountId,
        model: &str,
        messages: &[Value],
        tools: &[Value],
        temperature: Option<f64>,
    ) -> Result<Turn, ModelError>;
}
