//! The Prometheus recorder behind `/metrics`, and the names of the metrics the origin records.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "http_requests_total";
pub const HTTP_DURATION: &str = "http_request_duration_seconds";
pub const L1_HITS: &str = "l1_cache_hits_total";
pub const L1_MISSES: &str = "l1_cache_misses_total";
pub const L1_ENTRIES: &str = "l1_cache_entries";
/// The memory L1's entries take, against `L1_MAX_BYTES`.
pub const L1_BYTES: &str = "l1_cache_bytes";
/// Responses computed behind L1 and L2 (a database read each), by `cause`: a `request`
/// (refills and first reads: what collapsing and preloading save) or a `preload`.
pub const RENDERS: &str = "origin_renders_total";
/// Hot pages rendered again right after a purge cleared them (`ff.predictive_preload`).
pub const REWARMED: &str = "origin_rewarmed_pages_total";
/// Pages a new instance loaded before it listened, and how long that took.
pub const WARM_START_PAGES: &str = "origin_warm_start_pages";
pub const WARM_START_SECONDS: &str = "origin_warm_start_seconds";
/// L1 misses served by another request's computation of the same key.
pub const COLLAPSED: &str = "origin_collapsed_misses_total";
pub const L1_INVALIDATED: &str = "l1_cache_invalidated_entries_total";
/// 1 while the instance's Redis subscription (invalidations, events) is up.
pub const REDIS_SUBSCRIBED: &str = "redis_subscription_up";
/// L1 flushes because the sequence check found an invalidation lost (or Redis's counter reset).
pub const L1_SEQUENCE_FLUSHES: &str = "l1_sequence_flushes_total";
pub const WS_DROPPED: &str = "websocket_clients_dropped_total";
pub const WS_CLIENTS: &str = "websocket_clients_connected";
pub const FLAG_ROLLOUT: &str = "feature_flag_rollout_percent";
/// Requests being served, exported for autoscaling when `ff.auto_scaling` is on.
pub const INFLIGHT: &str = "instance_inflight_requests";
pub const L2_HITS: &str = "l2_cache_hits_total";
pub const L2_MISSES: &str = "l2_cache_misses_total";
pub const L2_ERRORS: &str = "l2_cache_errors_total";
/// L2 entries evicted because a fill's tag already indexed the most entries it may.
pub const L2_TAG_EVICTIONS: &str = "l2_cache_tag_evictions_total";
pub const DB_POOL_CONNECTIONS: &str = "db_pool_connections";
pub const DB_POOL_WAITERS: &str = "db_pool_waiters";
/// Connections in use over the pool's maximum ("connection pool health").
pub const DB_POOL_UTILIZATION: &str = "db_pool_utilization_ratio";
pub const DB_POOL_ACQUIRE: &str = "db_pool_acquire_seconds";
/// Public reads by the pool that served them: how reads spread over the replicas.
pub const DB_PUBLIC_READS: &str = "db_public_reads_total";
/// 1 while a read replica serves public reads.
pub const DB_REPLICA_IN_ROTATION: &str = "db_replica_in_rotation";
/// How long a replica has been behind the primary.
pub const DB_REPLICA_LAG: &str = "db_replica_lag_seconds";
/// How long the dispatcher waited for the replicas to replay a write before purging.
pub const PURGE_REPLICA_WAIT: &str = "purge_replica_wait_seconds";
/// How long a CDN purge waited for every instance to acknowledge the invalidation.
pub const PURGE_TIERS_WAIT: &str = "purge_tiers_wait_seconds";
pub const PURGE_REQUESTS: &str = "purge_provider_requests_total";
pub const PURGE_DELIVERIES: &str = "purge_deliveries_total";
/// From the write's commit to the provider's acknowledgement.
pub const PURGE_LATENCY: &str = "purge_delivery_latency_seconds";
pub const PURGE_OUTBOX_DEPTH: &str = "purge_outbox_pending";
pub const PURGE_OLDEST_PENDING: &str = "purge_outbox_oldest_pending_seconds";

/// Latency buckets from 50 µs to 5 s: L1 hits sit in the first ones, database reads around 1 ms.
const LATENCY_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// The process-wide recorder, installed on first use (metrics are global in the `metrics`
/// crate, so every app in one process, such as the tests, shares it). Call it before anything
/// records: what is recorded earlier is lost.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(PURGE_LATENCY.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(DB_POOL_ACQUIRE.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(PURGE_REPLICA_WAIT.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .set_buckets_for_metric(Matcher::Full(PURGE_TIERS_WAIT.into()), &LATENCY_BUCKETS)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).expect("no other metrics recorder is installed");
            // Series that exist from the start read as 0 rather than absent, so rates and
            // alerts on them work before the first event.
            for counter in [
                L1_HITS,
                L1_MISSES,
                L1_INVALIDATED,
                L2_HITS,
                L2_MISSES,
                L2_ERRORS,
                L2_TAG_EVICTIONS,
                WS_DROPPED,
                L1_SEQUENCE_FLUSHES,
                COLLAPSED,
                REWARMED,
            ] {
                metrics::counter!(counter).increment(0);
            }
            for cause in ["request", "preload"] {
                metrics::counter!(RENDERS, "cause" => cause).increment(0);
            }
            metrics::gauge!(WS_CLIENTS).set(0.0);
            handle
        })
        .clone()
}
