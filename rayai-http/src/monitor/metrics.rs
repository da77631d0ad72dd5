//! Prometheus metrics with Ray Serve's names and labels: the proxy's request counters and
//! latency histograms recorded on the request path; the deployments' figures (replicas,
//! queues, processed requests, routers, handles, control loops) read from rayai-core at scrape
//! time.
//!
//! Labels are bounded. `route` is the route pattern an ingress matched joined to its prefix
//! (`/api/v1/items/{item_id}`), an agent's or a pattern-less ingress's route prefix
//! (`/agents/echo`), one of the proxy's own paths (`/-/healthz`), or `""` when no route
//! matched; never the raw path. `method` is a standard method or `OTHER`. `application` is the
//! route's application (`""` when none), `deployment` a deployment's served name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::Method;
use rayai_core::handler::MatchedRoute;
use rayai_core::striped::Striped;
use rayai_core::{DeploymentHandle, LATENCY_BUCKETS_MS, ReplicaState, Snapshot};

use super::exposition::{Buckets, Family, Kind};

/// The maps read on every request: keys chosen by the server, not by clients, so a fast hash.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The `route` (and `application`) label of a request no route matched.
pub(crate) const UNMATCHED: &str = "";

/// The most route patterns one route keeps labels for; beyond, its requests count under the
/// route prefix (an application that reported raw paths as patterns cannot grow the labels).
const MAX_PATTERNS: usize = 256;

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Buckets of [`LATENCY_BUCKETS_MS`], and one for larger.
const BUCKETS: usize = LATENCY_BUCKETS_MS.len() + 1;

/// A latency histogram over [`LATENCY_BUCKETS_MS`], recorded without a lock (striped: the
/// workers that record at once do not contend): the buckets, then the sum in nanoseconds.
#[derive(Default)]
struct Histogram {
    cells: Striped<{ BUCKETS + 1 }>,
}

impl Histogram {
    fn observe(&self, elapsed: Duration) {
        let ms = elapsed.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS.partition_point(|&upper| upper < ms);
        self.cells.add(i, 1);
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.cells.add(BUCKETS, ns);
    }

    fn buckets(&self) -> Buckets {
        let cells = self.cells.all();
        Buckets {
            counts: cells[..BUCKETS].to_vec(),
            sum: cells[BUCKETS] as f64 / 1e6,
        }
    }
}

/// Requests, errors and latencies of one deployment since the start, for the dashboard's time
/// series (the sampler takes differences each second).
#[derive(Default)]
pub(crate) struct Window {
    /// Requests, errors, then one count per bucket of [`LATENCY_BUCKETS_MS`] and one for larger.
    cells: Striped<{ BUCKETS + 2 }>,
}

impl Window {
    pub(crate) fn record(&self, is_error: bool, ms: f64) {
        self.cells.add(0, 1);
        if is_error {
            self.cells.add(1, 1);
        }
        let i = LATENCY_BUCKETS_MS.partition_point(|&upper| upper < ms);
        self.cells.add(2 + i, 1);
    }

    /// `(requests, errors, buckets)` now.
    pub(crate) fn snapshot(&self) -> (u64, u64, Vec<u64>) {
        let cells = self.cells.all();
        (cells[0], cells[1], cells[2..].to_vec())
    }
}

/// The labels of one route, resolved once and reused by every request on it.
pub(crate) struct RouteMetrics {
    application: Arc<str>,
    /// The route prefix, proxy path, or `""`: the `route` label when no pattern is reported.
    route: Arc<str>,
    /// The deployment's internal name (what the cache and the dashboard key on).
    deployment_name: Option<Arc<str>>,
    /// The deployment's served name: the `deployment` label.
    deployment: Option<Arc<str>>,
    /// `route` labels of the patterns this route's ingress reported, by pattern.
    patterns: ArcSwap<FastMap<Box<str>, Arc<str>>>,
    adding: Mutex<()>,
    window: Arc<Window>,
    /// The series the last request on this route was counted in: the next one, of the same
    /// route label, method and status, is counted there without a look-up.
    last: arc_swap::ArcSwapOption<LastSeries>,
}

/// A series and the labels it is for (beyond the route's own).
struct LastSeries {
    route: Arc<str>,
    method: &'static str,
    status: u16,
    series: Arc<RequestSeries>,
}

