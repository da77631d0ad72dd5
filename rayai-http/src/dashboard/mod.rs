//! The dashboard: its own listener (default `127.0.0.1:8265`, optional bearer token) serving an
//! embedded page and the JSON it polls: the status API, time series and captured logs.

mod logs;
mod series;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rayai_core::{Controller, RouteTable};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use logs::LogLayer;

use crate::body::Body;
use crate::error;
use crate::metrics::{Metrics, RouteMetrics};
use crate::service::{Endpoint, Shared};
use series::Series;
use status::ProcessSampler;

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// Metrics, time series and process sampling of one server.
pub(crate) struct Monitor {
    pub(crate) metrics: Metrics,
    controller: Controller,
    series: Mutex<Series>,
    process: Mutex<ProcessSampler>,
    dashboard_addr: OnceLock<SocketAddr>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Monitor {
    pub(crate) fn new(controller: Controller) -> Self {
        Monitor {
            metrics: Metrics::new(),
            controller,
            series: Mutex::default(),
            process: Mutex::default(),
            dashboard_addr: OnceLock::new(),
        }
    }

    /// The address the dashboard listens on, when it runs.
    pub(crate) fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.dashboard_addr.get().copied()
    }

    /// The metrics a request to `path` counts under.
    pub(crate) fn route_for<T>(&self, routes: &RouteTable<T>, path: &str) -> Arc<RouteMetrics> {
        match path {
            "/-/healthz" | "/-/routes" => self.metrics.route(path, None),
            _ => match routes.lookup(path) {
                Some((route, _)) => self.metrics.route(route.prefix(), Some(route.app())),
                None => self.metrics.unmatched(),
            },
        }
    }

    /// `GET /metrics`.
    pub(crate) fn metrics_response<T>(&self, routes: &RouteTable<T>) -> Response<Body> {
        let deployments: Vec<_> = status::deployments(&self.controller, routes)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        let mut resp = error::text(StatusCode::OK, self.metrics.encode(&deployments));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        resp
    }

    /// `GET /api/serve/applications`.
    pub(crate) fn applications_response<T>(&self, routes: &RouteTable<T>) -> Response<Body> {
        let deployments = status::deployments(&self.controller, routes);
        let process = lock(&self.process).sample();
        error::json_response(
            StatusCode::OK,
            &status::applications(&deployments, &self.controller, process),
        )
    }

    fn timeseries_response(&self) -> Response<Body> {
        let series = lock(&self.series);
        let points: Vec<_> = series.points().collect();
        error::json_response(
            StatusCode::OK,
            &json!({
                "interval_s": 1,
                "node": status::node(&self.controller),
                "points": points,
            }),
        )
    }

    /// Takes one point of the time series.
    fn tick(&self, elapsed_s: f64) {
        let process = lock(&self.process).sample();
        let reserved = self.controller.reserved();
        let windows = self.metrics.windows();
        lock(&self.series).push(elapsed_s, &windows, process, reserved);
    }
}

/// Binds the dashboard and serves it until `stop`; also samples the time series each second.
///
/// # Errors
///
/// The address cannot be bound.
pub(crate) async fn start(
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let Some(port) = shared.options.dashboard_port else {
        return Err(std::io::Error::other("the dashboard is off"));
    };
    let listener = TcpListener::bind((shared.options.dashboard_host.as_str(), port)).await?;
    let addr = listener.local_addr()?;
    let _ = shared.monitor.dashboard_addr.set(addr);
    tokio::spawn(sample_loop(shared.clone(), stop.clone()));
    tokio::spawn(accept_loop(listener, shared, stop));
    Ok(addr)
}

/// Resolves once `stop` is true.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sample_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping(&mut stop) => return,
        }
        let now = tokio::time::Instant::now();
        shared.monitor.tick(now.duration_since(last).as_secs_f64());
        last = now;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopping(&mut stop) => return,
        };
        let shared = shared.clone();
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(serve(&shared, req)) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping(&mut stop) => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

/// The value of `key` in a query string, percent-decoded.
fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the request carries the token (`Authorization: Bearer <token>` or `?token=`).
fn authorized(token: Option<&str>, req: &Request<Incoming>) -> bool {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return true;
    };
    let header_ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == token);
    header_ok || query_param(req.uri().query(), "token").is_some_and(|t| t == token)
}

fn serve(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    if !authorized(shared.options.dashboard_token.as_deref(), &req) {
        let mut resp = error::detail(StatusCode::UNAUTHORIZED, "A dashboard token is required.");
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return error::method_not_allowed("GET");
    }
    let routes = shared.routes.load();
    let monitor = &shared.monitor;
    match req.uri().path() {
        "/" | "/index.html" => {
            let mut resp = error::text(StatusCode::OK, PAGE);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            resp
        }
        "/api/serve/applications" => monitor.applications_response::<Endpoint>(&routes),
        "/api/timeseries" => monitor.timeseries_response(),
        "/api/logs" => {
            let q = req.uri().query();
            let query = logs::Query {
                since: query_param(q, "since")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                deployment: query_param(q, "deployment").filter(|s| !s.is_empty()),
                replica: query_param(q, "replica").filter(|s| !s.is_empty()),
                request_id: query_param(q, "request_id").filter(|s| !s.is_empty()),
                limit: query_param(q, "limit")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(500),
            };
            let (lines, last) = logs::select(&query);
            error::json_response(StatusCode::OK, &json!({ "last_seq": last, "lines": lines }))
        }
        "/metrics" => monitor.metrics_response::<Endpoint>(&routes),
        _ => error::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_query_values() {
        let q = Some("replica=echo%230&request_id=a+b&token=t%");
        assert_eq!(query_param(q, "replica").as_deref(), Some("echo#0"));
        assert_eq!(query_param(q, "request_id").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "token").as_deref(), Some("t%"));
        assert_eq!(query_param(q, "nope"), None);
    }

    #[test]
    fn unknown_paths_count_as_unmatched_and_routes_by_prefix() {
        let monitor = Monitor::new(Controller::new(rayai_core::NodeResources::new(
            1.0,
            1 << 30,
        )));
        let mut table = RouteTable::new();
        table.insert("/agents/echo", "echo", ()).unwrap();
        let hit = monitor.route_for(&table, "/agents/echo/chat");
        let miss = monitor.route_for(&table, "/agents/nope/chat");
        monitor
            .metrics
            .record(&hit, "POST", 200, Duration::from_millis(1));
        monitor
            .metrics
            .record(&miss, "POST", 404, Duration::from_millis(1));
        let text = monitor.metrics.encode(&[]);
        assert!(text.contains("route=\"/agents/echo\",method=\"POST\",status_code=\"200\""));
        assert!(text.contains("route=\"unmatched\",method=\"POST\",status_code=\"404\""));
        assert!(!text.contains("/agents/nope"));
        assert!(!text.contains("/agents/echo/chat"));
    }
}
