//! Logs, and traces for an OpenTelemetry collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set:
//! every request's span (the one its log line is written in), with the spans under it, is
//! exported over OTLP/HTTP as a child of the `traceparent` the request came with, so that one
//! trace follows a request from the edge through the origin. The SDK's other `OTEL_*`
//! variables (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, ...) apply as documented.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use axum::http::HeaderMap;
use opentelemetry::{propagation::TextMapPropagator, trace::TracerProvider};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::{propagation::TraceContextPropagator, trace::SdkTracerProvider, Resource};
use tracing::Level;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    filter::Targets, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

use crate::config::LogFormat;

/// The service name traces carry unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE: &str = "forecastin-origin";

/// Whether spans are exported: a request's parent is read from its headers only then.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// What was set up; [`Telemetry::shutdown`] sends the spans still buffered.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Installs the process's logging in `format`, filtered by `RUST_LOG` (default `info`), and
/// the export of traces to `otlp_endpoint` (the collector's base URL; traces go to
/// `/v1/traces` under it), if given.
pub fn init(format: LogFormat, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer();
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        // The event's fields at the top level, with the span it happened in (the request's
        // id, method and URI).
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .boxed(),
    };
    let traces = otlp_endpoint
        .filter(|endpoint| !endpoint.is_empty())
        .map(exporter)
        .transpose()?;
    // The origin's own spans, whatever `RUST_LOG` keeps of the log: a deployment that logs
    // warnings only still traces its requests.
    let spans = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE))
            .with_filter(Targets::new().with_target("forecastin_origin", Level::INFO))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .try_init()
        .context("installing the logger")?;
    EXPORTING.store(traces.is_some(), Ordering::Relaxed);
    Ok(Telemetry { traces })
}

/// The tracer provider that batches spans and sends them to `endpoint`.
fn exporter(endpoint: &str) -> anyhow::Result<SdkTracerProvider> {
    // The blocking client runs on the SDK's own export thread; its TLS is rustls with ring,
    // which is chosen once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .context("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(SERVICE);
    }
    Ok(SdkTracerProvider::builder()
        .with_resource(resource.build())
        .with_batch_exporter(exporter)
        .build())
}

impl Telemetry {
    /// Sends the spans still buffered; call once the last request has been served.
    pub fn shutdown(self) {
        if let Some(traces) = self.traces {
            if let Err(err) = traces.shutdown() {
                tracing::warn!(%err, "the last spans were not exported");
            }
        }
    }
}

/// Makes `span` (a request's) a child of the W3C trace context in `headers`, when spans are
/// exported; a request without one starts a trace.
pub fn adopt_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    // Fails only for a span that is disabled (filtered out): nothing to export then.
    let _ = span.set_parent(parent);
}