impl RouteMetrics {
    fn new(
        application: &str,
        route: &str,
        deployment: Option<(&str, &str)>,
        window: Arc<Window>,
    ) -> Self {
        RouteMetrics {
            application: Arc::from(application),
            route: Arc::from(route),
            deployment_name: deployment.map(|(name, _)| Arc::from(name)),
            deployment: deployment.map(|(_, served)| Arc::from(served)),
            patterns: ArcSwap::from_pointee(FastMap::default()),
            adding: Mutex::new(()),
            last: arc_swap::ArcSwapOption::empty(),
            window,
        }
    }

    /// The deployment behind the route (empty for the proxy's own paths and no route).
    pub(crate) fn deployment_name(&self) -> &str {
        self.deployment_name.as_deref().unwrap_or("")
    }

    /// The `route` label of a response that reports no pattern: the prefix.
    pub(crate) fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// The `route` label of a response: the reported pattern joined to the prefix, else the
    /// prefix. Allocates only the first time a pattern is seen.
    pub(crate) fn route_label(&self, matched: Option<&MatchedRoute>) -> Arc<str> {
        let Some(MatchedRoute(pattern)) = matched else {
            return self.route.clone();
        };
        if let Some(label) = self.patterns.load().get(&**pattern) {
            return label.clone();
        }
        let _adding = lock(&self.adding);
        let current = self.patterns.load();
        if let Some(label) = current.get(&**pattern) {
            return label.clone();
        }
        if current.len() >= MAX_PATTERNS {
            return self.route.clone();
        }
        let label: Arc<str> = if &*self.route == "/" {
            pattern.clone()
        } else {
            Arc::from(format!("{}{pattern}", self.route.trim_end_matches('/')))
        };
        let mut next = FastMap::clone(&current);
        next.insert(Box::from(&**pattern), label.clone());
        self.patterns.store(Arc::new(next));
        label
    }
}

/// The labels one request counts under.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RequestKey {
    application: Arc<str>,
    route: Arc<str>,
    deployment: Option<Arc<str>>,
    method: &'static str,
    status: u16,
}

/// The count and latencies of one [`RequestKey`].
#[derive(Default)]
struct RequestSeries {
    requests: Striped<1>,
    latency: Histogram,
}

impl RequestSeries {
    /// One more request, answered after `elapsed`.
    fn count(&self, elapsed: Duration) {
        self.requests.add(0, 1);
        self.latency.observe(elapsed);
    }
}

