//! What the operator configures: the models offered (public id, upstream endpoint and model name,
//! where the upstream API key comes from, price) and the limits of upstream calls; and the credits
//! every account starts with. The `[llm]` and `[credits]` tables of the configuration file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[llm]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The models offered (`[[llm.models]]`; in the environment
    /// `BRIDGEKEEPER_LLM__MODELS='[{id="…", base_url="…", …}]'`). Empty: no model, and
    /// `POST /api/v1/chat/completions` answers that the model is not offered.
    pub models: Vec<ModelConfig>,
    /// Connecting to an upstream (seconds).
    pub connect_timeout_secs: u64,
    /// A whole non-streamed completion; for a stream, the wait for its first event and between two
    /// events (seconds).
    pub request_timeout_secs: u64,
    /// The longest a stream may last (seconds).
    pub max_stream_secs: u64,
    /// The largest upstream answer read (a whole completion, or a whole stream), in bytes.
    pub max_response_bytes: usize,
    /// The completion-token cap of a request that names none (it is sent upstream, so that the
    /// reservation bounds the cost); lowered to what the balance affords.
    pub default_max_tokens: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            connect_timeout_secs: 10,
            request_timeout_secs: 120,
            max_stream_secs: 600,
            max_response_bytes: 8 * 1024 * 1024,
            default_max_tokens: 4096,
        }
    }
}

/// One model (`[[llm.models]]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The id clients name (`"gpt-4o-mini"`); unique.
    pub id: String,
    /// The upstream's OpenAI-compatible base URL, the part before `/chat/completions`
    /// (`https://api.openai.com/v1`, `http://127.0.0.1:11434/v1` for Ollama, a vLLM or LiteLLM
    /// server; Azure OpenAI: `https://RES.openai.azure.com/openai/deployments/DEP?api-version=…`
    /// with `api_key_header = "api-key"`). A query string is kept.
    pub base_url: String,
    /// The model name sent upstream (default: `id`).
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// The environment variable holding the upstream API key …
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// … or a file holding it (one line). Neither: no key is sent (a local Ollama or vLLM).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The header the key goes in: `authorization` (default, `Bearer KEY`) or another name
    /// (`api-key` for Azure OpenAI), which gets the key alone.
    #[serde(default)]
    pub api_key_header: Option<String>,
    /// Credits per million prompt tokens (1 credit = $0.0001: $1.50 per million is 15000).
    pub prompt_credits_per_million: u64,
    /// Credits per million completion tokens.
    pub completion_credits_per_million: u64,
    /// The most completion tokens one request may ask for (default: no cap beyond the balance).
    #[serde(default)]
    pub max_output_tokens: Option<u64>,
    /// Shown in `GET /api/v1/models` as `owned_by` (default `bridgekeeper`).
    #[serde(default)]
    pub owned_by: Option<String>,
}

/// `[credits]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CreditsConfig {
    /// Credits every account gets once, when its ledger opens (its first use of credits). 1 credit
    /// = $0.0001: the default 10000 is $1.
    pub signup_grant: i64,
}

impl Default for CreditsConfig {
    fn default() -> Self {
        Self { signup_grant: 10_000 }
    }
}
