//! The LLM service: the configured models, and completions billed to an account in credits
//! (reserve an upper bound, call the upstream, settle what it used).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bk_domain::access::Clock;
use bk_domain::credits::{CompletionUsage, Price};
use bk_domain::ids::AccountId;
use bk_domain::ports::{CreditStore, Reservation};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::config::{CreditsConfig, LlmConfig, ModelConfig};
use crate::error::{LlmError, UpstreamError};
use crate::provider::{ApiKey, ChatProvider, OpenAiCompatible, UpstreamLimits};
use crate::sealed_keys::SealedKeys;
use crate::types::{ChatRequest, ChatResponse, Usage};
use bk_crypto::envelope::MasterKey;
use bk_domain::ports::LlmApiKeyStore;

/// The longest public model id.
const MAX_MODEL_ID_BYTES: usize = 200;
/// Messages one request may carry.
const MAX_MESSAGES: usize = 2_000;
/// Tools one request may offer.
const MAX_TOOLS: usize = 256;

/// A model as clients see it (`GET /api/v1/models`).
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub id: String,
    pub owned_by: String,
    pub price: Price,
    pub max_output_tokens: Option<u64>,
}

struct Model {
    info: ModelInfo,
    upstream_model: String,
    provider: Arc<dyn ChatProvider>,
}

/// A result and what it cost.
#[derive(Clone, Debug)]
pub struct Billed<T> {
    pub value: T,
    /// Credits charged for this request.
    pub credits_consumed: i64,
    /// The account's balance afterwards (other requests' reservations excluded).
    pub credits_remaining: i64,
}

/// A streamed completion under way: its server-sent events (already framed, `data: …\n\n`,
/// ending with a `: credits-consumed=N credits-remaining=M` comment and `data: [DONE]`), and the
/// reservation it runs on. The stream settles on its own, even if nobody reads it to the end.
pub struct BilledStream {
    pub events: mpsc::Receiver<Bytes>,
    /// Credits held for this request until it ends.
    pub credits_reserved: i64,
    /// The balance once they were held.
    pub credits_remaining: i64,
}

/// Configuration problems found at start.
#[derive(Debug, thiserror::Error)]
#[error("llm: {0}")]
pub struct ConfigError(pub String);

/// Completions billed in credits, over the configured models.
pub struct Llm {
    models: BTreeMap<String, Arc<Model>>,
    credits: Arc<dyn CreditStore>,
    clock: Arc<dyn Clock>,
    signup_grant: i64,
    default_max_tokens: u64,
    request_timeout: Duration,
    max_stream: Duration,
    /// A hold older than this was left by a request that died: it is given back.
    stale_hold_ms: i64,
    /// Keys operators stored (sealed), which take precedence over the configured ones.
    sealed_keys: Option<SealedKeys>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm").field("models", &self.models.keys().collect::<Vec<_>>()).finish()
    }
}

/// Where a model's key comes from, read once at start.
fn load_key(m: &ModelConfig) -> Result<Option<ApiKey>, ConfigError> {
    match (&m.api_key_env, &m.api_key_file) {
        (Some(_), Some(_)) => Err(ConfigError(format!("model {:?}: set api_key_env or api_key_file, not both", m.id))),
        (Some(var), None) => match std::env::var(var) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(ApiKey::new(k.trim().to_owned()))),
            _ => Err(ConfigError(format!("model {:?}: the environment variable {var} is not set", m.id))),
        },
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(k) if !k.trim().is_empty() => Ok(Some(ApiKey::new(k.trim().to_owned()))),
            Ok(_) => Err(ConfigError(format!("model {:?}: {} is empty", m.id, path.display()))),
            Err(e) => Err(ConfigError(format!("model {:?}: cannot read {}: {e}", m.id, path.display()))),
        },
        (None, None) => Ok(None),
    }
}