/// The proxy's metrics of one server.
pub(crate) struct Metrics {
    routes: ArcSwap<FastMap<Box<str>, Arc<RouteMetrics>>>,
    series: ArcSwap<FastMap<RequestKey, Arc<RequestSeries>>>,
    adding: Mutex<()>,
    windows: Mutex<HashMap<Arc<str>, Arc<Window>>>,
    unmatched: Arc<RouteMetrics>,
    ongoing: Striped<1>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            routes: ArcSwap::from_pointee(FastMap::default()),
            series: ArcSwap::from_pointee(FastMap::default()),
            adding: Mutex::new(()),
            windows: Mutex::new(HashMap::new()),
            unmatched: Arc::new(RouteMetrics::new(
                UNMATCHED,
                UNMATCHED,
                None,
                Arc::default(),
            )),
            ongoing: Striped::new(),
        }
    }

    /// The labels of the route `prefix` of `application` served by `deployment` (internal and
    /// served name), or of the proxy's own path `prefix` when `deployment` is `None`; created
    /// on first use, and again when the prefix changed hands.
    pub(crate) fn route(
        &self,
        prefix: &str,
        application: &str,
        deployment: Option<&DeploymentHandle>,
    ) -> Arc<RouteMetrics> {
        let same = |found: &RouteMetrics| {
            &*found.application == application
                && found.deployment_name.as_deref() == deployment.map(|d| d.name())
        };
        if let Some(found) = self.routes.load().get(prefix)
            && same(found)
        {
            return found.clone();
        }
        let _adding = lock(&self.adding);
        let current = self.routes.load();
        if let Some(found) = current.get(prefix)
            && same(found)
        {
            return found.clone();
        }
        let window = match deployment {
            Some(d) => lock(&self.windows)
                .entry(Arc::from(d.name()))
                .or_default()
                .clone(),
            None => Arc::default(),
        };
        let served = deployment.map(|d| d.served_name().into_owned());
        let made = Arc::new(RouteMetrics::new(
            application,
            prefix,
            deployment.map(|d| d.name()).zip(served.as_deref()),
            window,
        ));
        let mut next = FastMap::clone(&current);
        next.insert(Box::from(prefix), made.clone());
        self.routes.store(Arc::new(next));
        made
    }

    /// The labels of requests no route matched.
    pub(crate) fn unmatched(&self) -> Arc<RouteMetrics> {
        self.unmatched.clone()
    }

    /// One more request in the proxy until the guard is dropped.
    pub(crate) fn ongoing(&self) -> OngoingGuard<'_> {
        self.ongoing.add(0, 1);
        OngoingGuard(&self.ongoing)
    }

    /// Counts one answered request under `route_label` (see [`RouteMetrics::route_label`]).
    /// The series of the route's last request is counted in place (no reference taken).
    pub(crate) fn record(
        &self,
        route: &RouteMetrics,
        route_label: &Arc<str>,
        method: &'static str,
        status_code: u16,
        elapsed: Duration,
    ) {
        let last = route.last.load();
        match &*last {
            Some(last)
                if last.status == status_code
                    && std::ptr::eq(last.method, method)
                    && Arc::ptr_eq(&last.route, route_label) =>
            {
                last.series.count(elapsed);
            }
            _ => {
                let key = RequestKey {
                    application: route.application.clone(),
                    route: route_label.clone(),
                    deployment: route.deployment.clone(),
                    method,
                    status: status_code,
                };
                let series = match self.series.load().get(&key) {
                    Some(series) => series.clone(),
                    None => self.add_series(key),
                };
                series.count(elapsed);
                route.last.store(Some(Arc::new(LastSeries {
                    route: route_label.clone(),
                    method,
                    status: status_code,
                    series,
                })));
            }
        }
        if route.deployment.is_some() {
            route
                .window
                .record(status_code >= 400, elapsed.as_secs_f64() * 1000.0);
        }
    }

    fn add_series(&self, key: RequestKey) -> Arc<RequestSeries> {
        let _adding = lock(&self.adding);
        let current = self.series.load();
        if let Some(series) = current.get(&key) {
            return series.clone();
        }
        let made = Arc::new(RequestSeries::default());
        let mut next = FastMap::clone(&current);
        next.insert(key, made.clone());
        self.series.store(Arc::new(next));
        made
    }

    /// The per-deployment windows, by deployment name.
    pub(crate) fn windows(&self) -> Vec<(Arc<str>, Arc<Window>)> {
        let mut all: Vec<_> = lock(&self.windows)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// The proxy's families: requests, errors, latencies, ongoing requests.
    pub(crate) fn http_families(&self) -> Vec<Family> {
        type Labels = Vec<(&'static str, String)>;
        let mut requests: BTreeMap<Labels, f64> = BTreeMap::new();
        let mut errors: BTreeMap<Labels, f64> = BTreeMap::new();
        let mut deployment_errors: BTreeMap<Labels, f64> = BTreeMap::new();
        let mut latency: BTreeMap<Labels, Buckets> = BTreeMap::new();
        for (key, series) in self.series.load().iter() {
            let n = series.requests.get(0) as f64;
            let code = key.status.to_string();
            let base = |code_label: &'static str| {
                vec![
                    ("application", key.application.to_string()),
                    ("route", key.route.to_string()),
                    ("method", key.method.to_owned()),
                    (code_label, code.clone()),
                ]
            };
            *requests.entry(base("status_code")).or_default() += n;
            latency
                .entry(base("status_code"))
                .or_default()
                .add(&series.latency.buckets());
            if key.status >= 400 {
                *errors.entry(base("error_code")).or_default() += n;
                if let Some(deployment) = &key.deployment {
                    let mut labels = base("error_code");
                    labels.insert(1, ("deployment", deployment.to_string()));
                    *deployment_errors.entry(labels).or_default() += n;
                }
            }
        }
        let mut families = vec![
            Family::new(
                "ray_serve_num_http_requests",
                Kind::Counter,
                "The number of HTTP requests processed",
            ),
            Family::new(
                "ray_serve_num_http_error_requests",
                Kind::Counter,
                "The number of HTTP requests answered with a status code of 400 or more",
            ),
            Family::new(
                "ray_serve_num_deployment_http_error_requests",
                Kind::Counter,
                "The number of HTTP requests to a deployment answered with a status code of 400 or more",
            ),
            Family::new(
                "ray_serve_http_request_latency_ms",
                Kind::Histogram,
                "The end-to-end latency of HTTP requests, measured from the proxy, to the response head",
            ),
            Family::new(
                "ray_serve_num_ongoing_http_requests",
                Kind::Gauge,
                "The number of ongoing requests in the HTTP proxy",
            ),
        ];
        for (labels, n) in requests {
            families[0].number(labels, n);
        }
        for (labels, n) in errors {
            families[1].number(labels, n);
        }
        for (labels, n) in deployment_errors {
            families[2].number(labels, n);
        }
        for (labels, b) in latency {
            families[3].histogram(labels, b);
        }
        families[4].number(vec![], self.ongoing.get_signed(0).max(0) as f64);
        families
    }
}

