//! Refresh tokens: opaque, hashed at rest, single use, rotated on every exchange; a replay revokes the session.

use crate::UnixTime;
use crate::ids::{ClientId, RefreshTokenId, SessionId};
use crate::scope::ScopeSet;

#[derive(Clone, Debug)]
pub struct RefreshToken {
    pub id: RefreshTokenId,
    pub hash: Vec<u8>,
    pub session_id: SessionId,
    pub client_id: ClientId,
    pub scopes: ScopeSet,
    pub expires_at: UnixTime,
    pub used_at: Option<UnixTime>,
    pub parent_id: Option<RefreshTokenId>,
    pub created_at: UnixTime,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Rotate: mark this one used and issue a new pair with `scopes`.
    Rotate {
        scopes: ScopeSet,
    },
    /// Used before: refuse and revoke the whole session.
    Replay,
    /// Used moments ago (within the configured grace) by the same client: a retry of an exchange
    /// whose answer was lost. Continue from its successor if that one is still unused.
    RetryFromSuccessor,
    Refuse(&'static str),
    InvalidScope,
}

impl RefreshToken {
    /// Decides an exchange. `requested_scope` may narrow, never widen, the grant.
    pub fn decide(
        &self,
        client_id: &ClientId,
        session_active: bool,
        requested_scope: Option<&str>,
        now: UnixTime,
        reuse_grace_secs: i64,
    ) -> RefreshDecision {
        if &self.client_id != client_id {
            return RefreshDecision::Refuse("the refresh token was issued to another client");
        }
        if let Some(used) = self.used_at {
            if session_active && reuse_grace_secs > 0 && now - used <= reuse_grace_secs {
                return RefreshDecision::RetryFromSuccessor;
            }
            return RefreshDecision::Replay;
        }
        if !session_active {
            return RefreshDecision::Refuse("the session has been revoked");
        }
        if now >= self.expires_at {
            return RefreshDecision::Refuse("the refresh token has expired");
        }
        let scopes = match requested_scope {
            Some(s) if !s.trim().is_empty() => {
                let asked = ScopeSet::parse_lenient(s);
                if asked.is_empty() || !asked.is_subset_of(&self.scopes) {
                    return RefreshDecision::InvalidScope;
                }
                asked
            }
            _ => self.scopes.clone(),
        };
        RefreshDecision::Rotate { scopes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> RefreshToken {
        RefreshToken {
            id: RefreshTokenId::generate(),
            hash: vec![1],
            session_id: SessionId::generate(),
            client_id: ClientId::from_string("c1"),
            scopes: ScopeSet::parse_lenient("universal-mcp-read account"),
            expires_at: 100,
            used_at: None,
            parent_id: None,
            created_at: 0,
        }
    }

    #[test]
    fn refresh_scope_subset_of_grant() {
        let t = token();
        let c = ClientId::from_string("c1");
        assert_eq!(
            t.decide(&c, true, Some("universal-mcp-read"), 10, 0),
            RefreshDecision::Rotate { scopes: ScopeSet::parse_lenient("universal-mcp-read") }
        );
        assert_eq!(t.decide(&c, true, Some("universal-mcp-read-write"), 10, 0), RefreshDecision::InvalidScope);
    }

    #[test]
    fn used_token_is_replay_and_other_client_refused() {
        let mut t = token();
        assert!(matches!(t.decide(&ClientId::from_string("c2"), true, None, 10, 0), RefreshDecision::Refuse(_)));
        t.used_at = Some(5);
        assert_eq!(t.decide(&ClientId::from_string("c1"), true, None, 10, 0), RefreshDecision::Replay);
    }

    #[test]
    fn expired_refused() {
        assert!(matches!(token().decide(&ClientId::from_string("c1"), true, None, 100, 0), RefreshDecision::Refuse(_)));
    }
}

#[cfg(test)]
mod grace_tests {
    use super::*;

    #[test]
    fn reuse_grace_only_for_recent_reuse_on_a_live_session() {
        let mut t = RefreshToken {
            id: RefreshTokenId::generate(),
            hash: vec![1],
            session_id: SessionId::generate(),
            client_id: ClientId::from_string("c1"),
            scopes: ScopeSet::parse_lenient("account"),
            expires_at: 1000,
            used_at: Some(100),
            parent_id: None,
            created_at: 0,
        };
        let c = ClientId::from_string("c1");
        assert_eq!(t.decide(&c, true, None, 105, 10), RefreshDecision::RetryFromSuccessor);
        assert_eq!(t.decide(&c, true, None, 111, 10), RefreshDecision::Replay, "too late");
        assert_eq!(t.decide(&c, false, None, 105, 10), RefreshDecision::Replay, "revoked session");
        assert_eq!(t.decide(&c, true, None, 105, 0), RefreshDecision::Replay, "no grace configured");
        t.used_at = None;
        assert!(matches!(t.decide(&c, true, None, 105, 10), RefreshDecision::Rotate { .. }));
    }
}
