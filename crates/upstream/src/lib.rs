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

pub mod http;
pub mod names;

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
    Access, Answer, Offer, Offered, Readable, Round, ToolDescriptor, ToolError, ToolListing, ToolSource, UpstreamTool,
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
}

type Listings = Arc<Mutex<HashMap<String, CachedListing>>>;

/// Identifies Bridgekeeper to upstream servers, and forgets a connection's cached tool list when its
/// server says the list changed (the next listing asks again; `subscriptions/listen` streams see
/// the new version).
#[derive(Clone)]
struct Handler {
    connection_id: String,
    listings: std::sync::Weak<Mutex<HashMap<String, CachedListing>>>,
}

impl rmcp::ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("Bridgekeeper", env!("CARGO_PKG_VERSION")))
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
}

/// A kept client of one connection, made with the credential of `generation`.
struct Pooled {
    generation: i64,
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
    composites: Mutex<HashMap<Composite, ToolListing>>,
    /// One client slot per connection; fetching a listing or making a client holds it.
    clients: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Pooled>>>>>,
    next_serial: AtomicU64,
    next_version: AtomicU64,
    started: Instant,
    /// Seconds since `started` of the last sweep of idle clients and stale listings.
    last_sweep: AtomicU64,
}

/// The bearer value a credential gives an MCP server.
fn bearer(c: &Credential) -> &str {
    match c {
        Credential::ApiKey { key } => key,
        Credential::OAuth { access_token, .. } => access_token,
        Credential::Exchanged { token } => token,
    }
}

