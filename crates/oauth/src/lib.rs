//! The authorization server's HTTP face, and only that: discovery and JWKS, authorize (its
//! browser step lives in `web`), token (one file per grant type), revocation, introspection,
//! dynamic client registration and OpenID Connect userinfo; one OAuth error type. Handlers are thin:
//! they parse, authenticate the client, ask the domain rule, and apply the outcome through the store.
//! Bearer verification is the access crate's; the REST management APIs are the api crate's.
#![forbid(unsafe_code)]

pub mod authorize;
mod client_auth;
pub mod client_keys;
mod discovery;
pub mod documents;
pub mod error;
mod form;
mod grant_types;
mod introspect;
mod issue;
mod register;
mod revoke;
mod secrets;
mod token;
mod userinfo;
mod validate;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use bk_crypto::envelope::MasterKey;
use bk_crypto::keyring::KeySet;
use bk_crypto::mac::MacKey;
use bk_domain::access::Clock;
use bk_domain::ports::{AccountStore, ClientStore, CodeStore, ConsentStore, RefreshTokenStore, SessionStore};

pub use bk_access::{AccessContext, KeySource, Verifier, VerifyError};

/// What the authorization server (and the sign-in and consent pages on it) stores and reads.
pub trait AuthStore: AccountStore + ClientStore + SessionStore + CodeStore + RefreshTokenStore + ConsentStore {}
impl<T: AccountStore + ClientStore + SessionStore + CodeStore + RefreshTokenStore + ConsentStore + ?Sized> AuthStore
    for T
{
}

/// A client and what it may do besides the authorization-code flow.
pub type CapableClient = (bk_domain::client::Client, bk_domain::client::ClientCapabilities);

/// Lifetimes of what the server issues, in seconds.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    pub access_token: i64,
    pub refresh_token: i64,
    pub code: i64,
    /// A refresh token reused this soon by the same client continues from its successor instead
    /// of revoking the session (0 = never: every reuse is a replay).
    pub refresh_reuse_grace: i64,
}

/// Dynamic client registration (RFC 7591/7592): its limits and how long registrations live.
#[derive(Clone, Debug)]
pub struct RegistrationPolicy {
    /// New clients registered per minute per source address (IPv6: per /64).
    pub per_minute: u32,
    /// Registration requests of any outcome (reuses and refusals too) per minute per source.
    pub attempts_per_minute: u32,
    /// An identical public registration from the same source this recent answers with its client.
    pub reuse_window_secs: i64,
    /// A dynamically registered client that has not completed an authorization this long is purged.
    pub unused_ttl_secs: i64,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        Self { per_minute: 5, attempts_per_minute: 60, reuse_window_secs: 86_400, unused_ttl_secs: 86_400 }
    }
}

/// What dynamic registration did since start, for `/metrics`.
#[derive(Debug, Default)]
pub struct RegistrationCounters {
    pub created: std::sync::atomic::AtomicU64,
    pub reused: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub purged: std::sync::atomic::AtomicU64,
}

/// Everything the authorization server needs, built once at start.
pub struct AuthServer {
    pub store: Arc<dyn AuthStore>,
    pub keys: Arc<KeySet>,
    pub clock: Arc<dyn Clock>,
    /// Public base URL, without a trailing slash.
    pub issuer: String,
    pub lifetimes: Lifetimes,
    /// Rate limits (in memory, or shared by every instance through Redis).
    pub limiter: Arc<dyn bk_limits::Limiter>,
    pub registration: RegistrationPolicy,
    pub registration_counters: Arc<RegistrationCounters>,
    pub verifier: Arc<Verifier>,
    /// Seals client secrets; derives the cookie and CSRF keys.
    pub master: Arc<MasterKey>,
    pub secrets: secrets::SecretVerifier,
    pub cookie_keys: bk_access::browser::CookieKeys,
    /// Clients (with their capabilities) by id for at most a second (every token request names
    /// one); changes made through this instance drop the entry at once.
    clients: bk_access::cache::TtlCache<bk_domain::ids::ClientId, Option<CapableClient>>,
    /// The keys `private_key_jwt` clients sign their assertions with (inline, or fetched from
    /// their `jwks_uri`).
    pub client_keys: client_keys::ClientKeySets,
    /// The audit log every handler records to.
    pub audit: Arc<bk_audit::AuditLog>,
    /// Resource servers registered to introspect the tokens meant for them (none can be registered
    /// yet: `/mcp` is served here and verifies its tokens itself).
    pub resource_servers: Vec<bk_domain::access::ResourceServer>,
    /// Client ID Metadata Documents (`client_id` = an HTTPS URL), when accepted.
    pub documents: Option<Arc<documents::ClientDocuments>>,
    /// Bridge mode (reference 002), when a provider is bridged: crossed at consent and at refreshes.
    pub bridge: Option<Arc<dyn bk_domain::bridge::SignInBridge>>,
}

