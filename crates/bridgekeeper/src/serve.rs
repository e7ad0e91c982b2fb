//! `bridgekeeper serve`: wiring and the HTTP server lifecycle.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use bk_access::Verifier;
use bk_domain::access::Clock;
use bk_domain::ports::Store;
use bk_oauth::{AuthServer, Lifetimes, SystemClock};
use bk_store::SqlStore;
use tokio::net::TcpListener;

use crate::config::Config;

/// OAuth and page bodies are small; `/mcp` may carry larger tool arguments.
const BODY_LIMIT: usize = 64 * 1024;
const MCP_BODY_LIMIT: usize = 1024 * 1024;

/// Opens the configured database and applies migrations.
pub async fn open_store(config: &Config) -> anyhow::Result<(SqlStore, bool)> {
    let url = config.database_url();
    let embedded = url.starts_with("sqlite:");
    if embedded {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create the data directory {}", config.data_dir.display()))?;
    }
    let settings = bk_store::PoolSettings {
        max_connections: match config.database.max_connections {
            0 if embedded => 8,
            0 => 16,
            n => n,
        },
        statement_timeout_ms: config.database.statement_timeout_ms,
        acquire_timeout_secs: 30,
        sqlite_wal_limit_bytes: config.database.sqlite_wal_limit_mb.max(1) * 1024 * 1024,
    };
    // An unreachable database (a PostgreSQL restarting, a network blip) is waited for, with backoff;
    // the instance is not ready — not listening — until it connects.
    let started = std::time::Instant::now();
    let mut delay = std::time::Duration::from_millis(250);
    let store = loop {
        // The embedded database is a local file: opening it is never given up on, since SQLite may
        // first have to recover a large write-ahead log (it logs that, and how long it took).
        let connect = SqlStore::connect_with(&url, &settings);
        let attempt = match if embedded {
            Ok(connect.await)
        } else {
            tokio::time::timeout(std::time::Duration::from_secs(3), connect).await
        } {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(bk_domain::ports::StoreError::UnsupportedUrl)) => {
                anyhow::bail!("database.url must start with sqlite:// or postgres://")
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no connection within 3 s".to_owned()),
        };
        match attempt {
            Ok(s) => break s,
            Err(e) => {
                let limit = config.database.connect_retry_secs;
                if embedded || (limit > 0 && started.elapsed().as_secs() >= limit) {
                    anyhow::bail!("cannot open the database {}: {e}", crate::cli::redact_url(&url));
                }
                tracing::error!(error = %e, database = %crate::cli::redact_url(&url), retry_in_ms = delay.as_millis() as u64,
                    "the database is unreachable; not ready, retrying");
                eprintln!("bridgekeeper: the database is unreachable ({e}); retrying in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(10));
            }
        }
    };
    store.migrate().await.context("database migration failed")?;
    Ok((store, embedded))
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    let telemetry = crate::logging::init(&config.log, &config.telemetry)?;
    // Before anything registers a metric (caches keep their counters from construction on).
    let metrics_handle = crate::metrics::install()?;
    let observe = Arc::new(crate::observe::Observe::new(crate::observe::parse_trusted(&config.trusted_proxies)?));
    if !config.trusted_proxies.is_empty() {
        tracing::info!(trusted_proxies = ?config.trusted_proxies, "X-Forwarded-For is believed from these proxies");
    }
    // A catalog that does not hold together stops the start, naming file, provider and field.
    let catalog = Arc::new(config.catalog()?);
    for p in catalog.iter() {
        if let Some(setting) = p.missing_setting() {
            tracing::info!(provider = %p.id, missing = %setting, "provider not yet connectable");
        }
    }
    // Listen first: while the database opens (recovering a large write-ahead log can take a while)
    // `/health` answers and `/ready` says 503, so an orchestrator waits instead of restarting us.
    let listener =
        TcpListener::bind(&config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let issuer = config.issuer_for(addr);
    let app_slot: Arc<OnceLock<Router>> = Arc::default();
    let streams: Arc<OnceLock<Arc<bk_audit::AuditLog>>> = Arc::default();
    let listens: Arc<OnceLock<Arc<bk_gateway::Gateway>>> = Arc::default();
    let server = tokio::spawn({
        let (front, streams, listens) = (front_door(app_slot.clone()), streams.clone(), listens.clone());
        async move {
            axum::serve(listener, front.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async move {
                    shutdown_signal().await;
                    // Live audit and listen streams never end by themselves: end them so the shutdown can finish.
                    if let Some(audit) = streams.get() {
                        audit.close_streams();
                    }
                    if let Some(gateway) = listens.get() {
                        gateway.close_streams();
                    }
                })
                .await
        }
    });
    tracing::info!(%addr, "accepting connections; not ready until the database is open");
    let (store, embedded) = open_store(&config).await?;
    if embedded {
        tracing::info!(data_dir = %config.data_dir.display(), database = %config.database_url(), "embedded mode: SQLite database");
    }
    let free_space = embedded.then(|| crate::disk::watch(config.data_dir.clone()));
    let master = Arc::new(crate::keys::master_key(&config, embedded)?);
    let request_state_key = Arc::new(bk_crypto::mac::MacKey::derive(master.raw(), "mcp-request-state"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sql = Arc::new(store);
    let store: Arc<dyn Store> = sql.clone();
    let keys =
        Arc::new(bk_crypto::keyring::KeySet::new(crate::keys::keyring(store.as_ref(), &master, clock.now()).await?));
    let key_source: Arc<dyn bk_oauth::KeySource> =
        Arc::new(crate::keys::StoreKeys { store: store.clone(), master: master.clone(), clock: clock.clone() });
    // A rotation (`keys rotate`, on any instance) reaches this one within ten seconds: the ring is
    // read again, and replaced when its keys changed (a new active key, a retired one gone).
    tokio::spawn(reload_signing_keys(keys.clone(), key_source.clone()));

    let (limiter, shared_limiter): (Arc<dyn bk_limits::Limiter>, Option<Arc<dyn bk_limits::Limiter>>) =
        match &config.redis.url {
            Some(url) => {
                let mode = if config.redis.failure_mode == "open" {
                    bk_limits::FailureMode::Open
                } else {
                    bk_limits::FailureMode::Closed
                };
                let l: Arc<dyn bk_limits::Limiter> = Arc::new(
                    bk_limits::RedisLimiter::new(url, mode, &config.redis.key_prefix).map_err(anyhow::Error::msg)?,
                );
                tracing::info!(failure_mode = %config.redis.failure_mode, "rate limits shared through Redis");
                (l.clone(), Some(l))
            }
            None => (Arc::new(bk_limits::LocalLimiter::default()), None),
        };
    // Every refusal is counted for `/metrics`.
    let limiter: Arc<dyn bk_limits::Limiter> = Arc::new(bk_limits::Counted(limiter));
    let shared_limiter = shared_limiter.map(|l| -> Arc<dyn bk_limits::Limiter> { Arc::new(bk_limits::Counted(l)) });
    // Several instances share Redis: what reaches one for a call another runs is passed on.
    let bus: Option<Arc<dyn bk_limits::bus::Bus>> = match &config.redis.url {
        Some(url) => Some(bk_limits::bus::RedisBus::start(url, &config.redis.key_prefix).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let audit_config = config.audit.to_config();
    let audit = bk_audit::AuditLog::start(store.clone(), &audit_config)?;
    // DPoP proof ids are remembered in Redis when instances share it (a proof replayed at another
    // instance is caught); server nonces, when required, are MACs every instance can check.
    let dpop_nonces = config
        .dpop
        .require_nonce
        .then(|| bk_access::dpop::Nonces::new(bk_crypto::mac::MacKey::derive(master.raw(), "dpop-nonce")));
    let verifier = Arc::new(
        Verifier::new(keys.clone(), Some(key_source), store.clone(), store.clone(), clock.clone(), issuer.clone())
            .with_dpop(bk_access::dpop::Guard::new(shared_limiter.clone(), dpop_nonces))
            .with_clients(store.clone()),
    );
    let mut auth = AuthServer::new(
        sql.clone(),
        keys,
        clock.clone(),
        issuer.clone(),
        Lifetimes {
            access_token: config.tokens.access_token_ttl_secs,
            refresh_token: config.tokens.refresh_token_ttl_secs,
            code: config.tokens.code_ttl_secs,
            refresh_reuse_grace: config.tokens.refresh_reuse_grace_secs,
        },
        bk_oauth::RegistrationPolicy {
            per_minute: config.limits.registrations_per_minute,
            attempts_per_minute: config
                .limits
                .registration_attempts_per_minute
                .max(config.limits.registrations_per_minute),
            reuse_window_secs: config.registration.reuse_window_secs,
            unused_ttl_secs: config.registration.unused_ttl_secs,
        },
        verifier.clone(),
        master.clone(),
        audit.clone(),
        limiter.clone(),
    )
    .with_key_fetcher(client_key_fetcher(&config.client_metadata_documents)?);
    auth.documents = client_documents(&config.client_metadata_documents, sql.clone())?;
    let bridge = sign_in_bridge(&config.connections, &catalog, sql.clone(), &master, clock.clone())?;
    auth.bridge = bridge.clone().map(|b| -> Arc<dyn bk_domain::bridge::SignInBridge> { b });
    let auth = Arc::new(auth);
    let browser_sessions = Arc::new(bk_access::browser::BrowserSessions::new(store.clone()));
    let vault = bk_connections::Vault::new(master.clone());
    let (upstream, upstream_policy) = upstream(&config.connections)?;
    let upstream = Arc::new(upstream);
    let broker = bk_connections::Broker::new(
        sql.clone(),
        vault.clone(),
        upstream.clone(),
        catalog.clone(),
        clock.clone(),
        bk_connections::BrokerSettings {
            refresh_skew_secs: config.connections.refresh_skew_secs,
            // Longer than a call to a provider may take, so a live holder never loses it.
            lease: std::time::Duration::from_millis(config.connections.timeout_ms) + std::time::Duration::from_secs(5),
        },
        audit.clone(),
    );
    let redactor = audit.clone();
    let upstream_tools = upstream_tools(
        &upstream_policy,
        sql.clone(),
        catalog.clone(),
        broker.clone(),
        Arc::new(move |v: &mut serde_json::Value| redactor.redact_strings(v)),
        bk_upstream::UpstreamSettings {
            connect_url: format!("{issuer}/connections"),
            list_timeout: std::time::Duration::from_millis(config.connections.mcp_list_timeout_ms.clamp(100, 120_000)),
            call_timeout: std::time::Duration::from_millis(
                config.connections.mcp_call_timeout_ms.clamp(100, 3_600_000),
            ),
            breaker: bk_upstream::BreakerSettings {
                failures: config.connections.breaker_failures,
                cooldown: std::time::Duration::from_millis(
                    config.connections.breaker_cooldown_ms.clamp(100, 3_600_000),
                ),
            },
            ..bk_upstream::UpstreamSettings::default()
        },
    )?
    .with_bridge(bridge);
    let upstream_counters = upstream_tools.counters();
    let llm = Arc::new(
        bk_llm::Llm::from_config(&config.llm, &config.credits, sql.clone(), clock.clone())?
            .with_sealed_keys(sql.clone(), master.clone()),
    );
    tracing::info!(models = llm.models().count(), "LLM access");
    // Agents talk to the LLM service; with no model configured, `use-agent` and agent chat say so.
    let agent_model: Option<Arc<dyn bk_agents::AgentModel>> = config.llm.models.first().map(|first| {
        Arc::new(bk_agents::LlmModel::new(llm.clone(), Some(first.id.clone()))) as Arc<dyn bk_agents::AgentModel>
    });
    let agents = Arc::new(bk_agents::Agents::new(
        sql.clone(),
        agent_model,
        config.agents.limits(),
        audit.clone(),
        clock.clone(),
        Arc::new(bk_audit::redact::Redactor::new(&config.audit.redact)?),
    ));
    let knowledge = config.knowledge.build(sql.clone(), clock.clone(), limiter.clone())?;
    let api = Arc::new(bk_api::Api {
        store: sql.clone(),
        verifier: verifier.clone(),
        clock: clock.clone(),
        issuer: issuer.clone(),
        cookie_keys: bk_access::browser::CookieKeys::derive(master.raw(), issuer.starts_with("https://")),
        browser_sessions: browser_sessions.clone(),
        master,
        audit: audit.clone(),
        client_changed: Arc::new(ForgetClient(auth.clone())),
        limits: bk_api::ApiLimits {
            pat_default_ttl_secs: config.tokens.pat_default_ttl_days * 24 * 3600,
            max_pats_per_account: config.limits.max_pats_per_account,
            max_clients_per_account: config.limits.max_clients_per_account,
            max_connections_per_account: config.limits.max_connections_per_account,
            connects_per_account_per_minute: config.limits.connects_per_minute,
            connect_callbacks_per_source_per_minute: config.limits.connect_callbacks_per_source_per_minute,
        },
        catalog,
        vault,
        upstream,
        client_auth: Arc::new(ClientSecrets(auth.clone())),
        limiter: limiter.clone(),
        broker,
        connect_client: connect_client(&config.connections, &issuer)?,
        llm: llm.clone(),
        identity_providers: config.idp.providers.keys().cloned().collect(),
        agents: agents.clone(),
        knowledge: knowledge.clone(),
    });
    let outbox = config.email.outbox_dir.clone().unwrap_or_else(|| config.data_dir.join("outbox"));
    let mail = bk_mail::Mailer::new(config.email.smtp_url.as_deref(), &config.email.from, &outbox)?;
    if mail.is_outbox() {
        tracing::warn!("{}", mail.describe());
    } else {
        tracing::info!("{}", mail.describe());
    }
    let web = Arc::new(
        bk_web::WebState::new(
            auth.clone(),
            browser_sessions,
            bk_web::SignInLimits {
                per_account_and_source: config.limits.login_failures_per_minute,
                per_source: config.limits.login_failures_per_source_per_minute,
                per_account: config.limits.login_failures_per_account_per_minute,
            },
            Arc::new(mail),
            sql.clone(),
            sql.clone(),
            sql.clone(),
        )
        .requiring_second_factor(config.accounts.require_second_factor)
        .with_siwe(sql.clone(), config.siwe.settings())
        .with_upstream_idps(bk_web::upstream_oidc::UpstreamIdps::new(
            config.idp.settings()?,
            bk_outbound::SafeFetcher::new(config.idp.fetch_policy()?).map_err(anyhow::Error::msg)?,
            sql.clone(),
        )),
    );
    let gateway = Arc::new(bk_gateway::Gateway::new(
        verifier,
        sql.clone(),
        clock.clone(),
        &issuer,
        &bk_gateway::GatewayConfig {
            allowed_hosts: config.mcp.allowed_hosts.clone(),
            allowed_origins: config.mcp.allowed_origins.clone(),
            rate_limit_per_minute: config.mcp.rate_limit_per_minute,
            session_ttl_secs: config.mcp.session_ttl_secs,
            shared_limiter,
            request_state_key,
            tool_limits: config.tool_limit_rules().map_err(anyhow::Error::msg)?,
            bus,
        },
        audit.clone(),
        vec![
            Box::new(bk_agents::UseAgent::new(agents.clone())),
            Box::new(bk_knowledge::KnowledgeTools::new(knowledge, audit.clone(), clock.clone())),
            Box::new(upstream_tools),
        ],
    ));
    agents.attach(&gateway);

    tokio::spawn(purge_periodically(store.clone(), clock.clone(), audit_config));
    tokio::spawn(crate::keys::rotate_periodically(
        crate::keys::SigningKeySchedule::of(&config),
        sql.clone(),
        api.master.clone(),
        clock.clone(),
        audit.clone(),
    ));
    tokio::spawn(purge_unused_registrations(
        store.clone(),
        clock.clone(),
        config.registration.unused_ttl_secs,
        auth.registration_counters.clone(),
    ));
    let ready_store = store.clone();
    let (metrics_routes, metrics_server) = crate::metrics::start(
        &config.metrics,
        crate::metrics::Sources {
            handle: metrics_handle,
            store: sql.clone(),
            audit: audit.clone(),
            free_space,
            registrations: auth.registration_counters.clone(),
            upstream: upstream_counters,
        },
        sql.clone(),
    )
    .await?;

    let app = Router::new()
        .merge(bk_oauth::router(auth))
        .merge(bk_api::router_documenting(api.clone(), bk_web::openapi()))
        .merge(bk_web::dashboard_router(web.clone(), api.clone()))
        .merge(bk_web::connections_router(web.clone(), api))
        .merge(bk_web::router(web))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .merge(bk_gateway::router(gateway.clone()).layer(DefaultBodyLimit::max(MCP_BODY_LIMIT)))
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/ready", get(move || ready(ready_store.clone(), limiter.clone())))
        .merge(metrics_routes)
        // An unknown route, or a known one asked with another method, says so in problem JSON.
        .fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            bk_api::Problem::new(
                axum::http::StatusCode::NOT_FOUND,
                "Not found",
                format!("there is no route {method} {}", uri.path()),
            )
        })
        .method_not_allowed_fallback(|method: axum::http::Method, uri: axum::http::Uri| async move {
            bk_api::Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                format!("{} does not answer {method}", uri.path()),
            )
        })
        .layer(axum::middleware::from_fn_with_state(observe, crate::observe::layer))
        .layer(crate::headers::nosniff());

    let _ = streams.set(audit.clone());
    let _ = listens.set(gateway.clone());
    let _ = app_slot.set(app);
    tracing::info!(%addr, %issuer, "listening");
    tracing::info!(
        "next: open {issuer}/signup to create an account (or `bridgekeeper admin account create`), then point an MCP \
         client at {issuer}/mcp"
    );
    server.await.context("the HTTP server task failed")??;
    if let Some(m) = metrics_server {
        m.abort();
    }
    // Every event recorded by the requests that just finished is written before we exit.
    audit.flush().await;
    sql.close().await;
    tracing::info!(audit_events_written = audit.written(), audit_events_dropped = audit.dropped(), "stopped");
    // Sends the spans still buffered (a blocking call: the exporter runs on its own thread).
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    Ok(())
}

/// What answers before the application is ready: `/health` (alive), `/ready` 503, everything else
/// 503 with `Retry-After`. Once the application is built it answers everything.
fn front_door(app: Arc<OnceLock<Router>>) -> Router {
    use axum::http::{StatusCode, header};
    let starting = Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route(
            "/ready",
            get(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    axum::Json(serde_json::json!({"status": "starting", "database": "opening"})),
                )
            }),
        )
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                axum::Json(
                    serde_json::json!({"error": "starting", "error_description": "the server is starting; retry"}),
                ),
            )
        });
    let starting = starting.layer(crate::headers::nosniff());
    Router::new().fallback_service(tower::service_fn(move |req: axum::extract::Request| {
        use tower::ServiceExt;
        let router = app.get().cloned().unwrap_or_else(|| starting.clone());
        router.oneshot(req)
    }))
}

