//! The MCP endpoint (`/mcp`, Streamable HTTP): host/origin checks, bearer authentication, the
//! request context, MCP sessions, per-account limits, the transport, JSON-RPC dispatch, the tool
//! registry and its sources. Both protocol eras are served: the legacy session protocol
//! (`initialize`, 2025-11-25 and earlier) and the stateless 2026-07-28 revision (`modern`). One
//! policy (`policy`) decides per tool for both `tools/list` and `tools/call`, in both eras.

#![forbid(unsafe_code)]

pub mod agent_tools;
mod auth;
mod dispatch;
mod jsonrpc;
mod modern;
mod origin;
pub mod policy;
mod rate;
pub mod relay;
mod rest;
mod rounds;
pub mod schema;
mod session;
mod telemetry;
pub mod tool_limits;
pub mod tools;
mod transport;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;
use bk_access::Verifier;
use bk_crypto::mac::MacKey;
use bk_domain::access::Clock;
use bk_domain::audit::{AuditEvent, AuditSink, Outcome};
use bk_domain::ports::{ConnectionStore, McpSessionStore, SessionStore};

pub use bk_access::AccessContext;
pub use tool_limits::ToolLimitRules;

/// What the operator configures for `/mcp`.
#[derive(Clone)]
pub struct GatewayConfig {
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub rate_limit_per_minute: u32,
    pub session_ttl_secs: i64,
    /// Share the per-account limit through this limiter (Redis) instead of counting in memory.
    pub shared_limiter: Option<Arc<dyn bk_limits::Limiter>>,
    /// Seals the `requestState` of multi-round-trip requests (derived from the master key).
    pub request_state_key: Arc<MacKey>,
    /// Limits on tool calls per tool, tenant and client (counted in `shared_limiter` when set).
    pub tool_limits: ToolLimitRules,
    /// Between instances (Redis): a legacy client's answer or cancellation that reaches another
    /// instance than the one running the call is passed on to it.
    pub bus: Option<Arc<dyn bk_limits::bus::Bus>>,
}

/// What `/mcp` keeps and reads: MCP sessions (legacy protocol), the grants its built-in tools
/// change, the connections they list.
pub trait GatewayStore: McpSessionStore + SessionStore + ConnectionStore {}
impl<T: McpSessionStore + SessionStore + ConnectionStore + ?Sized> GatewayStore for T {}

pub struct Gateway {
    pub verifier: Arc<Verifier>,
    /// The resource this endpoint serves (`{issuer}/mcp`): access tokens must carry it as `aud`.
    pub resource: String,
    /// Where the RFC 9728 metadata for this resource lives (named in every 401).
    pub resource_metadata_url: String,
    pub tools: tools::Tools,
    hosts: origin::HostPolicy,
    sessions: session::McpSessions,
    limiter: rate::AccountLimiter,
    tool_limits: tool_limits::ToolLimits,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    states: rounds::RequestStates,
    listeners: modern::Listeners,
    /// Tool calls a legacy session may cancel (`notifications/cancelled`) while they run.
    in_flight: Arc<relay::InFlight>,
    /// Requests to legacy clients (sampling, elicitation) awaiting their answers.
    pending: Arc<relay::Pending>,
    /// 2026-07-28 calls parked for their clients' answers to an input round.
    parked: Arc<relay::Parked>,
    /// The instance bus, and this instance's id on it.
    bus: Option<(Arc<dyn bk_limits::bus::Bus>, String)>,
    /// Set once at shutdown: open `subscriptions/listen` streams end (with their closing result).
    closing: tokio::sync::watch::Sender<bool>,
}

impl Gateway {
    pub fn new(
        verifier: Arc<Verifier>,
        store: Arc<dyn GatewayStore>,
        clock: Arc<dyn Clock>,
        issuer: &str,
        config: &GatewayConfig,
        audit: Arc<dyn AuditSink>,
        upstream: Vec<Box<dyn tools::ToolSource>>,
    ) -> Self {
        let grants = tools::StoredGrants { store: store.clone(), verifier: verifier.clone() };
        let builtins = tools::BuiltinDeps {
            connections: store.clone(),
            grants: Arc::new(grants),
            audit: audit.clone(),
            clock: clock.clone(),
        };
        let pending: Arc<relay::Pending> = Arc::default();
        let in_flight: Arc<relay::InFlight> = Arc::default();
        let bus = config.bus.clone().map(|b| {
            let instance = bk_crypto::secret::b64url(&bk_crypto::secret::random_bytes::<12>());
            relay::apply_from_bus(b.subscribe(), instance.clone(), pending.clone(), in_flight.clone());
            (b, instance)
        });
        Self {
            verifier,
            resource: format!("{issuer}/mcp"),
            resource_metadata_url: format!("{issuer}/.well-known/oauth-protected-resource/mcp"),
            tools: {
                // The gateway's own tools first: their names are never shadowed by an upstream's.
                let mut sources: Vec<Box<dyn tools::ToolSource>> = vec![Box::new(tools::BuiltinTools::new(builtins))];
                sources.extend(upstream);
                tools::Tools::new(sources)
            },
            hosts: origin::HostPolicy::new(issuer, &config.allowed_hosts, &config.allowed_origins),
            sessions: session::McpSessions::new(store, clock.clone(), config.session_ttl_secs),
            limiter: match &config.shared_limiter {
                Some(l) => rate::AccountLimiter::shared(config.rate_limit_per_minute, l.clone()),
                None => rate::AccountLimiter::per_minute(config.rate_limit_per_minute),
            },
            tool_limits: tool_limits::ToolLimits::new(
                config.tool_limits.clone(),
                config
                    .shared_limiter
                    .clone()
                    .unwrap_or_else(|| Arc::new(bk_limits::Counted(Arc::new(bk_limits::LocalLimiter::default())))),
            ),
            audit,
            clock,
            states: rounds::RequestStates::new(config.request_state_key.clone()),
            listeners: modern::Listeners::default(),
            in_flight,
            pending,
            bus,
            parked: Arc::default(),
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Ends every open `subscriptions/listen` stream (at shutdown, so the server can finish).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    pub(crate) fn event(&self, kind: &str, outcome: Outcome, ctx: &AccessContext) -> AuditEvent {
        AuditEvent::new(kind, outcome, self.clock.now_ms())
            .account(&ctx.account_id)
            .client(&ctx.client_id)
            .session(&ctx.session_id)
    }

    /// Passes a message to the other instances (`from`: this instance's id); `false` without a bus.
    pub(crate) fn publish(&self, message: impl FnOnce(String) -> relay::BusMessage) -> bool {
        let Some((bus, instance)) = &self.bus else { return false };
        bus.publish(serde_json::to_string(&message(instance.clone())).unwrap_or_default());
        true
    }

    pub(crate) fn emit(&self, e: AuditEvent) {
        self.audit.record(e);
    }
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/mcp", post(transport::post).get(transport::get).delete(transport::delete))
        .route("/api/v1/providers/{id}/tools", axum::routing::get(rest::list))
        .route("/api/v1/providers/{id}/tools/{tool}", post(rest::call))
        .with_state(gateway)
}
