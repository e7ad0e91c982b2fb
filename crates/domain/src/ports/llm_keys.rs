//! Upstream API keys of configured LLM models that an operator set, sealed under the master key.

use async_trait::async_trait;

use super::Result;

/// The associated data a model's key is sealed with: the model id, so a sealed key copied to
/// another model's row does not open.
pub fn llm_api_key_binding(model_id: &str) -> Vec<u8> {
    format!("llm-api-key:{model_id}").into_bytes()
}

#[async_trait]
pub trait LlmApiKeyStore: Send + Sync {
    /// The model's sealed key, if an operator set one.
    async fn llm_api_key(&self, model_id: &str) -> Result<Option<Vec<u8>>>;
    /// Sets (or replaces) the model's sealed key.
    async fn put_llm_api_key(&self, model_id: &str, sealed: &[u8], now_ms: i64) -> Result<()>;
    /// Removes the model's key; whether there was one.
    async fn delete_llm_api_key(&self, model_id: &str) -> Result<bool>;
}
