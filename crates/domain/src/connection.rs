//! A connection: one tenant's link to one upstream account at a provider (its Google account, its
//! Slack workspace, its company API key). The entity carries what may be shown — status, expiry,
//! scopes, the upstream identity — and never the credential, which the store keeps sealed beside it
//! and hands out only on request to the vault.

use serde::{Deserialize, Serialize};

use url::Url;

use crate::UnixTime;
use crate::client::host_on_domains;
use crate::ids::{AccountId, ClientId, ConnectionId};
use crate::redirect;

/// Serialises as the API and the `list-connections` tool show it (camelCase, never a credential).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: ConnectionId,
    pub account_id: AccountId,
    /// The catalog id of the provider.
    pub provider_id: String,
    /// Who the tenant is at the provider (its user or workspace id), once known.
    pub provider_user_id: Option<String>,
    /// Scopes the provider granted.
    pub scopes: Vec<String>,
    pub status: ConnectionStatus,
    /// When the upstream access token expires; `None` when the provider gave no expiry.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub expires_at: Option<UnixTime>,
    /// Whether a refresh token (or equivalent) is held.
    pub can_refresh: bool,
    /// What the provider told about the upstream account (user info), shown to the tenant.
    pub metadata: serde_json::Value,
    /// The last failure, in words fit to show the tenant (never a credential).
    pub last_error: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub created_at: UnixTime,
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub updated_at: UnixTime,
}

/// Where a connection stands. Every change is audited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConnectionStatus {
    /// Usable (refreshed when needed).
    Active,
    /// The upstream refused the refresh token (`invalid_grant`): the tenant must reconnect.
    Expired,
    /// Revoked upstream or by the tenant.
    Revoked,
    /// Something else failed; `last_error` says what.
    Error,
}

