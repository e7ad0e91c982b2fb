//! The `[knowledge]` section of the configuration, and the knowledge-base service and tools it
//! builds (wired in `serve.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// Knowledge bases: per-account limits and how documents named by URL are fetched.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// Knowledge bases an account may hold (the default one included).
    pub max_bases_per_account: u32,
    /// Documents one knowledge base may hold.
    pub max_documents_per_base: u32,
    /// Bytes of one document's text (UTF-8), given or extracted; at most 1048576.
    pub max_document_bytes: usize,
    /// Bytes of a page fetched for a URL document, before its text is extracted.
    pub fetch_max_bytes: usize,
    /// The whole fetch of a URL document, redirects included.
    pub fetch_timeout_ms: u64,
    /// Redirects followed (each target checked again).
    pub fetch_max_redirects: usize,
    /// URL documents an account may fetch per minute.
    pub url_fetches_per_minute: u32,
    /// Also fetch from loopback and private addresses (development only).
    pub allow_private_addresses: bool,
    /// Also plain http to a loopback host; needs `allow_private_addresses` (development and tests only).
    pub allow_http_loopback: bool,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        let l = bk_knowledge::KnowledgeLimits::default();
        Self {
            max_bases_per_account: l.max_bases_per_account,
            max_documents_per_base: l.max_documents_per_base,
            max_document_bytes: l.max_document_bytes,
            fetch_max_bytes: 2 * 1024 * 1024,
            fetch_timeout_ms: 10_000,
            fetch_max_redirects: 5,
            url_fetches_per_minute: 30,
            allow_private_addresses: false,
            allow_http_loopback: false,
        }
    }
}

impl KnowledgeConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_bases_per_account == 0 || self.max_documents_per_base == 0 {
            bail!("knowledge.max_bases_per_account and knowledge.max_documents_per_base must be at least 1");
        }
        // PostgreSQL's tsvector of a larger text may exceed its own limit.
        if !(1..=1024 * 1024).contains(&self.max_document_bytes) {
            bail!("knowledge.max_document_bytes must be 1 to 1048576");
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.fetch_max_bytes) {
            bail!("knowledge.fetch_max_bytes must be 1024 to 16777216");
        }
        if !(100..=120_000).contains(&self.fetch_timeout_ms) {
            bail!("knowledge.fetch_timeout_ms must be 100 to 120000");
        }
        if self.url_fetches_per_minute == 0 {
            bail!("knowledge.url_fetches_per_minute must be at least 1");
        }
        if self.fetch_max_redirects > 10 {
            bail!("knowledge.fetch_max_redirects must be 0 to 10");
        }
        if self.allow_http_loopback && !self.allow_private_addresses {
            bail!(
                "knowledge.allow_http_loopback needs knowledge.allow_private_addresses (both are for development only)"
            );
        }
        Ok(())
    }

    /// The service, over `store`.
    pub fn build(
        &self,
        store: Arc<dyn bk_domain::ports::KnowledgeStore>,
        clock: Arc<dyn bk_domain::access::Clock>,
        limiter: Arc<dyn bk_limits::Limiter>,
    ) -> anyhow::Result<Arc<bk_knowledge::Knowledge>> {
        if self.allow_private_addresses {
            tracing::warn!(
                "knowledge.allow_private_addresses is on: URL documents are fetched from loopback and private \
                 addresses too (development only)"
            );
        }
        let fetcher = bk_outbound::SafeFetcher::new(bk_outbound::FetchPolicy {
            allow_private_addresses: self.allow_private_addresses,
            allow_http_loopback: self.allow_http_loopback,
            extra_roots_pem: None,
            timeout: Duration::from_millis(self.fetch_timeout_ms),
            max_body_bytes: self.fetch_max_bytes,
        })
        .map_err(anyhow::Error::msg)
        .context("knowledge: the URL fetcher")?;
        let limits = bk_knowledge::KnowledgeLimits {
            max_bases_per_account: self.max_bases_per_account,
            max_documents_per_base: self.max_documents_per_base,
            max_document_bytes: self.max_document_bytes,
        };
        Ok(Arc::new(bk_knowledge::Knowledge::new(
            store.clone(),
            Arc::new(bk_knowledge::FullText(store)),
            bk_knowledge::UrlFetch {
                fetcher,
                max_redirects: self.fetch_max_redirects,
                limiter,
                per_minute: self.url_fetches_per_minute,
            },
            clock,
            limits,
        )))
    }
}
