//! Upstream MCP servers as a tool source of the gateway (`bk_gateway::tools::ToolSource`). A tenant
//! sees, next to the built-ins, the tools of its own active connections whose provider's tools come
//! from an MCP server (`tools = { kind = "mcp" }`, or every `mcp` provider), and calling one reaches
//! that server with the tenant's credential from the vault — never another tenant's, never the
//! client's own token.
//!
//! - **Clients**: one MCP client (the official Rust SDK, `rmcp`, Streamable HTTP) per connection,
//!   authenticated with that connection's credential from the broker (`bk_connections::Broker`,
//!   refreshed before it expires); kept and reused while the credential is the same, made anew
//!   when the broker hands out a newer one; a 401 from the server asks the broker for a refreshed
//!   credential once.
//! - **Listings**: each connection's `tools/list` is cached for `list_ttl`; one slow or failing
//!   server never empties the list nor fails the caller: its tools are missing from that listing,
//!   the reason is logged and counted (`UpstreamCounters`).
//! - **Names**: `<provider>_<tool>` (see `names`), the upstream's own description kept (schemas,
//!   annotations, icons), read-only only if the catalog's `read_tools` or the server's
//!   `readOnlyHint` says so (and the catalog's `write_tools` does not say otherwise).
//! - **Listing versions** are handed out from a counter for each distinct (connection, listing)
//!   set, so two tenants never share a version — the gateway caches serialised lists by version.

mod answers;
mod breaker;
mod bridged;
pub mod http;
mod listing;
pub mod names;
mod source;
mod watch;

use answers::{SLOW, STEP_UP, cap_answer, failure_text, keeps_client, service_failure, unusable};
use breaker::{Breakers, Ending, origin_of};
use listing::template_matches;

pub use breaker::BreakerSettings;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bk_access::AccessContext;
use bk_connections::broker::UsableCredential;
use bk_connections::catalog::{HttpTool, Provider, ToolSource as CatalogTools};
use bk_connections::{Broker, BrokerError, Catalog, Credential};
use bk_domain::connection::{Connection, ConnectionStatus};
use bk_domain::ids::{AccountId, ConnectionId};
use bk_domain::ports::{ConnectionQuery, ConnectionSort, ConnectionStore, MAX_CONNECTIONS_PAGE};
use bk_gateway::tools::{
    Access, Answer, Offer, Offered, Readable, ResourceWatch, Round, ToolDescriptor, ToolError, ToolListing, ToolSource,
    UpstreamTool,
};
use bk_outbound::SafeFetcher;
use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, GetPromptRequestParams, GetPromptResponse, Implementation,
    ProtocolVersion, ReadResourceRequestParams, ReadResourceResponse,
};
use rmcp::service::ClientServiceExt;
use rmcp::service::{Peer, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use url::Url;

/// What every upstream answer goes through before a client sees it: token-shaped text replaced
/// (the audit log's redactor).
pub type Redact = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// What the source reaches.
pub struct UpstreamDeps {
    /// The tenants' connections.
    pub store: Arc<dyn ConnectionStore>,
    pub catalog: Arc<Catalog>,
    /// Every connection's usable credential.
    pub broker: Broker,
    /// The outbound client for MCP servers (the operator's URLs), without a limit on a whole
    /// exchange (event streams); each request is bounded by the settings.
    pub http: reqwest::Client,
    /// Declarative HTTP tools' calls (request-forgery safe, bounded).
    pub api: SafeFetcher,
    pub redact: Redact,
}

/// How upstream servers are used.
#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// How long a connection's tool list is reused before it is asked for again.
    pub list_ttl: Duration,
    /// Connecting to a server and listing its tools, per server (the listing waits no longer).
    pub list_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// How long a tenant's set of connections is reused before it is read again.
    pub connections_ttl: Duration,
    /// The most text of one answer handed to the client (the rest cut, with a notice).
    pub max_text_bytes: usize,
    /// Where a person (re)connects a provider (named in the errors of unusable connections).
    pub connect_url: String,
    /// When a failing server is left alone.
    pub breaker: BreakerSettings,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            list_ttl: Duration::from_secs(60),
            list_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(60),
            connections_ttl: Duration::from_secs(2),
            max_text_bytes: 50 * 1024,
            connect_url: "/connections".into(),
            breaker: BreakerSettings::default(),
        }
    }
}