impl Llm {
    /// The configured models, each behind an OpenAI-compatible provider; API keys are read now.
    pub fn from_config(
        config: &LlmConfig,
        credits: &CreditsConfig,
        store: Arc<dyn CreditStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        if credits.signup_grant < 0 {
            return Err(ConfigError("credits.signup_grant must not be negative".into()));
        }
        if config.default_max_tokens == 0 || config.request_timeout_secs == 0 || config.max_response_bytes == 0 {
            return Err(ConfigError(
                "llm.default_max_tokens, request_timeout_secs and max_response_bytes must be positive".into(),
            ));
        }
        let limits = UpstreamLimits {
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
            max_response_bytes: config.max_response_bytes,
        };
        let mut llm = Self {
            models: BTreeMap::new(),
            credits: store,
            clock,
            signup_grant: credits.signup_grant,
            default_max_tokens: config.default_max_tokens,
            request_timeout: limits.request_timeout,
            max_stream: Duration::from_secs(config.max_stream_secs.max(config.request_timeout_secs)),
            stale_hold_ms: 0,
            sealed_keys: None,
        };
        llm.stale_hold_ms = i64::try_from((llm.max_stream + limits.request_timeout).as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(60_000);
        for m in &config.models {
            if m.id.is_empty() || m.id.len() > MAX_MODEL_ID_BYTES {
                return Err(ConfigError(format!("a model id must be 1 to {MAX_MODEL_ID_BYTES} bytes")));
            }
            let key = load_key(m)?;
            let provider = OpenAiCompatible::new(&m.base_url, key.as_ref(), m.api_key_header.as_deref(), limits)
                .map_err(|e| ConfigError(format!("model {:?}: {e}", m.id)))?;
            let info = ModelInfo {
                id: m.id.clone(),
                owned_by: m.owned_by.clone().unwrap_or_else(|| "bridgekeeper".into()),
                price: Price {
                    prompt_per_million: m.prompt_credits_per_million,
                    completion_per_million: m.completion_credits_per_million,
                },
                max_output_tokens: m.max_output_tokens,
            };
            let upstream_model = m.upstream_model.clone().unwrap_or_else(|| m.id.clone());
            llm.add_model(info, upstream_model, Arc::new(provider))?;
        }
        Ok(llm)
    }

    /// Offers a model through any provider (an Anthropic-native one, a test double in a unit test).
    pub fn add_model(
        &mut self,
        info: ModelInfo,
        upstream_model: String,
        provider: Arc<dyn ChatProvider>,
    ) -> Result<(), ConfigError> {
        if self.models.contains_key(&info.id) {
            return Err(ConfigError(format!("the model id {:?} is configured twice", info.id)));
        }
        self.models.insert(info.id.clone(), Arc::new(Model { info, upstream_model, provider }));
        Ok(())
    }

    /// Lets operators store models' upstream API keys, sealed under `master` in `store`; a stored
    /// key takes precedence over the configured one (see [`crate::sealed_keys`]).
    pub fn with_sealed_keys(mut self, store: Arc<dyn LlmApiKeyStore>, master: Arc<MasterKey>) -> Self {
        self.sealed_keys = Some(SealedKeys::new(store, master));
        self
    }

    /// Seals and stores the upstream API key of a configured model (`UnknownModel` otherwise).
    pub async fn set_api_key(&self, model_id: &str, key: ApiKey) -> Result<(), LlmError> {
        let (model, keys) = self.keyed_model(model_id)?;
        keys.set(model_id, model.provider.as_ref(), key, self.clock.now_ms()).await
    }

    /// Removes a configured model's stored key (its configured key applies again); whether there
    /// was one.
    pub async fn clear_api_key(&self, model_id: &str) -> Result<bool, LlmError> {
        let (_, keys) = self.keyed_model(model_id)?;
        keys.clear(model_id).await
    }

    fn keyed_model(&self, model_id: &str) -> Result<(&Arc<Model>, &SealedKeys), LlmError> {
        let model = self.models.get(model_id).ok_or_else(|| {
            let mut id = model_id.to_owned();
            id.truncate(MAX_MODEL_ID_BYTES);
            LlmError::UnknownModel(id)
        })?;
        let keys = self.sealed_keys.as_ref().ok_or_else(|| LlmError::InvalidRequest {
            field: "model",
            detail: "stored API keys are not enabled".into(),
        })?;
        Ok((model, keys))
    }

    /// The models offered, by id.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.values().map(|m| &m.info)
    }

    /// The credits a new ledger opens with.
    pub fn signup_grant(&self) -> i64 {
        self.signup_grant
    }

    /// The account's balance (its ledger opened with the signup grant if it had none).
    pub async fn balance(&self, account: &AccountId) -> Result<i64, LlmError> {
        Ok(self.credits.credit_balance(account, self.signup_grant, self.clock.now_ms()).await?)
    }

    /// One completion, billed to `bill_to`. The call and its settlement run to the end even if the
    /// caller stops waiting, so a dropped request never leaves credits held.
    pub async fn complete_billed(
        self: &Arc<Self>,
        bill_to: &AccountId,
        request: ChatRequest,
    ) -> Result<Billed<ChatResponse>, LlmError> {
        let this = self.clone();
        let account = bill_to.clone();
        // From the reservation on, in a task of its own: a caller that stops waiting cannot leave a
        // hold behind (a reservation committed but never settled).
        tokio::spawn(async move {
            let prepared = this.prepare(&account, request).await?;
            this.run_complete(&account, prepared).await
        })
        .await
        .map_err(|e| LlmError::Upstream(UpstreamError::Unreachable(format!("the completion task failed: {e}"))))?
    }

