//! Personal access tokens and operator tokens, hashed at rest.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::grant::Grant;
use crate::ids::{SessionId, TenantId};
use crate::token::{OperatorToken, PersonalAccessToken};

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
