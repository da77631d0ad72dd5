//! Counters and timers of a running deployment, kept where the work happens (the replica, the
//! router, the control loop) and read by the metrics: Ray Serve's deployment, router and
//! controller figures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::striped::Striped;

/// Upper bounds (ms) of the latency buckets: Ray Serve's `DEFAULT_LATENCY_BUCKET_MS`.
pub const LATENCY_BUCKETS_MS: [f64; 19] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 30000.0, 60000.0, 300000.0,
];

/// Cells of a [`Histogram`]: one count per bucket, one for larger, then the sum in nanoseconds.
const CELLS: usize = LATENCY_BUCKETS_MS.len() + 2;

/// A latency histogram over [`LATENCY_BUCKETS_MS`], recorded without a lock (striped: the
/// threads that record at once do not contend).
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    cells: Striped<CELLS>,
}

impl Histogram {
    pub(crate) fn observe(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS.partition_point(|&upper| upper < ms);
        self.cells.add(i, 1);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.cells.add(CELLS - 1, ns);
    }

    pub(crate) fn snapshot(&self) -> Latency {
        let cells = self.cells.all();
        let buckets = cells[..CELLS - 1].to_vec();
        Latency {
            count: buckets.iter().sum(),
            buckets,
            sum_ms: cells[CELLS - 1] as f64 / 1e6,
        }
    }
}

/// Latencies observed so far: counts per bucket of [`LATENCY_BUCKETS_MS`] (not cumulative; one
/// more for larger), their sum and their count.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Latency {
    /// Observations per bucket, the last one above the largest bound.
    pub buckets: Vec<u64>,
    /// The sum of the observations, in milliseconds.
    pub sum_ms: f64,
    /// How many observations.
    pub count: u64,
}

/// What one replica processed since it started.
#[derive(Debug, Default)]
pub(crate) struct ReplicaCounters {
    /// Requests, errors.
    counts: Striped<2>,
    latency: Histogram,
}

impl ReplicaCounters {
    /// Counts one request the replica finished, `ok` or failed, after `elapsed`.
    pub(crate) fn record(&self, elapsed: Duration, ok: bool) {
        self.counts.add(0, 1);
        if !ok {
            self.counts.add(1, 1);
        }
        self.latency.observe(elapsed);
    }

    pub(crate) fn snapshot(&self, replica_id: &str) -> ReplicaStats {
        let [requests, errors] = self.counts.all();
        ReplicaStats {
            replica_id: replica_id.to_owned(),
            requests,
            errors,
            processing_latency: self.latency.snapshot(),
            models: None,
        }
    }
}

/// One replica's processed requests (Ray's `serve_deployment_request_counter`,
/// `serve_deployment_error_counter`, `serve_deployment_processing_latency_ms`).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's id (`<deployment>#<n>`).
    pub replica_id: String,
    /// Requests the replica finished, successfully or not.
    pub requests: u64,
    /// Requests whose user code failed (an error or a panic).
    pub errors: u64,
    /// How long the replica took, from the user's code starting to its answer (for a stream,
    /// to its end; for a handler, to its response head).
    pub processing_latency: Latency,
    /// Its multiplexed models, when it keeps a [`crate::ModelCache`].
    pub models: Option<ModelStats>,
}

/// One replica's multiplexed models, as the metrics read them: Ray Serve's
/// `serve_num_multiplexed_models`, `serve_registered_multiplexed_model_id`,
/// `serve_multiplexed_get_model_requests_counter`, `serve_multiplexed_models_load_counter`,
/// `serve_multiplexed_models_unload_counter` and the load and unload latencies.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ModelStats {
    /// At most this many models at once.
    pub max_models: usize,
    /// The models loaded (or loading) now, sorted.
    pub model_ids: Vec<String>,
    /// Models asked of the cache (hits and misses).
    pub get_model_requests: u64,
    /// Models loaded (misses that loaded successfully).
    pub loads: u64,
    /// Models unloaded to make room.
    pub unloads: u64,
    /// How long the loads took.
    pub load_latency: Latency,
    /// How long the unloads took.
    pub unload_latency: Latency,
}

