//! Upstream API keys an operator stores for configured models, sealed under the master key with the
//! model id as associated data ([`llm_api_key_binding`]): a stored key takes precedence over the
//! configuration's `api_key_env` / `api_key_file`.
//!
//! Every instance reads the model's sealed row at most once per [`RECHECK`] (a short cache per
//! model; the instance that changes a key forgets its entry at once), so a key set or cleared on one
//! instance is used by every instance within that time, with no message between them. The key is
//! opened only when the sealed bytes changed, and the provider built for it (sharing the configured
//! provider's HTTP client) is kept until then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bk_crypto::envelope::MasterKey;
use bk_domain::ports::{LlmApiKeyStore, llm_api_key_binding};

use crate::error::{LlmError, UpstreamError};
use crate::provider::{ApiKey, ChatProvider};

/// How long an instance trusts what it last read of a model's stored key.
pub const RECHECK: Duration = Duration::from_secs(2);
/// The longest key accepted.
pub const MAX_KEY_BYTES: usize = 4096;

/// Whether `key` can be stored: 1 to 4096 visible ASCII characters (what an HTTP header carries;
/// no spaces, no line breaks — a pasted key with a trailing newline is a mistake, not a key).
pub fn check_api_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err("apiKey must be 1 to 4096 bytes");
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("apiKey must be visible ASCII characters without spaces or line breaks");
    }
    Ok(())
}

/// `key` sealed for the model (the model id is the associated data).
pub fn seal_api_key(master: &MasterKey, model_id: &str, key: &ApiKey) -> Result<Vec<u8>, bk_crypto::CryptoError> {
    master.seal(&llm_api_key_binding(model_id), key.expose().as_bytes())
}

/// What an instance last read for one model.
struct Cached {
    read_at: Instant,
    /// The sealed row as read (`None`: no stored key).
    sealed: Option<Vec<u8>>,
    /// The provider with that key opened (`None`: the configured provider).
    provider: Option<Arc<dyn ChatProvider>>,
}

/// The stored keys: sealing, opening, and the per-model cache.
pub(crate) struct SealedKeys {
    store: Arc<dyn LlmApiKeyStore>,
    master: Arc<MasterKey>,
    cache: Mutex<HashMap<String, Cached>>,
}

impl SealedKeys {
    pub(crate) fn new(store: Arc<dyn LlmApiKeyStore>, master: Arc<MasterKey>) -> Self {
        Self { store, master, cache: Mutex::new(HashMap::new()) }
    }

    fn forget(&self, model_id: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(model_id);
        }
    }

    /// Seals and stores `key` for the model (whose provider `configured` is).
    pub(crate) async fn set(
        &self,
        model_id: &str,
        configured: &dyn ChatProvider,
        key: ApiKey,
        now_ms: i64,
    ) -> Result<(), LlmError> {
        let invalid = |detail: &str| LlmError::InvalidRequest { field: "apiKey", detail: detail.to_owned() };
        check_api_key(key.expose()).map_err(invalid)?;
        match configured.with_api_key(&key) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(invalid("this model's provider takes no stored key")),
            Err(_) => return Err(invalid("apiKey is not valid in an HTTP header")),
        }
        let sealed = seal_api_key(&self.master, model_id, &key)
            .map_err(|e| LlmError::Upstream(UpstreamError::Unreachable(format!("sealing the key failed: {e}"))))?;
        self.store.put_llm_api_key(model_id, &sealed, now_ms).await?;
        self.forget(model_id);
        Ok(())
    }

    /// Removes the model's stored key; whether there was one.
    pub(crate) async fn clear(&self, model_id: &str) -> Result<bool, LlmError> {
        let removed = self.store.delete_llm_api_key(model_id).await?;
        self.forget(model_id);
        Ok(removed)
    }

    /// The provider to call for the model: with its stored key if there is one, else `configured`.
    pub(crate) async fn provider(
        &self,
        model_id: &str,
        configured: &Arc<dyn ChatProvider>,
    ) -> Result<Arc<dyn ChatProvider>, LlmError> {
        let pick = |c: &Cached| c.provider.clone().unwrap_or_else(|| configured.clone());
        let previous = {
            let cache = self.cache.lock().map_err(|_| poisoned())?;
            match cache.get(model_id) {
                Some(c) if c.read_at.elapsed() < RECHECK => return Ok(pick(c)),
                Some(c) => Some((c.sealed.clone(), c.provider.clone())),
                None => None,
            }
        };
        let sealed = self.store.llm_api_key(model_id).await?;
        let provider = match (&sealed, previous) {
            (None, _) => None,
            // Unchanged since the last read: keep the provider built for it.
            (Some(s), Some((Some(old), p))) if *s == old => p,
            (Some(s), _) => {
                let plain = self.master.open(&llm_api_key_binding(model_id), s).map_err(|_| {
                    tracing::warn!(model = model_id, "the model's stored API key does not open with this master key");
                    LlmError::Upstream(UpstreamError::Unreachable(
                        "the model's stored API key does not open with this master key".into(),
                    ))
                })?;
                let key = ApiKey::new(String::from_utf8(plain).map_err(|_| {
                    LlmError::Upstream(UpstreamError::Unreachable("the model's stored API key is not text".into()))
                })?);
                configured
                    .with_api_key(&key)
                    .map_err(|e| LlmError::Upstream(UpstreamError::Unreachable(format!("the stored API key: {e}"))))?
            }
        };
        let entry = Cached { read_at: Instant::now(), sealed, provider };
        let chosen = pick(&entry);
        self.cache.lock().map_err(|_| poisoned())?.insert(model_id.to_owned(), entry);
        Ok(chosen)
    }
}

fn poisoned() -> LlmError {
    LlmError::Upstream(UpstreamError::Unreachable("the key cache is unavailable".into()))
}
