//! Personal access tokens and operator tokens, hashed at rest.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::grant::Grant;
use crate::ids::{SessionId, TenantId};
use crate::token::{OperatorToken, PersonalAccessToken};

/// What became of a request to create a PAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatCreation {
    Created,
    /// The account already holds the most live (unrevoked, unexpired) PATs it may; nothing was stored.
    QuotaReached,
    /// The session of the creating token is revoked (or gone); nothing was stored.
    ParentRevoked,
}

#[async_trait]
pub trait PatStore: Send + Sync {
    /// Creates the token and the session it owns, atomically — unless the account already holds
    /// `max_live` live PATs, or the token's `parent_session_id` names a session that is not live.
    /// Both checks run in the same transaction as the insert, so parallel requests cannot pass them
    /// together, and a revocation of the parent either sees the new PAT or refuses it.
    async fn create_pat(&self, pat: &PersonalAccessToken, grant: &Grant, max_live: u32) -> Result<PatCreation>;
    /// The token, its session and the account's email.
    async fn pat_by_hash(&self, hash: &[u8]) -> Result<Option<(PersonalAccessToken, Grant, String)>>;
    async fn list_pats(&self, tenant: &TenantId) -> Result<Vec<(PersonalAccessToken, Grant)>>;
    /// Revokes the token and its session (and every PAT it created, transitively); the session id if
    /// there was a live token.
    async fn revoke_pat(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<Option<SessionId>>;
}

#[async_trait]
pub trait OperatorTokenStore: Send + Sync {
    async fn create_operator_token(&self, token: &OperatorToken) -> Result<()>;
    async fn operator_token_by_hash(&self, hash: &[u8]) -> Result<Option<OperatorToken>>;
    async fn revoke_operator_token(&self, id: &str, now: UnixTime) -> Result<bool>;
}
