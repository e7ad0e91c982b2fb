//! The ports: what the services ask of storage, one trait per aggregate, and the error every
//! adapter reports. Every method that touches tenant data takes the tenant id first. The SQL adapter
//! (`bridgekeeper-store`) implements them for SQLite and PostgreSQL; a component takes only the
//! trait(s) it uses.

mod accounts;
mod agents;
mod audit;
mod bridges;
mod browser_sessions;
mod clients;
mod connections;
mod credits;
mod email_tokens;
mod grants;
mod handoff;
pub mod idp_identities;
mod keys;
mod knowledge;
mod llm_keys;
mod mcp_sessions;
mod passkeys;
mod second_factor;
mod tokens;
pub mod wallets;

pub use accounts::AccountStore;
pub use agents::{AgentCreation, AgentStore};
pub use audit::{AuditQuery, AuditStore, ChainLink, ChainPosition, ChainState};
pub use bridges::BridgeStore;
pub use browser_sessions::BrowserSessionStore;
pub use clients::{ClientStore, ConsentStore};
pub use connections::{
    ConnectionFlowStore, ConnectionPage, ConnectionQuery, ConnectionSort, ConnectionStore, LeaseAttempt,
    MAX_CONNECTIONS_PAGE, RefreshLease, SealedConnection, SealedRow,
};
pub use credits::{CreditStore, MAX_CREDIT_PAGE, Reservation, Settlement};
pub use email_tokens::EmailTokenStore;
pub use grants::{CodeStore, RefreshTokenStore, SessionStatus, SessionStore, SessionSummary};
pub use handoff::HandoffCodeStore;
pub use keys::{
    MasterSealedKind, MasterSealedStore, MasterSealedValue, SigningKeyRotation, SigningKeyStore, StoredSigningKey,
};
pub use knowledge::{BaseFilter, KnowledgeStore};
pub use llm_keys::{LlmApiKeyStore, llm_api_key_binding};
pub use mcp_sessions::McpSessionStore;
pub use passkeys::{PasskeyRemoval, PasskeyStore};
pub use second_factor::{SecondFactorStore, StoredTotp};
pub use tokens::{OperatorTokenStore, PatCreation, PatStore};

use async_trait::async_trait;

use crate::UnixTime;

/// What went wrong in storage. Carries no adapter type: the database's own error is kept as its
/// message (and source) so nothing above the adapter depends on the driver.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("migration failed: {0}")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything the server stores.
#[async_trait]
pub trait Store:
    AccountStore
    + ClientStore
    + SessionStore
    + CodeStore
    + RefreshTokenStore
    + ConsentStore
    + SigningKeyStore
    + McpSessionStore
    + PatStore
    + OperatorTokenStore
    + AuditStore
    + BrowserSessionStore
    + ConnectionStore
    + ConnectionFlowStore
    + HandoffCodeStore
    + EmailTokenStore
    + SecondFactorStore
    + PasskeyStore
{
    fn backend(&self) -> &'static str;
    /// Is the database reachable? (readiness)
    async fn ping(&self) -> Result<()>;
    /// Deletes what can no longer be used: codes a day past expiry (kept that long so a late replay still
    /// revokes), expired refresh tokens, expired MCP and browser sessions, connect flows, handoff codes and emailed links. Returns the number of rows deleted.
    async fn purge_expired(&self, now: UnixTime) -> Result<u64>;
}