/// What happened with upstream servers (exported on `/metrics`).
#[derive(Default)]
pub struct UpstreamCounters {
    pub lists: AtomicU64,
    pub list_failures: AtomicU64,
    pub calls: AtomicU64,
    pub call_failures: AtomicU64,
    pub list_cache_hits: AtomicU64,
    /// Requests refused at once because their server's circuit was open.
    pub circuit_refusals: AtomicU64,
    /// Times a server's circuit opened.
    pub circuits_opened: AtomicU64,
}

type Listings = Arc<Mutex<HashMap<String, CachedListing>>>;

/// Identifies Bridgekeeper to upstream servers, and forgets a connection's cached tool list when its
/// server says the list changed (the next listing asks again; `subscriptions/listen` streams see
/// the new version).
#[derive(Clone)]
struct Handler {
    connection_id: String,
    listings: std::sync::Weak<Mutex<HashMap<String, CachedListing>>>,
    routes: Arc<Routes>,
    redact: Redact,
    watches: std::sync::Weak<Mutex<HashMap<(String, String), watch::Watched>>>,
    /// How long a relayed question waits for its answer (no longer than a call may take).
    ask_wait: Duration,
}

/// The calls of one client that relay notifications to their callers while they run: by the
/// progress token each upstream request carries.
#[derive(Default)]
pub(crate) struct Routes {
    by_token: Mutex<HashMap<rmcp::model::ProgressToken, bk_gateway::relay::Relay>>,
    /// The same calls by their request id: a server's request (sampling, elicitation) arriving on
    /// a call's response stream is marked with it by the transport.
    by_request: Mutex<HashMap<rmcp::model::RequestId, bk_gateway::relay::Relay>>,
    /// Requests in flight on this client, relayed or not (a log message is relayed only when the
    /// one in flight is a relayed call: otherwise it could belong to another caller's request).
    in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts a request in flight on a client while it lives.
pub(crate) struct Busy(Arc<Routes>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Routes {
    /// Counts a request in flight until the guard is dropped.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Routes the request's notifications and requests to `relay` until the guard is dropped.
    pub(crate) fn register(
        self: &Arc<Self>,
        token: rmcp::model::ProgressToken,
        request: rmcp::model::RequestId,
        relay: bk_gateway::relay::Relay,
    ) -> RouteGuard {
        self.by_token.lock().unwrap().insert(token.clone(), relay.clone());
        self.by_request.lock().unwrap().insert(request.clone(), relay);
        RouteGuard { routes: self.clone(), token, request }
    }

    /// The relay of the call whose response stream carried this server request.
    fn of_request(&self, extensions: &rmcp::model::Extensions) -> Option<bk_gateway::relay::Relay> {
        match extensions.get::<rmcp::service::InboundStreamOrigin>()? {
            rmcp::service::InboundStreamOrigin::OutboundRequest(id) => self.by_request.lock().unwrap().get(id).cloned(),
            rmcp::service::InboundStreamOrigin::Unassociated => None,
        }
    }
}

pub(crate) struct RouteGuard {
    routes: Arc<Routes>,
    token: rmcp::model::ProgressToken,
    request: rmcp::model::RequestId,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        self.routes.by_token.lock().unwrap().remove(&self.token);
        self.routes.by_request.lock().unwrap().remove(&self.request);
    }
}

/// What Bridgekeeper tells upstream servers it can do for them: answer sampling and elicitation
/// (form and URL) by asking the client of the call that caused it — refused when that client
/// cannot (see `Handler::ask`).
fn client_capabilities() -> ClientCapabilities {
    serde_json::from_value(json!({"sampling": {}, "elicitation": {"form": {}, "url": {}}})).unwrap_or_default()
}

/// What a request to a connection's server is made with: its client and the client's routes.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub(crate) peer: Peer<RoleClient>,
    pub(crate) routes: Arc<Routes>,
}

