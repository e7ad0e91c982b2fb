//! The REST management face (`/api/v1/…`): auth clients (the tenant check for clients lives in
//! `clients.rs`), personal access tokens, the account and its authorized apps (sessions), and the
//! audit log with its live stream, the provider catalog (`providers.rs`) and the tenant's connected
//! services (`connections.rs`). Handlers are thin: identify the caller (`caller.rs`), check what
//! it may do, call the store through the domain's ports, answer; every error is RFC 9457 problem
//! JSON (`problem.rs`). Each handler carries its OpenAPI operation (`#[utoipa::path]`), and the
//! router is built from those (`routes!`), so the document at `/openapi.json` (`openapi.rs`) lists
//! exactly what is served. LLM access and the credits ledger: `llm.rs`, `credits.rs`; agents: `agents.rs`.
#![forbid(unsafe_code)]

mod account;
pub mod admin_accounts;
mod agents;
mod audit;
mod caller;
mod clients;
mod connect_mcp;
mod connections;
mod credits;
pub mod handoff;
mod knowledge;
mod llm;
mod llm_keys;
mod openapi;
mod pats;
pub mod problem;
mod providers;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::{Extension, Router};
use bk_access::Verifier;
use bk_access::browser::{BrowserSessions, CookieKeys};
use bk_connections::{Catalog, Upstream, Vault};
use bk_crypto::envelope::MasterKey;
use bk_domain::access::Clock;
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ids::ClientId;
use bk_domain::ports::CreditStore;
use bk_domain::ports::{
    AccountStore, AuditStore, ClientStore, ConnectionFlowStore, ConnectionStore, HandoffCodeStore, OperatorTokenStore,
    PatStore, SessionStore,
};

pub use account::{grants_of, revoke_grant};
pub use agents::AGENT_BUILT_IN_TOOLS;
pub use audit::{AuditFilter, AuditPage, MAX_AUDIT_PAGE, newest_own_audit, own_audit};
pub use caller::Caller;
pub use connect_mcp::start_mcp;
pub use connections::{connect_exchanged, connect_with_key, remove_connection, start_oauth2};
pub use handoff::ClientAuthenticator;
pub use pats::{CreatedPat, NewPat, PatMaker, create_pat, live_pats, pat_maker, pat_scope_ceiling, revoke_pat};
pub use problem::Problem;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// What the management API stores and reads.
pub trait ApiStore:
    AccountStore
    + ClientStore
    + SessionStore
    + PatStore
    + OperatorTokenStore
    + AuditStore
    + ConnectionStore
    + ConnectionFlowStore
    + HandoffCodeStore
    + CreditStore
{
}
impl<
    T: AccountStore
        + ClientStore
        + SessionStore
        + PatStore
        + OperatorTokenStore
        + AuditStore
        + ConnectionStore
        + ConnectionFlowStore
        + HandoffCodeStore
        + CreditStore
        + ?Sized,
> ApiStore for T
{
}

/// Told when a client changed through this API, so caches elsewhere on this instance (the
/// authorization server's client cache and secret fast path) drop it at once.
pub trait ClientChanged: Send + Sync {
    fn client_changed(&self, id: &ClientId);
}

