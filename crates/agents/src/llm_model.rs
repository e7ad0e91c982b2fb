//! The language model the loop talks to: the LLM service (`bk_llm::Llm`), billed per turn in
//! credits to the account the agent bills. An agent whose model is `default` (`DEFAULT_MODEL`) uses
//! the operator's first configured model.

use std::sync::Arc;

use async_trait::async_trait;
use bk_domain::agent::DEFAULT_MODEL;
use bk_domain::ids::AccountId;
use bk_llm::{ChatMessage, ChatRequest, LlmError, Tool};
use serde_json::Value;

use crate::model::{AgentModel, ModelError, Turn};

pub struct LlmModel {
    llm: Arc<bk_llm::Llm>,
    /// What `default` means (`None`: no model is configured).
    default_model: Option<String>,
}

impl LlmModel {
    /// `default_model`: the model an agent naming `default` uses.
    pub fn new(llm: Arc<bk_llm::Llm>, default_model: Option<String>) -> Self {
        Self { llm, default_model }
    }
}

#[async_trait]
impl AgentModel for LlmModel {
    async fn turn(
        &self,
        bill_to: &AccountId,
        model: &str,
        messages: &[Value],
        tools: &[Value],
        temperature: Option<f64>,
    ) -> Result<Turn, ModelError> {
        let model = match model {
            DEFAULT_MODEL => self.default_model.clone().ok_or_else(|| ModelError::UnknownModel(model.to_owned()))?,
            other => other.to_owned(),
        };
        // The loop builds these messages and tools itself: one that does not parse is a bug here,
        // reported as the model being unusable rather than sent on half-formed.
        let messages = messages
            .iter()
            .map(|m| serde_json::from_value::<ChatMessage>(m.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Unavailable(format!("a message the loop built is malformed: {e}")))?;
        let tools = tools
            .iter()
            .map(|t| serde_json::from_value::<Tool>(t.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ModelError::Unavailable(format!("a tool the loop offered is malformed: {e}")))?;
        let request = ChatRequest {
            model,
            messages,
            tools: (!tools.is_empty()).then_some(tools),
            temperature,
            ..ChatRequest::default()
        };
        match self.llm.complete_billed(bill_to, request).await {
            Ok(billed) => {
                let message = billed
                    .value
                    .message()
                    .ok_or_else(|| ModelError::Unavailable("the model answered no message".into()))?;
                let message = serde_json::to_value(message)
                    .map_err(|e| ModelError::Unavailable(format!("the model's message: {e}")))?;
                Ok(Turn {
                    message,
                    credits_consumed: billed.credits_consumed,
                    credits_remaining: billed.credits_remaining,
                })
            }
            Err(LlmError::CreditsExhausted { .. }) => Err(ModelError::CreditsExhausted),
            Err(LlmError::UnknownModel(m)) => Err(ModelError::UnknownModel(m)),
            Err(e) => Err(ModelError::Unavailable(e.to_string())),
        }
    }
}