/// Counts a request as ongoing in the proxy while it lives.
pub(crate) struct OngoingGuard<'a>(&'a Striped<1>);

impl Drop for OngoingGuard<'_> {
    fn drop(&mut self) {
        self.0.sub(0, 1);
    }
}

/// The deployments' families, from each application's deployments in `snapshot` (a deployment
/// two applications share counts under the first).
pub(crate) fn deployment_families(snapshot: &Snapshot) -> Vec<Family> {
    let mut requests = Family::new(
        "ray_serve_deployment_request_counter",
        Kind::Counter,
        "The number of queries that have been processed in this replica",
    );
    let mut errors = Family::new(
        "ray_serve_deployment_error_counter",
        Kind::Counter,
        "The number of exceptions that have occurred in this replica",
    );
    let mut latency = Family::new(
        "ray_serve_deployment_processing_latency_ms",
        Kind::Histogram,
        "The latency for queries to be processed",
    );
    let mut processing = Family::new(
        "ray_serve_replica_processing_queries",
        Kind::Gauge,
        "The current number of queries being processed",
    );
    let mut healthy = Family::new(
        "ray_serve_deployment_replica_healthy",
        Kind::Gauge,
        "Whether this deployment replica is healthy: 1 means healthy, 0 unhealthy",
    );
    let mut starts = Family::new(
        "ray_serve_deployment_replica_starts",
        Kind::Counter,
        "The number of times this replica was started (constructor attempts)",
    );
    let mut queued = Family::new(
        "ray_serve_deployment_queued_queries",
        Kind::Gauge,
        "The current number of requests to this deployment waiting for a replica",
    );
    let mut router = Family::new(
        "ray_serve_num_router_requests",
        Kind::Counter,
        "The number of requests processed by the router",
    );
    let mut handle = Family::new(
        "ray_serve_handle_request_counter",
        Kind::Counter,
        "The number of requests processed by this deployment's handles",
    );
    let mut scheduling = Family::new(
        "ray_serve_num_scheduling_tasks",
        Kind::Gauge,
        "The number of replicas waiting to be placed on the node",
    );
    let mut backoff = Family::new(
        "ray_serve_num_scheduling_tasks_in_backoff",
        Kind::Gauge,
        "The number of replicas waiting out a backoff after a failed start",
    );
    let mut loop_duration = Family::new(
        "ray_serve_controller_control_loop_duration_s",
        Kind::Gauge,
        "The duration of the deployment's last control loop, in seconds",
    );
    let mut loops = Family::new(
        "ray_serve_controller_num_control_loops",
        Kind::Gauge,
        "The number of control loops performed for the deployment; increases monotonically",
    );
    let mut multiplexed = MultiplexedFamilies::new();
    let mut seen: Vec<&DeploymentHandle> = Vec::new();
    for app in snapshot.applications() {
        for d in app.deployments() {
            if seen.contains(&d) {
                continue;
            }
            seen.push(d);
            let status = d.status();
            let stats = d.stats();
            let application = app.name().to_owned();
            let deployment = status.served_name.clone();
            let of_deployment = || {
                vec![
                    ("application", application.clone()),
                    ("deployment", deployment.clone()),
                ]
            };
            let of_replica = |replica: &str| {
                let mut labels = of_deployment();
                labels.push(("replica", replica.to_owned()));
                labels
            };
            for r in &stats.replicas {
                let mut labels = of_replica(&r.replica_id);
                labels.push(("route", app.route_prefix().to_owned()));
                requests.number(labels.clone(), r.requests as f64);
                errors.number(labels.clone(), r.errors as f64);
                latency.histogram(
                    labels,
                    Buckets {
                        counts: r.processing_latency.buckets.clone(),
                        sum: r.processing_latency.sum_ms,
                    },
                );
                if let Some(models) = &r.models {
                    multiplexed.add(&of_replica(&r.replica_id), models);
                }
            }
            for r in &status.replicas {
                processing.number(of_replica(&r.replica_id), f64::from(r.ongoing_requests));
                healthy.number(
                    of_replica(&r.replica_id),
                    f64::from(u8::from(r.state == ReplicaState::Running)),
                );
                starts.number(of_replica(&r.replica_id), f64::from(r.starts));
            }
            queued.number(of_deployment(), f64::from(status.queued_requests));
            router.number(of_deployment(), stats.router_requests as f64);
            handle.number(of_deployment(), stats.handle_requests as f64);
            scheduling.number(of_deployment(), f64::from(stats.pending_replicas));
            backoff.number(of_deployment(), f64::from(stats.replicas_in_backoff));
            loop_duration.number(of_deployment(), stats.last_control_loop.as_secs_f64());
            loops.number(of_deployment(), stats.control_loops as f64);
        }
    }
    let mut families = vec![
        requests,
        errors,
        latency,
        processing,
        healthy,
        starts,
        queued,
        router,
        handle,
        scheduling,
        backoff,
        loop_duration,
        loops,
    ];
    families.extend(multiplexed.families());
    families
}

