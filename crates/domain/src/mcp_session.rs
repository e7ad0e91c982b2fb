//! MCP Streamable-HTTP sessions (`Mcp-Session-Id`): what a session is, what an id may look like, and
//! when a session is still live.

use crate::UnixTime;
use crate::ids::{AccountId, SessionId};

/// The longest `Mcp-Session-Id` looked up (ours are 43 characters).
pub const MAX_ID_LEN: usize = 128;

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

impl McpSession {
    /// Live: not ended, and `now` is before its expiry (at `expires_at` it is over).
    pub fn is_live(&self, now: UnixTime) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }
}

/// Could `id` be an `Mcp-Session-Id` at all? The spec allows visible ASCII only (0x21–0x7E); anything
/// else, empty or longer than [`MAX_ID_LEN`] is unknown without asking the store.
pub fn is_well_formed_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(expires_at: UnixTime, ended_at: Option<UnixTime>) -> McpSession {
        McpSession {
            id: "s".into(),
            account_id: AccountId::from_string("acc_1"),
            grant_id: SessionId::from_string("ses_1"),
            protocol_version: "2025-06-18".into(),
            client_name: None,
            created_at: 0,
            expires_at,
            ended_at,
        }
    }

    #[test]
    fn mcp_session_expires_at_expires_at() {
        let s = session(100, None);
        assert!(s.is_live(0));
        assert!(s.is_live(99), "one second before expiry");
        assert!(!s.is_live(100), "at expiry");
        assert!(!s.is_live(101));
    }

    #[test]
    fn ended_mcp_session_is_not_live_even_before_expiry() {
        assert!(!session(100, Some(50)).is_live(10));
        assert!(!session(100, Some(50)).is_live(60));
    }

    #[test]
    fn session_id_format() {
        assert!(is_well_formed_id("AbC-_09~!"));
        assert!(is_well_formed_id(&"x".repeat(MAX_ID_LEN)));
        assert!(!is_well_formed_id(&"x".repeat(MAX_ID_LEN + 1)));
        assert!(!is_well_formed_id(""));
        assert!(!is_well_formed_id("has space"));
        assert!(!is_well_formed_id("tab\there"));
        assert!(!is_well_formed_id("del\u{7f}"));
        assert!(!is_well_formed_id("é"));
        assert!(!is_well_formed_id("line\nbreak"));
    }
}
