//! OAuth clients: their role, type and what they may ask for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Branding {
    /// A `data:image/(png|jpeg|svg+xml|webp);base64,…` URI.
    pub logo: Option<String>,
    pub description: Option<String>,
    /// `#RRGGBB`.
    pub brand_color: Option<String>,
    /// The configured upstream identity provider (`idp.providers` id) its customers sign in with:
    /// its login page offers that provider first and alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_provider: Option<String>,
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

/// A grant type a client may use at the token endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    /// RFC 6749 §4.4: a confidential client acting as itself (or for the account an operator bound it to).
    ClientCredentials,
    /// RFC 8693: a confidential client trades a person's access token for a narrower one.
    TokenExchange,
}

impl GrantType {
    pub const ALL: [GrantType; 4] =
        [GrantType::AuthorizationCode, GrantType::RefreshToken, GrantType::ClientCredentials, GrantType::TokenExchange];
    /// What a client may use when nothing was recorded (every client made before grant types were).
    pub const DEFAULT: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == s)
    }

    /// Grants that mint tokens no person approved at this server: only a confidential client an
    /// operator created may hold them (an anonymous registrant could otherwise mint tokens for itself).
    pub fn operator_only(self) -> bool {
        matches!(self, GrantType::ClientCredentials | GrantType::TokenExchange)
    }
}

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A public client: no credential (PKCE binds its codes).
    None,
    /// `client_secret_basic` or `client_secret_post`.
    ClientSecret,
    /// RFC 7523 §2.2: a JWT signed with one of the client's registered keys.
    PrivateKeyJwt,
}

impl AuthMethod {
    /// The RFC 7591 name (a secret client is registered as `client_secret_basic`; it may use `_post` too).
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::ClientSecret => "client_secret_basic",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// The public keys a `private_key_jwt` client signs its assertions with: inline, or where to fetch them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientKeys {
    /// A JWK Set (`{"keys": [...]}`), public keys only, checked by [`check_jwks`].
    Jwks(serde_json::Value),
    /// An https URL serving the JWK Set, checked by [`check_jwks_uri`].
    JwksUri(String),
}

/// What a client may do besides the authorization-code flow, kept beside the client: the grant
/// types it may use, the keys it authenticates with (`private_key_jwt`), and the account an
/// operator bound it to (a `client_credentials` token then acts for that account).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCapabilities {
    /// `None`: never recorded, which means [`GrantType::DEFAULT`].
    pub grant_types: Option<Vec<GrantType>>,
    pub keys: Option<ClientKeys>,
    /// Only for a client allowed `client_credentials`, and only an operator sets it.
    pub bound_account: Option<AccountId>,
    /// Only for a white-label client, and only an operator sets it: the account that pays for the
    /// runs of the `owner`-billed agents created or last changed through the client (read at run
    /// time). It grants that account nothing else.
    pub billing_account: Option<AccountId>,
}

impl ClientCapabilities {
    /// The grant types the client may use.
    pub fn grant_types(&self) -> Vec<GrantType> {
        self.grant_types.clone().unwrap_or_else(|| GrantType::DEFAULT.to_vec())
    }

    pub fn allows(&self, grant: GrantType) -> bool {
        match &self.grant_types {
            Some(list) => list.contains(&grant),
            None => GrantType::DEFAULT.contains(&grant),
        }
    }

    /// How a client of `client_type` with these capabilities authenticates.
    pub fn auth_method(&self, client_type: ClientType) -> AuthMethod {
        match (client_type, &self.keys) {
            (ClientType::Public, _) => AuthMethod::None,
            (ClientType::Confidential, Some(_)) => AuthMethod::PrivateKeyJwt,
            (ClientType::Confidential, None) => AuthMethod::ClientSecret,
        }
    }
}

/// Checks a set of grant types for a client: known, no repeats, at least one; the operator-only
/// ones only for a confidential client an operator creates (`by_operator`); `authorization_code`
/// needs redirect URIs and `refresh_token` comes with it.
pub fn check_grant_types(
    grants: &[GrantType],
    client_type: ClientType,
    by_operator: bool,
    has_redirect_uris: bool,
) -> Result<(), String> {
    if grants.is_empty() {
        return Err("grantTypes must name at least one grant type".into());
    }
    let mut seen = grants.to_vec();
    seen.sort();
    seen.dedup();
    if seen.len() != grants.len() {
        return Err("grantTypes names a grant type twice".into());
    }
    for g in grants.iter().filter(|g| g.operator_only()) {
        if !by_operator {
            return Err(format!("only an operator can allow {} (it mints tokens no person approved)", g.as_str()));
        }
        if client_type != ClientType::Confidential {
            return Err(format!("{} needs a confidential client", g.as_str()));
        }
    }
    if grants.contains(&GrantType::RefreshToken) && !grants.contains(&GrantType::AuthorizationCode) {
        return Err("refresh_token comes only with authorization_code".into());
    }
    if grants.contains(&GrantType::AuthorizationCode) && !has_redirect_uris {
        return Err("authorization_code needs at least one redirect URI".into());
    }
    Ok(())
}

