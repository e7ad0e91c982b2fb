//! MCP sessions: created at `initialize`, stored in the shared database (so any instance can serve
//! them), bound to the account. Lookups are cached for at most a second, which bounds how long an
//! ended session stays usable on another instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bk_crypto::secret::{b64url, random_bytes};
use bk_domain::access::Clock;
use bk_domain::ids::AccountId;
use bk_domain::mcp_session::{self, McpSession};
use bk_domain::ports::{McpSessionStore, StoreError};

use bk_access::AccessContext;

const CACHE_TTL_MS: i64 = 1000;
const MAX_CACHED: usize = 50_000;

/// Session id → (fetched at, account that asked, what the store said).
type Cache = HashMap<String, (i64, AccountId, Option<McpSession>)>;

pub struct McpSessions {
    store: Arc<dyn McpSessionStore>,
    clock: Arc<dyn Clock>,
    ttl_secs: i64,
    cache: Mutex<Cache>,
}

pub enum Lookup {
    Live(Box<McpSession>),
    /// Unknown, ended, expired, or another account's: all answer 404 alike.
    NotFound,
}

impl McpSessions {
    pub fn new(store: Arc<dyn McpSessionStore>, clock: Arc<dyn Clock>, ttl_secs: i64) -> Self {
        Self { store, clock, ttl_secs, cache: Mutex::default() }
    }

    pub async fn create(
        &self,
        ctx: &AccessContext,
        protocol_version: &str,
        client_name: Option<String>,
        client_features: bk_domain::mcp_session::ClientFeatures,
    ) -> Result<McpSession, StoreError> {
        let now = self.clock.now();
        let session = McpSession {
            id: b64url(&random_bytes::<32>()),
            account_id: ctx.account_id.clone(),
            grant_id: ctx.session_id.clone(),
            client_id: ctx.client_id.to_string(),
            protocol_version: protocol_version.to_owned(),
            client_name: client_name.map(|n| n.chars().filter(|c| !c.is_control()).take(100).collect()),
            client_features,
            log_level: None,
            created_at: now,
            expires_at: now + self.ttl_secs,
            ended_at: None,
        };
        self.store.create_mcp_session(&session).await?;
        Ok(session)
    }

    pub async fn find(&self, ctx: &AccessContext, id: &str) -> Result<Lookup, StoreError> {
        if !mcp_session::is_well_formed_id(id) {
            return Ok(Lookup::NotFound);
        }
        let now_ms = self.clock.now_ms();
        let cached = self
            .lock()
            .get(id)
            .filter(|(at, account, _)| now_ms - at < CACHE_TTL_MS && *account == ctx.account_id)
            .map(|(_, _, s)| s.clone());
        let result = if cached.is_some() { "hit" } else { "miss" };
        metrics::counter!("bridgekeeper_cache_requests_total", "cache" => "mcp_sessions", "result" => result)
            .increment(1);
        let session = match cached {
            Some(s) => s,
            None => {
                let s = self.store.mcp_session(&ctx.account_id, id).await?;
                let mut cache = self.lock();
                if cache.len() >= MAX_CACHED {
                    cache.retain(|_, (at, _, _)| now_ms - *at < CACHE_TTL_MS);
                }
                cache.insert(id.to_owned(), (now_ms, ctx.account_id.clone(), s.clone()));
                s
            }
        };
        let now = now_ms.div_euclid(1000);
        // A session belongs to the app (client) whose token created it — its later grants too (a
        // step-up re-authorization keeps the session) — never to another app of the same account,
        // which could otherwise answer its questions or cancel its calls.
        let ours = |s: &McpSession| s.client_id.is_empty() || s.client_id == ctx.client_id.as_str();
        Ok(match session {
            Some(s) if s.is_live(now) && ours(&s) => Lookup::Live(Box::new(s)),
            _ => Lookup::NotFound,
        })
    }

    /// Keeps the log level the session's client asked for (seen by every instance; this one at once).
    pub async fn set_log_level(&self, ctx: &AccessContext, id: &str, level: &str) -> Result<(), StoreError> {
        self.store.set_mcp_session_log_level(&ctx.account_id, id, level).await?;
        if let Some((_, _, Some(s))) = self.lock().get_mut(id) {
            s.log_level = Some(level.to_owned());
        }
        Ok(())
    }

    /// Ends the caller's session; false if there was no live one.
    pub async fn end(&self, ctx: &AccessContext, id: &str) -> Result<bool, StoreError> {
        let ended = self.store.end_mcp_session(&ctx.account_id, id, self.clock.now()).await?;
        self.lock().remove(id);
        Ok(ended)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