impl rmcp::ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(client_capabilities(), Implementation::new("Bridgekeeper", env!("CARGO_PKG_VERSION")))
    }

    /// A server asks for an LLM completion while serving a call: relayed to that call's client
    /// (sampling is deprecated by SEP-2577, still served by 2025-11-25 servers).
    #[allow(deprecated)]
    fn create_message(
        &self,
        params: rmcp::model::CreateMessageRequestParams,
        context: rmcp::service::RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<rmcp::model::CreateMessageResult, rmcp::ErrorData>> + Send + '_ {
        self.ask("sampling/createMessage", params, context)
    }

    /// A server asks the person for input while serving a call: relayed to that call's client.
    fn create_elicitation(
        &self,
        params: rmcp::model::ElicitRequestParams,
        context: rmcp::service::RequestContext<RoleClient>,
    ) -> impl Future<Output = Result<rmcp::model::ElicitResult, rmcp::ErrorData>> + Send + '_ {
        self.ask("elicitation/create", params, context)
    }

    fn on_tool_list_changed(
        &self,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        if let Some(listings) = self.listings.upgrade() {
            listings.lock().unwrap().remove(&self.connection_id);
            tracing::debug!(connection = %self.connection_id, "an upstream server's tool list changed");
        }
        std::future::ready(())
    }

    /// A watched resource changed: its watchers hear of it.
    fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        if let Some(watches) = self.watches.upgrade() {
            watch::updated(&watches, &self.connection_id, &params.uri);
        }
        std::future::ready(())
    }

    /// Progress of a relayed call goes to its caller, under the caller's own token.
    fn on_progress(
        &self,
        params: rmcp::model::ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let relay = self.routes.by_token.lock().unwrap().get(&params.progress_token).cloned();
        if let Some(relay) = relay {
            let message =
                params.message.map(|m| self.redacted(Value::String(m))).and_then(|v| v.as_str().map(str::to_owned));
            relay.progress(params.progress, params.total, message);
        }
        std::future::ready(())
    }

    /// A log message goes to the caller of the one relayed call in flight on this client: the
    /// transport does not say which request's stream a notification came with, so with several
    /// calls in flight (or none) it is not relayed rather than risk the wrong caller.
    #[allow(deprecated)]
    fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) -> impl Future<Output = ()> + Send + '_ {
        let only = {
            let routes = self.routes.by_token.lock().unwrap();
            let alone = self.routes.in_flight.load(Ordering::Relaxed) == 1;
            if alone && routes.len() == 1 { routes.values().next().cloned() } else { None }
        };
        if let Some(relay) = only {
            let level = serde_json::to_value(params.level).ok();
            if let Some(level) = level.as_ref().and_then(Value::as_str) {
                relay.log(level, params.logger, self.redacted(params.data));
            }
        }
        std::future::ready(())
    }
}

impl Handler {
    /// A server's request relayed to the client of the call it came with (the transport marks
    /// which call's response stream carried it); refused when it came with none, or when that
    /// client cannot answer it.
    async fn ask<P: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        params: P,
        context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<R, rmcp::ErrorData> {
        let refuse = |why: String| rmcp::ErrorData::new(rmcp::model::ErrorCode::INVALID_REQUEST, why, None);
        let Some(relay) = self.routes.of_request(&context.extensions) else {
            return Err(refuse(format!("{method} is answered only while a call of this client is running")));
        };
        let mut params = serde_json::to_value(params).map_err(|e| refuse(e.to_string()))?;
        // What reaches the client passes the same filter as results; and a completion never asks
        // the client for context from its session, which spans every provider of the tenant.
        (self.redact)(&mut params);
        if let Some(p) = params.as_object_mut()
            && p.contains_key("includeContext")
        {
            p.insert("includeContext".into(), json!("none"));
        }
        tracing::debug!(connection = %self.connection_id, method, "an upstream server asks the client");
        // The server may give up on its request; the call it came with ends within its time limit.
        let answer = tokio::select! {
            a = relay.ask(method, params, self.ask_wait) => a,
            _ = context.ct.cancelled() => Err(format!("the server cancelled its {method} request")),
        };
        let answer = answer.map_err(refuse)?;
        serde_json::from_value(answer).map_err(|e| refuse(format!("the client's answer to {method} is malformed: {e}")))
    }

    fn redacted(&self, mut v: Value) -> Value {
        (self.redact)(&mut v);
        v
    }
}

/// A kept client of one connection, made with the credential of `generation`.
struct Pooled {
    generation: i64,
    routes: Arc<Routes>,
    service: RunningService<RoleClient, Handler>,
    last_used: Instant,
}

/// Clients unused this long are closed (a sweep runs at most once a minute, on a listing).
const IDLE_CLIENT: Duration = Duration::from_secs(300);
const SWEEP_EVERY_SECS: u64 = 60;

