//! Long-lived credentials besides OAuth grants: personal access tokens and operator tokens.

use crate::UnixTime;
use crate::ids::{AccountId, SessionId};

/// A personal access token: hashed at rest; it owns a session of its own.
#[derive(Clone, Debug)]
pub struct PersonalAccessToken {
    pub id: String,
    pub account_id: AccountId,
    pub session_id: SessionId,
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
