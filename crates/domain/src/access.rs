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
    /// The session (grant) the token hangs off. Empty (absent) only in the token of a machine client
    /// bound to no account (`client_credentials`): it hangs off no session and reaches no tenant.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sid: String,
    pub jti: String,
    pub iat: UnixTime,
    pub exp: UnixTime,
    pub auth_time: UnixTime,
    /// RFC 9449 §6: the key a DPoP-bound token is bound to; such a token is refused as a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// RFC 8693 §4.1: the client acting for `sub` (a token obtained by token exchange); earlier
    /// actors nested inside. Such a token's `client_id` is that acting client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

impl AccessTokenClaims {
    /// A machine client's token bound to no account: it hangs off no session, so it can reach no
    /// tenant's data (every tenant face refuses it); only introspection answers for it.
    pub fn acts_for_no_account(&self) -> bool {
        self.sid.is_empty()
    }

    /// The client acting for the subject when it is not the one the session was granted to (a
    /// token exchange): the outermost `act`, which names the token's own `client_id`.
    pub fn acting_client(&self) -> Option<&str> {
        self.act.as_ref().map(|a| a.sub.as_str()).filter(|a| *a == self.client_id)
    }
}

/// RFC 8693 §4.1 actor: who acts (a client id here), and who acted before it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain names (1 for a single exchange).
    pub fn depth(&self) -> usize {
        let mut n = 1;
        let mut a = self;
        while let Some(inner) = &a.act {
            n += 1;
            a = inner;
        }
        n
    }
}

/// RFC 7800 confirmation: the RFC 7638 thumbprint of the holder's key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Confirmation {
    pub jkt: String,
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

    fn claims() -> AccessTokenClaims {
        AccessTokenClaims {
            iss: "https://bk.example".into(),
            sub: "acc_1".into(),
            aud: "https://bk.example/mcp".into(),
            client_id: "cli_b".into(),
            scope: "account".into(),
            sid: "ses_1".into(),
            jti: "j".into(),
            iat: 1,
            exp: 2,
            auth_time: 1,
            cnf: None,
            act: None,
        }
    }

    #[test]
    fn tokens_without_a_session_act_for_no_account_and_say_so_in_json() {
        let mut c = claims();
        assert!(!c.acts_for_no_account());
        c.sid = String::new();
        assert!(c.acts_for_no_account());
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("sid").is_none() && json.get("act").is_none(), "{json}");
        let back: AccessTokenClaims = serde_json::from_value(json).unwrap();
        assert!(back.acts_for_no_account());
    }

    #[test]
    fn the_acting_client_is_the_outermost_actor_naming_the_token_client() {
        let mut c = claims();
        assert_eq!(c.acting_client(), None);
        c.act = Some(Actor { sub: "cli_b".into(), act: Some(Box::new(Actor { sub: "cli_a".into(), act: None })) });
        assert_eq!(c.acting_client(), Some("cli_b"));
        assert_eq!(c.act.as_ref().unwrap().depth(), 2);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["act"], serde_json::json!({"sub": "cli_b", "act": {"sub": "cli_a"}}));
        c.client_id = "cli_other".into();
        assert_eq!(c.acting_client(), None, "an act naming another client than client_id is no actor");
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
