//! The access context: who is calling and what they were granted. Built by the verifier from a
//! verified credential and its live session; handed unchanged to every handler and tool, which read
//! identity and grants from here, never from their arguments.

use std::sync::Arc;

use bk_domain::access::AccessTokenClaims;
use bk_domain::grant::GrantKind;
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;

#[derive(Clone, Debug)]
pub struct AccessContext {
    /// The tenant.
    pub account_id: AccountId,
    pub email: String,
    pub client_id: ClientId,
    /// The grant (session) the credential hangs off.
    pub session_id: SessionId,
    pub scopes: ScopeSet,
    /// Provider permissions and agent / knowledge-base restrictions of the grant.
    pub restrictions: Restrictions,
    /// An OAuth grant or a personal access token.
    pub kind: GrantKind,
    /// The session was opened by a bound machine client's `client_credentials` grant (no person
    /// signed in to it; token-exchange tokens of such a session too).
    pub machine: bool,
    /// The providers the client may use now (`None` = every provider; PATs are not an app's).
    pub client_providers: Option<Vec<String>>,
    /// The JWT's claims (absent for personal access tokens).
    pub claims: Option<Arc<AccessTokenClaims>>,
}