/// The families of the multiplexed models, by replica (Ray's `serve_num_multiplexed_models`
/// and the others its deployment dashboard reads).
struct MultiplexedFamilies {
    /// Whether any replica is multiplexed (else no family is written).
    any: bool,
    models: Family,
    registered: Family,
    get_requests: Family,
    loads: Family,
    unloads: Family,
    load_latency: Family,
    unload_latency: Family,
}

impl MultiplexedFamilies {
    fn new() -> Self {
        MultiplexedFamilies {
            any: false,
            models: Family::new(
                "ray_serve_num_multiplexed_models",
                Kind::Gauge,
                "The number of models loaded on the current replica",
            ),
            registered: Family::new(
                "ray_serve_registered_multiplexed_model_id",
                Kind::Gauge,
                "The model ids registered on the current replica: 1 for each",
            ),
            get_requests: Family::new(
                "ray_serve_multiplexed_get_model_requests_counter",
                Kind::Counter,
                "The counter for get model requests on the current replica",
            ),
            loads: Family::new(
                "ray_serve_multiplexed_models_load_counter",
                Kind::Counter,
                "The counter for loaded models on the current replica",
            ),
            unloads: Family::new(
                "ray_serve_multiplexed_models_unload_counter",
                Kind::Counter,
                "The counter for unloaded models on the current replica",
            ),
            load_latency: Family::new(
                "ray_serve_multiplexed_model_load_latency_ms",
                Kind::Histogram,
                "The time it takes to load a model",
            ),
            unload_latency: Family::new(
                "ray_serve_multiplexed_model_unload_latency_ms",
                Kind::Histogram,
                "The time it takes to unload a model",
            ),
        }
    }

