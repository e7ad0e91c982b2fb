//! OAuth clients: their role, type and what they may ask for.

use crate::UnixTime;
use crate::ids::{AccountId, ClientId};
use crate::redirect;
use crate::scope::{Scope, ScopeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientRole {
    ThirdParty,
    WhitelabelCustomer,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::ThirdParty => "THIRD_PARTY",
            ClientRole::WhitelabelCustomer => "WHITELABEL_CUSTOMER",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "THIRD_PARTY" => Some(ClientRole::ThirdParty),
            "WHITELABEL_CUSTOMER" => Some(ClientRole::WhitelabelCustomer),
            _ => None,
        }
    }
    /// The scopes a client of this role may ever obtain.
    pub fn scope_ceiling(self) -> ScopeSet {
        match self {
            ClientRole::WhitelabelCustomer => ScopeSet::all(),
            ClientRole::ThirdParty => {
                ScopeSet::from_scopes(Scope::ALL.into_iter().filter(|s| *s != Scope::AgentsAll))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientType {
    /// No secret: authenticates with `none` and relies on PKCE.
    Public,
    Confidential,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientType::Public => "public",
            ClientType::Confidential => "confidential",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "public" => Some(ClientType::Public),
            "confidential" => Some(ClientType::Confidential),
            _ => None,
        }
    }
}

/// How a client was created; dynamically registered clients are always asked for consent at least once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientOrigin {
    Dynamic,
    Manual,
}

impl ClientOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientOrigin::Dynamic => "dcr",
            ClientOrigin::Manual => "manual",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dcr" => Some(ClientOrigin::Dynamic),
            "manual" => Some(ClientOrigin::Manual),
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub client_type: ClientType,
    pub role: ClientRole,
    pub origin: ClientOrigin,
    pub redirect_uris: Vec<String>,
    /// Scopes this client may request (already capped by its role).
    pub allowed_scopes: ScopeSet,
    /// SHA-256 of the secret for confidential clients.
    pub secret_hash: Option<Vec<u8>>,
    pub owner: Option<AccountId>,
    pub created_at: UnixTime,
}

impl Client {
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| redirect::matches(r, requested))
    }

    /// The scope a request may obtain: requested ∩ allowed ∩ role ceiling. `None` requested means
    /// everything the client is allowed.
    pub fn grantable_scope(&self, requested: Option<&str>) -> ScopeSet {
        let ceiling = self
            .allowed_scopes
            .with_implied()
            .intersect(&self.role.scope_ceiling());
        match requested {
            Some(r) if !r.trim().is_empty() => ScopeSet::parse_lenient(r).intersect(&ceiling),
            _ => ceiling,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(role: ClientRole) -> Client {
        Client {
            id: ClientId::generate(),
            name: "x".into(),
            client_type: ClientType::Public,
            role,
            origin: ClientOrigin::Dynamic,
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            allowed_scopes: ScopeSet::all(),
            secret_hash: None,
            owner: None,
            created_at: 0,
        }
    }

    #[test]
    fn third_party_never_gets_agents_all() {
        let c = client(ClientRole::ThirdParty);
        assert!(
            !c.grantable_scope(Some("agents-all universal-mcp-read"))
                .contains(Scope::AgentsAll)
        );
        let w = client(ClientRole::WhitelabelCustomer);
        assert!(
            w.grantable_scope(Some("agents-all"))
                .contains(Scope::AgentsAll)
        );
    }
}
