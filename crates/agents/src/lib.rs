//! Agents: the `use-agent` loop over the caller's own tools (`run`), bounded and sanitised
//! (`sanitize`), the seam to the language model (`model`), which agent a caller means and its usage
//! limits (`service`), and the `use-agent` MCP tool (`use_agent`). The loop reaches tools only
//! through the gateway's policy and call path: policy, not prompt, is the guard.
#![forbid(unsafe_code)]

pub mod llm_model;
pub mod model;
pub mod run;
pub mod sanitize;
pub mod service;
#[cfg(test)]
mod tests;
pub mod use_agent;

pub use llm_model::LlmModel;
pub use model::{AgentModel, ModelError, Turn};
pub use run::{LoopLimits, LoopOutcome, Stop, ToolCallRecord, ToolHost, run_loop};
pub use service::{AgentError, Agents, RunResult};
pub use use_agent::UseAgent;