/// Marks a failure the credential explains, from the transport's typed errors only (never from
/// message text, which an upstream writes): `"401"` (the server answered 401: refresh once), or
/// `"insufficient_scope:<scopes>"` (403 with `error="insufficient_scope"`: step-up). `None`: any other
/// failure (a 403 without that error is a plain refusal).
fn auth_failure(root: &(dyn std::error::Error + 'static)) -> Option<String> {
    use rmcp::transport::streamable_http_client::{AuthRequiredError, InsufficientScopeError};
    let mut source = Some(root);
    while let Some(current) = source {
        if current.downcast_ref::<AuthRequiredError>().is_some() {
            return Some("401".to_owned());
        }
        if let Some(e) = current.downcast_ref::<InsufficientScopeError>() {
            return bk_connections::mcp::bearer_challenge(&[&e.www_authenticate_header])
                .filter(|c| c.error.as_deref() == Some("insufficient_scope"))
                .map(|c| format!("{STEP_UP}{}", c.scope.or(e.required_scope.clone()).unwrap_or_default()));
        }
        source = current.source();
    }
    None
}

const STEP_UP: &str = "insufficient_scope:";

/// A request's failure: an auth marker (see `auth_failure`), `"mcp:"` + the server's JSON-RPC
/// error (the server answered: the client stays usable), or the transport's failure.
fn service_failure(e: ServiceError) -> String {
    match &e {
        ServiceError::TransportSend(t) => auth_failure(t.error.as_ref()).unwrap_or_else(|| e.to_string()),
        ServiceError::McpError(m) => format!("{ANSWERED}{}", m.message),
        _ => e.to_string(),
    }
}

/// Prefix of a failure the server answered with (a JSON-RPC error): the kept client stays.
const ANSWERED: &str = "mcp:";
/// Prefix of a request that ran out of time (the request is cancelled; the client stays).
const SLOW: &str = "no answer within";

/// Whether the kept client survives this failure: the server answered, or one request was slow.
fn keeps_client(e: &str) -> bool {
    e.starts_with(ANSWERED) || e.starts_with(SLOW)
}

/// A failure in words for the caller (bounded; the caller redacts it).
fn failure_text(provider: &str, e: &str) -> String {
    let shown = |s: &str| s.chars().filter(|c| !c.is_control()).take(300).collect::<String>();
    match e {
        "401" => format!("the {provider} server refused this connection's credential; reconnect it"),
        _ if e.starts_with(ANSWERED) => {
            format!("the {provider} server answered with an error: {}", shown(&e[ANSWERED.len()..]))
        }
        _ => format!("the {provider} server failed: {}", shown(e)),
    }
}

impl UpstreamTools {
    pub fn new(deps: UpstreamDeps, settings: UpstreamSettings, reserved: Vec<String>) -> Self {
        let UpstreamDeps { store, catalog, broker, http, api, redact } = deps;
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
            composites: Mutex::default(),
            clients: Mutex::default(),
            next_serial: AtomicU64::new(1),
            next_version: AtomicU64::new(1),
            started: Instant::now(),
            last_sweep: AtomicU64::new(0),
        }
    }

    pub fn counters(&self) -> Arc<UpstreamCounters> {
        self.counters.clone()
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
        self.clients.lock().unwrap().retain(|_, slot| {
            let Ok(mut guard) = slot.try_lock() else { return true };
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
    async fn peer(
        &self,
        slot: &mut Option<Pooled>,
        url: &Url,
        cred: &UsableCredential,
    ) -> Result<Peer<RoleClient>, String> {
        if let Some(p) = slot.as_mut()
            && p.generation == cred.generation()
            && !p.service.is_transport_closed()
        {
            p.last_used = Instant::now();
            return Ok(p.service.peer().clone());
        }
        let handler =
            Handler { connection_id: cred.connection().id.to_string(), listings: Arc::downgrade(&self.listings) };
        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(bearer(cred.credential()));
        let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
        // The 2026-07-28 revision first (`server/discover`), the `initialize` handshake for servers
        // that do not speak it.
        let lifecycle = rmcp::service::ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        };
        let service =
            tokio::time::timeout(self.settings.list_timeout, handler.serve_with_lifecycle(transport, lifecycle))
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
        *slot = Some(Pooled { generation: cred.generation(), service, last_used: Instant::now() });
        Ok(peer)
    }

    /// The connection's tool list from its server (one 401 answered with a refreshed credential).
    /// `Ok(None)`: another caller fetched it while this one waited for the connection's slot.
    async fn fetch_listing(&self, c: &Connection, url: &Url) -> Result<Option<Snapshot>, String> {
        let slot = self.slot(c.id.as_str());
        let mut slot = slot.lock().await;
        if self
            .listings
            .lock()
            .unwrap()
            .get(c.id.as_str())
            .is_some_and(|l| l.fetched.elapsed() < self.settings.list_ttl)
        {
            return Ok(None);
        }
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| e.to_string())?;
        for attempt in 0..2 {
            let result = match self.peer(&mut slot, url, &cred).await {
                Ok(peer) => tokio::time::timeout(self.settings.list_timeout, snapshot(&peer))
                    .await
                    .map_err(|_| format!("{SLOW} {} ms (listing)", self.settings.list_timeout.as_millis()))
                    .and_then(|r| r.map_err(service_failure)),
                Err(e) => Err(e),
            };
            match result {
                Ok(snap) => return Ok(Some(snap)),
                Err(e) if e == "401" && attempt == 0 => {
                    *slot = None;
                    cred = self
                        .broker
                        .credential_after_401(&c.account_id, &c.id, &cred)
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    if keeps_client(&e) {
                        // The server answered (or was slow): the client is still good.
                    } else {
                        *slot = None;
                    }
                    if let Some(scopes) = e.strip_prefix(STEP_UP) {
                        self.step_up(c, scopes).await;
                        return Err(format!("the server asks for more access (scope {scopes})"));
                    }
                    return Err(if e == "401" {
                        "the server refused the connection's credential (401)".into()
                    } else {
                        e
                    });
                }
            }
        }
        Err("the server refused the connection's credential (401)".into())
    }

    /// The connection's listing (cached, or fetched now): its serial and tools. `None` when its
    /// server cannot be listed now (logged and counted). Declared HTTP tools never change: serial 0.
    async fn listing(&self, c: &Connection, p: &Provider) -> Option<(u64, Arc<Snapshot>)> {
        let url = match &p.tools {
            CatalogTools::UpstreamMcp { url } => url,
            CatalogTools::Http { tools } => {
                let tools = tools.iter().map(http_listed).collect();
                return Some((0, Arc::new(Snapshot { tools, ..Snapshot::default() })));
            }
            CatalogTools::None => return None,
        };
        {
            let l = self.listings.lock().unwrap();
            // A connection that cannot be used now is not asked: its tools as last seen, if any.
            if c.status != ConnectionStatus::Active {
                return l.get(c.id.as_str()).map(|cached| (cached.serial, cached.snap.clone()));
            }
            if let Some(cached) = l.get(c.id.as_str())
                && cached.fetched.elapsed() < self.settings.list_ttl
            {
                self.counters.list_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some((cached.serial, cached.snap.clone()));
            }
        }
        self.counters.lists.fetch_add(1, Ordering::Relaxed);
        match self.fetch_listing(c, url).await {
            Ok(fetched) => {
                let mut l = self.listings.lock().unwrap();
                // A concurrent fetch may have stored one meanwhile: keep the first (same tools).
                if let Some(cached) = l.get(c.id.as_str())
                    && cached.fetched.elapsed() < self.settings.list_ttl
                {
                    return Some((cached.serial, cached.snap.clone()));
                }
                let fetched = fetched?;
                let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
                let snap = Arc::new(fetched);
                l.insert(c.id.to_string(), CachedListing { fetched: Instant::now(), serial, snap: snap.clone() });
                Some((serial, snap))
            }
            Err(why) => {
                self.counters.list_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    connection = %c.id, provider = %c.provider_id, why = %why,
                    "an upstream MCP server could not be listed; its tools are left out"
                );
                None
            }
        }
    }

    /// The descriptors of these listings under their namespaced names.
    fn describe(&self, listed: &[(&Connection, Arc<Snapshot>)]) -> Vec<ToolDescriptor> {
        let mut namer = names::Namer::default();
        namer.reserve(self.reserved.iter().map(String::as_str));
        let mut per_provider: HashMap<&str, usize> = HashMap::new();
        for (c, _) in listed {
            *per_provider.entry(c.provider_id.as_str()).or_default() += 1;
        }
        let mut out = Vec::new();
        for (c, snap) in listed {
            let tools = &snap.tools;
            let provider = self.catalog.get(&c.provider_id);
            let label = (per_provider[c.provider_id.as_str()] > 1).then(|| names::connection_label(c.id.as_str()));
            for t in tools.iter() {
                let Some(upstream_name) = t.get("name").and_then(Value::as_str) else { continue };
                let read_only_hint = t.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true));
                let (says_read, says_write) = provider
                    .map(|p| {
                        (
                            p.read_tools.iter().any(|x| x == upstream_name),
                            p.write_tools.iter().any(|x| x == upstream_name),
                        )
                    })
                    .unwrap_or((false, false));
                let access = if says_read || (read_only_hint && !says_write) { Access::Read } else { Access::Write };
                let name = namer.name(&c.provider_id, label.as_deref(), upstream_name);
                let text = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                out.push(ToolDescriptor {
                    name,
                    title: t
                        .get("title")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| upstream_name.to_owned()),
                    description: text("description"),
                    input_schema: t.get("inputSchema").cloned().unwrap_or_else(|| json!({"type": "object"})),
                    output_schema: t.get("outputSchema").cloned(),
                    access,
                    provider: Some(c.provider_id.clone()),
                    agent_id: None,
                    knowledge_base_id: None,
                    upstream: Some(Arc::new(UpstreamTool {
                        connection_id: c.id.to_string(),
                        name: upstream_name.to_owned(),
                        listed: t.clone(),
                    })),
                });
            }
        }
        out
    }
}

