//! Authorization codes: hashed at rest, single use, short-lived, bound to client, redirect URI and challenge.

use crate::UnixTime;
use crate::ids::{AccountId, ClientId, SessionId};
use crate::pkce::{CodeChallenge, PkceError};
use crate::restrictions::Restrictions;
use crate::scope::ScopeSet;

/// A code as stored (the code itself is only ever held as a hash).
#[derive(Clone, Debug)]
pub struct AuthorizationCode {
    pub hash: Vec<u8>,
    pub client_id: ClientId,
    pub account_id: AccountId,
    pub redirect_uri: String,
    pub challenge: CodeChallenge,
    pub scopes: ScopeSet,
    pub restrictions: Restrictions,
    pub resource: String,
    pub nonce: Option<String>,
    pub auth_time: UnixTime,
    pub expires_at: UnixTime,
    /// Set once redeemed: the session created from it.
    pub session_id: Option<SessionId>,
    pub used_at: Option<UnixTime>,
}

/// What the token endpoint presents for a code.
pub struct CodeRedemption<'a> {
    pub client_id: &'a ClientId,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum CodeDecision {
    /// Issue tokens.
    Redeem,
    /// The code was already used: refuse and revoke the session it produced.
    Replay,
    Refuse(&'static str),
    Pkce(PkceError),
}

impl AuthorizationCode {
    /// Decides a redemption given `now`. The caller has already proven the client's identity.
    pub fn decide(&self, r: &CodeRedemption<'_>, now: UnixTime) -> CodeDecision {
        if self.used_at.is_some() {
            return CodeDecision::Replay;
        }
        if &self.client_id != r.client_id {
            return CodeDecision::Refuse("the authorization code was issued to another client");
        }
        if now >= self.expires_at {
            return CodeDecision::Refuse("the authorization code has expired");
        }
        match r.redirect_uri {
            Some(uri) if uri == self.redirect_uri => {}
            Some(_) => {
                return CodeDecision::Refuse("redirect_uri does not match the authorization request");
            }
            None => return CodeDecision::Refuse("redirect_uri is required"),
        }
        if let Err(e) = self.challenge.verify(r.code_verifier) {
            return CodeDecision::Pkce(e);
        }
        CodeDecision::Redeem
    }
}
