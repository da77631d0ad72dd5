//! The dashboard: its own listener (default `127.0.0.1:8265`, optional bearer token), served by
//! the same connection code and timeouts as the serving port, with an embedded page and the JSON
//! it polls: the status API, time series, captured logs and the metrics.

mod logs;

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use logs::LogLayer;

use crate::HttpOptions;
use crate::auth;
use crate::body::Body;
use crate::conn::{ConnOptions, accept_loop, stopping};
use crate::deploy::Declarative;
use crate::error::{self, Error};
use crate::monitor::Monitor;

const PAGE: &str = include_str!("../../assets/dashboard.html");

/// Binds the dashboard and serves it until `stop`; also samples the time series each second.
///
/// # Errors
///
/// [`Error::Bind`] naming the address and the option that changes it.
pub(crate) async fn start(
    options: &HttpOptions,
    monitor: Arc<Monitor>,
    deploy: Arc<Declarative>,
    stop: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, Error> {
    let Some(port) = options.dashboard_port else {
        return Ok(None);
    };
    let host = options.dashboard_host.as_str();
    let address = format!("{host}:{port}");
    let hint = "choose another port with --dashboard-port or RAYAI_DASHBOARD_PORT (0 turns it off)";
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::bind("the dashboard", address.clone(), hint, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::bind("the dashboard", address, hint, e))?;
    monitor.set_dashboard_addr(addr);
    tokio::spawn(sample_loop(monitor.clone(), stop.clone()));
    let service = Dashboard {
        monitor,
        deploy,
        token: options
            .dashboard_token
            .clone()
            .filter(|t| !t.is_empty())
            .map(Arc::from),
    };
    let conn = ConnOptions {
        header_read_timeout: options.header_read_timeout(),
        keep_alive: options.keep_alive_timeout(),
        grace: Duration::ZERO,
        tls: None,
    };
    let (stopped, _) = watch::channel(false);
    tokio::spawn(accept_loop(listener, service, conn, stop, stopped));
    Ok(Some(addr))
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
}

impl hyper::service::Service<Request<Incoming>> for Dashboard {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        // Declarative deploys: PUT and DELETE under /api/serve/applications (crate::deploy).
        let reads = matches!(*req.method(), Method::GET | Method::HEAD);
        if !reads && crate::deploy::is_api_path(req.uri().path()) && self.authorized(&req) {
            return Box::pin(futures::FutureExt::map(self.deploy.clone().serve(req), Ok));
        }
        Box::pin(std::future::ready(Ok(self.serve(&req))))
    }
}

/// The value of `key` in a query string, percent-decoded.
fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<Cow<'a, str>> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
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

    fn serve<B>(&self, req: &Request<B>) -> Response<Body> {
        if !self.authorized(req) {
            return error::unauthorized("A dashboard token is required.");
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return error::method_not_allowed("GET");
        }
        let monitor = &self.monitor;
        match req.uri().path() {
            "/" | "/index.html" => {
                let mut resp = error::text(StatusCode::OK, PAGE);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                resp
            }
            "/api/serve/applications" => monitor.applications_response(),
            "/api/timeseries" => monitor.timeseries_response(),
            "/api/logs" => {
                let q = req.uri().query();
                let text = |key| {
                    query_param(q, key)
                        .filter(|s| !s.is_empty())
                        .map(Cow::into_owned)
                };
                let query = logs::Query {
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
                let (lines, last) = logs::select(&query);
                error::json_response(StatusCode::OK, &json!({ "last_seq": last, "lines": lines }))
            }
            "/metrics" => monitor.metrics_response(),
            _ => error::not_found(),
        }
    }
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
            monitor: Arc::new(Monitor::new(controller, Identity::of_this_process(address))),
            token: token.map(Arc::from),
        }
    }

    fn get(uri: &str, auth: Option<&str>) -> Request<()> {
        let mut req = Request::get(uri);
        if let Some(value) = auth {
            req = req.header(header::AUTHORIZATION, value);
        }
        req.body(()).unwrap()
    }

    #[test]
    fn a_token_is_asked_for_by_header_or_query_and_compared_exactly() {
        let d = dashboard(Some("s3cret"));
        assert!(!d.authorized(&get("/api/logs", None)));
        assert!(!d.authorized(&get("/api/logs", Some("Bearer s3cre"))));
        assert!(!d.authorized(&get("/api/logs?token=s3cret2", None)));
        assert!(d.authorized(&get("/api/logs", Some("Bearer s3cret"))));
        assert!(d.authorized(&get("/api/logs?token=s3cret", None)));
        assert!(d.authorized(&get("/api/logs?token=s3%63ret", None)));
        assert_eq!(d.serve(&get("/", None)).status(), StatusCode::UNAUTHORIZED);
        assert!(dashboard(None).authorized(&get("/", None)));
    }
}