#[async_trait]
impl ToolSource for UpstreamTools {
    async fn list(&self, ctx: &AccessContext) -> ToolListing {
        self.sweep();
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let wanted: Vec<&(Connection, Arc<Provider>)> =
            connections.iter().filter(|(c, _)| reach.allows(&c.provider_id)).collect();
        let fetched = futures_util::future::join_all(wanted.iter().map(|(c, p)| self.listing(c, p))).await;
        let mut key: Composite = Vec::new();
        let mut listed = Vec::new();
        for ((c, _), found) in wanted.iter().zip(fetched) {
            if let Some((serial, snap)) = found {
                key.push((c.id.to_string(), serial));
                listed.push((c, snap));
            }
        }
        if let Some(l) = self.composites.lock().unwrap().get(&key) {
            return l.clone();
        }
        let tools = self.describe(&listed);
        let listing = ToolListing { version: self.next_version.fetch_add(1, Ordering::Relaxed), tools: tools.into() };
        let mut composites = self.composites.lock().unwrap();
        if composites.len() > 10_000 {
            // Versions are never reused: a dropped set gets a new one when it is seen again.
            composites.clear();
        }
        composites.entry(key).or_insert(listing).clone()
    }

    async fn offered(&self, ctx: &AccessContext, kind: Offer) -> Vec<Offered> {
        self.named(ctx, kind).await.into_iter().map(|n| n.offered).collect()
    }