/// A running deployment's counters, as the metrics read them.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct DeploymentStats {
    /// Requests sent through the deployment's handles (the HTTP proxy's and other
    /// deployments'): Ray's `serve_handle_request_counter`.
    pub handle_requests: u64,
    /// Requests the deployment's router assigned or queued: Ray's `serve_num_router_requests`.
    pub router_requests: u64,
    /// Replicas waiting to be placed: the node lacks resources for them now.
    pub pending_replicas: u32,
    /// Replicas whose start failed, waiting out their backoff before the next attempt.
    pub replicas_in_backoff: u32,
    /// Iterations of the deployment's control loop (health checks, reconciliation).
    pub control_loops: u64,
    /// How long the last control-loop iteration took.
    pub last_control_loop: Duration,
    /// The live replicas' figures.
    pub replicas: Vec<ReplicaStats>,
}

/// The control loop's count and last duration.
#[derive(Debug, Default)]
pub(crate) struct LoopCounters {
    loops: AtomicU64,
    last_ns: AtomicU64,
}

impl LoopCounters {
    pub(crate) fn record(&self, took: Duration) {
        self.loops.fetch_add(1, Ordering::Relaxed);
        self.last_ns.store(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// `(iterations, last duration)`.
    pub(crate) fn read(&self) -> (u64, Duration) {
        (
            self.loops.load(Ordering::Relaxed),
            Duration::from_nanos(self.last_ns.load(Ordering::Relaxed)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_sums_latencies() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(7));
        h.observe(Duration::from_secs(1000));
        let l = h.snapshot();
        assert_eq!(l.count, 3);
        assert_eq!(l.buckets[0], 1);
        assert_eq!(l.buckets[3], 1);
        assert_eq!(l.buckets[LATENCY_BUCKETS_MS.len()], 1);
        assert!((l.sum_ms - 1_000_007.5).abs() < 1e-6, "{}", l.sum_ms);
    }

    #[tokio::test]
    async fn a_deployment_counts_its_handles_router_and_replicas() {
        use crate::NodeResources;
        use crate::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig};
        use serde_json::Value;

        struct Picky;
        impl Agent for Picky {
            async fn run(&self, data: Value) -> Result<Value, AgentError> {
                match data.get("fail") {
                    Some(_) => Err(AgentError::new("asked to fail")),
                    None => Ok(serde_json::json!({ "ok": true })),
                }
            }
        }
        let controller = Controller::new(NodeResources::new(2.0, 4 << 30));
        let picky = Deployment::from_fn(
            DeploymentConfig::new("picky").with_num_cpus(0.5),
            |_| async { Ok(Picky) },
        );
        controller
            .deploy_app(App::new().deployment(picky), "/")
            .await
            .expect("it deploys");
        let handle = controller.handle("picky").expect("it runs");
        handle.call(serde_json::json!({})).await.expect("ok");
        handle
            .call(serde_json::json!({ "fail": 1 }))
            .await
            .expect_err("it fails");
        let stats = handle.stats();
        assert_eq!((stats.handle_requests, stats.router_requests), (2, 2));
        assert_eq!(stats.replicas.len(), 1);
        let replica = &stats.replicas[0];
        assert_eq!(replica.replica_id, "picky#0");
        assert_eq!((replica.requests, replica.errors), (2, 1));
        assert_eq!(replica.processing_latency.count, 2);
        assert_eq!((stats.pending_replicas, stats.replicas_in_backoff), (0, 0));
        controller.shutdown(Duration::ZERO).await;
    }

    #[test]
    fn replica_counters_count_errors_apart() {
        let c = ReplicaCounters::default();
        c.record(Duration::from_millis(1), true);
        c.record(Duration::from_millis(1), false);
        let s = c.snapshot("echo#0");
        assert_eq!((s.requests, s.errors), (2, 1));
        assert_eq!(s.processing_latency.count, 2);
    }
}
