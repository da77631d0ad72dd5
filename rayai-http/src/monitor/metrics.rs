//! Prometheus metrics, with Ray Serve's names: request counters and latency histograms recorded
//! on the request path, replica and queue gauges filled from the controller's status at scrape
//! time.
//!
//! Labels are bounded: `route` is the route prefix that matched (`/agents/echo`), one of the
//! proxy's own paths, or `unmatched`; never the raw path. `method` is a standard method or
//! `OTHER`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rayai_core::{DeploymentStatus, ReplicaState};

/// The `route` label of a request no route matched.
pub(crate) const UNMATCHED: &str = "unmatched";

/// Upper bounds (ms) of the latency buckets, Ray Serve's defaults.
pub(crate) const LATENCY_BUCKETS_MS: [f64; 19] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 1000.0, 2000.0, 5000.0,
    10000.0, 20000.0, 30000.0, 60000.0, 300000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    method: &'static str,
    status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentErrorLabels {
    deployment: Arc<str>,
    route: Arc<str>,
    method: &'static str,
    status_code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabel {
    deployment: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReplicaLabels {
    deployment: Arc<str>,
    replica: Arc<str>,
}

type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS_MS)
}

/// The label method of a request: the standard ones by name, anything else `OTHER`.
pub(crate) fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Requests, errors and latencies of one deployment since the start, for the dashboard's time
/// series (the sampler takes differences each second).
#[derive(Default)]
pub(crate) struct Window {
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// One count per bucket of [`LATENCY_BUCKETS_MS`], and one for larger.
    pub(crate) buckets: [AtomicU64; LATENCY_BUCKETS_MS.len() + 1],
}