    /// A streamed completion, billed to `bill_to` when it ends.
    pub async fn stream_billed(
        self: &Arc<Self>,
        bill_to: &AccountId,
        request: ChatRequest,
    ) -> Result<BilledStream, LlmError> {
        let this = self.clone();
        let account = bill_to.clone();
        // As in `complete_billed`: once credits are held, only this task lets go of them.
        tokio::spawn(async move {
            let wants_usage = request.wants_stream_usage();
            let prepared = this.prepare(&account, request).await?;
            let chunks = match prepared.provider.stream(&prepared.upstream).await {
                Ok(c) => c,
                Err(e) => {
                    this.release(&account, &prepared.hold_id).await;
                    return Err(e.into());
                }
            };
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let reserved = prepared.reserved;
            let remaining = prepared.remaining;
            let relay = this.clone();
            tokio::spawn(async move { relay.relay(&account, prepared, chunks, tx, wants_usage).await });
            Ok(BilledStream { events: rx, credits_reserved: reserved, credits_remaining: remaining })
        })
        .await
        .map_err(|e| LlmError::Upstream(UpstreamError::Unreachable(format!("the completion task failed: {e}"))))?
    }

    /// Checks the request, bounds its cost and holds that much.
    async fn prepare(&self, bill_to: &AccountId, mut request: ChatRequest) -> Result<Prepared, LlmError> {
        let model = self.models.get(&request.model).ok_or_else(|| {
            let mut id = request.model.clone();
            id.truncate(MAX_MODEL_ID_BYTES);
            LlmError::UnknownModel(id)
        })?;
        if request.messages.is_empty() {
            return Err(LlmError::InvalidRequest {
                field: "messages",
                detail: "at least one message is required".into(),
            });
        }
        if request.messages.len() > MAX_MESSAGES {
            return Err(LlmError::InvalidRequest {
                field: "messages",
                detail: format!("at most {MAX_MESSAGES} messages"),
            });
        }
        if request.tools.as_ref().is_some_and(|t| t.len() > MAX_TOOLS) {
            return Err(LlmError::InvalidRequest { field: "tools", detail: format!("at most {MAX_TOOLS} tools") });
        }
        let requested = request.requested_max_tokens();
        if requested == Some(0) {
            return Err(LlmError::InvalidRequest {
                field: "max_tokens",
                detail: "max_tokens must be at least 1".into(),
            });
        }
        if let (Some(n), Some(cap)) = (requested, model.info.max_output_tokens)
            && n > cap
        {
            return Err(LlmError::InvalidRequest {
                field: "max_tokens",
                detail: format!("this model answers with at most {cap} tokens"),
            });
        }
        // Which key: resolved before credits are held, so a key that cannot be used holds none.
        let provider = match &self.sealed_keys {
            Some(keys) => keys.provider(&model.info.id, &model.provider).await?,
            None => model.provider.clone(),
        };
        let price = model.info.price;
        let prompt_bound = prompt_token_bound(&request);
        let now = self.clock.now_ms();
        let max_tokens = match requested {
            Some(n) => n,
            None => {
                // No cap asked: the default, lowered to what the balance affords.
                let balance = self.credits.credit_balance(bill_to, self.signup_grant, now).await?;
                let default =
                    model.info.max_output_tokens.map_or(self.default_max_tokens, |c| c.min(self.default_max_tokens));
                let n = default.min(price.affordable_completion(balance, prompt_bound));
                if n == 0 {
                    return Err(LlmError::CreditsExhausted { balance, needed: price.cost(prompt_bound, 1) });
                }
                n
            }
        };
        let amount = price.cost(prompt_bound, max_tokens);
        let held =
            self.credits.reserve_credits(bill_to, amount, self.signup_grant, now, now - self.stale_hold_ms).await?;
        let (hold_id, remaining) = match held {
            Reservation::Held { hold_id, balance_after } => (hold_id, balance_after),
            Reservation::Insufficient { balance } => {
                return Err(LlmError::CreditsExhausted { balance, needed: amount });
            }
        };
        request.model = model.upstream_model.clone();
        if request.max_completion_tokens.is_some() {
            request.max_completion_tokens = Some(max_tokens);
        } else {
            request.max_tokens = Some(max_tokens);
        }
        Ok(Prepared { model: model.clone(), provider, upstream: request, hold_id, reserved: amount, remaining })
    }

