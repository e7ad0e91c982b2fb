//! The request context: who is calling and what they were granted, established once per request
//! by the auth step and handed to every tool. Tools read credentials and identity from here, never
//! from their arguments.

use bk_domain::grant::GrantKind;
use bk_domain::ids::{AccountId, ClientId, SessionId};
use bk_domain::restrictions::Restrictions;
use bk_domain::scope::ScopeSet;
use bk_oauth::AccessContext;

#[derive(Clone, Debug)]
pub struct RequestContext {
    pub account_id: AccountId,
    pub email: String,
    pub client_id: ClientId,
    pub session_id: SessionId,
    pub scopes: ScopeSet,
    /// Provider permissions and agent / knowledge-base restrictions of the grant.
    pub restrictions: Restrictions,
    /// An OAuth grant or a personal access token.
    pub kind: GrantKind,
}

impl From<AccessContext> for RequestContext {
    fn from(a: AccessContext) -> Self {
        Self {
            account_id: a.account_id,
            email: a.email,
            client_id: a.client_id,
            session_id: a.session_id,
            scopes: a.scopes,
            restrictions: a.restrictions,
            kind: a.kind,
        }
    }
}
