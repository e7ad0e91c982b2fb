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
            ClientRole::ThirdParty => ScopeSet::from_scopes(Scope::ALL.into_iter().filter(|s| *s != Scope::AgentsAll)),
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
    /// Described by a client ID metadata document at its `client_id` URL.
    Document,
}

impl ClientOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientOrigin::Dynamic => "dcr",
            ClientOrigin::Manual => "manual",
            ClientOrigin::Document => "cimd",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dcr" => Some(ClientOrigin::Dynamic),
            "manual" => Some(ClientOrigin::Manual),
            "cimd" => Some(ClientOrigin::Document),
            _ => None,
        }
    }
}

/// How a white-label client presents itself on the login and consent pages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    /// A `data:image/(png|jpeg|svg+xml|webp);base64,…` URI.
    pub logo: Option<String>,
    pub description: Option<String>,
    /// `#RRGGBB`.
    pub brand_color: Option<String>,
}

/// Is `color` a brand colour we accept: exactly `#RRGGBB` in hex digits (either case)? Nothing else,
/// because the value is written into a stylesheet: no names, no functions, no `;`, `}` or quotes.
pub fn is_valid_brand_color(color: &str) -> bool {
    match color.as_bytes() {
        [b'#', hex @ ..] => hex.len() == 6 && hex.iter().all(u8::is_ascii_hexdigit),
        _ => false,
    }
}

/// A confidential client's secret at rest: a bcrypt hash for verification and an AES-256-GCM sealed
/// copy (bound to the client id) so the operator can recover it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSecret {
    pub bcrypt: String,
    pub sealed: Vec<u8>,
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
    /// Provider ids this client may reach; `None` = all.
    pub allowed_providers: Option<Vec<String>>,
    /// Domains a white-label client owns; its redirect URIs must be on them.
    pub domains: Vec<String>,
    pub branding: Option<Branding>,
    pub secret: Option<StoredSecret>,
    pub owner: Option<AccountId>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// Is `host` one of `domains` or a subdomain of one?
pub fn host_on_domains(host: &str, domains: &[String]) -> bool {
    let host = host.to_ascii_lowercase();
    domains.iter().any(|d| {
        let d = d.to_ascii_lowercase();
        host == d || host.ends_with(&format!(".{d}"))
    })
}

/// A white-label client must name its domains, and every redirect URI must be on one (loopback excepted).
pub fn check_whitelabel_redirects(domains: &[String], redirect_uris: &[String]) -> Result<(), String> {
    if domains.is_empty() {
        return Err("domains: a white-label client must name at least one domain".into());
    }
    for uri in redirect_uris {
        let url = url::Url::parse(uri).map_err(|_| format!("redirectUris: {uri} is not a URL"))?;
        if redirect::is_loopback(&url) {
            continue;
        }
        let host = url.host_str().unwrap_or("");
        if !host_on_domains(host, domains) {
            return Err(format!("redirectUris: {uri} is not on one of the client's domains"));
        }
    }
    Ok(())
}

impl Client {
    pub fn redirect_uri_allowed(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|r| redirect::matches(r, requested))
    }

    /// The scope a request may obtain: requested ∩ allowed ∩ role ceiling. `None` requested means
    /// everything the client is allowed.
    pub fn grantable_scope(&self, requested: Option<&str>) -> ScopeSet {
        let ceiling = self.allowed_scopes.with_implied().intersect(&self.role.scope_ceiling());
        match requested {
            Some(r) if !r.trim().is_empty() => ScopeSet::parse_lenient(r).intersect(&ceiling),
            _ => ceiling,
        }
    }
}

/// Who stands behind a client, as the consent page tells the person asked to approve it. Only
/// clients an operator created (with an operator token) are vetted; everyone else's carry a warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registrant {
    /// Created by an operator: vetted.
    Operator,
    /// Created through the management API by a signed-up person (its owner): not vetted.
    Account(AccountId),
    /// Registered itself through dynamic client registration: not vetted.
    ItSelf,
    /// Described by a metadata document on this host (its `client_id` URL's): not vetted, but
    /// whoever controls that host vouches for it.
    Document { host: String },
}

impl Registrant {
    /// Has the operator vouched for the client?
    pub fn is_vetted(&self) -> bool {
        matches!(self, Registrant::Operator)
    }
}