/// Everything the management API needs, built once at start.
pub struct Api {
    pub store: Arc<dyn ApiStore>,
    pub verifier: Arc<Verifier>,
    pub clock: Arc<dyn Clock>,
    /// Public base URL, without a trailing slash.
    pub issuer: String,
    /// Seals new client secrets.
    pub master: Arc<MasterKey>,
    pub cookie_keys: CookieKeys,
    /// Signed-in browser sessions (server-side, so signing out ends them).
    pub browser_sessions: Arc<BrowserSessions>,
    pub audit: Arc<bk_audit::AuditLog>,
    pub client_changed: Arc<dyn ClientChanged>,
    pub limits: ApiLimits,
    /// The providers a tenant can connect.
    pub catalog: Arc<Catalog>,
    /// Seals the credentials of new connections.
    pub vault: Vault,
    /// Calls providers' token and user-info endpoints (request-forgery safe).
    pub upstream: Arc<Upstream>,
    /// Authenticates clients by id and secret (the white-label handoff).
    pub client_auth: Arc<dyn ClientAuthenticator>,
    /// Counts connect attempts (shared through Redis when configured).
    pub limiter: Arc<dyn bk_limits::Limiter>,
    /// The credential broker: every use and refresh of a connection's credential.
    pub broker: bk_connections::Broker,
    /// How Bridgekeeper introduces itself as the OAuth client of upstream MCP servers.
    pub connect_client: ConnectClient,
    /// The ids of the configured upstream identity providers (a white-label client may name one).
    pub identity_providers: Vec<String>,
    /// The account's agents and their runs (`/api/v1/agents…`).
    pub agents: Arc<bk_agents::Agents>,
    /// LLM access and the credits it is billed in.
    pub llm: Arc<bk_llm::Llm>,
    /// Knowledge bases and their documents (`/api/v1/knowledge/…`).
    pub knowledge: Arc<bk_knowledge::Knowledge>,
}

/// Bridgekeeper as an OAuth client (the `mcp` connect kind).
#[derive(Clone, Debug)]
pub struct ConnectClient {
    /// Its client ID metadata document URL (https), used where an authorization server accepts
    /// them; `None`: only registrations.
    pub document_url: Option<String>,
    pub name: String,
}

/// Lifetimes and per-account quotas of what people create through this API (from configuration).
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Lifetime of a PAT created without `expires_in`.
    pub pat_default_ttl_secs: i64,
    /// Live (unrevoked, unexpired) PATs an account may hold.
    pub max_pats_per_account: u32,
    /// Clients (not deleted) an account may own.
    pub max_clients_per_account: u32,
    /// Connections an account may hold.
    pub max_connections_per_account: u32,
    /// Connect flows an account may start per minute.
    pub connects_per_account_per_minute: u32,
    /// Connect callbacks one source may send per minute (they reach the database unauthenticated).
    pub connect_callbacks_per_source_per_minute: u32,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            pat_default_ttl_secs: 90 * 24 * 3600,
            max_pats_per_account: 100,
            max_clients_per_account: 50,
            max_connections_per_account: 100,
            connects_per_account_per_minute: 30,
            connect_callbacks_per_source_per_minute: 60,
        }
    }
}

impl Api {
    /// Records an audit event (non-blocking; redacted before it is stored or streamed).
    pub fn emit(&self, event: AuditEvent) {
        self.audit.record(event);
    }

    /// A new audit event stamped now.
    pub fn event(&self, kind: &str, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(kind, outcome, self.clock.now_ms())
    }

    /// `scheme://host[:port]` of the issuer (cookie-authenticated writes must come from it).
    pub fn issuer_origin(&self) -> String {
        url::Url::parse(&self.issuer).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }

    /// The MCP endpoint, which bearer tokens for this API may also be issued for.
    pub fn mcp_resource(&self) -> String {
        format!("{}/mcp", self.issuer)
    }

    fn forget_client(&self, id: &ClientId) {
        self.client_changed.client_changed(id);
    }
}

