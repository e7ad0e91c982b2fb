//! The white-label handoff: a white-label client's backend, holding its customer's access token,
//! asks for a one-time code that opens this server's connection-management page in the client's
//! branding, signed in as that customer. The code lives 30 seconds, is used once, and is bound to
//! the client, the account and the page's "back to the app" URL.

use crate::UnixTime;
use crate::ids::{AccountId, ClientId};

/// How long a handoff code may be redeemed (a redirect's worth of time).
pub const HANDOFF_TTL_SECS: i64 = 30;

/// What a handoff opens. Only connection management so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffIntent {
    /// The connections page.
    Connections,
    /// The account dashboard (overview, apps, tokens, activity, and the connections page); not its
    /// security page, which needs a sign-in here.
    Account,
}

impl HandoffIntent {
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffIntent::Connections => "connections",
            HandoffIntent::Account => "account",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "connections" => Some(HandoffIntent::Connections),
            "account" => Some(HandoffIntent::Account),
            _ => None,
        }
    }
}

/// A handoff code as stored: only the SHA-256 of the code, never the code.
#[derive(Clone, Debug)]
pub struct HandoffCode {
    pub code_hash: Vec<u8>,
    pub account_id: AccountId,
    pub client_id: ClientId,
    pub intent: HandoffIntent,
    /// The white-label app's page the "back" link leads to, checked against the client when issued.
    pub redirect_uri: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl HandoffCode {
    pub fn is_current(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handoff_code_lives_thirty_seconds() {
        let c = HandoffCode {
            code_hash: vec![1; 32],
            account_id: AccountId::from_string("acc_1"),
            client_id: ClientId::from_string("cli_1"),
            intent: HandoffIntent::Connections,
            redirect_uri: "https://app.example/settings".into(),
            created_at: 1000,
            expires_at: 1000 + HANDOFF_TTL_SECS,
        };
        assert!(c.is_current(1000) && c.is_current(1029));
        assert!(!c.is_current(1030));
    }

    #[test]
    fn only_known_intents_parse() {
        assert_eq!(HandoffIntent::parse("connections"), Some(HandoffIntent::Connections));
        assert_eq!(HandoffIntent::parse("account"), Some(HandoffIntent::Account));
        assert_eq!(HandoffIntent::parse("security"), None);
        assert_eq!(HandoffIntent::Connections.as_str(), "connections");
    }
}