impl Window {
    fn record(&self, is_error: bool, ms: f64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if is_error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let i = LATENCY_BUCKETS_MS.partition_point(|&upper| upper < ms);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `(requests, errors, buckets)` now.
    pub(crate) fn snapshot(&self) -> (u64, u64, Vec<u64>) {
        (
            self.requests.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// The metrics of one route, resolved once and reused by every request on it.
pub(crate) struct RouteMetrics {
    route: Arc<str>,
    deployment: Option<Arc<str>>,
    latency: Histogram,
    deployment_latency: Option<Histogram>,
    window: Arc<Window>,
}

impl RouteMetrics {
    /// The `route` label: the prefix that matched, a proxy path, or `unmatched`.
    pub(crate) fn route_name(&self) -> &str {
        &self.route
    }

    /// The deployment behind the route (empty for the proxy's own paths and `unmatched`).
    pub(crate) fn deployment_name(&self) -> &str {
        self.deployment.as_deref().unwrap_or("")
    }
}

/// Every metric of one server.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    errors: Family<RequestLabels, Counter>,
    deployment_errors: Family<DeploymentErrorLabels, Counter>,
    latency: LatencyFamily<RouteLabel>,
    deployment_latency: LatencyFamily<DeploymentLabel>,
    ongoing: Family<ReplicaLabels, Gauge>,
    queued: Family<DeploymentLabel, Gauge>,
    healthy: Family<ReplicaLabels, Gauge>,
    routes: ArcSwap<HashMap<Box<str>, Arc<RouteMetrics>>>,
    adding: Mutex<()>,
    windows: Mutex<HashMap<Arc<str>, Arc<Window>>>,
    unmatched: Arc<RouteMetrics>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<RequestLabels, Counter>::default();
        let deployment_errors = Family::<DeploymentErrorLabels, Counter>::default();
        let latency: LatencyFamily<RouteLabel> = Family::new_with_constructor(latency_histogram);
        let deployment_latency: LatencyFamily<DeploymentLabel> =
            Family::new_with_constructor(latency_histogram);
        let ongoing = Family::<ReplicaLabels, Gauge>::default();
        let queued = Family::<DeploymentLabel, Gauge>::default();
        let healthy = Family::<ReplicaLabels, Gauge>::default();
        registry.register(
            "serve_num_http_requests",
            "HTTP requests the proxy answered, by route, method and status code",
            requests.clone(),
        );
        registry.register(
            "serve_num_http_error_requests",
            "HTTP requests answered with a status code >= 400",
            errors.clone(),
        );
        registry.register(
            "serve_num_deployment_http_error_requests",
            "HTTP requests to a deployment answered with a status code >= 400",
            deployment_errors.clone(),
        );
        registry.register(
            "serve_http_request_latency_ms",
            "Time from request to response headers, in milliseconds, by route",
            latency.clone(),
        );
        registry.register(
            "serve_deployment_processing_latency_ms",
            "Time a deployment took to answer, in milliseconds, as the proxy sees it",
            deployment_latency.clone(),
        );
        registry.register(
            "serve_replica_processing_queries",
            "Requests a replica serves now",
            ongoing.clone(),
        );
        registry.register(
            "serve_deployment_queued_queries",
            "Requests waiting for a replica of the deployment",
            queued.clone(),
        );
        registry.register(
            "serve_deployment_replica_healthy",
            "1 when the replica is running, 0 when it is stopping or dead",
            healthy.clone(),
        );
        let unmatched_route: Arc<str> = Arc::from(UNMATCHED);
        let unmatched = Arc::new(RouteMetrics {
            latency: latency.get_or_create_owned(&RouteLabel {
                route: unmatched_route.clone(),
            }),
            route: unmatched_route,
            deployment: None,
            deployment_latency: None,
            window: Arc::default(),
        });
        Metrics {
            registry,
            requests,
            errors,
            deployment_errors,
            latency,
            deployment_latency,
            ongoing,
            queued,
            healthy,
            routes: ArcSwap::from_pointee(HashMap::new()),
            adding: Mutex::new(()),
            windows: Mutex::new(HashMap::new()),
            unmatched,
        }
    }

    /// The metrics of the route `prefix` serving `deployment` (or of the proxy's own path
    /// `prefix` when `deployment` is `None`), created on first use.
    pub(crate) fn route(&self, prefix: &str, deployment: Option<&str>) -> Arc<RouteMetrics> {
        if let Some(found) = self.routes.load().get(prefix)
            && found.deployment.as_deref() == deployment
        {
            return found.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.routes.load();
        if let Some(found) = current.get(prefix)
            && found.deployment.as_deref() == deployment
        {
            return found.clone();
        }
        let route: Arc<str> = Arc::from(prefix);
        let deployment: Option<Arc<str>> = deployment.map(Arc::from);
        let window = match &deployment {
            Some(d) => self
                .windows
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(d.clone())
                .or_default()
                .clone(),
            None => Arc::default(),
        };
        let made = Arc::new(RouteMetrics {
            latency: self.latency.get_or_create_owned(&RouteLabel {
                route: route.clone(),
            }),
            deployment_latency: deployment.as_ref().map(|d| {
                self.deployment_latency
                    .get_or_create_owned(&DeploymentLabel {
                        deployment: d.clone(),
                    })
            }),
            route,
            deployment,
            window,
        });
        let mut next = HashMap::clone(&current);
        next.insert(Box::from(prefix), made.clone());
        self.routes.store(Arc::new(next));
        made
    }

    /// The metrics of requests no route matched.
    pub(crate) fn unmatched(&self) -> Arc<RouteMetrics> {
        self.unmatched.clone()
    }

    /// Counts one answered request.
    pub(crate) fn record(
        &self,
        route: &RouteMetrics,
        method: &'static str,
        status_code: u16,
        elapsed: Duration,
    ) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let labels = RequestLabels {
            route: route.route.clone(),
            method,
            status_code,
        };
        self.requests.get_or_create(&labels).inc();
        let is_error = status_code >= 400;
        if is_error {
            self.errors.get_or_create(&labels).inc();
        }
        route.latency.observe(ms);
        if let Some(deployment) = &route.deployment {
            if is_error {
                self.deployment_errors
                    .get_or_create(&DeploymentErrorLabels {
                        deployment: deployment.clone(),
                        route: labels.route,
                        method,
                        status_code,
                    })
                    .inc();
            }
            if let Some(h) = &route.deployment_latency {
                h.observe(ms);
            }
            route.window.record(is_error, ms);
        }
    }

    /// The per-deployment windows, by deployment name.
    pub(crate) fn windows(&self) -> Vec<(Arc<str>, Arc<Window>)> {
        let mut all: Vec<_> = self
            .windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Every metric in the Prometheus text format, the gauges set from `statuses` first.
    pub(crate) fn encode(&self, statuses: &[DeploymentStatus]) -> String {
        self.ongoing.clear();
        self.healthy.clear();
        self.queued.clear();
        for d in statuses {
            let deployment: Arc<str> = Arc::from(d.name.as_str());
            self.queued
                .get_or_create(&DeploymentLabel {
                    deployment: deployment.clone(),
                })
                .set(i64::from(d.queued_requests));
            for r in &d.replicas {
                let labels = ReplicaLabels {
                    deployment: deployment.clone(),
                    replica: Arc::from(r.replica_id.as_str()),
                };
                self.ongoing
                    .get_or_create(&labels)
                    .set(i64::from(r.ongoing_requests));
                self.healthy
                    .get_or_create(&labels)
                    .set(i64::from(r.state == ReplicaState::Running));
            }
        }
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// How many label sets the request counters hold (bounded by routes x methods x codes).
    #[cfg(test)]
    fn request_label_sets(&self) -> usize {
        self.encode(&[])
            .lines()
            .filter(|l| {
                l.starts_with("serve_num_http_requests_total{")
                    || l.starts_with("serve_http_request_latency_ms_count{")
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str) -> DeploymentStatus {
        DeploymentStatus {
            name: name.to_owned(),
            served_name: name.to_owned(),
            status: rayai_core::DeploymentState::Healthy,
            message: String::new(),
            target_replicas: 1,
            running_replicas: 1,
            pending_replicas: 0,
            queued_requests: 2,
            replicas_started: 1,
            replicas: vec![rayai_core::ReplicaStatus {
                replica_id: format!("{name}#0"),
                state: ReplicaState::Running,
                ongoing_requests: 3,
                served: 7,
                gpu_ids: vec![],
                starts: 1,
                last_error: None,
                start_time: std::time::SystemTime::UNIX_EPOCH,
            }],
        }
    }

    #[test]
    fn exports_ray_serve_names() {
        let m = Metrics::new();
        let route = m.route("/agents/echo", Some("echo"));
        m.record(&route, "POST", 200, Duration::from_millis(3));
        m.record(&route, "POST", 500, Duration::from_millis(3));
        let text = m.encode(&[status("echo")]);
        for name in [
            "serve_num_http_requests_total{route=\"/agents/echo\",method=\"POST\",status_code=\"200\"} 1",
            "serve_num_http_error_requests_total{route=\"/agents/echo\",method=\"POST\",status_code=\"500\"} 1",
            "serve_num_deployment_http_error_requests_total{deployment=\"echo\",route=\"/agents/echo\",method=\"POST\",status_code=\"500\"} 1",
            "serve_http_request_latency_ms_bucket{le=\"5.0\",route=\"/agents/echo\"} 2",
            "serve_deployment_processing_latency_ms_count{deployment=\"echo\"} 2",
            "serve_replica_processing_queries{deployment=\"echo\",replica=\"echo#0\"} 3",
            "serve_deployment_queued_queries{deployment=\"echo\"} 2",
            "serve_deployment_replica_healthy{deployment=\"echo\",replica=\"echo#0\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        assert!(!text.contains("status_code=\"200\"} 1\nserve_num_http_error"));
    }

    #[test]
    fn unknown_path_counts_as_unmatched() {
        let m = Metrics::new();
        m.record(&m.unmatched(), "GET", 404, Duration::from_millis(1));
        let text = m.encode(&[]);
        assert!(text.contains(
            "serve_num_http_requests_total{route=\"unmatched\",method=\"GET\",status_code=\"404\"} 1"
        ));
    }

    #[test]
    fn label_sets_stay_bounded_under_random_paths() {
        let m = Metrics::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            // A random path that no route serves: counted under `unmatched`, whatever it is.
            let _path: String = (0..rng.usize(1..40)).map(|_| rng.alphanumeric()).collect();
            let method = [
                Method::GET,
                Method::POST,
                Method::from_bytes(b"BREW").unwrap(),
            ][rng.usize(0..3)]
            .clone();
            m.record(
                &m.unmatched(),
                method_label(&method),
                404,
                Duration::from_micros(rng.u64(1..10_000)),
            );
        }
        // 3 methods (GET, POST, OTHER) x 1 code, plus one latency histogram.
        assert_eq!(m.request_label_sets(), 4);
        assert!(!m.encode(&[]).contains("BREW"));
    }

    #[test]
    fn route_metrics_are_resolved_once() {
        let m = Metrics::new();
        let a = m.route("/agents/echo", Some("echo"));
        let b = m.route("/agents/echo", Some("echo"));
        assert!(Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn window_buckets_latencies() {
        let w = Window::default();
        w.record(false, 0.5);
        w.record(true, 7.0);
        w.record(false, 1e9);
        let (n, e, b) = w.snapshot();
        assert_eq!((n, e), (3, 1));
        assert_eq!(b[0], 1);
        assert_eq!(b[3], 1);
        assert_eq!(b[LATENCY_BUCKETS_MS.len()], 1);
    }
}