    fn add(&mut self, replica: &[(&'static str, String)], models: &rayai_core::ModelStats) {
        self.any = true;
        let labels = || replica.to_vec();
        self.models.number(labels(), models.model_ids.len() as f64);
        for id in &models.model_ids {
            let mut with_id = labels();
            with_id.push(("model_id", id.clone()));
            self.registered.number(with_id, 1.0);
        }
        self.get_requests
            .number(labels(), models.get_model_requests as f64);
        self.loads.number(labels(), models.loads as f64);
        self.unloads.number(labels(), models.unloads as f64);
        for (family, latency) in [
            (&mut self.load_latency, &models.load_latency),
            (&mut self.unload_latency, &models.unload_latency),
        ] {
            family.histogram(
                labels(),
                Buckets {
                    counts: latency.buckets.clone(),
                    sum: latency.sum_ms,
                },
            );
        }
    }

    fn families(self) -> Vec<Family> {
        if !self.any {
            return Vec::new();
        }
        vec![
            self.models,
            self.registered,
            self.get_requests,
            self.loads,
            self.unloads,
            self.load_latency,
            self.unload_latency,
        ]
    }
}

/// The gRPC listener's metrics: Ray's `ray_serve_num_grpc_requests`,
/// `ray_serve_num_grpc_error_requests`, `ray_serve_grpc_request_latency_ms` and
/// `ray_serve_num_ongoing_grpc_requests`, by application and method (and status code).
#[derive(Default)]
pub(crate) struct GrpcMetrics {
    /// Read without a lock by every call; replaced whole (under `adding`) by a call that adds a
    /// series.
    series: ArcSwap<FastMap<GrpcKey, Arc<RequestSeries>>>,
    #[cfg(feature = "grpc")]
    adding: Mutex<()>,
    ongoing: Striped<1>,
}

/// The labels of a gRPC series: application, method, status code.
type GrpcKey = (Arc<str>, Arc<str>, i32);

#[cfg(feature = "grpc")]
/// One gRPC call on its way: ongoing until [`GrpcCall::done`] (or dropped), then counted.
pub(crate) struct GrpcCall {
    metrics: Arc<GrpcMetrics>,
    application: Arc<str>,
    method: Arc<str>,
    started: std::time::Instant,
}

impl GrpcMetrics {
    /// A call to `method` of `application` starts.
    #[cfg(feature = "grpc")]
    pub(crate) fn call(self: &Arc<Self>, application: &str, method: &str) -> GrpcCall {
        self.ongoing.add(0, 1);
        GrpcCall {
            metrics: self.clone(),
            application: application.into(),
            method: method.into(),
            started: std::time::Instant::now(),
        }
    }

    /// The families.
    pub(crate) fn families(&self) -> Vec<Family> {
        let mut families = vec![
            Family::new(
                "ray_serve_num_grpc_requests",
                Kind::Counter,
                "The number of gRPC requests processed",
            ),
            Family::new(
                "ray_serve_num_grpc_error_requests",
                Kind::Counter,
                "The number of gRPC requests answered with a status other than OK",
            ),
            Family::new(
                "ray_serve_grpc_request_latency_ms",
                Kind::Histogram,
                "The end-to-end latency of gRPC requests, measured from the proxy, to the status",
            ),
            Family::new(
                "ray_serve_num_ongoing_grpc_requests",
                Kind::Gauge,
                "The number of ongoing requests in the gRPC proxy",
            ),
        ];
        let mut all: Vec<_> = self
            .series
            .load()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        for ((application, method, code), series) in all {
            let labels = |code_label: &'static str| {
                vec![
                    ("application", application.to_string()),
                    ("method", method.to_string()),
                    (code_label, code.to_string()),
                ]
            };
            let n = series.requests.get(0) as f64;
            families[0].number(labels("status_code"), n);
            if code != 0 {
                families[1].number(labels("error_code"), n);
            }
            families[2].histogram(labels("status_code"), series.latency.buckets());
        }
        families[3].number(vec![], self.ongoing.get_signed(0).max(0) as f64);
        families
    }
}

#[cfg(feature = "grpc")]
impl GrpcCall {
    /// The call ended with the gRPC status `code` (0 is OK).
    pub(crate) fn done(self, code: i32) {
        // UNIMPLEMENTED: a method the service does not have, which the client named.
        let method = if code == 12 {
            Arc::from("<unknown>")
        } else {
            self.method.clone()
        };
        let key = (self.application.clone(), method, code);
        let elapsed = self.started.elapsed();
        if let Some(series) = self.metrics.series.load().get(&key) {
            series.count(elapsed);
            return;
        }
        let _adding = lock(&self.metrics.adding);
        let current = self.metrics.series.load();
        let series = match current.get(&key) {
            Some(series) => series.clone(),
            None => {
                let made = Arc::new(RequestSeries::default());
                let mut next = FastMap::clone(&current);
                next.insert(key, made.clone());
                self.metrics.series.store(Arc::new(next));
                made
            }
        };
        series.count(elapsed);
    }
}

#[cfg(feature = "grpc")]
impl Drop for GrpcCall {
    fn drop(&mut self) {
        self.metrics.ongoing.sub(0, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::super::exposition::{Format, encode};
    use super::*;

    fn text(m: &Metrics) -> String {
        encode(&m.http_families(), Format::Classic)
    }

    #[test]
    fn exports_ray_serve_names_and_labels() {
        let m = Metrics::new();
        let route = Arc::new(RouteMetrics::new(
            "echo-service",
            "/agents/echo",
            Some(("echo", "echo-deployment")),
            Arc::default(),
        ));
        m.record(
            &route,
            &route.route_label(None),
            "POST",
            200,
            Duration::from_millis(3),
        );
        m.record(
            &route,
            &route.route_label(None),
            "POST",
            500,
            Duration::from_millis(3),
        );
        let text = text(&m);
        for line in [
            "ray_serve_num_http_requests_total{application=\"echo-service\",route=\"/agents/echo\",method=\"POST\",status_code=\"200\"} 1",
            "ray_serve_num_http_error_requests_total{application=\"echo-service\",route=\"/agents/echo\",method=\"POST\",error_code=\"500\"} 1",
            "ray_serve_num_deployment_http_error_requests_total{application=\"echo-service\",deployment=\"echo-deployment\",route=\"/agents/echo\",method=\"POST\",error_code=\"500\"} 1",
            "ray_serve_http_request_latency_ms_bucket{application=\"echo-service\",route=\"/agents/echo\",method=\"POST\",status_code=\"200\",le=\"5.0\"} 1",
            "ray_serve_num_ongoing_http_requests 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("error_code=\"200\""));
    }

    #[test]
    fn an_ingress_pattern_is_joined_to_the_prefix_once() {
        let route = RouteMetrics::new("api", "/api/v1", Some(("api", "api")), Arc::default());
        let matched = MatchedRoute(Arc::from("/items/{item_id}"));
        let a = route.route_label(Some(&matched));
        let b = route.route_label(Some(&matched));
        assert_eq!(&*a, "/api/v1/items/{item_id}");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*route.route_label(None), "/api/v1");
        let root = RouteMetrics::new("app", "/", None, Arc::default());
        assert_eq!(&*root.route_label(Some(&matched)), "/items/{item_id}");
    }