    async fn get_prompt(
        &self,
        ctx: &AccessContext,
        name: &str,
        args: &Value,
        readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        let found = self.named(ctx, Offer::Prompts).await.into_iter().find(|n| {
            n.offered.item.get("name").and_then(Value::as_str) == Some(name) && readable(&n.offered.provider)
        })?;
        let mut params = GetPromptRequestParams::new(found.upstream_name.clone());
        if let Value::Object(a) = args {
            params = params.with_arguments(a.clone());
        }
        let provider = found.offered.provider.clone();
        let result = self
            .request(&found.connection, &found.url, move |peer| {
                let params = params.clone();
                async move {
                    match peer.get_prompt_once(params).await? {
                        GetPromptResponse::Complete(r) => Ok(serde_json::to_value(r).unwrap_or(Value::Null)),
                        _ => Err(ServiceError::UnexpectedResponse),
                    }
                }
            })
            .await;
        Some(
            result
                .map(|mut v| {
                    self.filter(&mut v, "messages");
                    v
                })
                .map_err(|e| ToolError::Failed(format!("the {provider} server could not give that prompt: {e}"))),
        )
    }

    async fn read_resource(
        &self,
        ctx: &AccessContext,
        uri: &str,
        readable: Readable<'_>,
    ) -> Option<Result<Value, ToolError>> {
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let mut by_template = None;
        let mut found = None;
        for (c, p) in connections.iter().filter(|(c, _)| reach.allows(&c.provider_id) && readable(&c.provider_id)) {
            let CatalogTools::UpstreamMcp { url } = &p.tools else { continue };
            let Some((_, snap)) = self.listing(c, p).await else { continue };
            if snap.resources.iter().any(|r| r.get("uri").and_then(Value::as_str) == Some(uri)) {
                found = Some((c, url));
                break;
            }
            if by_template.is_none()
                && snap
                    .templates
                    .iter()
                    .any(|t| t.get("uriTemplate").and_then(Value::as_str).is_some_and(|t| template_matches(t, uri)))
            {
                by_template = Some((c, url));
            }
        }
        let (c, url) = found.or(by_template)?;
        let params = ReadResourceRequestParams::new(uri);
        let result = self
            .request(c, url, move |peer| {
                let params = params.clone();
                async move {
                    match peer.read_resource_once(params).await? {
                        ReadResourceResponse::Complete(r) => Ok(serde_json::to_value(r).unwrap_or(Value::Null)),
                        _ => Err(ServiceError::UnexpectedResponse),
                    }
                }
            })
            .await;
        let provider = &c.provider_id;
        Some(
            result
                .map(|mut v| {
                    self.filter(&mut v, "contents");
                    v
                })
                .map_err(|e| ToolError::Failed(format!("the {provider} server could not read that resource: {e}"))),
        )
    }

