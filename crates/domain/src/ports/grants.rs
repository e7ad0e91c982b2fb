//! Grants: sessions (what a person approved for a client), the authorization codes that create
//! them and the refresh tokens that keep them going.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::code::AuthorizationCode;
use crate::grant::{Grant, RevocationReason};
use crate::ids::{AccountId, ClientId, RefreshTokenId, SessionId, TenantId};
use crate::refresh::RefreshToken;
use crate::restrictions::Restrictions;

/// What the MCP gateway needs to know about a session on every request.
#[derive(Clone, Debug)]
pub struct SessionStatus {
    pub account_id: AccountId,
    pub email: String,
    pub client_id: ClientId,
    pub active: bool,
    pub restrictions: Restrictions,
    /// The providers the session's client may use now (`None` = every provider): checked on every
    /// request, so narrowing a client's list takes effect on grants it already holds.
    pub client_providers: Option<Vec<String>>,
    /// Opened by a bound machine client's `client_credentials` grant: nobody signed in to it.
    pub machine: bool,
}

/// A session as the account's "authorized apps" list shows it.
#[derive(Clone, Debug)]
pub struct SessionSummary {
    pub grant: Grant,
    pub client_name: String,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn session(&self, tenant: &TenantId, id: &SessionId) -> Result<Option<Grant>>;
    /// The hot-path check behind every bearer request. Keyed by the session id of a verified token.
    async fn session_status(&self, id: &SessionId) -> Result<Option<SessionStatus>>;
    /// The tenant's live sessions (authorized apps and PATs), newest first.
    async fn list_sessions(&self, tenant: &TenantId) -> Result<Vec<SessionSummary>>;
    /// Revokes a session (idempotent), and in the same transaction every PAT its tokens created
    /// (transitively: PATs made by those PATs too). Returns true if it was active.
    async fn revoke_session(&self, id: &SessionId, reason: RevocationReason, now: UnixTime) -> Result<bool>;
    /// Replaces a live session's restrictions with `narrowed` if they are still `expected`
    /// (compare-and-set, so a confirmation given for one state never applies to another). Returns
    /// false, changing nothing, if the session is gone, revoked, another tenant's, or changed.
    async fn narrow_restrictions(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        expected: &Restrictions,
        narrowed: &Restrictions,
    ) -> Result<bool>;
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
    /// Binds an unbound session to a DPoP key (RFC 9449 §5: a grant that starts using DPoP at a
    /// refresh). Compare-and-set: the key the session is bound to afterwards — `jkt`, or the one a
    /// concurrent request bound it to first.
    async fn bind_session_dpop(&self, session: &SessionId, jkt: &str) -> Result<Option<String>>;
}
