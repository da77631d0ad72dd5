//! The request path: request id, proxy endpoints, route lookup, then the application.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rayai_core::RouteTable;

use crate::HttpOptions;
use crate::body::Body;
use crate::chat::{self, AgentEndpoint, Exchange};
use crate::error;

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What serves a route.
#[derive(Clone)]
pub(crate) enum Endpoint {
    /// An agent, with the chat contract.
    Agent(Arc<AgentEndpoint>),
}

/// State shared by every connection of one server.
pub(crate) struct Shared {
    pub(crate) options: HttpOptions,
    pub(crate) routes: ArcSwap<RouteTable<Endpoint>>,
    pub(crate) draining: AtomicBool,
}

/// The hyper service of one connection.
#[derive(Clone)]
pub(crate) struct Proxy(pub(crate) Arc<Shared>);

impl hyper::service::Service<Request<Incoming>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let shared = self.0.clone();
        Box::pin(async move { Ok(shared.handle(req).await) })
    }
}

fn fresh_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

impl Shared {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let started = tokio::time::Instant::now();
        let id_header = req
            .headers()
            .get(X_REQUEST_ID)
            .cloned()
            .unwrap_or_else(fresh_request_id);
        let request_id: Arc<str> = String::from_utf8_lossy(id_header.as_bytes()).into();
        let mut resp = self.route(req, request_id, started).await;
        resp.headers_mut().insert(X_REQUEST_ID, id_header);
        resp
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        request_id: Arc<str>,
        started: tokio::time::Instant,
    ) -> Response<Body> {
        match req.uri().path() {
            "/-/healthz" => return self.healthz(),
            "/-/routes" => return self.routes_json(),
            _ => {}
        }
        let endpoint = {
            let routes = self.routes.load();
            let Some((route, rest)) = routes.lookup(req.uri().path()) else {
                return error::no_route(req.uri().path());
            };
            match route.target() {
                Endpoint::Agent(agent) => match AgentEndpoint::shape(rest, req.method()) {
                    Ok(shape) => (agent.clone(), shape),
                    Err(resp) => return resp,
                },
            }
        };
        let (agent, shape) = endpoint;
        let http11 = req.version() == Version::HTTP_11;
        let session_header: Option<Arc<str>> = req
            .headers()
            .get("x-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(Arc::from);
        let timeout = self
            .options
            .request_timeout_s
            .filter(|_| self.options.request_timeout().is_some());
        let deadline = self.options.request_timeout().map(|t| started + t);
        let work = async {
            let body = match self.read_body(req).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            let request = match chat::parse(&body, shape) {
                Ok(r) => r,
                Err(detail) => {
                    return error::json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({ "detail": detail }),
                    );
                }
            };
            let cut_off = deadline
                .zip(timeout)
                .map(|(at, secs)| (at, error::timeout_message(&request_id, secs)));
            let exchange = Exchange {
                request_id: request_id.clone(),
                session_header,
                http11,
                cut_off,
                retry_after_s: self.options.backpressure_retry_after_s,
            };
            agent.answer(request, shape, exchange).await
        };
        match (deadline, timeout) {
            (Some(at), Some(secs)) => match tokio::time::timeout_at(at, work).await {
                Ok(resp) => resp,
                Err(_) => error::timed_out(&request_id, secs),
            },
            _ => work.await,
        }
    }

    #[allow(clippy::result_large_err)]
    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
        let limit = self.options.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(error::too_large(limit));
        }
        let limited = Limited::new(
            req.into_body(),
            usize::try_from(limit).unwrap_or(usize::MAX),
        );
        match limited.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error::too_large(limit)),
            Err(_) => Err(error::text(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
            )),
        }
    }

    fn healthz(&self) -> Response<Body> {
        if self.draining.load(Ordering::SeqCst) {
            error::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else {
            error::text(StatusCode::OK, "success")
        }
    }

    fn routes_json(&self) -> Response<Body> {
        let routes = self.routes.load();
        let map: BTreeMap<&str, &str> = routes.iter().map(|r| (r.prefix(), r.app())).collect();
        error::json_response(
            StatusCode::OK,
            &serde_json::to_value(map).unwrap_or_default(),
        )
    }
}
