//! The grant (session): what an account allowed a client to do. Every token hangs off one.

use crate::UnixTime;
use crate::ids::{AccountId, ClientId, SessionId};
use crate::restrictions::Restrictions;
use crate::scope::ScopeSet;

#[derive(Clone, Debug)]
pub struct Grant {
    pub id: SessionId,
    pub account_id: AccountId,
    pub client_id: ClientId,
    pub scopes: ScopeSet,
    pub restrictions: Restrictions,
    /// How the grant was made: an OAuth authorization, or a personal access token.
    pub kind: GrantKind,
    /// RFC 8707 resource the access tokens are for (their `aud`).
    pub resource: String,
    /// When the person authenticated (OIDC `auth_time`).
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
    /// RFC 9449: the thumbprint of the key the grant is bound to (its tokens were first asked for
    /// with a DPoP proof); a refresh must prove the same key.
    pub dpop_jkt: Option<String>,
}

impl Grant {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// RFC 8707 on refresh: a `resource` named on a refresh request must be the one this grant was made
    /// for (trailing slashes aside), since a refresh cannot move tokens to another audience. Naming none
    /// keeps the grant's.
    pub fn accepts_resource(&self, requested: Option<&str>) -> bool {
        requested.is_none_or(|r| r.trim_end_matches('/') == self.resource.trim_end_matches('/'))
    }
}

/// Why a session was revoked (kept on the row, and later in the audit log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationReason {
    CodeReplay,
    RefreshReplay,
    RevokedByClient,
    RevokedByUser,
    /// The client it was granted to was deleted.
    ClientDeleted,
    /// The personal access token that owns it was revoked.
    PatRevoked,
    /// It is a PAT's session, and the session whose token created that PAT was revoked.
    CreatorRevoked,
    /// Bridge mode: the company backend refused the user when its token was verified again.
    BridgeRefused,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::CodeReplay => "code_replay",
            RevocationReason::RefreshReplay => "refresh_replay",
            RevocationReason::RevokedByClient => "revoked_by_client",
            RevocationReason::RevokedByUser => "revoked_by_user",
            RevocationReason::ClientDeleted => "client_deleted",
            RevocationReason::PatRevoked => "pat_revoked",
            RevocationReason::CreatorRevoked => "creator_revoked",
            RevocationReason::BridgeRefused => "bridge_refused",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantKind {
    OAuth,
    PersonalAccessToken,
}

impl GrantKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::OAuth => "oauth",
            GrantKind::PersonalAccessToken => "pat",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "oauth" => Some(GrantKind::OAuth),
            "pat" => Some(GrantKind::PersonalAccessToken),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(resource: &str) -> Grant {
        Grant {
            id: SessionId::from_string("ses_1"),
            account_id: AccountId::from_string("acc_1"),
            client_id: ClientId::from_string("cli_1"),
            scopes: ScopeSet::parse_lenient("account"),
            restrictions: Restrictions::unrestricted(),
            kind: GrantKind::OAuth,
            resource: resource.to_owned(),
            auth_time: 0,
            created_at: 0,
            revoked_at: None,
            dpop_jkt: None,
        }
    }

    #[test]
    fn refresh_resource_must_be_the_granted_one() {
        let g = grant("https://bk.example/mcp");
        assert!(g.accepts_resource(None), "no resource named keeps the grant's");
        assert!(g.accepts_resource(Some("https://bk.example/mcp")));
        assert!(!g.accepts_resource(Some("https://bk.example")));
        assert!(!g.accepts_resource(Some("https://other.example/mcp")));
        assert!(!g.accepts_resource(Some("https://bk.example/mcp/other")));
        assert!(!g.accepts_resource(Some("https://bk.example/MCP")), "paths compare exactly");
        assert!(!g.accepts_resource(Some("")));
    }

    #[test]
    fn refresh_resource_ignores_trailing_slashes() {
        assert!(grant("https://bk.example/mcp").accepts_resource(Some("https://bk.example/mcp/")));
        assert!(grant("https://bk.example/mcp/").accepts_resource(Some("https://bk.example/mcp")));
        assert!(grant("https://bk.example/mcp").accepts_resource(Some("https://bk.example/mcp//")));
        assert!(grant("https://bk.example").accepts_resource(Some("https://bk.example/")));
    }
}
