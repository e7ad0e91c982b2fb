//! The claims of an access token (RFC 9068 JWT profile). Issued by the authorization server,
//! verified by the MCP gateway and the introspection endpoint; and who may introspect a token.

use serde::{Deserialize, Serialize};

use crate::UnixTime;
use crate::ids::ClientId;

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

/// A resource server other than this server's own `/mcp` (which verifies tokens itself), registered
/// to learn by introspection about the tokens meant for its resource. None can be registered yet;
/// the introspection rule already takes them into account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceServer {
    /// The RFC 8707 resource it serves: the `aud` of the tokens meant for it.
    pub resource: String,
    /// The confidential client it authenticates as at the introspection endpoint.
    pub client_id: ClientId,
}

/// May `requester` learn through introspection that a token is active (RFC 7662 §2.2 and §4)?
/// Only the client the token was issued to, or a resource server registered for the token's
/// audience. Everyone else is answered `{"active": false}`, exactly as for an unknown token.
pub fn may_introspect(
    requester: &ClientId,
    issued_to: &ClientId,
    audience: &str,
    resource_servers: &[ResourceServer],
) -> bool {
    if requester == issued_to {
        return true;
    }
    let audience = audience.trim_end_matches('/');
    !audience.is_empty()
        && resource_servers.iter().any(|rs| rs.client_id == *requester && rs.resource.trim_end_matches('/') == audience)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientId {
        ClientId::from_string(s)
    }

    #[test]
    fn only_the_issued_to_client_may_introspect_without_resource_servers() {
        let aud = "https://bk.example/mcp";
        assert!(may_introspect(&id("cli_app"), &id("cli_app"), aud, &[]));
        assert!(!may_introspect(&id("cli_other"), &id("cli_app"), aud, &[]));
        assert!(!may_introspect(&id("cli_other"), &id("cli_app"), "", &[]));
    }

    #[test]
    fn a_resource_server_may_introspect_tokens_meant_for_it_only() {
        let rs = [ResourceServer { resource: "https://api.example/".into(), client_id: id("cli_rs") }];
        assert!(may_introspect(&id("cli_rs"), &id("cli_app"), "https://api.example", &rs));
        assert!(may_introspect(&id("cli_rs"), &id("cli_app"), "https://api.example/", &rs));
        assert!(!may_introspect(&id("cli_rs"), &id("cli_app"), "https://bk.example/mcp", &rs), "another audience");
        assert!(!may_introspect(&id("cli_other"), &id("cli_app"), "https://api.example", &rs), "another client");
        let empty = [ResourceServer { resource: String::new(), client_id: id("cli_rs") }];
        assert!(!may_introspect(&id("cli_rs"), &id("cli_app"), "", &empty), "no audience is nobody's");
    }
}