/// Ready when the database answers.
async fn ready(store: Arc<dyn Store>, limiter: Arc<dyn bk_limits::Limiter>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if !limiter.healthy().await {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not ready", "redis": "unreachable"})),
        )
            .into_response();
    }
    match store.ping().await {
        Ok(()) => axum::Json(serde_json::json!({"status": "ready", "database": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({"status": "not ready", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

/// Reads the signing keys every ten seconds and swaps the ring in when they changed.
async fn reload_signing_keys(keys: Arc<bk_crypto::keyring::KeySet>, source: Arc<dyn bk_oauth::KeySource>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    tick.tick().await;
    loop {
        tick.tick().await;
        match source.load().await {
            Ok(ring) if ring.kids() != keys.current().kids() => {
                tracing::info!(active = %ring.kids()[0], keys = ring.kids().len(), "signing keys changed: ring reloaded");
                keys.replace(ring);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "reloading the signing keys failed"),
        }
    }
}

/// Removes expired codes and refresh tokens, and applies audit retention, at start and hourly.
async fn purge_periodically(store: Arc<dyn Store>, clock: Arc<dyn Clock>, audit: bk_audit::AuditConfig) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match bk_audit::enforce_retention(store.as_ref(), &audit, clock.now_ms()).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "audit retention: pruned rows"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "audit retention failed"),
        }
        match store.purge_expired(clock.now()).await {
            Ok(n) if n > 0 => tracing::info!(rows = n, "purged expired codes and refresh tokens"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purging expired rows failed"),
        }
    }
}

/// The fetcher of client metadata documents, as configured (none when they are not accepted).
/// The outbound client for providers' token and user-info endpoints.
fn upstream(
    config: &crate::config::ConnectionsConfig,
) -> anyhow::Result<(bk_connections::Upstream, bk_outbound::FetchPolicy)> {
    let extra_roots_pem = match &config.extra_ca_file {
        Some(path) => Some(
            std::fs::read(path).with_context(|| format!("cannot read connections.extra_ca_file {}", path.display()))?,
        ),
        None => None,
    };
    if config.allow_private_addresses {
        tracing::warn!(
            "connections.allow_private_addresses is on: providers are reached on loopback and private addresses too \
             (development only)"
        );
    }
    if config.allow_http_loopback {
        if !config.allow_private_addresses {
            anyhow::bail!(
                "connections.allow_http_loopback needs connections.allow_private_addresses (both are for development only)"
            );
        }
        tracing::warn!(
            "connections.allow_http_loopback is on: providers on this machine are reached over plain http (development only)"
        );
    }
    let policy = bk_outbound::FetchPolicy {
        allow_private_addresses: config.allow_private_addresses,
        allow_http_loopback: config.allow_http_loopback,
        extra_roots_pem,
        timeout: std::time::Duration::from_millis(config.timeout_ms),
        // Token and user-info answers are small; a provider sending more is not one.
        max_body_bytes: 1 << 20,
    };
    let upstream = bk_connections::Upstream::new(policy.clone()).map_err(|e| anyhow::anyhow!("connections: {e}"))?;
    Ok((upstream, policy))
}

/// The tool source of tenants' upstream MCP servers, with an outbound client under the
/// connections' rules (no limit on a whole exchange: each request is bounded by the source).
fn upstream_tools(
    policy: &bk_outbound::FetchPolicy,
    store: Arc<dyn bk_domain::ports::ConnectionStore>,
    catalog: Arc<bk_connections::Catalog>,
    broker: bk_connections::Broker,
    redact: bk_upstream::Redact,
    settings: bk_upstream::UpstreamSettings,
) -> anyhow::Result<bk_upstream::UpstreamTools> {
    let http = bk_outbound::client_builder(policy)
        .map_err(|e| anyhow::anyhow!("connections: {e}"))?
        .build()
        .map_err(|e| anyhow::anyhow!("connections: cannot build the MCP client: {e}"))?;
    // Declared HTTP tools' calls: the connections' rules, a longer time limit (an API call, not a
    // token exchange) and 1 MB answers.
    let api = bk_outbound::SafeFetcher::new(bk_outbound::FetchPolicy {
        timeout: policy.timeout.max(std::time::Duration::from_secs(30)),
        ..policy.clone()
    })
    .map_err(|e| anyhow::anyhow!("connections: {e}"))?;
    Ok(bk_upstream::UpstreamTools::new(
        bk_upstream::UpstreamDeps { store, catalog, broker, http, api, redact },
        settings,
        bk_gateway::tools::BUILTIN_NAMES
            .iter()
            .chain(bk_knowledge::tools::TOOL_NAMES)
            .map(|s| (*s).to_owned())
            .collect(),
    ))
}

/// How Bridgekeeper introduces itself to upstream MCP servers' authorization servers.
fn connect_client(config: &crate::config::ConnectionsConfig, issuer: &str) -> anyhow::Result<bk_api::ConnectClient> {
    let name = config.client_name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        anyhow::bail!("connections.client_name must be 1 to 100 printable characters");
    }
    let document_url = match &config.client_metadata_url {
        Some(u) => {
            let parsed = url::Url::parse(u)
                .map_err(|e| anyhow::anyhow!("connections.client_metadata_url {u:?} is not a URL: {e}"))?;
            if parsed.scheme() != "https" || parsed.path() == "/" || parsed.fragment().is_some() {
                anyhow::bail!(
                    "connections.client_metadata_url must be an https URL with a path and no fragment (a client id \
                     metadata document URL)"
                );
            }
            Some(u.clone())
        }
        None if issuer.starts_with("https://") => Some(format!("{issuer}/.well-known/oauth-client")),
        None => None,
    };
    Ok(bk_api::ConnectClient { document_url, name: name.to_owned() })
}

fn client_documents(
    config: &crate::config::ClientDocumentsConfig,
    store: Arc<dyn bk_oauth::AuthStore>,
) -> anyhow::Result<Option<Arc<bk_oauth::documents::ClientDocuments>>> {
    if !config.enabled {
        return Ok(None);
    }
    let extra_roots_pem = match &config.extra_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read client_metadata_documents.extra_ca_file {}", path.display()))?,
        ),
        None => None,
    };
    if config.allow_private_addresses {
        tracing::warn!(
            "client_metadata_documents.allow_private_addresses is on: documents are fetched from loopback and private \
             addresses too (development only)"
        );
    }
    let fetcher = bk_outbound::SafeFetcher::new(bk_outbound::FetchPolicy {
        allow_private_addresses: config.allow_private_addresses,
        allow_http_loopback: false,
        extra_roots_pem,
        timeout: std::time::Duration::from_millis(config.timeout_ms),
        max_body_bytes: config.max_bytes,
    })
    .map_err(|e| anyhow::anyhow!("client_metadata_documents: {e}"))?;
    Ok(Some(Arc::new(bk_oauth::documents::ClientDocuments::new(fetcher, store))))
}

