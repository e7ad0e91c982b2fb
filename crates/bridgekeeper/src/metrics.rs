//! `/metrics` (Prometheus text) is for operators: on the main address it needs an operator token
//! (`Authorization: Bearer bko_…`) unless `metrics.public` opens it; with `metrics.listen` it is
//! served only on that separate address, where reaching the address is the permission.
//!
//! Everything goes through the `metrics` facade: the code counts where things happen (requests by
//! route and status, token grants, MCP methods, upstream calls by provider, caches, rate-limit
//! refusals), and a scrape adds the gauges read at that moment (database pool, audit queue, disk)
//! before the Prometheus exporter renders the lot.

use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bk_access::operator::{is_operator_token, verify_operator_token};
use bk_api::Problem;
use bk_domain::ports::OperatorTokenStore;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::MetricsConfig;

/// Who may read `/metrics` on a listener.
#[derive(Clone)]
enum MetricsAccess {
    /// Anyone who reaches the listener (`metrics.public`, or the separate `metrics.listen` address).
    Open,
    /// Holders of a live operator token.
    OperatorToken(Arc<dyn OperatorTokenStore>),
}

/// Histogram buckets (seconds) for every latency family.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the process's metrics recorder (before anything registers a metric) and returns the
/// handle `/metrics` renders from. Histograms are drained every few seconds so they stay small.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let recorder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).context("histogram buckets")?.build_recorder();
    let handle = recorder.handle();
    ::metrics::set_global_recorder(recorder).map_err(|_| anyhow::anyhow!("a metrics recorder is already installed"))?;
    describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "bridgekeeper_http_requests_total",
        "HTTP requests answered, by method, route (the matched route template; unmatched for none) and status."
    );
    describe_histogram!(
        "bridgekeeper_http_request_duration_seconds",
        ::metrics::Unit::Seconds,
        "Time to answer an HTTP request (until the response head), by method and route."
    );
    describe_counter!(
        "bridgekeeper_token_grants_total",
        "Token endpoint requests by grant_type and outcome (issued, or the OAuth error code)."
    );
    describe_counter!(
        "bridgekeeper_mcp_requests_total",
        "MCP JSON-RPC messages received on /mcp, by method (notifications and responses included)."
    );
    describe_histogram!(
        "bridgekeeper_mcp_request_duration_seconds",
        ::metrics::Unit::Seconds,
        "Time to answer an MCP request, by method."
    );
    describe_counter!(
        "bridgekeeper_upstream_calls_total",
        "Tool calls sent to connected services (upstream MCP servers and HTTP tools), by provider and outcome."
    );
    describe_histogram!(
        "bridgekeeper_upstream_call_duration_seconds",
        ::metrics::Unit::Seconds,
        "Time a connected service took to answer a tool call, by provider."
    );
    describe_counter!("bridgekeeper_cache_requests_total", "Cache lookups by cache and result (hit or miss).");
    describe_counter!("bridgekeeper_rate_limit_refusals_total", "Requests refused by a rate limit, by bucket.");
    describe_gauge!(
        "bridgekeeper_db_pool_connections",
        "Database connections by pool (read, write) and state (idle, in_use)."
    );
    describe_gauge!("bridgekeeper_db_pool_max_connections", "The most connections each database pool opens.");
    describe_gauge!("bridgekeeper_audit_queue_depth", "Audit events waiting to be written.");
    describe_counter!("bridgekeeper_audit_events_written_total", "Audit events stored.");
    describe_counter!("bridgekeeper_audit_events_dropped_total", "Audit events dropped because the buffer was full.");
    describe_counter!(
        "bridgekeeper_dynamic_registrations_total",
        "Dynamic client registration requests by outcome: created (a new client), reused (an identical earlier registration answered), refused (a limit)."
    );
    describe_counter!(
        "bridgekeeper_dynamic_clients_purged_total",
        "Dynamically registered clients deleted because they never completed an authorization."
    );
    describe_counter!(
        "bridgekeeper_upstream_tool_lists_total",
        "Tool lists asked of tenants' upstream MCP servers, by outcome (failed: the server was unreachable, slow, or refused the connection's credential; its tools were left out)."
    );
    describe_counter!("bridgekeeper_upstream_tool_list_cache_hits_total", "Tool lists answered from the cache.");
    describe_counter!(
        "bridgekeeper_upstream_tool_calls_total",
        "Tool calls forwarded to upstream MCP servers, by outcome."
    );
    describe_counter!(
        "bridgekeeper_upstream_circuit_refusals_total",
        "Upstream requests refused at once because their server's circuit was open."
    );
    describe_counter!(
        "bridgekeeper_upstream_circuits_opened_total",
        "Times an upstream server's circuit opened after consecutive failures."
    );
    describe_gauge!("bridgekeeper_data_dir_free_bytes", "Free space of the file system holding the embedded database.");
    describe_gauge!("bridgekeeper_data_dir_size_bytes", "Size of that file system.");
}

