//! The metrics export port (Ray's `metrics_export_port`): a listener of its own that serves
//! `GET /metrics` and nothing else, for scrapers, whether the dashboard runs or not. It asks for
//! no token, as Ray's does not; it binds the serving port's host, and answers the same host names
//! as the dashboard would on that address (`dashboard_allowed_hosts` included).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::sync::watch;

use super::host::AllowedHosts;
use super::{conn_options, host_not_allowed, metrics, reads};
use crate::HttpOptions;
use crate::body::Body;
use crate::conn::{accept_loop, bind};
use crate::error::{self, Error};
use crate::idle::Gate;
use crate::monitor::Monitor;

/// Binds `options.host:options.metrics_export_port`, when set, and serves `/metrics` there until
/// `stop`.
///
/// # Errors
///
/// [`Error::Bind`] naming the address and the option that changes it.
pub(crate) async fn start(
    options: &HttpOptions,
    gate: Arc<Gate>,
    monitor: Arc<Monitor>,
    stop: watch::Receiver<bool>,
) -> Result<Option<SocketAddr>, Error> {
    let Some(port) = options.metrics_export_port else {
        return Ok(None);
    };
    let hint = "choose another port with --metrics-export-port or RAYAI_METRICS_EXPORT_PORT";
    let (listener, addr) = bind("the metrics export port", &options.host, port, hint).await?;
    let (stopped, _) = watch::channel(false);
    let service = MetricsExport {
        monitor,
        hosts: Arc::new(AllowedHosts::new(
            addr,
            &options.host,
            &options.dashboard_allowed_hosts,
        )),
    };
    tokio::spawn(accept_loop(
        listener,
        service,
        conn_options(options, gate),
        stop,
        stopped,
    ));
    Ok(Some(addr))
}

/// The metrics export port's service.
#[derive(Clone)]
struct MetricsExport {
    monitor: Arc<Monitor>,
    /// The host names it answers.
    hosts: Arc<AllowedHosts>,
}

impl MetricsExport {
    fn serve<B>(&self, req: &Request<B>) -> Response<Body> {
        if !self.hosts.admits(req) {
            return host_not_allowed(req);
        }
        match req.uri().path() {
            "/metrics" if reads(req.method()) => metrics(&self.monitor, req),
            "/metrics" => error::method_not_allowed("GET"),
            _ => error::not_found(),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for MetricsExport {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        std::future::ready(Ok(self.serve(&req)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::Identity;
    use http::{Method, StatusCode};

    #[test]
    fn serves_only_metrics() {
        let controller = rayai_core::Controller::new(rayai_core::NodeResources::new(1.0, 1 << 30));
        let address = SocketAddr::from(([127, 0, 0, 1], 8000));
        let service = MetricsExport {
            monitor: Arc::new(Monitor::new(
                controller,
                Identity::of_this_process(address, &HttpOptions::default()),
            )),
            hosts: Arc::new(AllowedHosts::new(address, "127.0.0.1", &[])),
        };
        let req = |method: Method, path: &str| {
            Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::HOST, "127.0.0.1:8000")
                .body(())
                .unwrap()
        };
        assert_eq!(
            service.serve(&req(Method::GET, "/metrics")).status(),
            StatusCode::OK
        );
        assert_eq!(
            service.serve(&req(Method::POST, "/metrics")).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        for path in ["/", "/api/serve/applications/", "/metrics/x"] {
            let status = service.serve(&req(Method::GET, path)).status();
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
        let mut rebound = req(Method::GET, "/metrics");
        rebound
            .headers_mut()
            .insert(http::header::HOST, "evil.example:8000".parse().unwrap());
        assert_eq!(service.serve(&rebound).status(), StatusCode::FORBIDDEN);
    }
}
