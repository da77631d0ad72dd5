//! gRPC beside HTTP (the `grpc` feature, `grpc_port`), as Ray Serve's gRPC proxy: on its own
//! port, with the listener bounds of the HTTP one (it shares its accept loop and connection
//! cap), one service that dispatches each call by its path:
//!
//! | path | answered by |
//! |---|---|
//! | `/grpc.health.v1.Health/*` | the health service: `SERVING` while the server takes requests, `NOT_SERVING` when it drains |
//! | `/grpc.reflection.v1.ServerReflection/*` (and `v1alpha`) | tonic-reflection, with the `rayai.v1` and health descriptors |
//! | `/rayai.v1.Agents/*` | the agents service: any agent with the chat contract's semantics |
//! | anything else | the ingress of the application the `application` metadata key names (the only one when there is one): a tonic service deployed with [`rayai_core::App::grpc`] |
//!
//! Every call: `x-request-id` echoed or generated; a deadline from `grpc-timeout` (or the
//! server's `request_timeout_s`), which counts the queue, ending the call with
//! `DEADLINE_EXCEEDED`; backpressure as `RESOURCE_EXHAUSTED` (as Ray maps it); a client that
//! cancels drops the call and the replica's work; Ray's gRPC metrics.

mod agents;
mod health;
mod status;

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use rayai_core::RequestContext;
use rayai_core::handler::{BoxError, HttpBody};
use tokio::time::Instant;
use tonic::Code;

use crate::body::Body;
use crate::service::Shared;

pub(crate) use status::status_of;

/// The `rayai.v1` protobuf types and the `Agents` service's code (tonic-prost-build, from
/// `proto/rayai/v1/agents.proto`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("rayai.v1");

    /// The encoded descriptors of `rayai/v1/agents.proto`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/rayai_v1_descriptor.bin"));
}

/// The metadata key that names the application a call goes to, as Ray Serve's.
pub(crate) const APPLICATION: &str = "application";

/// The label of an application or a method the server does not have.
pub(crate) const UNKNOWN: &str = "<unknown>";

/// The request id of a call, in the request's extensions (for the `Agents` service).
#[derive(Clone)]
pub(crate) struct RequestId(pub(crate) Arc<str>);

/// The gRPC listener's service.
#[derive(Clone)]
pub(crate) struct GrpcService {
    shared: Arc<Shared>,
    health: health::HealthService,
    reflection: reflection::Service,
    agents: pb::agents_server::AgentsServer<agents::Agents>,
}

mod reflection {
    //! Server reflection (v1 and v1alpha) over the descriptors of the services served here.

    use std::convert::Infallible;

    use http_body_util::BodyExt as _;
    use rayai_core::handler::{BoxError, HttpBody};
    use tower::util::BoxCloneSyncService;

    /// A reflection service, boxed (tonic-reflection's types cannot be named).
    pub(super) type Boxed =
        BoxCloneSyncService<http::Request<HttpBody>, http::Response<HttpBody>, Infallible>;

    /// Both versions of the reflection service.
    #[derive(Clone)]
    pub(super) struct Service {
        pub(super) v1: Boxed,
        pub(super) v1alpha: Boxed,
    }

    /// `service` with our body type.
    fn boxed<S, B>(service: S) -> Boxed
    where
        S: tower::Service<
                http::Request<HttpBody>,
                Response = http::Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use tower::ServiceExt as _;
        BoxCloneSyncService::new(
            service.map_response(|resp| resp.map(|b| b.map_err(Into::into).boxed_unsync())),
        )
    }

    impl Service {
        /// Reflection over `rayai.v1` and `grpc.health.v1`.
        pub(super) fn new() -> Service {
            let builder = || {
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(super::pb::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            };
            Service {
                v1: boxed(builder().build_v1().expect("the descriptors are valid")),
                v1alpha: boxed(
                    builder()
                        .build_v1alpha()
                        .expect("the descriptors are valid"),
                ),
            }
        }
    }
}

impl GrpcService {
    /// The service of a server's gRPC listener.
    pub(crate) fn new(shared: Arc<Shared>) -> GrpcService {
        GrpcService {
            health: health::HealthService::new(shared.clone()),
            reflection: reflection::Service::new(),
            agents: pb::agents_server::AgentsServer::new(agents::Agents::new(shared.clone())),
            shared,
        }
    }

