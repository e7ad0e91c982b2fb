//! `bridgekeeper admin llm set-key | clear-key`: an operator stores or removes a configured model's
//! upstream API key from the command line, the same way as `PUT/DELETE
//! /api/v1/admin/llm/models/{id}/api-key` (sealed under the master key with the model id bound,
//! audited with `via: cli`, never printed).

use std::io::Read;

use anyhow::{Context, bail};
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ports::LlmApiKeyStore;

use crate::cli::{ConfigArgs, LlmAction};

pub async fn run(cfg: &ConfigArgs, action: LlmAction) -> anyhow::Result<()> {
    let config = crate::cli::load(cfg, None, None)?;
    let model = match &action {
        LlmAction::SetKey { model, .. } | LlmAction::ClearKey { model } => model.clone(),
    };
    if !config.llm.models.iter().any(|m| m.id == model) {
        bail!("no model {model:?} in [[llm.models]]: a key is stored only for a configured model");
    }
    let (store, embedded) = crate::serve::open_store(&config).await?;
    let now_ms = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis())?;
    let event = match action {
        LlmAction::SetKey { key_stdin, .. } => {
            if !key_stdin {
                bail!("--key-stdin is required");
            }
            let mut raw = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut raw).context("cannot read the key from standard input")?;
            let key = bk_llm::ApiKey::new(raw.trim_end_matches(['\n', '\r']).to_owned());
            bk_llm::sealed_keys::check_api_key(key.expose()).map_err(|e| anyhow::anyhow!("{e}"))?;
            let master = crate::keys::master_key(&config, embedded)?;
            let sealed = bk_llm::sealed_keys::seal_api_key(&master, &model, &key)?;
            store.put_llm_api_key(&model, &sealed, now_ms).await?;
            println!(
                "stored the API key of model {model} (sealed under {}); every instance uses it within 2 s",
                master.id()
            );
            AuditEvent::new("llm.api_key.set", Outcome::Success, now_ms).target(&model)
        }
        LlmAction::ClearKey { .. } => {
            let removed = store.delete_llm_api_key(&model).await?;
            println!(
                "{}; model {model} uses its configured key",
                if removed { "removed the stored API key" } else { "no stored API key" }
            );
            AuditEvent::new("llm.api_key.cleared", Outcome::Success, now_ms).target(&model).detail("removed", removed)
        }
    };
    // Audited like the API's, through the same writer (redaction, hash chain).
    let log = bk_audit::AuditLog::start(std::sync::Arc::new(store), &config.audit.to_config())?;
    log.record(event.detail("via", "cli"));
    log.flush().await;
    Ok(())
}
