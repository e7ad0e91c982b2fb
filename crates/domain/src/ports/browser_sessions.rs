//! Signed-in browser sessions, kept server-side so that signing out ends them everywhere.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::browser_session::{BrowserSessionEnd, StoredBrowserSession};
use crate::ids::TenantId;

#[async_trait]
pub trait BrowserSessionStore: Send + Sync {
    async fn create_browser_session(&self, session: &StoredBrowserSession) -> Result<()>;
    /// The session whose id has digest `id_hash`, ended or not (the caller asks `is_live`).
    async fn browser_session(&self, id_hash: &[u8]) -> Result<Option<StoredBrowserSession>>;
    /// Ends one session (idempotent). True if it was still open.
    async fn end_browser_session(&self, id_hash: &[u8], why: BrowserSessionEnd, now: UnixTime) -> Result<bool>;
    /// Ends every open session of the account (a password change); how many were open.
    async fn end_browser_sessions_of(&self, tenant: &TenantId, why: BrowserSessionEnd, now: UnixTime) -> Result<u64>;
    /// The account's live sessions (not ended, not expired at `now`), newest first, at most
    /// [`crate::browser_session::MAX_LISTED_BROWSER_SESSIONS`].
    async fn list_browser_sessions_of(&self, tenant: &TenantId, now: UnixTime) -> Result<Vec<StoredBrowserSession>>;
    /// Ends one session of the account, only if it is that account's and still open: another
    /// account's session (or an unknown digest) changes nothing and answers false.
    async fn end_browser_session_of(
        &self,
        tenant: &TenantId,
        id_hash: &[u8],
        why: BrowserSessionEnd,
        now: UnixTime,
    ) -> Result<bool>;
    /// Notes that the session was seen at `now`, and its browser's `user_agent` if none is kept yet
    /// (the first one seen stays). Changes nothing for an ended session.
    async fn touch_browser_session(&self, id_hash: &[u8], user_agent: Option<&str>, now: UnixTime) -> Result<()>;
}