    /// Answers one call.
    async fn handle(self, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let request_id: Arc<str> = match req
            .headers()
            .get(crate::service::X_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 256)
        {
            Some(id) => id.into(),
            None => uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .into(),
        };
        let method: Arc<str> = req.uri().path().into();
        let application = req
            .headers()
            .get(APPLICATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let deadline = self.deadline(req.headers(), started);
        // The labels name what the server has: an application it does not serve, or a method
        // of a service it does not have (`UNIMPLEMENTED`, counted in `done`), is `<unknown>`,
        // so that no client can make `/metrics` grow without bound.
        let known = application.is_empty()
            || self
                .shared
                .controller
                .snapshot()
                .application(&application)
                .is_some();
        let metrics = if known {
            self.shared.monitor.grpc_call(&application, &method)
        } else {
            self.shared.monitor.grpc_call(UNKNOWN, UNKNOWN)
        };
        let mut resp = match self
            .dispatch(req, &request_id, &application, deadline)
            .await
        {
            Ok(resp) => resp,
            Err(status) => status::response(&status),
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            resp.headers_mut()
                .insert(crate::service::X_REQUEST_ID, value);
        }
        // A status in the headers (a trailers-only answer) is final; otherwise the trailers say.
        let early = status::code_in(resp.headers());
        resp.map(|body| Body::from(Observed::new(body, deadline, early, metrics).boxed_unsync()))
    }

    /// The call's deadline: its `grpc-timeout`, else the server's `request_timeout_s`, the
    /// earlier of both.
    fn deadline(&self, headers: &HeaderMap, started: Instant) -> Option<Instant> {
        let asked = headers
            .get(const { http::HeaderName::from_static("grpc-timeout") })
            .and_then(|v| v.to_str().ok())
            .and_then(status::parse_timeout);
        let server = self
            .shared
            .options
            .request_timeout_s
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64);
        let timeout = match (asked, server) {
            (Some(a), Some(s)) => Some(a.min(s)),
            (a, s) => a.or(s),
        };
        timeout.map(|t| started + t)
    }

    /// The answer of the service the call's path names, or the status it fails with.
    async fn dispatch(
        &self,
        mut req: Request<Incoming>,
        request_id: &Arc<str>,
        application: &str,
        deadline: Option<Instant>,
    ) -> Result<Response<rayai_core::handler::HttpBody>, tonic::Status> {
        let is_grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        if !is_grpc || req.method() != http::Method::POST {
            return Err(tonic::Status::invalid_argument(
                "not a gRPC call: a POST with content-type application/grpc",
            ));
        }
        if self.shared.draining.load(Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("the server is shutting down"));
        }
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let path = req.uri().path().to_owned();
        let limit = usize::try_from(self.shared.options.max_body_bytes).unwrap_or(usize::MAX);
        let req: Request<HttpBody> = req.map(|b| -> HttpBody {
            http_body_util::Limited::new(b, limit)
                .map_err(|e| -> BoxError { e })
                .boxed_unsync()
        });
        // Each service's future boxed on its own (their types are generic; boxed here, the
        // call's future stays simple enough for the compiler to see it is `Send`).
        let call: BoxFuture<'static, Result<Response<HttpBody>, tonic::Status>> =
            if path.starts_with("/grpc.health.v1.Health/") {
                served(self.health.server(), req)
            } else if path.starts_with("/grpc.reflection.v1.ServerReflection/") {
                served(self.reflection.v1.clone(), req)
            } else if path.starts_with("/grpc.reflection.v1alpha.ServerReflection/") {
                served(self.reflection.v1alpha.clone(), req)
            } else if path.starts_with("/rayai.v1.Agents/") {
                served(self.agents.clone(), req)
            } else {
                let this = self.clone();
                let (request_id, application) = (request_id.clone(), application.to_owned());
                Box::pin(async move { this.application(req, &request_id, &application).await })
            };
        match deadline {
            None => call.await,
            Some(at) => match tokio::time::timeout_at(at, call).await {
                Ok(answer) => answer,
                Err(_) => Err(status::deadline_exceeded()),
            },
        }
    }

    /// A call to an application's gRPC service: through its ingress deployment's handle, with
    /// its replicas' policies.
    async fn application(
        &self,
        mut req: Request<rayai_core::handler::HttpBody>,
        request_id: &Arc<str>,
        application: &str,
    ) -> Result<Response<rayai_core::handler::HttpBody>, tonic::Status> {
        let snapshot = self.shared.controller.snapshot();
        let with_ingress: Vec<&str> = snapshot
            .applications()
            .filter(|a| a.ingress().is_some_and(is_service))
            .map(|a| a.name())
            .collect();
        let app = if application.is_empty() {
            match with_ingress.as_slice() {
                [only] => snapshot.application(only),
                _ => {
                    return Err(tonic::Status::not_found(format!(
                        "Application metadata not set: set the `application` metadata key to one \
                         of the applications: {}",
                        listing(&with_ingress)
                    )));
                }
            }
        } else {
            snapshot
                .application(application)
                .filter(|a| a.ingress().is_some_and(is_service))
        };
        let Some(handle) = app.and_then(|a| a.ingress()).cloned() else {
            return Err(tonic::Status::not_found(format!(
                "Application \"{application}\" not found. Available applications: {}",
                listing(&with_ingress)
            )));
        };
        let session = req
            .headers()
            .get(crate::service::X_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("default")
            .to_owned();
        let mut ctx = RequestContext::new(request_id.clone(), session);
        if let Some(model_id) = model_id(req.headers())? {
            ctx = ctx.with_multiplexed_model_id(model_id);
        }
        req.extensions_mut().insert(ctx.clone());
        handle.serve(ctx, req).await.map_err(|e| status_of(&e))
    }
}