    #[test]
    fn patterns_per_route_are_capped() {
        let route = RouteMetrics::new("api", "/api", None, Arc::default());
        for i in 0..MAX_PATTERNS + 50 {
            let label = route.route_label(Some(&MatchedRoute(Arc::from(format!("/p{i}")))));
            if i >= MAX_PATTERNS {
                assert_eq!(&*label, "/api");
            }
        }
        assert_eq!(route.patterns.load().len(), MAX_PATTERNS);
    }

    #[test]
    fn label_sets_stay_bounded_under_random_paths() {
        let m = Metrics::new();
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..1000 {
            let method = [
                Method::GET,
                Method::POST,
                Method::from_bytes(b"BREW").unwrap(),
            ][rng.usize(0..3)]
            .clone();
            let unmatched = m.unmatched();
            m.record(
                &unmatched,
                &unmatched.route_label(None),
                method_label(&method),
                404,
                Duration::from_micros(rng.u64(1..10_000)),
            );
        }
        // 3 methods (GET, POST, OTHER) x 1 code.
        assert_eq!(m.series.load().len(), 3);
        let text = text(&m);
        assert!(!text.contains("BREW"));
        assert!(text.contains(
            "ray_serve_num_http_requests_total{application=\"\",route=\"\",method=\"OTHER\",status_code=\"404\"}"
        ));
    }

    #[test]
    fn ongoing_requests_count_until_dropped() {
        let m = Metrics::new();
        let a = m.ongoing();
        let _b = m.ongoing();
        assert!(text(&m).contains("ray_serve_num_ongoing_http_requests 2\n"));
        drop(a);
        assert!(text(&m).contains("ray_serve_num_ongoing_http_requests 1\n"));
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