/// The fetcher of `private_key_jwt` clients' `jwks_uri`s: what a client names is fetched like a
/// client metadata document (same addresses, CA and time limit), up to a larger key set.
fn client_key_fetcher(config: &crate::config::ClientDocumentsConfig) -> anyhow::Result<bk_outbound::SafeFetcher> {
    let extra_roots_pem = match &config.extra_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("cannot read client_metadata_documents.extra_ca_file {}", path.display()))?,
        ),
        None => None,
    };
    bk_outbound::SafeFetcher::new(bk_outbound::FetchPolicy {
        allow_private_addresses: config.allow_private_addresses,
        allow_http_loopback: false,
        extra_roots_pem,
        timeout: std::time::Duration::from_millis(config.timeout_ms),
        max_body_bytes: bk_oauth::client_keys::FETCH_LIMIT_BYTES,
    })
    .map_err(|e| anyhow::anyhow!("client jwks_uri fetcher: {e}"))
}

/// Deletes dynamically registered clients that never completed an authorization within `ttl_secs`
/// of registering: at start, then every quarter of that time (at least every second, at most hourly).
async fn purge_unused_registrations(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ttl_secs: i64,
    counters: Arc<bk_oauth::RegistrationCounters>,
) {
    let period = u64::try_from(ttl_secs / 4).unwrap_or(0).clamp(1, 3600);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(period));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.purge_unused_registrations(clock.now() - ttl_secs).await {
            Ok(0) => {}
            Ok(n) => {
                counters.purged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(clients = n, ttl_secs, "purged dynamically registered clients never used");
            }
            Err(e) => tracing::warn!(error = %e, "purging unused dynamic registrations failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// A client changed through the management API: the authorization server on this instance drops
/// its cached copy and secret fast path at once (other instances within their one-second cache).
struct ForgetClient(Arc<AuthServer>);

impl bk_api::ClientChanged for ForgetClient {
    fn client_changed(&self, id: &bk_domain::ids::ClientId) {
        self.0.forget_client(id);
    }
}

/// Client authentication for the white-label handoff: the token endpoint's secret check.
struct ClientSecrets(Arc<AuthServer>);

impl bk_api::ClientAuthenticator for ClientSecrets {
    fn authenticate<'a>(
        &'a self,
        client_id: &'a str,
        secret: &'a str,
        source: std::net::IpAddr,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<bk_domain::client::Client, bk_api::Problem>> + Send + 'a>,
    > {
        Box::pin(async move {
            self.0.authenticate_client_secret(client_id, secret, source).await.map_err(|e| {
                let status = e.status;
                let mut p = if status == axum::http::StatusCode::UNAUTHORIZED {
                    bk_api::Problem::unauthorized(e.description.clone())
                } else if status.is_server_error() {
                    bk_api::Problem::server_error()
                } else {
                    bk_api::Problem::new(status, "Client authentication refused", e.description.clone())
                };
                if let Some(wait) = e.retry_after
                    && let Ok(v) = axum::http::HeaderValue::from_str(&wait.to_string())
                {
                    p.headers.push((axum::http::header::RETRY_AFTER, v));
                }
                p
            })
        })
    }
}

/// Bridge mode (reference 002), when the catalog bridges a provider: its own outbound client under
/// the connections' rules (the verify endpoint is the operator's, like a token endpoint).
fn sign_in_bridge(
    config: &crate::config::ConnectionsConfig,
    catalog: &Arc<bk_connections::Catalog>,
    store: Arc<bk_store::SqlStore>,
    master: &Arc<bk_crypto::envelope::MasterKey>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Option<Arc<bk_connections::bridge::Bridge>>> {
    let bridged: Vec<&str> = catalog.iter().filter(|p| p.bridged().is_some()).map(|p| p.id.as_str()).collect();
    if bridged.is_empty() {
        return Ok(None);
    }
    let (upstream, _) = upstream(config)?;
    tracing::info!(providers = ?bridged, "bridge mode: sign-ins reaching these providers are verified by their backend");
    Ok(bk_connections::bridge::Bridge::new(
        store.clone(),
        store,
        bk_connections::Vault::new(master.clone()),
        Arc::new(upstream),
        catalog.clone(),
        clock,
    )
    .map(Arc::new))
}
