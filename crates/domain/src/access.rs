//! The claims of an access token (RFC 9068 JWT profile). Issued by the authorization server,
//! verified by the MCP gateway and the introspection endpoint.

use serde::{Deserialize, Serialize};

use crate::UnixTime;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessTokenClaims {
    pub iss: String,
    /// The account id.
    pub sub: String,
    /// The RFC 8707 resource the token is for.
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    /// The session (grant) the token hangs off.
    pub sid: String,
    pub jti: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub auth_time: UnixTime,
}

/// Clock abstraction: rules take `now`; the edges read it from a clock.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
    fn now(&self) -> UnixTime {
        self.now_ms().div_euclid(1000)
    }
}
