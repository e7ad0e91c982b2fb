//! Client ID Metadata Documents at the authorization server: a `client_id` that is an HTTPS URL is
//! fetched through the SSRF-safe fetcher, validated by the domain's rules, cached as its response's
//! `Cache-Control` allows (never an error nor an invalid document), and stored as a client row so the
//! grants made to it can name it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bk_domain::client::Client;
use bk_domain::client_metadata::{check_document_url, client_from_document};
use bk_domain::ids::ClientId;
use bk_outbound::SafeFetcher;

use crate::AuthStore;

/// How long a fetched document is used without `Cache-Control: max-age`, and the longest it is used.
const DEFAULT_TTL_MS: i64 = 300_000;
const MAX_TTL_MS: i64 = 86_400_000;
const MAX_CACHED: usize = 10_000;

pub struct ClientDocuments {
    fetcher: SafeFetcher,
    store: Arc<dyn AuthStore>,
    /// Documents by client id, with when they stop being fresh (ms).
    cache: Mutex<HashMap<String, (Client, i64)>>,
}

/// Why a document client cannot be used, in words for the person or the client developer.
#[derive(Debug)]
pub enum DocumentFailure {
    Unusable(String),
    Store(bk_domain::ports::StoreError),
}

impl ClientDocuments {
    pub fn new(fetcher: SafeFetcher, store: Arc<dyn AuthStore>) -> Self {
        Self { fetcher, store, cache: Mutex::default() }
    }

    fn cached(&self, id: &str, now_ms: i64) -> Option<Client> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(id).filter(|(_, until)| *until > now_ms).map(|(c, _)| c.clone())
    }

    /// The client a document describes as of now: from the cache while fresh, else fetched and
    /// validated again (a new authorization always sees the current document).
    pub async fn fresh(&self, id: &str, now_ms: i64) -> Result<Client, DocumentFailure> {
        if let Some(c) = self.cached(id, now_ms) {
            return Ok(c);
        }
        let url = check_document_url(id).map_err(DocumentFailure::Unusable)?;
        let fetched = self
            .fetcher
            .get(&url, "application/json")
            .await
            .map_err(|e| DocumentFailure::Unusable(format!("fetching it failed: {e}")))?;
        let client = client_from_document(id, &fetched.body, now_ms.div_euclid(1000))
            .map_err(|e| DocumentFailure::Unusable(e.0))?;
        self.store.upsert_document_client(&client).await.map_err(DocumentFailure::Store)?;
        let ttl = if fetched.no_store {
            0
        } else {
            fetched.max_age.map_or(DEFAULT_TTL_MS, |s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000))
        }
        .clamp(0, MAX_TTL_MS);
        if ttl > 0 {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.retain(|_, (_, until)| *until > now_ms);
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
            }
            cache.insert(id.to_owned(), (client.clone(), now_ms + ttl));
        }
        tracing::info!(client = id, ttl_ms = ttl, "client metadata document fetched");
        Ok(client)
    }

    /// For the token endpoint: the fresh copy if cached, else the copy stored when an authorization
    /// last fetched it (codes and refresh tokens were issued against that one), else a fetch.
    /// An unusable document is an unknown client (`None`).
    pub async fn known(&self, id: &str, now_ms: i64) -> Result<Option<Client>, bk_domain::ports::StoreError> {
        if let Some(c) = self.cached(id, now_ms) {
            return Ok(Some(c));
        }
        if let Some(c) = self.store.client(&ClientId::from_string(id.to_owned())).await? {
            return Ok(Some(c));
        }
        match self.fresh(id, now_ms).await {
            Ok(c) => Ok(Some(c)),
            Err(DocumentFailure::Unusable(why)) => {
                tracing::info!(client = id, reason = %why, "client metadata document unusable");
                Ok(None)
            }
            Err(DocumentFailure::Store(e)) => Err(e),
        }
    }
}