impl Client {
    /// Who registered the client: dynamic registration, a person (its owner) or an operator.
    pub fn registrant(&self) -> Registrant {
        match (self.origin, &self.owner) {
            (ClientOrigin::Dynamic, _) => Registrant::ItSelf,
            (ClientOrigin::Document, _) => Registrant::Document {
                host: url::Url::parse(self.id.as_str())
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_owned))
                    .unwrap_or_default(),
            },
            (ClientOrigin::Manual, Some(owner)) => Registrant::Account(owner.clone()),
            (ClientOrigin::Manual, None) => Registrant::Operator,
        }
    }

    /// May the person's consent to this client be remembered? Not for a dynamically registered
    /// client: any local program can present a public loopback client's id, so the person approves
    /// each new authorization it starts (refreshing an existing grant is unaffected).
    ///
    /// Nor for a metadata-document client that can be sent to a loopback address: its document is
    /// public, so any local program can present its id and receive the code there.
    pub fn remembers_consent(&self) -> bool {
        match self.origin {
            ClientOrigin::Dynamic => false,
            ClientOrigin::Document => {
                !self.redirect_uris.iter().any(|u| url::Url::parse(u).is_ok_and(|u| redirect::is_loopback(&u)))
            }
            ClientOrigin::Manual => true,
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
            allowed_providers: None,
            domains: vec![],
            branding: None,
            secret: None,
            owner: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn third_party_never_gets_agents_all() {
        let c = client(ClientRole::ThirdParty);
        assert!(!c.grantable_scope(Some("agents-all universal-mcp-read")).contains(Scope::AgentsAll));
        let w = client(ClientRole::WhitelabelCustomer);
        assert!(w.grantable_scope(Some("agents-all")).contains(Scope::AgentsAll));
    }
}

#[cfg(test)]
mod whitelabel_tests {
    use super::*;

    #[test]
    fn whitelabel_redirects_must_be_on_domains() {
        let d = vec!["yourapp.com".to_owned()];
        assert!(
            check_whitelabel_redirects(
                &d,
                &[
                    "https://yourapp.com/cb".into(),
                    "https://app.yourapp.com/cb".into(),
                    "http://127.0.0.1:3000/cb".into()
                ]
            )
            .is_ok()
        );
        assert!(check_whitelabel_redirects(&d, &["https://evilyourapp.com/cb".into()]).is_err());
        assert!(check_whitelabel_redirects(&[], &["https://yourapp.com/cb".into()]).is_err());
    }
}

#[cfg(test)]
mod brand_color_tests {
    use super::*;

    #[test]
    fn brand_color_accepts_only_hash_rrggbb() {
        for ok in ["#000000", "#ffffff", "#FFFFFF", "#1a2B3c", "#0F9d58"] {
            assert!(is_valid_brand_color(ok), "{ok}");
        }
    }

    #[test]
    fn brand_color_rejects_other_forms() {
        for bad in
            ["", "#", "#fff", "#fffffff", "#ffff", "ffffff", "##fffff", "#gggggg", "#12345z", "red", "rgb(1,2,3)"]
        {
            assert!(!is_valid_brand_color(bad), "{bad}");
        }
    }

    #[test]
    fn brand_color_cannot_break_out_of_css() {
        for bad in [
            "#fff;}",
            "#ffffff;",
            "#ffffff}",
            "#fff}body{",
            "#ffffff\n",
            "#ffffff\n}",
            "#ff\"fff",
            "#ff;}ff",
            "#f\\00ff",
            "#ff'fff",
            "#ff</st",
            "#ff fff",
            "#ffffff ",
            " #ffffff",
            "#ffffff\u{0}",
            "#ｆｆｆｆｆｆ",
            "#ff\u{e9}ff",
            "#ffffff/*",
        ] {
            assert!(!is_valid_brand_color(bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod registrant_tests {
    use super::*;

    fn client(origin: ClientOrigin, owner: Option<&str>) -> Client {
        Client {
            id: ClientId::generate(),
            name: "Claude Desktop".into(),
            client_type: ClientType::Public,
            role: ClientRole::ThirdParty,
            origin,
            redirect_uris: vec!["https://app.example/cb".into()],
            allowed_scopes: ScopeSet::all(),
            allowed_providers: None,
            domains: vec![],
            branding: None,
            secret: None,
            owner: owner.map(AccountId::from_string),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_operator_clients_are_vetted() {
        let operator = client(ClientOrigin::Manual, None).registrant();
        assert_eq!(operator, Registrant::Operator);
        assert!(operator.is_vetted());
        let person = client(ClientOrigin::Manual, Some("acc_1")).registrant();
        assert_eq!(person, Registrant::Account(AccountId::from_string("acc_1")));
        assert!(!person.is_vetted());
        assert_eq!(client(ClientOrigin::Dynamic, None).registrant(), Registrant::ItSelf);
        assert!(!client(ClientOrigin::Dynamic, None).registrant().is_vetted());
    }

    #[test]
    fn a_registered_client_is_never_vetted_whatever_its_owner() {
        assert_eq!(client(ClientOrigin::Dynamic, Some("acc_1")).registrant(), Registrant::ItSelf);
    }
}
