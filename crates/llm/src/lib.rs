//! LLM access for Bridgekeeper: OpenAI-compatible chat completions over the models an operator
//! configures, billed in credits (1 credit = $0.0001).
//!
//! - [`provider`]: the one trait every upstream speaks through ([`ChatProvider`]) and its
//!   OpenAI-compatible implementation (OpenAI, Azure OpenAI, vLLM, Ollama, LiteLLM): timeouts, a cap
//!   on the answer's size, server-sent events parsed by `eventsource-stream`, tool calls passed
//!   through. Upstream API keys are read once at start (an environment variable or a file) into an
//!   [`ApiKey`], which never prints. An operator may store a model's key instead
//!   ([`Llm::set_api_key`]): sealed under the master key, it takes precedence ([`sealed_keys`]).
//! - [`types`]: the request and response in the OpenAI shape (messages with `role`, `content`,
//!   `tool_calls`, `tool_call_id`; `tools`; `temperature`; `max_tokens`), unknown fields kept.
//! - [`Llm`]: the service. **The seam for the agent loop** is
//!   [`Llm::complete_billed`]`(bill_to: &AccountId, request: ChatRequest) -> Result<Billed<ChatResponse>, LlmError>`:
//!   the account named pays (an agent's owner or its user, per its billing account type);
//!   [`Billed`] carries `credits_consumed` and `credits_remaining`; [`LlmError`] says
//!   `CreditsExhausted`, `UnknownModel`, `InvalidRequest` or `Upstream(…)`.
//!   [`Llm::stream_billed`] is the streamed form the HTTP face uses.
//!
//! How "never negative" stays honest when a completion's cost is known only afterwards: before
//! the upstream is called, an upper bound is **reserved** (the prompt's bound from its size, plus
//! the completion cap — the client's `max_tokens`, or the configured default lowered to what the
//! balance affords, which is then sent upstream so the model cannot exceed it); afterwards the
//! usage the upstream reports is **settled**: charged, the rest given back, one ledger row, one
//! transaction ([`bk_domain::ports::CreditStore`]). A request whose reservation the balance cannot
//! cover is refused before anything is sent upstream.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod provider;
pub mod sealed_keys;
mod service;
pub mod types;

pub use config::{CreditsConfig, LlmConfig, ModelConfig};
pub use error::{LlmError, UpstreamError};
pub use provider::{ApiKey, ChatProvider, ChunkStream, OpenAiCompatible, UpstreamLimits};
pub use service::{Billed, BilledStream, ConfigError, Llm, ModelInfo, prompt_token_bound};
pub use types::{
    ChatMessage, ChatRequest, ChatResponse, Choice, FunctionCall, FunctionDefinition, Tool, ToolCall, Usage,
};
