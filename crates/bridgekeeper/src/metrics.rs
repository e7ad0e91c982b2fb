//! `/metrics` (Prometheus text) is for operators: on the main address it needs an operator token
//! (`Authorization: Bearer bko_…`) unless `metrics.public` opens it; with `metrics.listen` it is
//! served only on that separate address, where reaching the address is the permission.

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

/// What `/metrics` reports on.
#[derive(Clone)]
pub struct Sources {
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

/// Prometheus text exposition of the counters operators alert on.
fn exposition(sources: &Sources) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let (audit, free_space, reg) = (&sources.audit, sources.free_space.as_deref(), &sources.registrations);
    let mut body = format!(
        "# HELP bridgekeeper_audit_events_written_total Audit events stored.\n\
         # TYPE bridgekeeper_audit_events_written_total counter\n\
         bridgekeeper_audit_events_written_total {}\n\
         # HELP bridgekeeper_audit_events_dropped_total Audit events dropped because the buffer was full.\n\
         # TYPE bridgekeeper_audit_events_dropped_total counter\n\
         bridgekeeper_audit_events_dropped_total {}\n",
        audit.written(),
        audit.dropped()
    );
    body.push_str(&format!(
        "# HELP bridgekeeper_dynamic_registrations_total Dynamic client registration requests by outcome: \
         created (a new client), reused (an identical earlier registration answered), refused (a limit).\n\
         # TYPE bridgekeeper_dynamic_registrations_total counter\n\
         bridgekeeper_dynamic_registrations_total{{outcome=\"created\"}} {}\n\
         bridgekeeper_dynamic_registrations_total{{outcome=\"reused\"}} {}\n\
         bridgekeeper_dynamic_registrations_total{{outcome=\"refused\"}} {}\n\
         # HELP bridgekeeper_dynamic_clients_purged_total Dynamically registered clients deleted because they never completed an authorization.\n\
         # TYPE bridgekeeper_dynamic_clients_purged_total counter\n\
         bridgekeeper_dynamic_clients_purged_total {}\n",
        reg.created.load(Relaxed),
        reg.reused.load(Relaxed),
        reg.refused.load(Relaxed),
        reg.purged.load(Relaxed),
    ));
    let up = &sources.upstream;
    body.push_str(&format!(
        "# HELP bridgekeeper_upstream_tool_lists_total Tool lists asked of tenants' upstream MCP servers, by outcome \
         (failed: the server was unreachable, slow, or refused the connection's credential; its tools were left out).\n\
         # TYPE bridgekeeper_upstream_tool_lists_total counter\n\
         bridgekeeper_upstream_tool_lists_total{{outcome=\"ok\"}} {}\n\
         bridgekeeper_upstream_tool_lists_total{{outcome=\"failed\"}} {}\n\
         # HELP bridgekeeper_upstream_tool_list_cache_hits_total Tool lists answered from the cache.\n\
         # TYPE bridgekeeper_upstream_tool_list_cache_hits_total counter\n\
         bridgekeeper_upstream_tool_list_cache_hits_total {}\n\
         # HELP bridgekeeper_upstream_tool_calls_total Tool calls forwarded to upstream MCP servers, by outcome.\n\
         # TYPE bridgekeeper_upstream_tool_calls_total counter\n\
         bridgekeeper_upstream_tool_calls_total{{outcome=\"ok\"}} {}\n\
         bridgekeeper_upstream_tool_calls_total{{outcome=\"failed\"}} {}\n\
         # HELP bridgekeeper_upstream_circuit_refusals_total Upstream requests refused at once because their server's circuit was open.\n\
         # TYPE bridgekeeper_upstream_circuit_refusals_total counter\n\
         bridgekeeper_upstream_circuit_refusals_total {}\n\
         # HELP bridgekeeper_upstream_circuits_opened_total Times an upstream server's circuit opened after consecutive failures.\n\
         # TYPE bridgekeeper_upstream_circuits_opened_total counter\n\
         bridgekeeper_upstream_circuits_opened_total {}\n",
        up.lists.load(Relaxed).saturating_sub(up.list_failures.load(Relaxed)),
        up.list_failures.load(Relaxed),
        up.list_cache_hits.load(Relaxed),
        up.calls.load(Relaxed).saturating_sub(up.call_failures.load(Relaxed)),
        up.call_failures.load(Relaxed),
        up.circuit_refusals.load(Relaxed),
        up.circuits_opened.load(Relaxed),
    ));
    if let Some((free, total)) = free_space.and_then(|s| s.free_bytes().map(|f| (f, s.total_bytes()))) {
        body.push_str(&format!(
            "# HELP bridgekeeper_data_dir_free_bytes Free space of the file system holding the embedded database.\n\
             # TYPE bridgekeeper_data_dir_free_bytes gauge\n\
             bridgekeeper_data_dir_free_bytes {free}\n\
             # HELP bridgekeeper_data_dir_size_bytes Size of that file system.\n\
             # TYPE bridgekeeper_data_dir_size_bytes gauge\n\
             bridgekeeper_data_dir_size_bytes {total}\n"
        ));
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
