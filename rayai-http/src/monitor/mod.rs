//! Monitoring one server: Prometheus metrics recorded on the request path, the status API read
//! from the controller's snapshot, and the per-second time series and process figures the
//! dashboard draws. The serving port and the dashboard both read it; it knows neither.

mod exposition;
mod gpu;
mod metrics;
mod node;
mod schema;
mod series;
mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use http::{HeaderValue, Response, StatusCode, header};
use rayai_core::route::Route;
use rayai_core::{Controller, Endpoint};
use serde_json::json;

use crate::body::Body;
use crate::error;
use exposition::Format;
use gpu::GpuSampler;
#[cfg(feature = "grpc")]
pub(crate) use metrics::GrpcCall;
pub(crate) use metrics::{GrpcMetrics, Metrics, OngoingGuard, RouteMetrics, method_label};
use node::NodeSampler;
use series::Series;
pub(crate) use status::Identity;
use status::ProcessSampler;

/// Metrics, time series and process sampling of one server.
pub(crate) struct Monitor {
    pub(crate) metrics: Metrics,
    identity: Identity,
    controller: Controller,
    series: Mutex<Series>,
    process: Mutex<ProcessSampler>,
    node: Mutex<NodeSampler>,
    gpus: GpuSampler,
    dashboard_addr: OnceLock<SocketAddr>,
    /// Set when the server shuts down: its proxy is draining.
    draining: AtomicBool,
    /// The gRPC listener's metrics, once it listens.
    grpc: OnceLock<Arc<GrpcMetrics>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    pub(crate) fn new(controller: Controller, identity: Identity) -> Self {
        Monitor {
            metrics: Metrics::new(),
            identity,
            controller,
            series: Mutex::default(),
            process: Mutex::default(),
            node: Mutex::default(),
            gpus: GpuSampler::default(),
            dashboard_addr: OnceLock::new(),
            draining: AtomicBool::new(false),
            grpc: OnceLock::new(),
        }
    }

    /// The address the dashboard listens on, when it runs.
    pub(crate) fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr.get().copied()
    }

    /// Records that the server is shutting down.
    pub(crate) fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Records where the dashboard listens.
    #[cfg(feature = "grpc")]
    #[cfg(feature = "grpc")]
    /// A gRPC call to `method` of `application` starts (the families appear in `/metrics` with
    /// the first).
    pub(crate) fn grpc_call(&self, application: &str, method: &str) -> GrpcCall {
        self.grpc
            .get_or_init(|| Arc::new(GrpcMetrics::default()))
            .call(application, method)
    }

    #[cfg(feature = "grpc")]
    #[cfg(feature = "grpc")]
    /// Shows the gRPC families in `/metrics` (the gRPC listener listens).
    pub(crate) fn enable_grpc(&self) {
        let _ = self.grpc.get_or_init(|| Arc::new(GrpcMetrics::default()));
    }

    pub(crate) fn set_dashboard_addr(&self, addr: SocketAddr) {
        let _ = self.dashboard_addr.set(addr);
    }

    /// The labels a request counts under: its route's (its application, the route's
    /// deployment), one of the proxy's own paths, or no route.
    pub(crate) fn route_for(
        &self,
        path: &str,
        route: Option<&Route<Endpoint>>,
    ) -> Arc<RouteMetrics> {
        match (path, route) {
            ("/-/healthz" | "/-/routes", _) => self.metrics.route(path, "", None),
            (_, Some(route)) => self.metrics.route(
                route.prefix(),
                route.app(),
                Some(route.target().deployment()),
            ),
            (_, None) => self.metrics.unmatched(),
        }
    }

    /// `GET /metrics`: OpenMetrics when `accept` (the request's `Accept` header) asks for it,
    /// as Prometheus does, else the classic text format.
    pub(crate) fn metrics_response(&self, accept: Option<&HeaderValue>) -> Response<Body> {
        let format = Format::negotiate(accept.and_then(|v| v.to_str().ok()));
        let mut families = self.metrics.http_families();
        if let Some(grpc) = self.grpc.get() {
            families.extend(grpc.families());
        }
        families.extend(metrics::deployment_families(&self.controller.snapshot()));
        families.extend(lock(&self.node).families());
        if self.controller.node().num_gpus() > 0 {
            families.extend(self.gpus.families());
        }
        let mut resp = error::text(StatusCode::OK, exposition::encode(&families, format));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        );
        resp
    }

    /// `GET /api/serve/applications/`: Ray's `ServeInstanceDetails`.
    pub(crate) fn applications_response(&self) -> Response<Body> {
        let draining = self.draining.load(Ordering::SeqCst);
        let details = status::details(&self.controller.snapshot(), &self.identity, draining);
        match serde_json::to_value(&details) {
            Ok(body) => error::json_response(StatusCode::OK, &body),
            Err(e) => error::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the status could not be written: {e}"),
            ),
        }
    }

    /// `GET /api/timeseries`: the last ten minutes, a point a second, and what the dashboard
    /// shows beside Ray's status: the node, the process's use now, each deployment's queue.
    pub(crate) fn timeseries_response(&self) -> Response<Body> {
        let process = lock(&self.process).sample();
        let snapshot = self.controller.snapshot();
        let queued: serde_json::Map<String, serde_json::Value> = snapshot
            .deployments()
            .into_iter()
            .map(|d| (d.served_name().into_owned(), json!(d.queued_requests())))
            .collect();
        let series = lock(&self.series);
        let points: Vec<_> = series.points().collect();
        error::json_response(
            StatusCode::OK,
            &json!({
                "interval_s": 1,
                "node": status::node(&self.controller),
                "process": { "cpu_percent": process.cpu_percent, "rss_bytes": process.rss_bytes },
                "queued": queued,
                "points": points,
            }),
        )
    }

    /// Takes one point of the time series.
    pub(crate) fn tick(&self, elapsed_s: f64) {
        let process = lock(&self.process).sample();
        let reserved = self.controller.reserved();
        let windows = self.metrics.windows();
        lock(&self.series).push(elapsed_s, &windows, process, reserved);
    }
}