impl AuthServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn AuthStore>,
        keys: Arc<KeySet>,
        clock: Arc<dyn Clock>,
        issuer: String,
        lifetimes: Lifetimes,
        registration: RegistrationPolicy,
        verifier: Arc<Verifier>,
        master: Arc<MasterKey>,
        audit: Arc<bk_audit::AuditLog>,
        limiter: Arc<dyn bk_limits::Limiter>,
    ) -> Self {
        let cookie_keys = bk_access::browser::CookieKeys::derive(master.raw(), issuer.starts_with("https://"));
        Self {
            secrets: secrets::SecretVerifier::new(
                MacKey::derive(master.raw(), "client-secret-fast-path"),
                master.clone(),
            ),
            limiter,
            registration,
            registration_counters: Arc::default(),
            store,
            keys,
            clock,
            issuer,
            lifetimes,
            verifier,
            master,
            cookie_keys,
            clients: bk_access::cache::TtlCache::new("clients", 1000, 10_000),
            client_keys: client_keys::ClientKeySets::new(None),
            audit,
            resource_servers: Vec::new(),
            documents: None,
            bridge: None,
        }
    }

    /// Records an audit event (non-blocking; redacted before it is stored or streamed).
    pub fn emit(&self, event: bk_domain::audit::AuditEvent) {
        use bk_domain::audit::AuditSink;
        self.audit.record(event);
    }

    /// A new audit event stamped now.
    pub fn event(&self, kind: &str, outcome: bk_domain::audit::Outcome) -> bk_domain::audit::AuditEvent {
        bk_domain::audit::AuditEvent::new(kind, outcome, self.clock.now_ms())
    }

    /// A live client, through the one-second cache.
    pub async fn client(
        &self,
        id: &bk_domain::ids::ClientId,
    ) -> Result<Option<bk_domain::client::Client>, bk_domain::ports::StoreError> {
        Ok(self.capable_client(id).await?.map(|(c, _)| c))
    }

    /// A live client with its capabilities (a metadata document's client has the defaults),
    /// through the one-second cache.
    pub async fn capable_client(
        &self,
        id: &bk_domain::ids::ClientId,
    ) -> Result<Option<CapableClient>, bk_domain::ports::StoreError> {
        let now_ms = self.clock.now_ms();
        if bk_domain::client_metadata::is_document_client_id(id.as_str()) {
            return match &self.documents {
                Some(d) => Ok(d.known(id.as_str(), now_ms).await?.map(|c| (c, Default::default()))),
                None => Ok(None),
            };
        }
        if let Some(c) = self.clients.get(id, now_ms) {
            return Ok(c);
        }
        let c = self.store.capable_client(id).await?;
        self.clients.put(id.clone(), c.clone(), now_ms);
        Ok(c)
    }

    /// Fetches clients' `jwks_uri`s with `fetcher` (at most [`client_keys::FETCH_LIMIT_BYTES`]).
    pub fn with_key_fetcher(mut self, fetcher: bk_outbound::SafeFetcher) -> Self {
        self.client_keys = client_keys::ClientKeySets::new(Some(fetcher));
        self
    }

    /// The token endpoint's URL.
    pub fn token_endpoint(&self) -> String {
        format!("{}/api/v1/auth/token", self.issuer)
    }

    /// The client an authorization request names, as of now (a metadata document is fetched unless
    /// fresh in the cache), or what to tell the person when it cannot be used.
    pub async fn authorizing_client(&self, client_id: &str) -> Result<bk_domain::client::Client, String> {
        if bk_domain::client_metadata::is_document_client_id(client_id) {
            let Some(documents) = &self.documents else {
                return Err("This server does not accept client metadata documents (a client_id that is a URL).".into());
            };
            let shown: String = client_id.chars().take(200).collect();
            return documents.fresh(client_id, self.clock.now_ms()).await.map_err(|e| match e {
                documents::DocumentFailure::Unusable(why) => {
                    format!("The application's metadata document ({shown}) cannot be used: {why}.")
                }
                documents::DocumentFailure::Store(e) => {
                    tracing::error!(error = %e, "storing a document client failed");
                    "The server could not look up the application.".to_owned()
                }
            });
        }
        self.store
            .client(&bk_domain::ids::ClientId::from_string(client_id.to_owned()))
            .await
            .map_err(|_| "The server could not look up the application.".to_owned())?
            .ok_or_else(|| "Unknown application (client_id).".to_owned())
    }

    /// Forgets a cached client after it changed on this instance.
    pub fn forget_client(&self, id: &bk_domain::ids::ClientId) {
        self.clients.remove(id);
        self.secrets.forget_client(id);
        self.client_keys.forget(id);
        self.verifier.forget_client(id);
    }

    /// `scheme://host[:port]` of the issuer.
    pub fn issuer_origin(&self) -> String {
        url::Url::parse(&self.issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }

    /// The default (and for now only) resource: the MCP endpoint.
    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.issuer)
    }

    /// Resources a client may ask for (RFC 8707).
    pub fn resource_allowed(&self, resource: &str) -> bool {
        let r = resource.trim_end_matches('/');
        r == self.mcp_resource() || r == self.issuer
    }
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// Routes of the OAuth protocol endpoints (the browser-facing authorize step lives in the web crate).
pub fn router(server: Arc<AuthServer>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(discovery::authorization_server))
        .route("/.well-known/oauth-authorization-server/{*rest}", get(discovery::authorization_server))
        .route("/.well-known/openid-configuration", get(discovery::openid_configuration))
        .route("/.well-known/oauth-protected-resource", get(discovery::protected_resource))
        .route("/.well-known/oauth-protected-resource/{*rest}", get(discovery::protected_resource))
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/api/v1/auth/token", post(token::token))
        .route("/api/v1/auth/revoke", post(revoke::revoke))
        .route("/api/v1/auth/introspect", post(introspect::introspect))
        .route("/api/v1/auth/register", post(register::register))
        .route("/api/v1/auth/register/{client_id}", get(register::read).put(register::update).delete(register::delete))
        .route("/api/v1/auth/userinfo", get(userinfo::userinfo).post(userinfo::userinfo))
        .route("/api/v1/auth/validate", get(validate::validate))
        .with_state(server)
}
