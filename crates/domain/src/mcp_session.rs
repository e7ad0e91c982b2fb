//! MCP Streamable-HTTP sessions (`Mcp-Session-Id`).

use crate::UnixTime;
use crate::ids::{AccountId, SessionId};

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
