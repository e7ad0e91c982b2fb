//! White-label handoff codes: one-time, 30 seconds, stored by digest.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::handoff::HandoffCode;
use crate::ids::TenantId;

#[async_trait]
pub trait HandoffCodeStore: Send + Sync {
    async fn insert_handoff_code(&self, tenant: &TenantId, code: &HandoffCode) -> Result<()>;
    /// Marks the code with this digest used and returns it — once: a second take finds nothing, on
    /// every instance (a compare-and-set). Expiry is the caller's to check.
    async fn take_handoff_code(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<HandoffCode>>;
}
