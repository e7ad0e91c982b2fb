//! Long-lived credentials besides OAuth grants: personal access tokens and operator tokens, and the
//! rules for making a PAT: who may create one, and how long it lives.

use crate::UnixTime;
use crate::client::ClientRole;
use crate::grant::GrantKind;
use crate::ids::{AccountId, SessionId};

/// A personal access token: hashed at rest; it owns a session of its own.
#[derive(Clone, Debug)]
pub struct PersonalAccessToken {
    pub id: String,
    pub account_id: AccountId,
    pub session_id: SessionId,
    /// The session of the token that created this PAT (`None`: created from a signed-in browser).
    /// Revoking that session revokes this PAT too, so a credential never outlives the one that made it.
    pub parent_session_id: Option<SessionId>,
    pub name: String,
    pub hash: Vec<u8>,
    pub created_at: UnixTime,
    pub expires_at: Option<UnixTime>,
    pub revoked_at: Option<UnixTime>,
}

/// An operator API token (`bridgekeeper admin token create`), hashed at rest.
#[derive(Clone, Debug)]
pub struct OperatorToken {
    pub id: String,
    pub name: String,
    pub hash: Vec<u8>,
    pub created_at: UnixTime,
    pub revoked_at: Option<UnixTime>,
}

/// What is asking to create a personal access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatCreator {
    /// A person signed in to these pages in this browser.
    Browser,
    /// A bearer credential: an OAuth access token (with its client's role) or a PAT.
    Token { kind: GrantKind, client_role: Option<ClientRole> },
}

impl PatCreator {
    /// Only first-party callers may mint a PAT: the person in their own browser, one of their own PATs,
    /// or a white-label client (only an operator can create one). A third-party app's token never may,
    /// whatever its scopes: the consent page showed `account` as reading account details, not as
    /// minting credentials.
    pub fn is_first_party(self) -> bool {
        match self {
            PatCreator::Browser => true,
            PatCreator::Token { kind: GrantKind::PersonalAccessToken, .. } => true,
            PatCreator::Token { kind: GrantKind::OAuth, client_role } => {
                client_role == Some(ClientRole::WhitelabelCustomer)
            }
        }
    }
}

/// The longest explicit PAT lifetime.
pub const PAT_MAX_LIFETIME_SECS: i64 = 366 * 24 * 3600;
/// The shortest PAT lifetime.
pub const PAT_MIN_LIFETIME_SECS: i64 = 60;

/// How long a new PAT is asked to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatLifetime {
    /// Nothing said (`expires_in` absent or null): the server's default.
    Default,
    Seconds(i64),
    /// Asked for explicitly (`"expires_in": "never"`).
    Never,
}

impl PatLifetime {
    /// When the PAT expires (`None`: never), given the configured default lifetime. An explicit lifetime
    /// must be 60 s to 366 days.
    pub fn expires_at(self, now: UnixTime, default_secs: i64) -> Result<Option<UnixTime>, String> {
        match self {
            PatLifetime::Default => Ok(Some(now + default_secs)),
            PatLifetime::Never => Ok(None),
            PatLifetime::Seconds(s) if (PAT_MIN_LIFETIME_SECS..=PAT_MAX_LIFETIME_SECS).contains(&s) => {
                Ok(Some(now + s))
            }
            PatLifetime::Seconds(_) => Err(format!(
                "expires_in must be {PAT_MIN_LIFETIME_SECS} to {PAT_MAX_LIFETIME_SECS} seconds, \"never\", or absent for the default"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_first_party_callers_create_pats() {
        assert!(PatCreator::Browser.is_first_party());
        assert!(PatCreator::Token { kind: GrantKind::PersonalAccessToken, client_role: None }.is_first_party());
        assert!(
            PatCreator::Token { kind: GrantKind::OAuth, client_role: Some(ClientRole::WhitelabelCustomer) }
                .is_first_party()
        );
        assert!(
            !PatCreator::Token { kind: GrantKind::OAuth, client_role: Some(ClientRole::ThirdParty) }.is_first_party()
        );
        // A token whose client is gone (deleted) is not first-party.
        assert!(!PatCreator::Token { kind: GrantKind::OAuth, client_role: None }.is_first_party());
    }

    #[test]
    fn pat_lifetime_defaults_and_never_only_when_asked() {
        let day = 24 * 3600;
        assert_eq!(PatLifetime::Default.expires_at(1000, 90 * day), Ok(Some(1000 + 90 * day)));
        assert_eq!(PatLifetime::Never.expires_at(1000, 90 * day), Ok(None));
        assert_eq!(PatLifetime::Seconds(3600).expires_at(1000, 90 * day), Ok(Some(4600)));
        assert_eq!(PatLifetime::Seconds(60).expires_at(0, day), Ok(Some(60)));
        assert_eq!(PatLifetime::Seconds(PAT_MAX_LIFETIME_SECS).expires_at(0, day), Ok(Some(PAT_MAX_LIFETIME_SECS)));
    }

    #[test]
    fn pat_lifetime_out_of_range_is_refused() {
        for bad in [i64::MIN, -1, 0, 5, 59, PAT_MAX_LIFETIME_SECS + 1, i64::MAX] {
            assert!(PatLifetime::Seconds(bad).expires_at(0, 3600).is_err(), "{bad}");
        }
    }
}