/// A connection's tools as its server listed them.
struct CachedListing {
    fetched: Instant,
    /// Unique per fetch: names this exact list.
    serial: u64,
    snap: Arc<Snapshot>,
}

/// What a connection's server offers (MCP objects as it listed them).
#[derive(Default)]
struct Snapshot {
    tools: Vec<Value>,
    prompts: Vec<Value>,
    resources: Vec<Value>,
    templates: Vec<Value>,
}

/// A tenant's active connections whose provider offers tools (from an MCP server or declared).
struct AccountConnections {
    read: Instant,
    connections: Arc<Vec<(Connection, Arc<Provider>)>>,
}

/// The tools of one set of listings, under the version handed out for it.
type Composite = Vec<(String, u64)>;

pub struct UpstreamTools {
    store: Arc<dyn ConnectionStore>,
    catalog: Arc<Catalog>,
    broker: Broker,
    http: reqwest::Client,
    /// Declarative HTTP tools' calls (request-forgery safe, bounded).
    api: SafeFetcher,
    redact: Redact,
    settings: UpstreamSettings,
    counters: Arc<UpstreamCounters>,
    /// Names the gateway's own tools hold (never given to an upstream tool).
    reserved: Vec<String>,
    accounts: Mutex<HashMap<AccountId, AccountConnections>>,
    listings: Listings,
    watches: watch::Watches,
    breakers: Breakers,
    composites: Mutex<HashMap<Composite, ToolListing>>,
    /// One client slot per connection; fetching a listing or making a client holds it.
    clients: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Pooled>>>>>,
    next_serial: AtomicU64,
    next_version: AtomicU64,
    started: Instant,
    /// Seconds since `started` of the last sweep of idle clients and stale listings.
    last_sweep: AtomicU64,
    /// Bridge mode: bridged providers' tools use the calling session's token (`bridged`).
    bridge: Option<Arc<bk_connections::bridge::Bridge>>,
}

/// The bearer value a credential gives an MCP server.
fn bearer(c: &Credential) -> &str {
    match c {
        Credential::ApiKey { key } => key,
        Credential::OAuth { access_token, .. } => access_token,
        Credential::Exchanged { token } => token,
    }
}

impl UpstreamTools {
    pub fn new(deps: UpstreamDeps, settings: UpstreamSettings, reserved: Vec<String>) -> Self {
        let UpstreamDeps { store, catalog, broker, http, api, redact } = deps;
        let breaker = settings.breaker;
        Self {
            store,
            catalog,
            broker,
            http,
            api,
            redact,
            settings,
            counters: Arc::new(UpstreamCounters::default()),
            reserved,
            accounts: Mutex::default(),
            listings: Arc::default(),
            watches: Arc::default(),
            breakers: Breakers::new(breaker),
            composites: Mutex::default(),
            clients: Mutex::default(),
            next_serial: AtomicU64::new(1),
            next_version: AtomicU64::new(1),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
            bridge: None,
        }
    }

    pub fn counters(&self) -> Arc<UpstreamCounters> {
        self.counters.clone()
    }

