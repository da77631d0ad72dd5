//! The dashboard: its own listener (default `127.0.0.1:8265`, optional bearer token), served by
//! the same connection code and timeouts as the serving port, with an embedded page and the JSON
//! it polls: Ray's status API (`/api/serve/applications/`), time series, captured logs and the
//! metrics. Also the metrics export port, which serves `/metrics` alone.
//!
//! Both answer only the host names of the address they are bound to and
//! `dashboard_allowed_hosts` (`host.rs`), and the dashboard refuses to start on an address other
//! machines can reach without a token unless `dashboard_allow_insecure` says so.

mod host;
mod metrics_port;

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::watch;

pub(crate) use host::HostName;
pub(crate) use metrics_port::start as start_metrics_export;

use crate::HttpOptions;
use crate::auth;
use crate::body::Body;
use crate::conn::{ConnOptions, accept_loop, bind, stopping};
use crate::deploy::Declarative;
use crate::error::{self, Error};
use crate::idle::Gate;
use crate::monitor::Monitor;
use host::AllowedHosts;

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// Binds the dashboard and serves it until `stop`; also samples the time series each second.
///
/// # Errors
///
/// [`Error::Bind`] naming the address and the option that changes it;
/// [`Error::InsecureDashboard`] for an address that is not loopback with no token, unless
/// `dashboard_allow_insecure`.
pub(crate) async fn start(
    options: &HttpOptions,
    gate: Arc<Gate>,
    monitor: Arc<Monitor>,
    deploy: Arc<Declarative>,
    stop: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, Error> {
    let Some(port) = options.dashboard_port else {
        return Ok(None);
    };
    let hint = "choose another port with --dashboard-port or RAYAI_DASHBOARD_PORT (0 turns it off)";
    let (listener, addr) = bind("the dashboard", &options.dashboard_host, port, hint).await?;
    let token: Option<Arc<str>> = options
        .dashboard_token
        .clone()
        .filter(|t| !t.is_empty())
        .map(Arc::from);
    // The listener is dropped before it accepts anything.
    if token.is_none()
        && !addr.ip().to_canonical().is_loopback()
        && !options.dashboard_allow_insecure
    {
        return Err(Error::InsecureDashboard { address: addr });
    }
    monitor.set_dashboard_addr(addr);
    tokio::spawn(sample_loop(monitor.clone(), stop.clone()));
    let service = Dashboard {
        monitor,
        deploy,
        token,
        hosts: Arc::new(AllowedHosts::new(
            addr,
            &options.dashboard_host,
            &options.dashboard_allowed_hosts,
        )),
    };
    let (stopped, _) = watch::channel(false);
    tokio::spawn(accept_loop(
        listener,
        service,
        conn_options(options, gate),
        stop,
        stopped,
    ));
    Ok(Some(addr))
}

/// How the dashboard's and the metrics port's listeners treat connections: the server's bounds
/// and connection cap, plain HTTP, no grace period on shutdown.
fn conn_options(options: &HttpOptions, gate: Arc<Gate>) -> ConnOptions {
    ConnOptions {
        grace: Duration::ZERO,
        ..ConnOptions::new(options, gate)
    }
}

async fn sample_loop(monitor: Arc<Monitor>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stopping(&mut stop) => return,
        }
        let now = tokio::time::Instant::now();
        monitor.tick(now.duration_since(last).as_secs_f64());
        last = now;
    }
}

/// The dashboard's service.
#[derive(Clone)]
struct Dashboard {
    monitor: Arc<Monitor>,
    deploy: Arc<Declarative>,
    token: Option<Arc<str>>,
    /// The host names it answers.
    hosts: Arc<AllowedHosts>,
}

impl hyper::service::Service<Request<Incoming>> for Dashboard {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if !self.hosts.admits(&req) {
            return Box::pin(std::future::ready(Ok(host_not_allowed(&req))));
        }
        // Declarative deploys: PUT and DELETE under /api/serve/applications (crate::deploy);
        // without the token they fall through to `serve`, which answers the 401.
        if !reads(req.method())
            && crate::deploy::is_api_path(req.uri().path())
            && self.authorized(&req)
        {
            return Box::pin(futures::FutureExt::map(self.deploy.clone().serve(req), Ok));
        }
        let dashboard = self.clone();
        Box::pin(async move { Ok(dashboard.serve(req).await) })
    }
}

/// The value of `key` in a query string, percent-decoded.
fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// What the dashboard serves at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    /// The page itself.
    Index,
    /// Ray's status API: `/api/serve/applications/`, with or without the slash.
    Applications,
    /// The time series the page draws.
    Timeseries,
    /// The captured logs.
    Logs,
    /// The Prometheus metrics.
    Metrics,
    /// Nothing.
    NotFound,
}

impl Page {
    fn of(path: &str) -> Page {
        match path {
            "/" | "/index.html" => Page::Index,
            "/api/serve/applications" | "/api/serve/applications/" => Page::Applications,
            "/api/timeseries" => Page::Timeseries,
            "/api/logs" => Page::Logs,
            "/metrics" => Page::Metrics,
            _ => Page::NotFound,
        }
    }
}

/// The `403` for a request whose host the listener does not answer.
fn host_not_allowed<B>(req: &Request<B>) -> Response<Body> {
    let named = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            let host = req.headers().get(header::HOST)?;
            Some(String::from_utf8_lossy(host.as_bytes()).into_owned())
        });
    error::host_not_allowed(named.as_deref())
}

