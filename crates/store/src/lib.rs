//! Storage: one trait per aggregate, and one SQL implementation that runs on the embedded SQLite
//! and on PostgreSQL. Every method that touches tenant data takes the tenant id first.

use async_trait::async_trait;
use bk_domain::UnixTime;
use bk_domain::audit::{AuditEvent, StoredAuditEvent};
use bk_domain::client::Client;
use bk_domain::code::AuthorizationCode;
use bk_domain::grant::{Grant, RevocationReason};
use bk_domain::ids::{AccountId, ClientId, KeyId, RefreshTokenId, SessionId, TenantId};
use bk_domain::refresh::RefreshToken;
use bk_domain::restrictions::Restrictions;

mod sql;
pub use sql::{PoolSettings, SqlStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists: {0}")]
    Conflict(&'static str),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL (expected sqlite://… or postgres://…)")]
    UnsupportedUrl,
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    /// argon2id PHC string; `None` for accounts that sign in another way.
    pub password_hash: Option<String>,
    pub created_at: UnixTime,
}

/// What the MCP gateway needs to know about a session on every request.
#[derive(Clone, Debug)]
pub struct SessionStatus {
    pub account_id: AccountId,
    pub email: String,
    pub client_id: ClientId,
    pub active: bool,
    pub restrictions: Restrictions,
}

/// A session as the account's "authorized apps" list shows it.
#[derive(Clone, Debug)]
pub struct SessionSummary {
    pub grant: Grant,
    pub client_name: String,
}

/// A personal access token: hashed at rest; it owns a session of its own.
#[derive(Clone, Debug)]
pub struct PersonalAccessToken {
    pub id: String,
    pub account_id: AccountId,
    pub session_id: SessionId,
    pub name: String,
    pub hash: Vec<u8>,
    pub created_at: UnixTime,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

/// An operator API token (`bridgekeeper admin token create`), hashed at rest.
#[derive(Clone, Debug)]
pub struct OperatorToken {
    pub id: String,
    pub name: String,
    pub hash: Vec<u8>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// A signing key as stored: the PKCS#8 private key sealed under the master key.
#[derive(Clone, Debug)]
pub struct StoredSigningKey {
    pub kid: KeyId,
    pub alg: String,
    pub sealed_private_key: Vec<u8>,
    pub created_at: UnixTime,
    pub retire_after: Option<UnixTime>,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Fails with `Conflict` if the email is taken.
    async fn create_account(&self, account: &Account) -> Result<()>;
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>>;
    async fn account(&self, id: &AccountId) -> Result<Option<Account>>;
}

#[async_trait]
pub trait ClientStore: Send + Sync {
    async fn insert_client(&self, client: &Client) -> Result<()>;
    /// A live (not deleted) client.
    async fn client(&self, id: &ClientId) -> Result<Option<Client>>;
    /// Clients owned by `owner`, or every client (operators) when `None`.
    async fn list_clients(&self, owner: Option<&AccountId>) -> Result<Vec<Client>>;
    /// Updates name, redirect URIs, scopes, providers, domains, branding, secret; false if absent.
    async fn update_client(&self, client: &Client) -> Result<bool>;
    /// Deletes a client and revokes every session it holds; false if absent.
    async fn delete_client(&self, id: &ClientId, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<Grant>>;
    /// The hot-path check behind every bearer request. Keyed by the session id of a verified token.
    async fn session_status(&self, id: &SessionId) -> Result<Option<SessionStatus>>;
    /// The tenant's live sessions (authorized apps and PATs), newest first.
    async fn list_sessions(&self, tenant: &TenantId) -> Result<Vec<SessionSummary>>;
    /// Revokes a session (idempotent). Returns true if it was active.
    async fn revoke_session(&self, id: &SessionId, reason: RevocationReason, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    async fn insert_code(&self, code: &AuthorizationCode) -> Result<()>;
    async fn code(&self, hash: &[u8]) -> Result<Option<AuthorizationCode>>;
    /// Atomically marks the code used (compare-and-set) and creates the session and its first refresh
    /// token. Returns false, changing nothing, if the code was already used.
    async fn redeem_code(&self, hash: &[u8], grant: &Grant, refresh: &RefreshToken, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait RefreshTokenStore: Send + Sync {
    /// The token and the session it belongs to.
    async fn refresh_token(&self, hash: &[u8]) -> Result<Option<(RefreshToken, Grant)>>;
    /// The token that replaced `parent` (read on the writer, so a rotation just committed is seen).
    async fn refresh_successor(&self, parent: &RefreshTokenId) -> Result<Option<RefreshToken>>;
    /// Atomically marks `old` used (compare-and-set) and stores `new`. Returns false, changing
    /// nothing, if `old` was already used (a concurrent exchange won).
    async fn rotate_refresh_token(&self, old: &RefreshTokenId, new: &RefreshToken, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait ConsentStore: Send + Sync {
    /// Has the person approved exactly this grant (`grant`: the canonical text of its scopes and
    /// restrictions) for this client before?
    async fn has_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str) -> Result<bool>;
    async fn remember_consent(&self, tenant: &TenantId, client: &ClientId, grant: &str, now: UnixTime) -> Result<()>;
}

#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Keys not yet retired at `now`, newest first.
    async fn signing_keys(&self, now: UnixTime) -> Result<Vec<StoredSigningKey>>;
    async fn insert_signing_key(&self, key: &StoredSigningKey) -> Result<()>;
}

/// An MCP Streamable-HTTP session: created at `initialize`, bound to the account that created it.
#[derive(Clone, Debug)]
pub struct McpSession {
    /// The `Mcp-Session-Id` (256 random bits).
    pub id: String,
    pub account_id: AccountId,
    /// The grant whose token created it (informational: the session is bound to the account).
    pub grant_id: SessionId,
    pub protocol_version: String,
    pub client_name: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub ended_at: Option<UnixTime>,
}

#[async_trait]
pub trait McpSessionStore: Send + Sync {
    async fn create_mcp_session(&self, session: &McpSession) -> Result<()>;
    /// The session if it belongs to `tenant` (another tenant's session looks absent).
    async fn mcp_session(&self, tenant: &TenantId, id: &str) -> Result<Option<McpSession>>;
    /// Ends a session; false if it was not live (or not the tenant's).
    async fn end_mcp_session(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<bool>;
}

#[async_trait]
pub trait PatStore: Send + Sync {
    /// Creates the token and the session it owns, atomically.
    async fn create_pat(&self, pat: &PersonalAccessToken, grant: &Grant) -> Result<()>;
    /// The token, its session and the account's email.
    async fn pat_by_hash(&self, hash: &[u8]) -> Result<Option<(PersonalAccessToken, Grant, String)>>;
    async fn list_pats(&self, tenant: &TenantId) -> Result<Vec<(PersonalAccessToken, Grant)>>;
    /// Revokes the token and its session; the session id if there was a live token.
    async fn revoke_pat(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<Option<SessionId>>;
}

#[async_trait]
pub trait OperatorTokenStore: Send + Sync {
    async fn create_operator_token(&self, token: &OperatorToken) -> Result<()>;
    async fn operator_token_by_hash(&self, hash: &[u8]) -> Result<Option<OperatorToken>>;
    async fn revoke_operator_token(&self, id: &str, now: UnixTime) -> Result<bool>;
}

/// A filter on the audit log. `tenant` None = every account (operators only).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub kind: Option<String>,
    /// Rows after this sequence number (the cursor of the previous page).
    pub after_seq: Option<i64>,
    pub limit: i64,
}

/// Where an appended event landed in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainPosition {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the chain stands: its last row, and the anchor left by pruning (verification starts there).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainState {
    pub head_seq: i64,
    pub head_hash: String,
    pub anchor_seq: i64,
    pub anchor_hash: String,
}

/// Computes a row's hash from the previous hash, its sequence number and the event.
pub type ChainLink = dyn Fn(&str, i64, &AuditEvent) -> String + Send + Sync;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events at the head of the chain, atomically (one writer at a time, on every instance).
    /// Returns each event's place in the chain, in order.
    async fn append_audit(&self, events: &[AuditEvent], link: &ChainLink) -> Result<Vec<ChainPosition>>;
    /// Rows of one tenant (`Some`) or of everyone (`None`, operators), oldest first.
    async fn query_audit(&self, tenant: Option<&TenantId>, q: &AuditQuery) -> Result<Vec<StoredAuditEvent>>;
    async fn audit_chain_state(&self) -> Result<ChainState>;
    /// Every row after `after_seq`, in chain order (for verification).
    async fn audit_range(&self, after_seq: i64, limit: i64) -> Result<Vec<StoredAuditEvent>>;
    /// Deletes rows older than `before_ms` and beyond the newest `max_rows`, keeping the chain
    /// verifiable (the last deleted row becomes the anchor). Returns rows deleted.
    async fn prune_audit(&self, before_ms: Option<i64>, max_rows: Option<i64>) -> Result<u64>;
}

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
{
    fn backend(&self) -> &'static str;
    /// Is the database reachable? (readiness)
    async fn ping(&self) -> Result<()>;
    /// Deletes what can no longer be used: codes a day past expiry (kept that long so a late replay still
    /// revokes), expired refresh tokens. Returns the number of rows deleted.
    async fn purge_expired(&self, now: UnixTime) -> Result<u64>;
}