    /// May a request for `account` go to the server at `url` now? The refusal in words when its
    /// circuit is open.
    pub(crate) fn admit(&self, provider: &str, url: &Url, account: &AccountId) -> Result<breaker::Permit<'_>, String> {
        self.breakers.admit(&origin_of(url, account.as_str())).map_err(|secs| {
            self.counters.circuit_refusals.fetch_add(1, Ordering::Relaxed);
            format!("the {provider} server has been failing; it is left alone for now: retry in {secs} s")
        })
    }

    /// Records how a request the breaker let through ended.
    pub(crate) fn ended(&self, permit: &mut breaker::Permit<'_>, url: &Url, ending: Ending) {
        if permit.ended(ending) {
            self.counters.circuits_opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(origin = %url.origin().ascii_serialization(), "an upstream server keeps failing for a tenant: its circuit is open");
        }
    }

    /// The tenant's active connections whose provider offers tools, oldest first.
    async fn connections(&self, account: &AccountId) -> Arc<Vec<(Connection, Arc<Provider>)>> {
        if let Some(a) = self.accounts.lock().unwrap().get(account)
            && a.read.elapsed() < self.settings.connections_ttl
        {
            return a.connections.clone();
        }
        // Expired and failed connections too: their tools stay listed (as last seen) and a call
        // says how to fix the connection.
        let query = ConnectionQuery {
            status: None,
            sort_by: ConnectionSort::CreatedAt,
            descending: false,
            limit: MAX_CONNECTIONS_PAGE,
            ..ConnectionQuery::default()
        };
        let page = match self.store.list_connections(account, &query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(account = %account, error = %e, "listing connections for upstream tools failed");
                return Arc::new(Vec::new());
            }
        };
        let found: Vec<(Connection, Arc<Provider>)> = page
            .items
            .into_iter()
            .filter(|c| c.status != ConnectionStatus::Revoked)
            .filter_map(|c| {
                let p = self.catalog.get(&c.provider_id)?.clone();
                // A bridged provider's tools use the session's token, never a connection's.
                if p.bridged().is_some() {
                    return None;
                }
                match &p.tools {
                    CatalogTools::UpstreamMcp { .. } => Some((c, p)),
                    CatalogTools::Http { tools } if !tools.is_empty() => Some((c, p)),
                    _ => None,
                }
            })
            .collect();
        let found = Arc::new(found);
        let mut accounts = self.accounts.lock().unwrap();
        if accounts.len() > 10_000 {
            accounts.retain(|_, a| a.read.elapsed() < self.settings.connections_ttl);
        }
        accounts.insert(account.clone(), AccountConnections { read: Instant::now(), connections: found.clone() });
        found
    }

    /// Closes clients idle for `IDLE_CLIENT` and drops listings long out of date (at most once a
    /// minute; a slot in use is skipped).
    fn sweep(&self) {
        let now = self.started.elapsed().as_secs();
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now < last + SWEEP_EVERY_SECS
            || self.last_sweep.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        let mut closed = 0;
        let watched: std::collections::HashSet<String> =
            self.watches.lock().unwrap().keys().map(|(c, _)| c.clone()).collect();
        self.clients.lock().unwrap().retain(|connection, slot| {
            let Ok(mut guard) = slot.try_lock() else { return true };
            if watched.contains(connection) {
                // Its watched resources' updates come through it.
                return true;
            }
            if guard.as_ref().is_some_and(|p| p.last_used.elapsed() >= IDLE_CLIENT) {
                *guard = None;
                closed += 1;
            }
            guard.is_some() || Arc::strong_count(slot) > 1
        });
        let stale = self.settings.list_ttl * 5;
        self.listings.lock().unwrap().retain(|_, l| l.fetched.elapsed() < stale);
        if closed > 0 {
            tracing::debug!(closed, "closed idle upstream MCP clients");
        }
    }

    fn slot(&self, connection: &str) -> Arc<tokio::sync::Mutex<Option<Pooled>>> {
        self.clients.lock().unwrap().entry(connection.to_owned()).or_default().clone()
    }

    /// A client of the connection made with `cred` (the kept one when it was made with the same
    /// credential), with the slot held by the caller.
    async fn peer(&self, slot: &mut Option<Pooled>, url: &Url, cred: &UsableCredential) -> Result<Upstream, String> {
        if let Some(p) = slot.as_mut()
            && p.generation == cred.generation()
            && !p.service.is_transport_closed()
        {
            p.last_used = Instant::now();
            return Ok(Upstream { peer: p.service.peer().clone(), routes: p.routes.clone() });
        }
        let routes = Arc::new(Routes::default());
        let handler = Handler {
            connection_id: cred.connection().id.to_string(),
            listings: Arc::downgrade(&self.listings),
            routes: routes.clone(),
            redact: self.redact.clone(),
            watches: Arc::downgrade(&self.watches),
            ask_wait: self.settings.call_timeout,
        };
        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(bearer(cred.credential()));
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        // The 2026-07-28 revision first (`server/discover`), the `initialize` handshake for servers
        // that do not speak it.
        let lifecycle = rmcp::service::ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        // The session outlives the request that opened it (it is pooled): its task logs under a span
        // of its own, not under that request's id.
        let session = tracing::info_span!(parent: None, "upstream_session", connection = %cred.connection().id);
        let serve = tracing::Instrument::instrument(handler.serve_with_lifecycle(transport, lifecycle), session);
        let service = tokio::time::timeout(self.settings.list_timeout, serve)
            .await
            .map_err(|_| format!("no answer to initialize within {} ms", self.settings.list_timeout.as_millis()))?
            .map_err(|e| match e.auth_challenge() {
                // The handshake met a 401 or 403 (rmcp keeps its challenge): step-up when the
                // challenge says so, else the credential was refused.
                Some(h) => match bk_connections::mcp::bearer_challenge(&[h]) {
                    Some(c) if c.error.as_deref() == Some("insufficient_scope") => {
                        format!("{STEP_UP}{}", c.scope.unwrap_or_default())
                    }
                    _ => "401".to_owned(),
                },
                None => e.to_string(),
            })?;
        let peer = service.peer().clone();
        // A new client of a connection with watched resources subscribes to them again.
        let watched = watch::watched_on(&self.watches, cred.connection().id.as_str());
        if !watched.is_empty() {
            let peer = peer.clone();
            tokio::spawn(async move {
                for uri in watched {
                    if let Err(e) = watch::subscribe(&peer, &uri).await {
                        tracing::info!(error = %e, "subscribing a new upstream client to a watched resource failed");
                    }
                }
            });
        }
        *slot =
            Some(Pooled { generation: cred.generation(), routes: routes.clone(), service, last_used: Instant::now() });
        Ok(Upstream { peer, routes })
    }
}