impl ConnectionStatus {
    pub const ALL: [ConnectionStatus; 4] =
        [ConnectionStatus::Active, ConnectionStatus::Expired, ConnectionStatus::Revoked, ConnectionStatus::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::Expired => "expired",
            ConnectionStatus::Revoked => "revoked",
            ConnectionStatus::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<ConnectionStatus> {
        ConnectionStatus::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// After a refresh failed in a way that may pass, the least time before the next attempt: no
/// retry storm against a provider that is down.
pub const REFRESH_COOLDOWN_SECS: i64 = 30;

/// What to do with a connection asked to refresh, once this caller holds its refresh lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Another caller refreshed it since this one first looked (its generation moved): use that.
    AlreadyDone,
    /// It cannot be refreshed: no refresh token, or the provider already refused it (`expired`,
    /// `revoked`).
    CannotRefresh,
    /// A recent failure that may pass: try again in this many seconds.
    CoolingDown {
        retry_after: i64,
    },
    Refresh,
}

/// The rule, given the connection as the lease holder reads it, the generation this caller saw
/// first, and when its last transient failure was.
pub fn refresh_decision(
    c: &Connection,
    generation: i64,
    first_seen_generation: i64,
    failed_at: Option<UnixTime>,
    now: UnixTime,
) -> RefreshDecision {
    if generation > first_seen_generation {
        return RefreshDecision::AlreadyDone;
    }
    if !c.can_refresh || matches!(c.status, ConnectionStatus::Expired | ConnectionStatus::Revoked) {
        return RefreshDecision::CannotRefresh;
    }
    match failed_at {
        Some(f) if now - f < REFRESH_COOLDOWN_SECS => {
            RefreshDecision::CoolingDown { retry_after: REFRESH_COOLDOWN_SECS - (now - f) }
        }
        _ => RefreshDecision::Refresh,
    }
}

/// How long a connect flow waits for the provider's answer.
pub const FLOW_TTL_SECS: i64 = 600;

/// A connect flow under way: started by `initiate`, finished (once) by the provider's redirect to
/// the callback. Found by the digest of its `state`, the only thing the returning browser brings;
/// bound to the account, the client and the return URL it was started with. It holds no secret:
/// the PKCE verifier is derived from the state under a server key, so a copy of this row without
/// the state (which only the browser carries) gives nothing.
#[derive(Clone)]
pub struct ConnectionFlow {
    /// SHA-256 of the `state` sent to the provider (random, 256 bits).
    pub state_hash: Vec<u8>,
    pub account_id: AccountId,
    /// The client whose token started it (`None`: the signed-in browser or a PAT).
    pub client_id: Option<ClientId>,
    pub provider_id: String,
    /// Where the browser goes when the flow ends, checked at `initiate`.
    pub redirect_url: String,
    /// For an `mcp` provider: what discovery found (the authorization server, its endpoints, the
    /// client id Bridgekeeper is known by there, the resource), as JSON. No secret in it.
    pub upstream: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

impl ConnectionFlow {
    pub fn is_current(&self, now: UnixTime) -> bool {
        now < self.expires_at
    }
}

/// Bridgekeeper's client registration (RFC 7591) at an upstream authorization server, kept per
/// issuer and redirect URI so each connect flow does not register again.
#[derive(Clone)]
pub struct UpstreamRegistration {
    pub issuer: String,
    pub redirect_uri: String,
    pub client_id: String,
    /// The client secret, when the server issued one, sealed under the master key and bound to
    /// [`upstream_registration_binding`].
    pub secret_sealed: Option<Vec<u8>>,
    /// `none`, `client_secret_basic` or `client_secret_post`.
    pub token_auth: String,
    pub created_at: UnixTime,
    /// When the server said the secret stops working (`client_secret_expires_at`, 0 = never).
    pub secret_expires_at: Option<UnixTime>,
}

impl UpstreamRegistration {
    /// The row's key (and the id `keys rotate-master` names it by).
    pub fn id(&self) -> String {
        upstream_registration_id(&self.issuer, &self.redirect_uri)
    }
}

pub fn upstream_registration_id(issuer: &str, redirect_uri: &str) -> String {
    format!("{issuer} {redirect_uri}")
}

/// The associated data binding a registration's sealed secret to its row.
pub fn upstream_registration_binding(id: &str) -> Vec<u8> {
    format!("upstream-client-secret:{id}").into_bytes()
}

/// The associated data that binds a sealed credential to its row: a ciphertext copied to another
/// connection or another tenant does not open.
pub fn credential_binding(account: &AccountId, connection: &ConnectionId) -> Vec<u8> {
    format!("connection-credential:{account}:{connection}").into_bytes()
}

/// Where a connect flow may send the browser back to: one of the calling client's redirect URIs
/// (loopback port aside, as for authorization), an https URL on one of its domains, or a page of
/// this server (`issuer_origin`). Anything else would make the connect flow an open redirect.
pub fn return_url_allowed(
    requested: &Url,
    client_redirects: &[String],
    client_domains: &[String],
    issuer_origin: &str,
) -> bool {
    if !matches!(requested.scheme(), "http" | "https") || requested.cannot_be_a_base() {
        return false;
    }
    if requested.origin().ascii_serialization() == issuer_origin {
        return true;
    }
    if client_redirects.iter().any(|r| redirect::matches(r, requested.as_str())) {
        return true;
    }
    requested.scheme() == "https" && requested.host_str().is_some_and(|h| host_on_domains(h, client_domains))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_urls_are_the_clients_own_or_ours() {
        let redirects = vec!["https://app.example/connections/done".to_owned(), "http://127.0.0.1:7000/cb".to_owned()];
        let domains = vec!["saas.example".to_owned()];
        let ok = |u: &str| return_url_allowed(&Url::parse(u).unwrap(), &redirects, &domains, "https://bk.example");
        assert!(ok("https://app.example/connections/done"));
        assert!(ok("http://127.0.0.1:7111/cb"), "loopback port may vary");
        assert!(ok("https://saas.example/anything?x=1"));
        assert!(ok("https://eu.saas.example/back"));
        assert!(ok("https://bk.example/connections"));
        assert!(!ok("https://app.example/connections/done/../../evil"), "exact match only");
        assert!(!ok("https://app.example/other"));
        assert!(!ok("http://saas.example/back"), "domains only over https");
        assert!(!ok("https://saas.example.evil.example/"));
        assert!(!ok("https://evil.example/"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("https://bk.example.evil.example/"));
    }

    #[test]
    fn refresh_once_then_use_the_result_and_cool_down_after_failures() {
        let c = Connection {
            id: ConnectionId::from_string("con_1"),
            account_id: AccountId::from_string("acc_1"),
            provider_id: "google".into(),
            provider_user_id: None,
            scopes: vec![],
            status: ConnectionStatus::Active,
            expires_at: Some(100),
            can_refresh: true,
            metadata: serde_json::json!({}),
            last_error: None,
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(refresh_decision(&c, 3, 3, None, 1000), RefreshDecision::Refresh);
        assert_eq!(refresh_decision(&c, 4, 3, None, 1000), RefreshDecision::AlreadyDone);
        assert_eq!(refresh_decision(&c, 3, 3, Some(990), 1000), RefreshDecision::CoolingDown { retry_after: 20 });
        assert_eq!(refresh_decision(&c, 3, 3, Some(970), 1000), RefreshDecision::Refresh);
        let expired = Connection { status: ConnectionStatus::Expired, ..c.clone() };
        assert_eq!(refresh_decision(&expired, 3, 3, None, 1000), RefreshDecision::CannotRefresh);
        let no_token = Connection { can_refresh: false, ..c };
        assert_eq!(refresh_decision(&no_token, 3, 3, None, 1000), RefreshDecision::CannotRefresh);
    }

    #[test]
    fn a_flow_lives_ten_minutes() {
        let flow = ConnectionFlow {
            state_hash: vec![1; 32],
            account_id: AccountId::from_string("acc_1"),
            client_id: None,
            provider_id: "github".into(),
            redirect_url: "https://app.example/done".into(),
            upstream: None,
            created_at: 1000,
            expires_at: 1000 + FLOW_TTL_SECS,
        };
        assert!(flow.is_current(1000) && flow.is_current(1599));
        assert!(!flow.is_current(1600));
    }

    #[test]
    fn status_round_trips() {
        for s in ConnectionStatus::ALL {
            assert_eq!(ConnectionStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ConnectionStatus::parse("Active"), None);
    }

    #[test]
    fn the_binding_names_tenant_and_row() {
        let (a, b) = (AccountId::from_string("acc_1"), AccountId::from_string("acc_2"));
        let c = ConnectionId::from_string("con_1");
        assert_ne!(credential_binding(&a, &c), credential_binding(&b, &c));
        assert_ne!(credential_binding(&a, &c), credential_binding(&a, &ConnectionId::from_string("con_2")));
    }
}