/// Whether `method` only reads (`GET` or `HEAD`).
fn reads(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// `GET /metrics`, on the dashboard or the metrics export port: the one place both listeners
/// answer it, with the request at hand for what it asks of the format.
fn metrics<B>(monitor: &Monitor, req: &Request<B>) -> Response<Body> {
    monitor.metrics_response(req.headers().get(header::ACCEPT))
}

impl Dashboard {
    /// Whether the request carries the token (`Authorization: Bearer <token>` or `?token=`),
    /// compared in constant time.
    fn authorized<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        auth::authorized(req, token.as_bytes())
            || query_param(req.uri().query(), "token")
                .is_some_and(|t| auth::constant_time_eq(t.as_bytes(), token.as_bytes()))
    }

    /// Answers one request. The token, when set, covers every path: the page, every `/api/`
    /// path and the metrics.
    async fn serve<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<rayai_core::handler::BoxError>,
    {
        if !self.authorized(&req) {
            return error::unauthorized("A dashboard token is required.");
        }
        let monitor = &self.monitor;
        let page = Page::of(req.uri().path());
        match (page, req.method()) {
            (Page::NotFound, _) => error::not_found(),
            // Writes to the status API (Ray's `PUT` and `DELETE /api/serve/applications/`) went
            // to `crate::deploy` before this: every other write is refused.
            (_, m) if !reads(m) => error::method_not_allowed("GET"),
            (Page::Applications, _) => monitor.applications_response(),
            (Page::Index, _) => {
                let mut resp = error::text(StatusCode::OK, PAGE);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp
            }
            (Page::Timeseries, _) => monitor.timeseries_response(),
            (Page::Logs, _) => logs_response(req.uri().query()),
            (Page::Metrics, _) => metrics(monitor, &req),
        }
    }
}

/// `GET /api/logs?since=&deployment=&replica=&request_id=&limit=`.
fn logs_response(q: Option<&str>) -> Response<Body> {
    let text = |key| {
        query_param(q, key)
            .filter(|s| !s.is_empty())
            .map(Cow::into_owned)
    };
    let query = crate::logging::capture::Query {
        since: query_param(q, "since")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        deployment: text("deployment"),
        replica: text("replica"),
        request_id: text("request_id"),
        limit: query_param(q, "limit")
            .and_then(|s| s.parse().ok())
            .unwrap_or(500),
    };
    let (lines, last) = crate::logging::capture::select(&query);
    error::json_response(StatusCode::OK, &json!({ "last_seq": last, "lines": lines }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Identity;

    #[test]
    fn decodes_query_values() {
        let q = Some("replica=echo%230&request_id=a+b&token=t%");
        assert_eq!(query_param(q, "replica").as_deref(), Some("echo#0"));
        assert_eq!(query_param(q, "request_id").as_deref(), Some("a b"));
        assert_eq!(query_param(q, "token").as_deref(), Some("t%"));
        assert_eq!(query_param(q, "nope"), None);
    }

    fn dashboard(token: Option<&str>) -> Dashboard {
        let controller = rayai_core::Controller::new(rayai_core::NodeResources::new(1.0, 1 << 30));
        let address = SocketAddr::from(([127, 0, 0, 1], 8000));
        let deploy = Arc::new(Declarative::new(
            controller.clone(),
            crate::HttpOptions::default(),
            address,
        ));
        Dashboard {
            deploy,
            monitor: Arc::new(Monitor::new(
                controller,
                Identity::of_this_process(address, &HttpOptions::default()),
            )),
            token: token.map(Arc::from),
            hosts: Arc::new(AllowedHosts::new(address, "127.0.0.1", &[])),
        }
    }

    fn get(uri: &str, auth: Option<&str>) -> Request<http_body_util::Empty<bytes::Bytes>> {
        let mut req = Request::get(uri);
        if let Some(value) = auth {
            req = req.header(header::AUTHORIZATION, value);
        }
        req.body(http_body_util::Empty::new()).unwrap()
    }

    #[tokio::test]
    async fn a_token_is_asked_for_by_header_or_query_and_compared_exactly() {
        let d = dashboard(Some("s3cret"));
        assert!(!d.authorized(&get("/api/logs", None)));
        assert!(!d.authorized(&get("/api/logs", Some("Bearer s3cre"))));
        assert!(!d.authorized(&get("/api/logs?token=s3cret2", None)));
        assert!(d.authorized(&get("/api/logs", Some("Bearer s3cret"))));
        assert!(d.authorized(&get("/api/logs?token=s3cret", None)));
        assert!(d.authorized(&get("/api/logs?token=s3%63ret", None)));
        for path in [
            "/",
            "/api/serve/applications/",
            "/api/anything",
            "/metrics",
            "/nope",
        ] {
            let status = d.serve(get(path, None)).await.status();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        assert!(dashboard(None).authorized(&get("/", None)));
    }

    #[test]
    fn both_forms_of_the_status_api_path_are_one_page() {
        assert_eq!(Page::of("/api/serve/applications"), Page::Applications);
        assert_eq!(Page::of("/api/serve/applications/"), Page::Applications);
        assert_eq!(Page::of("/api/serve/applications//"), Page::NotFound);
        assert_eq!(Page::of("/api/serve"), Page::NotFound);
    }

    #[tokio::test]
    async fn writes_are_refused_and_unknown_paths_are_404() {
        let d = dashboard(None);
        let mut put = get("/api/serve/applications/", None);
        *put.method_mut() = Method::PUT;
        assert_eq!(d.serve(put).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        let status = d.serve(get("/api/nope", None)).await.status();
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
