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
    /// The grant whose token created it (informational).
    pub grant_id: SessionId,
    /// The client (app) whose token created it: only that client's tokens may use it (empty for
    /// sessions created before this was kept).
    pub client_id: String,
    pub protocol_version: String,
    pub client_name: Option<String>,
    /// What the client said at `initialize` it can do that the gateway may ask of it.
    pub client_features: ClientFeatures,
    /// The least severe log level the client asked for (`logging/setLevel`); none yet.
    pub log_level: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub ended_at: Option<UnixTime>,
}

/// The client capabilities the gateway acts on: answering sampling, form-mode and URL-mode
/// elicitation. Kept with a legacy session (declared once, at `initialize`); a 2026-07-28
/// request declares them in its own `_meta`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientFeatures {
    pub sampling: bool,
    pub elicit_form: bool,
    pub elicit_url: bool,
}

impl ClientFeatures {
    /// From an MCP `ClientCapabilities` object (`elicitation: {}` means form mode only).
    pub fn from_capabilities(caps: Option<&serde_json::Value>) -> Self {
        let Some(caps) = caps.and_then(serde_json::Value::as_object) else { return Self::default() };
        let elicitation = caps.get("elicitation").and_then(serde_json::Value::as_object);
        Self {
            sampling: caps.get("sampling").is_some_and(serde_json::Value::is_object),
            elicit_form: elicitation.is_some_and(|e| e.contains_key("form") || !e.contains_key("url")),
            elicit_url: elicitation.is_some_and(|e| e.contains_key("url")),
        }
    }

    /// As stored: the names of the features, comma-separated.
    pub fn to_text(self) -> String {
        let mut out = Vec::new();
        if self.sampling {
            out.push("sampling");
        }
        if self.elicit_form {
            out.push("elicit-form");
        }
        if self.elicit_url {
            out.push("elicit-url");
        }
        out.join(",")
    }

    /// From `to_text` (unknown names are ignored).
    pub fn from_text(s: &str) -> Self {
        let has = |n: &str| s.split(',').any(|x| x == n);
        Self { sampling: has("sampling"), elicit_form: has("elicit-form"), elicit_url: has("elicit-url") }
    }
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

    #[test]
    fn client_features_read_capabilities_and_round_trip() {
        let f = |v: serde_json::Value| ClientFeatures::from_capabilities(Some(&v));
        assert_eq!(f(serde_json::json!({})), ClientFeatures::default());
        assert_eq!(
            f(serde_json::json!({"elicitation": {}})),
            ClientFeatures { elicit_form: true, ..ClientFeatures::default() },
            "an empty elicitation capability is form mode"
        );
        let all = f(serde_json::json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}}));
        assert_eq!(all, ClientFeatures { sampling: true, elicit_form: true, elicit_url: true });
        assert!(!f(serde_json::json!({"elicitation": {"url": {}}})).elicit_form);
        for x in [all, ClientFeatures::default(), f(serde_json::json!({"elicitation": {"url": {}}}))] {
            assert_eq!(ClientFeatures::from_text(&x.to_text()), x);
        }
    }

    fn session(expires_at: UnixTime, ended_at: Option<UnixTime>) -> McpSession {
        McpSession {
            id: "s".into(),
            account_id: AccountId::from_string("acc_1"),
            grant_id: SessionId::from_string("ses_1"),
            protocol_version: "2025-06-18".into(),
            client_name: None,
            client_features: ClientFeatures::default(),
            log_level: None,
            client_id: String::new(),
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