impl UpstreamTools {
    /// Text from an upstream (an error message) with token-shaped parts redacted.
    fn redact_text(&self, s: String) -> String {
        let mut v = Value::String(s);
        (self.redact)(&mut v);
        match v {
            Value::String(s) => s,
            _ => String::new(),
        }
    }

    /// An upstream answer as a client may see it: token-shaped text redacted everywhere, and the
    /// text of `list` (content blocks, messages or resource contents) cut at `max_text_bytes` in
    /// all, with a notice.
    fn filter(&self, v: &mut Value, list: &str) {
        (self.redact)(v);
        cap_answer(v, list, self.settings.max_text_bytes);
    }
}

impl UpstreamTools {
    /// One request to the connection's server with its kept client (made anew, and one 401
    /// answered with a refreshed credential, as for tool calls), within the call time limit.
    async fn request<F, Fut>(&self, c: &Connection, url: &Url, f: F) -> Result<Value, String>
    where
        F: Fn(Upstream) -> Fut,
        Fut: Future<Output = Result<Value, ServiceError>>,
    {
        let slot = self.slot(c.id.as_str());
        let provider = &c.provider_id;
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| unusable(provider, &e))?;
        let mut permit = self.admit(provider, url, &c.account_id)?;
        for attempt in 0..2 {
            let peer = {
                let mut slot = slot.lock().await;
                self.peer(&mut slot, url, &cred).await
            };
            let result = match peer {
                Ok(peer) => {
                    let _busy = peer.routes.busy();
                    tokio::time::timeout(self.settings.call_timeout, f(peer))
                        .await
                        .map_err(|_| format!("{SLOW} {} s", self.settings.call_timeout.as_secs()))
                        .and_then(|r| r.map_err(service_failure))
                }
                Err(e) => Err(e),
            };
            self.ended(&mut permit, url, answers::ending(&result));
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e == "401" && attempt == 0 => {
                    *slot.lock().await = None;
                    cred = self
                        .broker
                        .credential_after_401(&c.account_id, &c.id, &cred)
                        .await
                        .map_err(|e| unusable(provider, &e))?;
                }
                Err(e) if e.starts_with(STEP_UP) => {
                    let scopes = &e[STEP_UP.len()..];
                    self.step_up(c, scopes).await;
                    return Err(format!("more access is needed (scope {scopes}): reconnect the {provider} connection"));
                }
                Err(e) => {
                    if !keeps_client(&e) {
                        *slot.lock().await = None;
                    }
                    return Err(self.redact_text(failure_text(provider, &e)));
                }
            }
        }
        Err(format!("the {provider} server refused this connection's credential; reconnect it"))
    }

    /// The server asked for `scopes` (space-separated) it did not grant: the connection keeps them
    /// for the reconnect (SEP-2350: the new request asks for what was held plus what was asked).
    async fn step_up(&self, c: &Connection, scopes: &str) {
        let scopes: Vec<String> = scopes.split(' ').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        tracing::info!(connection = %c.id, provider = %c.provider_id, scopes = ?scopes, "an upstream server asks for more access");
        if let Err(e) = self.broker.scope_required(&c.account_id, &c.id, &scopes).await {
            tracing::warn!(connection = %c.id, error = %e, "recording the access an upstream server asks for failed");
        }
    }
}