/// What `/metrics` reports on.
#[derive(Clone)]
pub struct Sources {
    pub handle: PrometheusHandle,
    pub store: Arc<bk_store::SqlStore>,
    pub audit: Arc<bk_audit::AuditLog>,
    /// The data directory's file system (embedded database only).
    pub free_space: Option<Arc<crate::disk::FreeSpace>>,
    pub registrations: Arc<bk_oauth::RegistrationCounters>,
    /// Tenants' upstream MCP servers.
    pub upstream: Arc<bk_upstream::UpstreamCounters>,
}

#[derive(Clone)]
struct MetricsState {
    sources: Sources,
    access: MetricsAccess,
}

/// `/metrics` as configured: the routes to merge into the main router and, with `metrics.listen`,
/// the task serving the separate address (bound now, so a bad address fails the start).
pub async fn start(
    config: &MetricsConfig,
    sources: Sources,
    store: Arc<dyn OperatorTokenStore>,
) -> anyhow::Result<(Router, Option<JoinHandle<()>>)> {
    let Some(addr) = &config.listen else {
        let access = if config.public { MetricsAccess::Open } else { MetricsAccess::OperatorToken(store) };
        return Ok((router(MetricsState { sources, access }), None));
    };
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (metrics.listen)"))?;
    let bound = listener.local_addr()?;
    let app = router(MetricsState { sources, access: MetricsAccess::Open }).layer(crate::headers::nosniff());
    tracing::info!(addr = %bound, "metrics listening");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    Ok((Router::new(), Some(task)))
}

/// A router with only `/metrics`, answered under `state.access`.
fn router(state: MetricsState) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(state)
}

async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let MetricsAccess::OperatorToken(store) = &state.access {
        let Some(token) = bk_access::bearer_token(&headers).filter(|t| is_operator_token(t)) else {
            return Problem::unauthorized("/metrics needs an operator token (Authorization: Bearer bko_…)")
                .into_response();
        };
        match verify_operator_token(store.as_ref(), token).await {
            Ok(Some(_)) => {}
            Ok(None) => return Problem::unauthorized("the operator token is unknown or revoked").into_response(),
            Err(e) => return Problem::from(e).into_response(),
        }
    }
    exposition(&state.sources).into_response()
}

/// Prometheus text exposition: the counters kept by the components copied in, the gauges read now,
/// then everything the recorder holds.
fn exposition(sources: &Sources) -> impl IntoResponse {
    use ::metrics::{counter, gauge};
    use std::sync::atomic::Ordering::Relaxed;
    let (audit, reg, up) = (&sources.audit, &sources.registrations, &sources.upstream);
    counter!("bridgekeeper_audit_events_written_total").absolute(audit.written());
    counter!("bridgekeeper_audit_events_dropped_total").absolute(audit.dropped());
    gauge!("bridgekeeper_audit_queue_depth").set(audit.queue_depth() as f64);
    for (outcome, n) in [("created", &reg.created), ("reused", &reg.reused), ("refused", &reg.refused)] {
        counter!("bridgekeeper_dynamic_registrations_total", "outcome" => outcome).absolute(n.load(Relaxed));
    }
    counter!("bridgekeeper_dynamic_clients_purged_total").absolute(reg.purged.load(Relaxed));
    let (lists, list_failures) = (up.lists.load(Relaxed), up.list_failures.load(Relaxed));
    counter!("bridgekeeper_upstream_tool_lists_total", "outcome" => "ok").absolute(lists.saturating_sub(list_failures));
    counter!("bridgekeeper_upstream_tool_lists_total", "outcome" => "failed").absolute(list_failures);
    counter!("bridgekeeper_upstream_tool_list_cache_hits_total").absolute(up.list_cache_hits.load(Relaxed));
    let (calls, call_failures) = (up.calls.load(Relaxed), up.call_failures.load(Relaxed));
    counter!("bridgekeeper_upstream_tool_calls_total", "outcome" => "ok").absolute(calls.saturating_sub(call_failures));
    counter!("bridgekeeper_upstream_tool_calls_total", "outcome" => "failed").absolute(call_failures);
    counter!("bridgekeeper_upstream_circuit_refusals_total").absolute(up.circuit_refusals.load(Relaxed));
    counter!("bridgekeeper_upstream_circuits_opened_total").absolute(up.circuits_opened.load(Relaxed));
    for pool in sources.store.pool_stats() {
        gauge!("bridgekeeper_db_pool_connections", "pool" => pool.name, "state" => "idle").set(pool.idle as f64);
        gauge!("bridgekeeper_db_pool_connections", "pool" => pool.name, "state" => "in_use")
            .set(pool.size.saturating_sub(pool.idle) as f64);
        gauge!("bridgekeeper_db_pool_max_connections", "pool" => pool.name).set(pool.max as f64);
    }
    if let Some((free, total)) =
        sources.free_space.as_deref().and_then(|s| s.free_bytes().map(|f| (f, s.total_bytes())))
    {
        gauge!("bridgekeeper_data_dir_free_bytes").set(free as f64);
        gauge!("bridgekeeper_data_dir_size_bytes").set(total as f64);
    }
    sources.handle.run_upkeep();
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], sources.handle.render())
}