    async fn run_complete(&self, bill_to: &AccountId, p: Prepared) -> Result<Billed<ChatResponse>, LlmError> {
        let mut response = match p.provider.complete(&p.upstream).await {
            Ok(r) => r,
            Err(e) => {
                self.release(bill_to, &p.hold_id).await;
                return Err(e.into());
            }
        };
        let usage = self.usage_of(&p, response.usage);
        let s = self.credits.settle_credits(bill_to, &p.hold_id, &usage, self.clock.now_ms()).await?;
        response.model = p.model.info.id.clone();
        Ok(Billed { value: response, credits_consumed: s.charged, credits_remaining: s.balance })
    }

    /// What a completion used: the upstream's counts priced, or — when it reported none — the
    /// whole reservation (the most it could have cost; never less than it may have).
    fn usage_of(&self, p: &Prepared, usage: Option<Usage>) -> CompletionUsage {
        let model = p.model.info.id.clone();
        match usage {
            Some(u) => CompletionUsage {
                model,
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                cost: p.model.info.price.cost(u.prompt_tokens, u.completion_tokens),
            },
            None => {
                tracing::warn!(model = %model, "the upstream reported no usage: the reservation is charged");
                CompletionUsage { model, prompt_tokens: 0, completion_tokens: 0, cost: p.reserved }
            }
        }
    }

    async fn release(&self, bill_to: &AccountId, hold_id: &str) {
        if let Err(e) = self.credits.release_credits(bill_to, hold_id, self.clock.now_ms()).await {
            tracing::error!(error = %e, account = %bill_to, "releasing a credit hold failed (it is given back when stale)");
        }
    }

    /// Reads the upstream's chunks to the end (even when the client is gone, so the usage is
    /// known), forwards them with the public model id, then settles.
    async fn relay(
        &self,
        bill_to: &AccountId,
        p: Prepared,
        mut chunks: crate::provider::ChunkStream,
        tx: mpsc::Sender<Bytes>,
        wants_usage: bool,
    ) {
        let deadline = tokio::time::Instant::now() + self.max_stream;
        let mut usage: Option<Usage> = None;
        let mut delivered = false;
        let mut client_gone = false;
        let mut failure: Option<UpstreamError> = None;
        loop {
            let idle = tokio::time::Instant::now() + self.request_timeout;
            let next = match tokio::time::timeout_at(idle.min(deadline), chunks.next()).await {
                Ok(Some(Ok(c))) => c,
                Ok(Some(Err(e))) => {
                    failure = Some(e);
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    failure = Some(UpstreamError::Timeout);
                    break;
                }
            };
            let mut chunk = next;
            if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
                usage = serde_json::from_value(u.clone()).ok().or(usage);
            }
            let only_usage = chunk.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
            if only_usage && !wants_usage {
                continue;
            }
            if !wants_usage && let Some(o) = chunk.as_object_mut() {
                o.remove("usage");
            }
            chunk["model"] = Value::String(p.model.info.id.clone());
            delivered = true;
            if !client_gone && tx.send(sse_data(&chunk)).await.is_err() {
                client_gone = true;
            }
        }
        if let Some(e) = &failure {
            tracing::warn!(error = %e, model = %p.model.info.id, "an upstream stream ended in an error");
            let body = serde_json::json!({"error": {"type": "upstream_error", "message": e.to_string()}});
            let _ = tx.send(sse_data(&body)).await;
        }
        let settled = if usage.is_none() && !delivered {
            // Nothing reached the client and the upstream reported no use: nothing is charged.
            self.release(bill_to, &p.hold_id).await;
            None
        } else {
            let u = self.usage_of(&p, usage);
            match self.credits.settle_credits(bill_to, &p.hold_id, &u, self.clock.now_ms()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, account = %bill_to, "settling a streamed completion failed");
                    None
                }
            }
        };
        if let Some(s) = settled {
            let _ = tx
                .send(Bytes::from(format!(": credits-consumed={} credits-remaining={}\n\n", s.charged, s.balance)))
                .await;
        }
        let _ = tx.send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    }
}

/// A request ready for its upstream, with its credits held.
struct Prepared {
    model: Arc<Model>,
    /// The model's provider with the key in force.
    provider: Arc<dyn ChatProvider>,
    upstream: ChatRequest,
    hold_id: String,
    reserved: i64,
    remaining: i64,
}

fn sse_data(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// An upper bound of the prompt's tokens: the bytes of its messages and tools as JSON. A
/// tokenizer's token covers at least one byte of text, and the JSON's keys and quotes outweigh the
/// few tokens a chat template adds per message. (Images are the exception; if an upstream reports
/// more than was reserved, the settlement still never takes the balance below zero.)
pub fn prompt_token_bound(request: &ChatRequest) -> u64 {
    let bytes = serde_json::to_vec(&(&request.messages, &request.tools)).map_or(0, |v| v.len());
    u64::try_from(bytes).unwrap_or(u64::MAX)
}