/// The signature algorithms accepted for client assertions (asymmetric only).
pub const ASSERTION_ALGORITHMS: &[&str] = &["RS256", "PS256", "ES256", "ES384", "EdDSA"];
/// At most this many keys in a client's JWK Set, and this many bytes of it (inline or fetched).
pub const MAX_CLIENT_KEYS: usize = 10;
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// An inline JWK Set is stored with the client: it is kept smaller.
pub const MAX_INLINE_JWKS_BYTES: usize = 16 * 1024;

/// Members only a private or symmetric key has: a client registers public keys only.
const PRIVATE_JWK_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks a JWK Set's shape (`{"keys": [...]}`, 1 to [`MAX_CLIENT_KEYS`] signing keys): each key an
/// EC (P-256, P-384), RSA or OKP (Ed25519) public key with its members as text, no private members,
/// `use` (if any) `sig`, `alg` (if any) one of [`ASSERTION_ALGORITHMS`], `kid` (if any) at most 200
/// characters and unique. Whether the key material parses is the verifier's check.
pub fn check_jwks(jwks: &serde_json::Value) -> Result<(), String> {
    let keys = jwks
        .as_object()
        .and_then(|o| o.get("keys"))
        .and_then(serde_json::Value::as_array)
        .ok_or("jwks must be a JWK Set: an object with a \"keys\" array")?;
    if keys.is_empty() || keys.len() > MAX_CLIENT_KEYS {
        return Err(format!("jwks must hold 1 to {MAX_CLIENT_KEYS} keys"));
    }
    let mut kids = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let k = key.as_object().ok_or_else(|| format!("jwks.keys[{i}] is not an object"))?;
        let text = |m: &str| k.get(m).and_then(serde_json::Value::as_str);
        if PRIVATE_JWK_MEMBERS.iter().any(|m| k.contains_key(*m)) {
            return Err(format!("jwks.keys[{i}] holds private or symmetric key material: register public keys only"));
        }
        // Each member with the byte lengths its key type allows (RSA: a 2048- to 8192-bit modulus).
        let required: &[(&str, usize, usize)] = match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) => &[("x", 32, 32), ("y", 32, 32)],
            (Some("EC"), Some("P-384")) => &[("x", 48, 48), ("y", 48, 48)],
            (Some("RSA"), _) => &[("n", 256, 1024), ("e", 1, 8)],
            (Some("OKP"), Some("Ed25519")) => &[("x", 32, 32)],
            _ => return Err(format!("jwks.keys[{i}] must be an EC (P-256, P-384), RSA or OKP (Ed25519) key")),
        };
        for (m, min, max) in required {
            let Some(value) = text(m).filter(|v| !v.is_empty()) else {
                return Err(format!("jwks.keys[{i}] lacks its member {m}"));
            };
            let bytes = URL_SAFE_NO_PAD
                .decode(value)
                .map_err(|_| format!("jwks.keys[{i}].{m} is not base64url without padding"))?;
            // A modulus may carry one leading zero byte.
            let n = if *m == "n" { bytes.iter().skip_while(|b| **b == 0).count() } else { bytes.len() };
            if n < *min || n > *max {
                return Err(format!("jwks.keys[{i}].{m} has the wrong length for its key type"));
            }
        }
        if k.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(format!("jwks.keys[{i}] is not a signing key (use must be sig)"));
        }
        if k.get("alg").is_some_and(|a| !a.as_str().is_some_and(|a| ASSERTION_ALGORITHMS.contains(&a))) {
            return Err(format!("jwks.keys[{i}].alg must be one of {}", ASSERTION_ALGORITHMS.join(", ")));
        }
        if let Some(kid) = k.get("kid") {
            let kid = kid.as_str().filter(|s| !s.is_empty() && s.len() <= 200);
            let kid = kid.ok_or_else(|| format!("jwks.keys[{i}].kid must be 1 to 200 characters"))?;
            if kids.contains(&kid) {
                return Err(format!("jwks.keys[{i}].kid {kid} is used twice"));
            }
            kids.push(kid);
        }
    }
    Ok(())
}

