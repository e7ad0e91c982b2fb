//! Bridge mode's sealed scoped tokens (see `crate::bridge`): held for a code, then for its session.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::bridge::SealedBridge;
use crate::ids::{SessionId, TenantId};

#[async_trait]
pub trait BridgeStore: Send + Sync {
    /// Holds sealed tokens for the (stored) code with this hash. They move onto the session its
    /// redemption creates (in the redemption's own transaction) and are deleted with the code if it
    /// is never redeemed, and with the session when it is revoked.
    async fn hold_bridges(
        &self,
        tenant: &TenantId,
        code_hash: &[u8],
        bridges: &[SealedBridge],
        now: UnixTime,
    ) -> Result<()>;
    /// The sealed tokens of a live session of this tenant (none for a revoked or foreign one).
    async fn session_bridges(&self, tenant: &TenantId, session: &SessionId) -> Result<Vec<SealedBridge>>;
    /// Marks a token for verification at the next refresh. False when it is gone.
    async fn mark_bridge_reverify(&self, tenant: &TenantId, id: &str) -> Result<bool>;
    /// Replaces a token after a new verification (and clears the mark). False when it is gone.
    async fn replace_bridge(
        &self,
        tenant: &TenantId,
        id: &str,
        sealed: &[u8],
        backend_user_id: Option<&str>,
        now: UnixTime,
    ) -> Result<bool>;
}
