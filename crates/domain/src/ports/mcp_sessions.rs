//! MCP Streamable-HTTP sessions.

use async_trait::async_trait;

use super::Result;
use crate::UnixTime;
use crate::ids::TenantId;
use crate::mcp_session::McpSession;

#[async_trait]
pub trait McpSessionStore: Send + Sync {
    async fn create_mcp_session(&self, session: &McpSession) -> Result<()>;
    /// The session if it belongs to `tenant` (another tenant's session looks absent).
    async fn mcp_session(&self, tenant: &TenantId, id: &str) -> Result<Option<McpSession>>;
    /// Keeps the least severe log level the session's client asked for (`logging/setLevel`).
    async fn set_mcp_session_log_level(&self, tenant: &TenantId, id: &str, level: &str) -> Result<()>;
    /// Ends a session; false if it was not live (or not the tenant's).
    async fn end_mcp_session(&self, tenant: &TenantId, id: &str, now: UnixTime) -> Result<bool>;
}
