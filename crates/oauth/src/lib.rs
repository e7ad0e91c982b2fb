//! The authorization server's HTTP face: discovery, JWKS, token (one file per grant type),
//! revocation, introspection and dynamic client registration. Handlers are thin: they parse,
//! authenticate the client, ask the domain rule, and apply the outcome through the store.

pub mod authorize;
mod client_auth;
mod discovery;
pub mod error;
mod form;
mod grant_types;
mod introspect;
mod issue;
mod register;
mod revoke;
mod token;
pub mod verify;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use bk_crypto::keyring::KeyRing;
use bk_domain::access::Clock;
use bk_domain::rate_limit::SlidingWindow;
use bk_store::Store;

pub use verify::{AccessContext, Verifier, VerifyError};

/// Lifetimes of what the server issues, in seconds.
#[derive(Clone, Debug)]
pub struct Lifetimes {
    pub access_token: i64,
    pub refresh_token: i64,
    pub code: i64,
}

/// Everything the authorization server needs, built once at start.
pub struct AuthServer {
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeyRing>,
    pub clock: Arc<dyn Clock>,
    /// Public base URL, without a trailing slash.
    pub issuer: String,
    pub lifetimes: Lifetimes,
    pub registrations: Mutex<SlidingWindow>,
    pub verifier: Arc<Verifier>,
}

impl AuthServer {
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
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// Routes of the OAuth protocol endpoints (the browser-facing authorize step lives in the web crate).
pub fn router(server: Arc<AuthServer>) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(discovery::authorization_server),
        )
        .route(
            "/.well-known/oauth-authorization-server/{*rest}",
            get(discovery::authorization_server),
        )
        .route(
            "/.well-known/openid-configuration",
            get(discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-protected-resource",
            get(discovery::protected_resource),
        )
        .route(
            "/.well-known/oauth-protected-resource/{*rest}",
            get(discovery::protected_resource),
        )
        .route("/.well-known/jwks.json", get(discovery::jwks))
        .route("/api/v1/auth/token", post(token::token))
        .route("/api/v1/auth/revoke", post(revoke::revoke))
        .route("/api/v1/auth/introspect", post(introspect::introspect))
        .route("/api/v1/auth/register", post(register::register))
        .with_state(server)
}