/// The multiplexed model a call asks for: the `multiplexed_model_id` metadata key (Ray Serve's
/// for gRPC), or `serve_multiplexed_model_id` as over HTTP; `INVALID_ARGUMENT` when it is not
/// visible ASCII or longer than 512 bytes.
pub(crate) fn model_id(headers: &http::HeaderMap) -> Result<Option<String>, tonic::Status> {
    let Some(value) = headers
        .get(const { http::HeaderName::from_static("multiplexed_model_id") })
        .or_else(|| headers.get(crate::roles::wire::X_MODEL_ID))
    else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(id) if id.len() <= 512 => Ok((!id.is_empty()).then(|| id.to_owned())),
        _ => Err(tonic::Status::invalid_argument(
            "multiplexed_model_id: visible ASCII, at most 512 bytes",
        )),
    }
}

/// Whether a deployment can answer calls: a handler (a tonic service), not an agent (agents
/// answer through `rayai.v1.Agents`).
fn is_service(handle: &rayai_core::DeploymentHandle) -> bool {
    handle.kind() == rayai_core::DeploymentKind::Handler
}

/// The names, for messages: `['a', 'b']`.
fn listing(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A tonic service's answer to `req`, with our body type.
fn served<S, B>(
    service: S,
    req: Request<HttpBody>,
) -> BoxFuture<'static, Result<Response<HttpBody>, tonic::Status>>
where
    S: tower::Service<Request<HttpBody>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    use futures::FutureExt as _;
    // tonic's servers are always ready (`poll_ready` is `Ready(Ok)`), so the call is made at
    // once; no async block, whose `Send` the compiler cannot prove for these generic futures.
    let mut service = service;
    Box::pin(service.call(req).map(|answer| match answer {
        Ok(resp) => Ok(resp.map(|b| -> HttpBody { b.map_err(Into::into).boxed_unsync() })),
        Err(never) => match never {},
    }))
}

impl hyper::service::Service<Request<Incoming>> for GrpcService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// A response body on its way out: cut at the deadline with `DEADLINE_EXCEEDED` trailers, and
/// recorded in the metrics when it ends (its status from the trailers, or the headers).
struct Observed {
    body: rayai_core::handler::HttpBody,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    status: Option<Code>,
    metrics: Option<crate::monitor::GrpcCall>,
    done: bool,
}

impl Observed {
    fn new(
        body: rayai_core::handler::HttpBody,
        deadline: Option<Instant>,
        early: Option<Code>,
        metrics: crate::monitor::GrpcCall,
    ) -> Observed {
        Observed {
            body,
            sleep: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
            status: early,
            metrics: Some(metrics),
            done: false,
        }
    }

    /// Records the call with the status it ended with.
    fn finish(&mut self) {
        if let Some(metrics) = self.metrics.take() {
            metrics.done(self.status.unwrap_or(Code::Unknown) as i32);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        if self.metrics.is_some() {
            // The client went away (or hyper dropped the body): a cancelled call.
            if self.status.is_none() {
                self.status = Some(Code::Cancelled);
            }
            self.finish();
        }
    }
}

impl http_body::Body for Observed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.status = status::code_in(trailers).or(this.status);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(Some(Err(e))) => {
                this.status = Some(Code::Internal);
                this.done = true;
                this.finish();
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(None) => {
                this.done = true;
                this.finish();
                return Poll::Ready(None);
            }
            Poll::Pending => {}
        }
        if let Some(sleep) = this.sleep.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            // The deadline passed mid-answer: the stream ends here, with the status.
            this.done = true;
            this.status = Some(Code::DeadlineExceeded);
            this.finish();
            return Poll::Ready(Some(Ok(Frame::trailers(status::trailers(
                &status::deadline_exceeded(),
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        // A trailers-only answer (a status and no message) must end with its headers.
        self.done || self.body.is_end_stream()
    }
}
