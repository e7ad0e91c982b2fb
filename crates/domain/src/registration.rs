//! Dynamic client registration (RFC 7591) and the client's management of it (RFC 7592): the metadata
//! a client registered, the canonical form two registrations are compared by, and the record that
//! lets the registering client read, update and delete its own registration.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

use crate::UnixTime;
use crate::client::Client;
use crate::ids::ClientId;

/// What a client asked to be registered with, as the server accepted it (defaults filled in).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationMetadata {
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub response_types: Vec<String>,
    pub token_endpoint_auth_method: String,
    /// The scopes the client may request (space-separated, already capped by its role).
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

impl RegistrationMetadata {
    /// Two registrations with the same fingerprint create nothing new: the same name, software and
    /// auth method, the same sets of grant and response types and scopes, and the same redirect URIs
    /// as the authorization endpoint matches them — in any order, and for `http` loopback URIs with
    /// any port (RFC 8252 §7.3 lets that port vary, so clients that pick a free port per run are
    /// still the same client).
    pub fn fingerprint(&self) -> String {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        let mut scopes: Vec<String> = self.scope.split_whitespace().map(str::to_owned).collect();
        scopes.sort();
        scopes.dedup();
        let redirect_uris: Vec<String> =
            sorted(&self.redirect_uris.iter().map(|u| portless_loopback(u)).collect::<Vec<_>>());
        let canonical = serde_json::json!({
            "client_name": self.client_name,
            "redirect_uris": redirect_uris,
            "grant_types": sorted(&self.grant_types),
            "response_types": sorted(&self.response_types),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "scope": scopes,
            "application_type": self.application_type,
            "software_id": self.software_id,
            "software_version": self.software_version,
        });
        let digest = Sha256::digest(canonical.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// An `http` loopback redirect URI without its port (RFC 8252 §7.3); any other URI unchanged.
fn portless_loopback(uri: &str) -> String {
    let Ok(mut url) = Url::parse(uri) else {
        return uri.to_owned();
    };
    if url.scheme() == "http" && crate::redirect::is_loopback(&url) && url.set_port(None).is_ok() {
        return url.to_string();
    }
    uri.to_owned()
}

/// A dynamic registration: who registered it (the source key of the address it came from), what it
/// registered, and the digest of the registration access token that manages it (RFC 7592; the token
/// itself is never stored).
#[derive(Clone, Debug)]
pub struct Registration {
    pub client_id: ClientId,
    pub source: String,
    pub fingerprint: String,
    pub metadata: RegistrationMetadata,
    pub token_hash: Vec<u8>,
    pub created_at: UnixTime,
    pub updated_at: UnixTime,
}

/// A dynamically registered client as the operator sees it.
#[derive(Clone, Debug)]
pub struct DynamicClient {
    pub client: Client,
    /// Absent for clients registered before registrations were recorded.
    pub registration: Option<Registration>,
    /// Has it ever completed an authorization (redeemed a code)?
    pub used: bool,
    pub deleted: bool,
}

/// Registration access tokens start with this.
pub const REGISTRATION_TOKEN_PREFIX: &str = "bkr_";

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uris: &[&str]) -> RegistrationMetadata {
        RegistrationMetadata {
            client_name: "Tool".into(),
            redirect_uris: uris.iter().map(|s| (*s).to_owned()).collect(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            response_types: vec!["code".into()],
            token_endpoint_auth_method: "none".into(),
            scope: "mcp:tools openid".into(),
            application_type: None,
            software_id: None,
            software_version: None,
        }
    }

    #[test]
    fn loopback_ports_and_order_do_not_make_a_new_client() {
        let a = meta(&["http://127.0.0.1:3030/callback", "http://localhost:41234/cb"]);
        let b = meta(&["http://localhost:5555/cb", "http://127.0.0.1:9999/callback"]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let mut c = b.clone();
        c.scope = "openid mcp:tools".into();
        c.grant_types.reverse();
        assert_eq!(a.fingerprint(), c.fingerprint());
    }

    #[test]
    fn any_other_difference_does() {
        let base = meta(&["http://127.0.0.1:3030/callback"]);
        let differs = |f: &dyn Fn(&mut RegistrationMetadata)| {
            let mut m = base.clone();
            f(&mut m);
            assert_ne!(m.fingerprint(), base.fingerprint(), "{m:?}");
        };
        differs(&|m| m.redirect_uris = vec!["http://127.0.0.1:3030/other".into()]);
        differs(&|m| m.redirect_uris = vec!["https://app.example:3030/callback".into()]);
        differs(&|m| m.redirect_uris.push("http://127.0.0.1/second".into()));
        differs(&|m| m.client_name = "Tool 2".into());
        differs(&|m| m.scope = "mcp:tools".into());
        differs(&|m| m.grant_types = vec!["authorization_code".into()]);
        differs(&|m| m.token_endpoint_auth_method = "client_secret_basic".into());
        differs(&|m| m.application_type = Some("native".into()));
        differs(&|m| m.software_id = Some("x".into()));
        differs(&|m| m.software_version = Some("1.0".into()));
        // https ports are part of the URI.
        let a = meta(&["https://app.example:8443/cb"]);
        let b = meta(&["https://app.example:9443/cb"]);
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
