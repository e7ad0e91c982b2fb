//! Logs on standard output: text for people (colour codes only when standard output is a terminal)
//! by default, or one JSON object a line for machines (`log.format = "json"`). Every line written
//! while a request is served names its `request_id`, method and route (the request's span).
//!
//! With `telemetry.otlp_endpoint`, spans are also exported over OTLP/HTTP, continuing the trace a
//! caller named in a W3C `traceparent` (HTTP header, or an MCP request's `params._meta`).

use anyhow::Context;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, TelemetryConfig};

/// Keeps trace export running; `shutdown` sends what is still buffered.
pub struct Telemetry(Option<SdkTracerProvider>);

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(p) = self.0
            && let Err(e) = p.shutdown()
        {
            tracing::warn!(error = %e, "the last spans could not be exported");
        }
    }
}

pub fn init(cfg: &LogConfig, telemetry: &TelemetryConfig) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let fmt = tracing_subscriber::fmt::layer().with_target(true).with_ansi(terminal);
    let fmt = if cfg.format == "json" {
        fmt.json().flatten_event(false).with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let provider = telemetry.otlp_endpoint.as_deref().map(|e| tracer_provider(e, telemetry)).transpose()?;
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("bridgekeeper")).with_filter(LevelFilter::INFO));
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    }
    // A second init (tests, admin commands after serve) is harmless: ignore "already set".
    let _ = tracing_subscriber::registry().with(fmt).with(otel).try_init();
    if let Some(e) = &telemetry.otlp_endpoint {
        tracing::info!(endpoint = %traces_url(e), protocol = %telemetry.otlp_protocol, "exporting traces over OTLP");
    }
    Ok(Telemetry(provider))
}

/// The collector's traces URL: the configured one, with `/v1/traces` unless it already ends so.
fn traces_url(endpoint: &str) -> String {
    let e = endpoint.trim_end_matches('/');
    if e.ends_with("/v1/traces") { e.to_owned() } else { format!("{e}/v1/traces") }
}

fn tracer_provider(endpoint: &str, cfg: &TelemetryConfig) -> anyhow::Result<SdkTracerProvider> {
    let protocol = match cfg.otlp_protocol.as_str() {
        "http/json" => opentelemetry_otlp::Protocol::HttpJson,
        _ => opentelemetry_otlp::Protocol::HttpBinary,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces_url(endpoint))
        .with_protocol(protocol)
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .context("cannot set up the OTLP trace exporter")?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(cfg.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(cfg.sample_ratio))))
        .with_resource(resource)
        .build())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(super::traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