    async fn call(
        &self,
        ctx: &AccessContext,
        tool: &ToolDescriptor,
        args: &Value,
        _round: &Round<'_>,
    ) -> Result<Answer, ToolError> {
        let Some(target) = &tool.upstream else {
            return Err(ToolError::Failed(format!("{} is not an upstream tool", tool.name)));
        };
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let failed = |why: String| {
            self.counters.call_failures.fetch_add(1, Ordering::Relaxed);
            ToolError::Failed(why)
        };
        let provider = tool.provider.clone().unwrap_or_default();
        // The connection as this caller's tenant holds it now (the listing may be a moment old).
        let id = ConnectionId::from_string(target.connection_id.clone());
        let connections = self.connections(&ctx.account_id).await;
        let Some((c, p)) = connections.iter().find(|(c, _)| c.id == id) else {
            return Err(failed(format!(
                "the {provider} connection no longer exists; connect {provider} again at {}",
                self.settings.connect_url
            )));
        };
        if c.status != ConnectionStatus::Active {
            return Err(failed(format!(
                "the {provider} connection is {}{}: reconnect it at {}",
                c.status.as_str(),
                c.last_error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default(),
                self.settings.connect_url
            )));
        }
        let url = match &p.tools {
            CatalogTools::UpstreamMcp { url } => url,
            CatalogTools::Http { tools } => {
                let Some(def) = tools.iter().find(|t| t.name == target.name) else {
                    return Err(failed(format!("{} is no longer offered by {provider}", tool.name)));
                };
                return self.call_http(c, def, args, &provider).await.map_err(failed);
            }
            CatalogTools::None => return Err(failed(format!("{provider} offers no tools now"))),
        };
        let arguments = match args {
            Value::Object(m) => Some(m.clone()),
            _ => None,
        };
        let slot = self.slot(c.id.as_str());
        let mut cred = match self.broker.credential(&c.account_id, &c.id).await {
            Ok(cred) => cred,
            Err(e) => return Err(failed(unusable(&provider, &e))),
        };
        for attempt in 0..2 {
            let peer = {
                let mut slot = slot.lock().await;
                self.peer(&mut slot, url, &cred).await
            };
            let result = match peer {
                Ok(peer) => {
                    let mut params = CallToolRequestParams::new(target.name.clone());
                    if let Some(a) = &arguments {
                        params = params.with_arguments(a.clone());
                    }
                    tokio::time::timeout(self.settings.call_timeout, peer.call_tool(params))
                        .await
                        .map_err(|_| format!("no answer within {} s", self.settings.call_timeout.as_secs()))
                        .and_then(|r| r.map_err(service_failure))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => {
                    let mut value = serde_json::to_value(r)
                        .map_err(|_| failed(format!("the {provider} server's answer could not be read")))?;
                    self.filter(&mut value, "content");
                    return Ok(Answer::Upstream(value));
                }
                Err(e) if e == "401" && attempt == 0 => {
                    *slot.lock().await = None;
                    cred = match self.broker.credential_after_401(&c.account_id, &c.id, &cred).await {
                        Ok(cred) => cred,
                        Err(e) => return Err(failed(unusable(&provider, &e))),
                    };
                }
                Err(e) if e.starts_with(STEP_UP) => {
                    let scopes = &e[STEP_UP.len()..];
                    self.step_up(c, scopes).await;
                    return Err(failed(format!(
                        "{} needs more access at {provider} (scope {scopes}): reconnect the {provider} connection to grant it",
                        tool.name
                    )));
                }
                Err(e) => {
                    if !keeps_client(&e) {
                        *slot.lock().await = None;
                    }
                    tracing::warn!(connection = %c.id, provider = %provider, tool = %target.name, why = %e, "an upstream tool call failed");
                    return Err(failed(self.redact_text(failure_text(&provider, &e))));
                }
            }
        }
        Err(failed(format!("the {provider} server refused this connection's credential; reconnect it")))
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

/// The most one binary block (image, audio, blob) may carry on to the client.
const MAX_BINARY_BYTES: usize = 1 << 20;
/// The most `structuredContent` may weigh (serialised).
const MAX_STRUCTURED_BYTES: usize = 256 << 10;

/// Bounds an answer: the text of `list`'s items (text blocks, a prompt message's content, an
/// embedded resource's text) at `max_text` bytes in all; a binary block over 1 MB and
/// `structuredContent` over 256 KB replaced by notices.
fn cap_answer(v: &mut Value, list: &str, max_text: usize) {
    let mut notices = Vec::new();
    if v.get("structuredContent").is_some_and(|s| s.to_string().len() > MAX_STRUCTURED_BYTES) {
        if let Some(o) = v.as_object_mut() {
            o.remove("structuredContent");
        }
        notices.push(format!("[the gateway left out the structured content: over {} KB]", MAX_STRUCTURED_BYTES / 1024));
    }
    let Some(items) = v.get_mut(list).and_then(Value::as_array_mut) else { return };
    let mut left = max_text;
    let mut cut = 0usize;
    for item in items.iter_mut() {
        // The block itself, a prompt message's content, or an embedded resource.
        let inner = ["content", "resource"].into_iter().find(|k| item.get(*k).is_some_and(Value::is_object));
        let holder = match inner {
            Some(k) => &item[k],
            None => &*item,
        };
        let too_big = ["data", "blob"]
            .iter()
            .any(|k| holder.get(*k).and_then(Value::as_str).is_some_and(|d| d.len() > MAX_BINARY_BYTES));
        if too_big {
            let kind = holder.get("mimeType").and_then(Value::as_str).unwrap_or("binary").to_owned();
            // The whole block goes (a message keeps its role).
            let notice = json!({"type": "text", "text": format!("[the gateway left out a {kind} block over {} KB]", MAX_BINARY_BYTES / 1024)});
            match inner {
                Some("content") => item["content"] = notice,
                _ => *item = notice,
            }
            continue;
        }
        let holder = match inner {
            Some(k) => &mut item[k],
            None => item,
        };
        let Some(Value::String(s)) = holder.get_mut("text") else { continue };
        if s.len() <= left {
            left -= s.len();
            continue;
        }
        let mut end = left;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        cut += s.len() - end;
        s.truncate(end);
        left = 0;
    }
    if cut > 0 {
        notices.push(format!(
            "[the gateway cut {} KB of this answer: at most {} KB of text are passed on]",
            cut.div_ceil(1024),
            max_text / 1024
        ));
    }
    for n in notices {
        items.push(json!({"type": "text", "text": n}));
    }
}

/// A prompt, resource or template under the name the caller sees, and where it comes from.
struct Named {
    offered: Offered,
    connection: Connection,
    url: Url,
    upstream_name: String,
}

impl UpstreamTools {
    /// What the caller's reachable connections offer of `kind`, names namespaced like tools'
    /// (`<provider>_<name>`, a connection label when a provider is connected twice); resources and
    /// templates keep their URIs.
    async fn named(&self, ctx: &AccessContext, kind: Offer) -> Vec<Named> {
        let reach = ctx.restrictions.reach(ctx.client_providers.as_deref());
        let connections = self.connections(&ctx.account_id).await;
        let wanted: Vec<(&Connection, &Url, &Arc<Provider>)> = connections
            .iter()
            .filter(|(c, _)| reach.allows(&c.provider_id))
            .filter_map(|(c, p)| match &p.tools {
                CatalogTools::UpstreamMcp { url } => Some((c, url, p)),
                _ => None,
            })
            .collect();
        let snaps = futures_util::future::join_all(wanted.iter().map(|(c, _, p)| self.listing(c, p))).await;
        let mut per_provider: HashMap<&str, usize> = HashMap::new();
        for (c, _, _) in &wanted {
            *per_provider.entry(c.provider_id.as_str()).or_default() += 1;
        }
        let mut namer = names::Namer::default();
        let mut out = Vec::new();
        for ((c, url, _), snap) in wanted.iter().zip(snaps) {
            let Some((_, snap)) = snap else { continue };
            let label = (per_provider[c.provider_id.as_str()] > 1).then(|| names::connection_label(c.id.as_str()));
            let items = match kind {
                Offer::Prompts => &snap.prompts,
                Offer::Resources => &snap.resources,
                Offer::ResourceTemplates => &snap.templates,
            };
            for item in items {
                let Some(upstream_name) = item.get("name").and_then(Value::as_str) else { continue };
                let mut item = item.clone();
                item["name"] = json!(namer.name(&c.provider_id, label.as_deref(), upstream_name));
                out.push(Named {
                    offered: Offered { provider: c.provider_id.clone(), item },
                    connection: (*c).clone(),
                    url: (*url).clone(),
                    upstream_name: upstream_name.to_owned(),
                });
            }
        }
        out
    }

    /// One request to the connection's server with its kept client (made anew, and one 401
    /// answered with a refreshed credential, as for tool calls), within the call time limit.
    async fn request<F, Fut>(&self, c: &Connection, url: &Url, f: F) -> Result<Value, String>
    where
        F: Fn(Peer<RoleClient>) -> Fut,
        Fut: Future<Output = Result<Value, ServiceError>>,
    {
        let slot = self.slot(c.id.as_str());
        let provider = &c.provider_id;
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| unusable(provider, &e))?;
        for attempt in 0..2 {
            let peer = {
                let mut slot = slot.lock().await;
                self.peer(&mut slot, url, &cred).await
            };
            let result = match peer {
                Ok(peer) => tokio::time::timeout(self.settings.call_timeout, f(peer))
                    .await
                    .map_err(|_| format!("no answer within {} s", self.settings.call_timeout.as_secs()))
                    .and_then(|r| r.map_err(service_failure)),
                Err(e) => Err(e),
            };
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

    /// One declared HTTP tool's call with the connection's credential (one 401 answered with a
    /// refreshed credential).
    async fn call_http(&self, c: &Connection, def: &HttpTool, args: &Value, provider: &str) -> Result<Answer, String> {
        let mut cred = self.broker.credential(&c.account_id, &c.id).await.map_err(|e| unusable(provider, &e))?;
        for attempt in 0..2 {
            let req = http::request(&self.api, def, args, bearer(cred.credential()))?;
            let answer = self.api.send(req).await.map_err(|e| {
                tracing::warn!(connection = %c.id, provider = %provider, tool = %def.name, error = %e, "an HTTP tool call failed");
                format!("{provider} could not be reached: {e}")
            })?;
            match http::outcome(provider, def, answer) {
                http::Outcome::Done { text, structured } => {
                    let mut v = json!({"text": text, "structured": structured});
                    (self.redact)(&mut v);
                    let text = v["text"].as_str().unwrap_or_default().to_owned();
                    let structured = Some(v["structured"].take()).filter(|s| !s.is_null());
                    return Ok(Answer::Complete(bk_gateway::tools::ToolOutput { text, structured }));
                }
                http::Outcome::Unauthorized if attempt == 0 => {
                    cred = self
                        .broker
                        .credential_after_401(&c.account_id, &c.id, &cred)
                        .await
                        .map_err(|e| unusable(provider, &e))?;
                }
                http::Outcome::Unauthorized => {
                    return Err(format!("{provider} refused this connection's credential (HTTP 401): reconnect it"));
                }
                http::Outcome::Failed(why) => return Err(self.redact_text(why)),
            }
        }
        Err(format!("{provider} refused this connection's credential (HTTP 401): reconnect it"))
    }
}

/// Everything a server offers: its tools, and its prompts, resources and resource templates where
/// it declared those capabilities (a failure there leaves them out; the tools still count).
async fn snapshot(peer: &Peer<RoleClient>) -> Result<Snapshot, ServiceError> {
    let tools = peer.list_all_tools().await?;
    let caps = peer.peer_info().map(|i| i.capabilities.clone());
    let mut snap = Snapshot {
        tools: tools.into_iter().filter_map(|t| serde_json::to_value(t).ok()).collect(),
        ..Snapshot::default()
    };
    let values = |v: Vec<Value>| v;
    if caps.as_ref().is_some_and(|c| c.prompts.is_some()) {
        match peer.list_all_prompts().await {
            Ok(p) => snap.prompts = values(p.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect()),
            Err(e) => tracing::info!(error = %e, "an upstream server's prompts could not be listed"),
        }
    }
    if caps.as_ref().is_some_and(|c| c.resources.is_some()) {
        match peer.list_all_resources().await {
            Ok(r) => snap.resources = r.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect(),
            Err(e) => tracing::info!(error = %e, "an upstream server's resources could not be listed"),
        }
        match peer.list_all_resource_templates().await {
            Ok(t) => snap.templates = t.into_iter().filter_map(|x| serde_json::to_value(x).ok()).collect(),
            Err(e) => tracing::info!(error = %e, "an upstream server's resource templates could not be listed"),
        }
    }
    Ok(snap)
}

/// Whether `uri` is one of the URIs of an RFC 6570 template (expressions match one or more
/// characters; the literal parts must appear in order, the first at the start, the last at the end).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return false,
        }
    }
    literals.push(rest);
    if literals.len() == 1 {
        return template == uri;
    }
    let (first, last) = (literals[0], literals[literals.len() - 1]);
    let Some(mut tail) = uri.strip_prefix(first) else { return false };
    for lit in &literals[1..literals.len() - 1] {
        // At least one character for the expression before it.
        let Some(pos) = tail.get(1..).and_then(|t| t.find(lit)) else { return false };
        tail = &tail[1 + pos + lit.len()..];
    }
    tail.len() > last.len() && tail.ends_with(last)
}

/// How a declared HTTP tool is listed (as an MCP `Tool`).
fn http_listed(t: &HttpTool) -> Value {
    let mut v = json!({
        "name": t.name,
        "description": t.description,
        "inputSchema": t.input_schema,
    });
    if let Some(title) = &t.title {
        v["title"] = json!(title);
    }
    v
}

/// Why a connection's credential cannot be used, in words for the caller.
fn unusable(provider: &str, e: &BrokerError) -> String {
    match e {
        BrokerError::NotUsable { reason, .. } => format!("the {provider} connection cannot be used: {reason}"),
        BrokerError::RetryLater { retry_after, .. } => {
            format!(
                "the {provider} connection is being refreshed and the provider is failing; retry in {retry_after} s"
            )
        }
        BrokerError::Missing => format!("the {provider} connection no longer exists"),
        other => format!("the {provider} connection cannot be used now: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn answers_are_bounded_text_binary_and_structured() {
        let mut v = serde_json::json!({
            "content": [
                {"type": "text", "text": "a".repeat(30)},
                {"type": "resource", "resource": {"uri": "x://1", "text": "b".repeat(30)}},
                {"type": "image", "mimeType": "image/png", "data": "c".repeat(super::MAX_BINARY_BYTES + 1)},
                {"type": "image", "mimeType": "image/png", "data": "small"},
                {"type": "resource", "resource": {"uri": "x://2", "blob": "e".repeat(super::MAX_BINARY_BYTES + 1)}},
            ],
            "structuredContent": {"big": "d".repeat(super::MAX_STRUCTURED_BYTES + 1)},
        });
        super::cap_answer(&mut v, "content", 40);
        let c = v["content"].as_array().unwrap();
        assert_eq!(c[0]["text"].as_str().unwrap().len(), 30);
        assert_eq!(c[1]["resource"]["text"].as_str().unwrap().len(), 10, "embedded text counts toward the cap");
        assert!(c[2]["text"].as_str().unwrap().contains("left out a image/png block"));
        assert_eq!(c[3]["data"], "small");
        assert_eq!(c[4]["type"], "text", "an oversized embedded resource goes whole: {}", c[4]);
        assert!(v.get("structuredContent").is_none());
        let notes: Vec<&str> = c[5..].iter().map(|n| n["text"].as_str().unwrap()).collect();
        assert!(
            notes.iter().any(|n| n.contains("structured content")) && notes.iter().any(|n| n.contains("cut 1 KB")),
            "{notes:?}"
        );
    }

    #[test]
    fn uris_match_their_templates() {
        let t = "demo://resource/dynamic/text/{resourceId}";
        assert!(template_matches(t, "demo://resource/dynamic/text/7"));
        assert!(!template_matches(t, "demo://resource/dynamic/text/"));
        assert!(!template_matches(t, "demo://resource/dynamic/blob/7"));
        assert!(template_matches("notion://{space}/page/{id}.md", "notion://eng/page/42.md"));
        assert!(!template_matches("notion://{space}/page/{id}.md", "notion://eng/page/42.txt"));
        assert!(!template_matches("notion://{space}/page/{id}.md", "notion:///page/42.md"));
        assert!(template_matches("fixed://a", "fixed://a") && !template_matches("fixed://a", "fixed://b"));
        assert!(!template_matches("broken://{x", "broken://x"));
    }
}