/// Checks a `jwks_uri`: an absolute https URL with a host, no credentials and no fragment, at most
/// 2048 bytes. Where it may point (public addresses only) is the fetcher's rule.
pub fn check_jwks_uri(uri: &str) -> Result<url::Url, String> {
    if uri.len() > 2048 {
        return Err("jwksUri must be at most 2048 bytes".into());
    }
    let url = url::Url::parse(uri).map_err(|_| "jwksUri must be an absolute URL".to_owned())?;
    if url.scheme() != "https" {
        return Err("jwksUri must be an https URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) || !url.username().is_empty() || url.password().is_some() {
        return Err("jwksUri must name a host, without credentials".into());
    }
    if url.fragment().is_some() {
        return Err("jwksUri must not have a fragment".into());
    }
    Ok(url)
}

/// May `client` (with `caps`) use `grant`? The operator-only grants (client credentials, token
/// exchange) need a confidential client an operator created that lists the grant; the others the
/// grant listed (every client made before grant types were recorded lists the two defaults).
pub fn grant_refusal(client: &Client, caps: &ClientCapabilities, grant: GrantType) -> Option<String> {
    if !caps.allows(grant) {
        return Some(format!("this client is not allowed the grant type {} (see its grant types)", grant.as_str()));
    }
    if grant.operator_only() {
        if client.client_type != ClientType::Confidential {
            return Some(format!("{} needs a confidential client", grant.as_str()));
        }
        if !client.registrant().is_vetted() {
            return Some(format!("{} is only for clients an operator created", grant.as_str()));
        }
    }
    None
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

#[cfg(test)]
mod machine_tests {
    use serde_json::json;

    use super::*;

    fn operator_client(client_type: ClientType) -> Client {
        Client {
            id: ClientId::generate(),
            name: "machine".into(),
            client_type,
            role: ClientRole::ThirdParty,
            origin: ClientOrigin::Manual,
            redirect_uris: vec![],
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
    fn grant_types_round_trip_by_their_rfc_names() {
        for g in GrantType::ALL {
            assert_eq!(GrantType::parse(g.as_str()), Some(g));
        }
        assert_eq!(GrantType::parse("urn:ietf:params:oauth:grant-type:token-exchange"), Some(GrantType::TokenExchange));
        assert_eq!(GrantType::parse("password"), None);
        assert_eq!(GrantType::parse("implicit"), None);
    }

    #[test]
    fn unrecorded_grant_types_are_the_two_defaults() {
        let caps = ClientCapabilities::default();
        assert!(caps.allows(GrantType::AuthorizationCode) && caps.allows(GrantType::RefreshToken));
        assert!(!caps.allows(GrantType::ClientCredentials) && !caps.allows(GrantType::TokenExchange));
        let machine =
            ClientCapabilities { grant_types: Some(vec![GrantType::ClientCredentials]), ..Default::default() };
        assert!(machine.allows(GrantType::ClientCredentials));
        assert!(!machine.allows(GrantType::AuthorizationCode), "an explicit list is the whole list");
    }

    #[test]
    fn operator_only_grants_need_an_operator_and_a_confidential_client() {
        let cc = [GrantType::ClientCredentials];
        assert!(check_grant_types(&cc, ClientType::Confidential, true, false).is_ok());
        assert!(check_grant_types(&cc, ClientType::Confidential, false, false).unwrap_err().contains("operator"));
        assert!(check_grant_types(&cc, ClientType::Public, true, false).unwrap_err().contains("confidential"));
        let te = [GrantType::TokenExchange];
        assert!(check_grant_types(&te, ClientType::Confidential, false, false).is_err());
        assert!(check_grant_types(&[], ClientType::Confidential, true, true).is_err());
        let twice = [GrantType::ClientCredentials, GrantType::ClientCredentials];
        assert!(check_grant_types(&twice, ClientType::Confidential, true, false).is_err());
        let code = [GrantType::AuthorizationCode, GrantType::RefreshToken];
        assert!(check_grant_types(&code, ClientType::Public, false, true).is_ok());
        assert!(check_grant_types(&code, ClientType::Public, false, false).unwrap_err().contains("redirect"));
        assert!(check_grant_types(&[GrantType::RefreshToken], ClientType::Public, false, true).is_err());
    }

    #[test]
    fn grant_refusal_checks_the_list_the_type_and_who_made_the_client() {
        let caps = ClientCapabilities { grant_types: Some(vec![GrantType::ClientCredentials]), ..Default::default() };
        let c = operator_client(ClientType::Confidential);
        assert_eq!(grant_refusal(&c, &caps, GrantType::ClientCredentials), None);
        assert!(grant_refusal(&c, &caps, GrantType::TokenExchange).is_some());
        assert!(grant_refusal(&c, &caps, GrantType::AuthorizationCode).is_some());
        assert!(grant_refusal(&operator_client(ClientType::Public), &caps, GrantType::ClientCredentials).is_some());
        let mut owned = operator_client(ClientType::Confidential);
        owned.owner = Some(AccountId::from_string("acc_1"));
        assert!(grant_refusal(&owned, &caps, GrantType::ClientCredentials).is_some(), "a person's own client");
        let mut dynamic = operator_client(ClientType::Confidential);
        dynamic.origin = ClientOrigin::Dynamic;
        assert!(grant_refusal(&dynamic, &caps, GrantType::ClientCredentials).is_some(), "a registered client");
    }

    #[test]
    fn auth_method_follows_type_and_keys() {
        let keys = ClientCapabilities { keys: Some(ClientKeys::JwksUri("https://a/j".into())), ..Default::default() };
        assert_eq!(keys.auth_method(ClientType::Confidential), AuthMethod::PrivateKeyJwt);
        assert_eq!(ClientCapabilities::default().auth_method(ClientType::Confidential), AuthMethod::ClientSecret);
        assert_eq!(ClientCapabilities::default().auth_method(ClientType::Public), AuthMethod::None);
    }

    fn b64(n: usize) -> String {
        URL_SAFE_NO_PAD.encode(vec![7u8; n])
    }

    #[test]
    fn jwks_takes_public_signing_keys_only() {
        let ec =
            json!({"kty": "EC", "crv": "P-256", "x": b64(32), "y": b64(32), "kid": "k1", "use": "sig", "alg": "ES256"});
        let rsa = json!({"kty": "RSA", "n": b64(256), "e": "AQAB", "kid": "k2"});
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(32)});
        assert!(check_jwks(&json!({"keys": [ec, rsa, ed]})).is_ok());
        let bad = |v: serde_json::Value| check_jwks(&v).unwrap_err();
        assert!(bad(json!([ec])).contains("JWK Set"));
        assert!(bad(json!({"keys": []})).contains("1 to"));
        let mut private = ec.clone();
        private["d"] = json!("secret");
        assert!(bad(json!({"keys": [private]})).contains("private"));
        assert!(bad(json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})).contains("private"));
        assert!(bad(json!({"keys": [{"kty": "EC", "crv": "secp256k1", "x": "a", "y": "b"}]})).contains("EC"));
        assert!(bad(json!({"keys": [{"kty": "RSA", "n": b64(256)}]})).contains("lacks"));
        assert!(bad(json!({"keys": [{"kty": "RSA", "n": b64(128), "e": "AQAB"}]})).contains("length"), "1024-bit RSA");
        assert!(bad(json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64(32), "y": b64(48)}]})).contains("length"));
        assert!(bad(json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "not base64!"}]})).contains("base64url"));
        let mut enc = rsa.clone();
        enc["use"] = json!("enc");
        assert!(bad(json!({"keys": [enc]})).contains("signing"));
        let mut hs = rsa.clone();
        hs["alg"] = json!("HS256");
        assert!(bad(json!({"keys": [hs]})).contains("alg"));
        assert!(bad(json!({"keys": [ec, ec]})).contains("twice"));
        let many: Vec<_> = (0..=MAX_CLIENT_KEYS).map(|_| ed.clone()).collect();
        assert!(bad(json!({ "keys": many })).contains("1 to"));
    }

    #[test]
    fn jwks_uri_is_an_https_url_without_credentials_or_fragment() {
        assert!(check_jwks_uri("https://keys.example/jwks.json").is_ok());
        for bad in [
            "http://keys.example/jwks.json",
            "https://user:pw@keys.example/jwks.json",
            "https://keys.example/jwks.json#k",
            "/jwks.json",
            "file:///etc/passwd",
        ] {
            assert!(check_jwks_uri(bad).is_err(), "{bad}");
        }
        assert!(check_jwks_uri(&format!("https://k.example/{}", "a".repeat(2048))).is_err());
    }
}