/// The REST face: every route with its OpenAPI operation, so that a route cannot be served without
/// being documented (a handler without `#[utoipa::path]` does not compile in `routes!`).
fn routes() -> OpenApiRouter<Arc<Api>> {
    let clients_limit = || DefaultBodyLimit::max(clients::BODY_LIMIT);
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(pats::create, pats::list))
        .routes(routes!(pats::revoke))
        .routes(routes!(account::account))
        .routes(routes!(audit::tenant_audit))
        .routes(routes!(audit::admin_audit))
        .routes(routes!(admin_accounts::list))
        .routes(routes!(admin_accounts::get, admin_accounts::delete))
        .routes(routes!(admin_accounts::disable))
        .routes(routes!(admin_accounts::enable))
        .routes(routes!(audit::events))
        .routes(routes!(account::sessions))
        .routes(routes!(account::revoke_session))
        .routes(routes!(clients::create, clients::list).layer(clients_limit()))
        .routes(routes!(clients::get, clients::update, clients::delete).layer(clients_limit()))
        .routes(routes!(clients::rotate_secret))
        .routes(routes!(handoff::init))
        .routes(routes!(providers::list))
        .routes(routes!(providers::get))
        .routes(routes!(connections::list))
        .routes(routes!(connections::initiate))
        .routes(routes!(connections::callback))
        .routes(routes!(connect_mcp::client_document))
        .routes(routes!(connections::get, connections::delete))
        .routes(routes!(connections::refresh))
        .routes(routes!(llm::chat_completions).layer(DefaultBodyLimit::max(llm::BODY_LIMIT)))
        .routes(routes!(llm::models))
        .routes(routes!(credits::list))
        .routes(routes!(credits::grant))
        .routes(routes!(llm_keys::set_api_key, llm_keys::clear_api_key))
        .routes(routes!(knowledge::list_bases, knowledge::create_base))
        .routes(routes!(knowledge::get_base, knowledge::update_base, knowledge::delete_base))
        .routes(routes!(knowledge::set_default))
        .routes(
            routes!(knowledge::list_documents, knowledge::add_document)
                .layer(DefaultBodyLimit::max(knowledge::DOCUMENT_BODY_LIMIT)),
        )
        .routes(routes!(knowledge::get_document, knowledge::delete_document))
        .routes(routes!(knowledge::search_all))
        .routes(routes!(knowledge::search_base))
        .routes(routes!(openapi::openapi_json))
        .routes(routes!(openapi::docs_page))
        .routes(routes!(agents::list, agents::create).layer(DefaultBodyLimit::max(agents::BODY_LIMIT)))
        .routes(routes!(agents::get, agents::update, agents::delete).layer(DefaultBodyLimit::max(agents::BODY_LIMIT)))
        .routes(routes!(agents::chat).layer(DefaultBodyLimit::max(agents::BODY_LIMIT)))
}

/// The OpenAPI document of the REST face as [`router`] serves it at `/openapi.json` (without the
/// `servers` entry, which names the issuer).
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    routes().into_openapi()
}

/// The REST face's routes, `/openapi.json` and `/docs` among them.
pub fn router(api: Arc<Api>) -> Router {
    router_documenting(api, utoipa::openapi::OpenApi::default())
}

/// [`router`], its document (`/openapi.json`, `/docs`) also describing `served_elsewhere`: REST
/// operations another face serves (Sign-In with Ethereum's, served by the web face because their
/// answer signs a browser in).
pub fn router_documenting(api: Arc<Api>, served_elsewhere: utoipa::openapi::OpenApi) -> Router {
    let (router, doc) = routes().split_for_parts();
    // Only the document grows here: no route is added (those are served by the other face).
    let doc = doc.merge_from(served_elsewhere);
    let document = Arc::new(openapi::document(doc, &api.issuer));
    router.layer(axum::middleware::from_fn(caller::with_target)).layer(Extension(document)).with_state(api)
}

#[cfg(test)]
mod tests {
    /// The document's invariants, without a server (the integration test checks the served one).
    #[test]
    fn every_operation_is_named_once_and_says_who_may_call_it() {
        let doc = serde_json::to_value(super::openapi_document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                assert!(ids.insert(id.to_owned()), "{id} twice");
                let public = !path.starts_with("/api/v1/") || path == "/api/v1/connections/callback";
                assert_eq!(op.get("security").is_none(), public, "{method} {path}: security");
                for (status, r) in op["responses"].as_object().unwrap() {
                    if let Some(name) = r["$ref"].as_str().and_then(|r| r.strip_prefix("#/components/responses/")) {
                        assert!(doc["components"]["responses"][name].is_object(), "{method} {path} {status}: {name}");
                    }
                }
            }
        }
        assert!(ids.len() >= 32, "{ids:?}");
    }
}
