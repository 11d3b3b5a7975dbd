//! What operators read of an instance: the Prometheus [`metrics`] behind `/metrics`, the
//! [`readiness`] verdict behind `/readyz`, and the [`telemetry`] (logs, and traces for an
//! OpenTelemetry collector).

pub mod metrics;
pub mod readiness;
pub mod telemetry;
