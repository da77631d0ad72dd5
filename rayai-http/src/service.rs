//! The request path: request id, proxy endpoints, route lookup, then the application.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::time::Duration;

use rayai_core::handler::HttpService;
use rayai_core::handler::{MatchedRoute, RootPath};
use rayai_core::{Controller, DeploymentHandle, RequestContext};
use tower::ServiceExt;

use crate::HttpOptions;
use crate::body::{Body, DeadlineBody};
use crate::chat::{self, AgentEndpoint, AgentRoute, Exchange};
use crate::error;
use crate::intake::Intake;
use crate::monitor::{Monitor, RouteMetrics, method_label};
use crate::roles::{Role, wire};

/// `x-request-id`.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// A request's own timeout in seconds.
const X_REQUEST_TIMEOUT: HeaderName = HeaderName::from_static("x-request-timeout-seconds");
/// A sticky-session key.
pub(crate) const X_SESSION_ID: HeaderName = HeaderName::from_static("x-session-id");

/// Calls an app's service. The future is built outside any async block: rustc cannot prove an
/// async block holding a generic tower future `Send` for every lifetime of the boxed error type.
fn call_service(
    service: HttpService,
    req: Request<rayai_core::handler::HttpBody>,
) -> futures::future::BoxFuture<'static, Response<rayai_core::handler::HttpBody>> {
    Box::pin(futures::FutureExt::map(
        service.oneshot(req),
        |result| match result {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
    ))
}

/// Takes `root_path` (where the server is mounted behind a proxy) off the request's path; a path
/// outside it is the path, for the 404.
fn strip_root_path(req: &mut Request<Incoming>, root_path: &str) -> Result<(), String> {
    let root = root_path.trim_end_matches('/');
    if root.is_empty() {
        return Ok(());
    }
    let path = req.uri().path();
    let rest = match path.strip_prefix(root) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return Err(path.to_owned()),
    };
    let path_and_query = match req.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| req.uri().path().to_owned())?;
    Ok(())
}

/// The timeout of this request, as Ray Serve's proxy reads it: `x-request-timeout-seconds` when
/// it is a number (`0` or less, or one too large to matter, means no timeout), else the
/// server's `request_timeout_s` (a malformed header is ignored).
fn request_timeout<B>(req: &Request<B>, options: &HttpOptions) -> Option<f64> {
    let server = || options.request_timeout().map(|t| t.as_secs_f64());
    let Some(value) = req.headers().get(X_REQUEST_TIMEOUT) else {
        return server();
    };
    match value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        Some(secs) if secs.is_nan() => server(),
        Some(secs) if secs > 0.0 && secs < 1e9 => Some(secs),
        Some(_) => None,
        None => server(),
    }
}

/// `x-session-id`: a sticky-session key for a request whose body names no session.
fn session_header(headers: &http::HeaderMap) -> Option<Arc<str>> {
    headers
        .get(X_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(Arc::from)
}

/// The longest multiplexed model id a request may name.
const MAX_MODEL_ID_BYTES: usize = 512;

/// The `serve_multiplexed_model_id` header: the multiplexed model a request asks for, if any;
/// why it is refused when it is not visible ASCII or too long.
pub(crate) fn model_id_header(headers: &http::HeaderMap) -> Result<Option<Arc<str>>, String> {
    let Some(value) = headers.get(wire::X_MODEL_ID) else {
        return Ok(None);
    };
    let bad = |why: &str| format!("Invalid serve_multiplexed_model_id header: {why}.");
    let id = value
        .to_str()
        .map_err(|_| bad("it must be visible ASCII"))?
        .trim();
    if id.len() > MAX_MODEL_ID_BYTES {
        return Err(bad("it is longer than 512 bytes"));
    }
    Ok((!id.is_empty()).then(|| Arc::from(id)))
}

/// Refuses paths that could escape a route prefix once normalised: `.` and `..` segments (also
/// percent-encoded) and encoded slashes or backslashes.
pub(crate) fn check_path(path: &str) -> Result<(), &'static str> {
    // Most paths have none of the bytes these rules are about: one scan, no allocation.
    if !path.bytes().any(|b| matches!(b, b'%' | b'\\' | b'.')) {
        return Ok(());
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return Err("Invalid path: encoded slashes and backslashes are not allowed");
    }
    let dots = lower.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".");
        decoded == "." || decoded == ".."
    });
    if dots {
        return Err("Invalid path: '.' and '..' segments are not allowed");
    }
    Ok(())
}

/// RFC 9112 §3.2: an HTTP/1.1 request carries exactly one `Host`, an HTTP/1.0 one at most one,
/// and its value is `host[:port]` or empty (checked byte by byte: no user info, path or space).
/// HTTP/2 names the host in `:authority`, which hyper checks.
pub(crate) fn host_is_valid<B>(req: &Request<B>) -> bool {
    let version = req.version();
    if version != Version::HTTP_11 && version != Version::HTTP_10 {
        return true;
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => version == Version::HTTP_10,
        (Some(_), Some(_)) => false,
        (Some(host), None) => host.as_bytes().iter().all(|&b| HOST_BYTES[usize::from(b)]),
    }
}

/// The bytes a `Host` value may hold: letters, digits, `-._~!$&'()*+,;=%:[]`.
static HOST_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
};

/// State shared by every connection of one server. The routes are the controller's: this holds
/// no registry of its own.
pub(crate) struct Shared {
    pub(crate) options: HttpOptions,
    pub(crate) controller: Controller,
    pub(crate) draining: AtomicBool,
    pub(crate) monitor: Arc<Monitor>,
    /// The process's role (`RAYAI_ROLE`).
    pub(crate) role: Role,
}

/// The whole server as a tower service, for server-wide layers.
pub type ServerService =
    tower::util::BoxCloneSyncService<Request<Incoming>, Response<Body>, Infallible>;

/// The server's own service, before any server-wide layer.
pub(crate) fn server_service(shared: Arc<Shared>) -> ServerService {
    ServerService::new(tower::service_fn(move |req: Request<Incoming>| {
        shared.clone().handle(req)
    }))
}

/// The hyper service of the serving port.
#[derive(Clone)]
pub(crate) struct Proxy {
    pub(crate) shared: Arc<Shared>,
    /// The server wrapped in its server-wide layers, when it has any.
    pub(crate) layered: Option<ServerService>,
}

impl hyper::service::Service<Request<Incoming>> for Proxy {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if let Some(layered) = &self.layered {
            return Box::pin(layered.clone().oneshot(req));
        }
        Box::pin(self.shared.clone().handle(req))
    }
}

fn fresh_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

/// What serves a request's route: looked up once, then dispatched.
struct Target {
    prefix: String,
    rest: String,
    deployment: DeploymentHandle,
    /// The application's ingress in its layers; `None` for an agent.
    ingress: Option<HttpService>,
}

/// The innermost service of an application's ingress: the request goes to the ingress
/// deployment, and its errors (overload, a panic, the service's own) become the contract's
/// responses inside the application's layers, which see them go by.
fn ingress_service(handle: DeploymentHandle, server_retry_after_s: Option<u32>) -> HttpService {
    let retry_after_s = handle
        .config()
        .backpressure_retry_after_s()
        .or(server_retry_after_s);
    HttpService::new(tower::service_fn(
        move |mut req: Request<rayai_core::handler::HttpBody>| {
            let handle = handle.clone();
            let ctx = req
                .extensions_mut()
                .remove::<RequestContext>()
                .unwrap_or_else(|| RequestContext::new("", "default"));
            async move {
                Ok(match handle.serve(ctx, req).await {
                    Ok(resp) => resp,
                    Err(e) => error::from_error(&e, retry_after_s).map(Body::into_http),
                })
            }
        },
    ))
}

/// A request on its way: counted as ongoing while it lives, and as `499` (client closed
/// request) if it is dropped before it was answered.
struct Counted<'a> {
    monitor: &'a Monitor,
    _ongoing: crate::monitor::OngoingGuard<'a>,
    /// Taken when the request was answered and recorded.
    metrics: Option<Arc<RouteMetrics>>,
    method: &'static str,
    started: tokio::time::Instant,
    request_id: Arc<str>,
}

impl Counted<'_> {
    /// Records the request as answered with `resp`, under the route pattern it reports.
    fn answered(mut self, resp: &Response<Body>) {
        if let Some(metrics) = self.metrics.take() {
            let status = resp.status().as_u16();
            match resp.extensions().get::<MatchedRoute>() {
                None => self.record(&metrics, metrics.route(), status),
                matched => self.record(&metrics, &metrics.route_label(matched), status),
            }
        }
    }

    /// Counts the request and writes its access log line.
    fn record(&self, metrics: &RouteMetrics, route: &Arc<str>, status: u16) {
        let elapsed = self.started.elapsed();
        let method = self.method;
        // The line is built only when someone logs it, and its message without the formatting
        // machinery (every layer copies it as it is).
        if tracing::enabled!(target: "rayai::access", tracing::Level::INFO) {
            let mut message = String::with_capacity(method.len() + route.len() + 5);
            message.push_str(method);
            message.push(' ');
            message.push_str(route);
            message.push(' ');
            message.push_str(itoa::Buffer::new().format(status));
            tracing::info!(
                target: "rayai::access",
                message = message.as_str(),
                request_id = &*self.request_id,
                method,
                route = &**route,
                deployment = metrics.deployment_name(),
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
            );
        }
        self.monitor
            .metrics
            .record(metrics, route, method, status, elapsed);
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(metrics) = self.metrics.take() {
            self.record(&metrics, metrics.route(), CLIENT_CLOSED_REQUEST);
        }
    }
}

/// nginx's and Ray's status for a request whose client went away before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Shared {
    // The request's layers (`handle`, `route`, `agent`) are functions that return an `async
    // move` block rather than `async fn`s: an `async fn` keeps its arguments and the locals they
    // are moved into side by side in its future, and the request (264 bytes) would be stored,
    // and copied, twice per layer of a future every request moves around.
    #[expect(
        clippy::manual_async_fn,
        reason = "the request once per layer: see `handle`"
    )]
    fn handle(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static {
        async move {
            let this: &Shared = &self;
            let started = tokio::time::Instant::now();
            let id_header = req
                .headers()
                .get(X_REQUEST_ID)
                .cloned()
                .unwrap_or_else(fresh_request_id);
            let request_id: Arc<str> = match id_header.to_str() {
                Ok(id) => id.into(),
                Err(_) => String::from_utf8_lossy(id_header.as_bytes()).into(),
            };
            if !host_is_valid(&req) {
                let mut resp = error::invalid_host();
                resp.headers_mut().insert(X_REQUEST_ID, id_header);
                return Ok(resp);
            }
            if let Err(path) = strip_root_path(&mut req, &this.options.root_path) {
                let mut resp = error::no_route(&path);
                resp.headers_mut().insert(X_REQUEST_ID, id_header);
                return Ok(resp);
            }
            let method = method_label(req.method());
            // One read of the published routes, one lookup, for the metrics and the dispatch.
            let (metrics, target, openai) = {
                let snapshot = this.controller.snapshot();
                let path = req.uri().path();
                let found = snapshot.lookup(path);
                // The OpenAI routes of a prefix whose agents serve them come before the route
                // table: they hang below the prefix, where an ingress at it would take them.
                let openai = crate::openai::mount(&snapshot, path);
                let metrics = match &openai {
                    Some(mount) => {
                        this.monitor
                            .metrics
                            .route(&mount.route, &mount.application, None)
                    }
                    None => this.monitor.route_for(path, found.map(|(route, _)| route)),
                };
                let retry_after = this.options.backpressure_retry_after_s;
                let target = found.map(|(route, rest)| {
                    let ingress = route
                        .target()
                        .ingress_service(|handle| ingress_service(handle.clone(), retry_after))
                        .cloned();
                    Target {
                        // Only an ingress is told its prefix (an agent's answer does not name it).
                        prefix: match ingress {
                            Some(_) => route.prefix().to_owned(),
                            None => String::new(),
                        },
                        rest: rest.to_owned(),
                        deployment: route.target().deployment().clone(),
                        ingress,
                    }
                });
                (metrics, target, openai)
            };
            // Counts the request as ongoing, and as `499` if the client goes away (this future is
            // dropped) before the answer.
            let counted = Counted {
                monitor: &this.monitor,
                _ongoing: this.monitor.metrics.ongoing(),
                metrics: Some(metrics),
                method,
                started,
                request_id: request_id.clone(),
            };
            let mut resp = match openai {
                // Boxed: the OpenAI branch's future is three times the agent's, and each layer
                // of a request's future is as large as its largest branch, and moved whole.
                Some(mount) => Box::pin(this.openai(mount, req, request_id, started)).await,
                None => this.route(req, target, request_id, started).await,
            };
            resp.headers_mut().insert(X_REQUEST_ID, id_header);
            counted.answered(&resp);
            Ok(resp)
        }
    }

    #[expect(
        clippy::manual_async_fn,
        reason = "the request once per layer: see `handle`"
    )]
    fn route(
        &self,
        req: Request<Incoming>,
        target: Option<Target>,
        request_id: Arc<str>,
        started: tokio::time::Instant,
    ) -> impl Future<Output = Response<Body>> + '_ {
        async move {
            match req.uri().path() {
                "/-/healthz" => return self.healthz(),
                "/-/routes" => return self.routes_json(),
                path if path.starts_with(wire::PREFIX) && matches!(self.role, Role::Replica(_)) => {
                    // Boxed, as the OpenAI branch is: only a replica process serves it.
                    return Box::pin(self.wire(req, &request_id)).await;
                }
                _ => {}
            }
            if let Err(reason) = check_path(req.uri().path()) {
                return error::detail(StatusCode::BAD_REQUEST, reason);
            }
            let timeout = request_timeout(&req, &self.options);
            let Some(target) = target else {
                return error::no_route(req.uri().path());
            };
            let deadline = timeout.map(|secs| started + Duration::from_secs_f64(secs));
            let work = async {
                match target.ingress {
                    None => {
                        let agent = AgentEndpoint::new(&target.deployment);
                        self.agent(
                            agent,
                            &target.rest,
                            req,
                            request_id.clone(),
                            deadline.zip(timeout),
                        )
                        .await
                    }
                    Some(service) => {
                        // Boxed: the ingress's own future is boxed anyway (`call_service`).
                        Box::pin(self.app(
                            service,
                            &target.prefix,
                            &target.rest,
                            req,
                            request_id.clone(),
                            deadline,
                        ))
                        .await
                    }
                }
            };
            match deadline.zip(timeout) {
                Some((at, secs)) => match tokio::time::timeout_at(at, work).await {
                    Ok(resp) => resp,
                    Err(_) => error::timed_out(&request_id, secs),
                },
                None => work.await,
            }
        }
    }

    /// The OpenAI API of the agents under a route prefix.
    async fn openai(
        &self,
        mount: crate::openai::Mount,
        req: Request<Incoming>,
        request_id: Arc<str>,
        started: tokio::time::Instant,
    ) -> Response<Body> {
        if let Err(reason) = check_path(req.uri().path()) {
            return crate::openai::error_response(StatusCode::BAD_REQUEST, reason, None, None);
        }
        if mount.op != crate::openai::Op::ChatCompletions {
            return mount.models(req.method());
        }
        let session_header = session_header(req.headers());
        let model_header = match model_id_header(req.headers()) {
            Ok(id) => id,
            Err(why) => {
                return crate::openai::error_response(StatusCode::BAD_REQUEST, &why, None, None);
            }
        };
        let timeout = request_timeout(&req, &self.options);
        let exchange = crate::openai::Exchange {
            request_id,
            session_header,
            model_header,
            http11: req.version() == Version::HTTP_11,
            deadline: timeout.map(|secs| (started + Duration::from_secs_f64(secs), secs)),
            retry_after_s: self.options.backpressure_retry_after_s,
            sse_keep_alive: self.options.sse_keep_alive(),
        };
        mount.chat(req, &self.options, exchange).await
    }

    /// An agent's chat contract.
    #[expect(
        clippy::manual_async_fn,
        reason = "the request once per layer: see `handle`"
    )]
    fn agent<'a>(
        &'a self,
        agent: AgentEndpoint<'a>,
        rest: &'a str,
        req: Request<Incoming>,
        request_id: Arc<str>,
        deadline: Option<(tokio::time::Instant, f64)>,
    ) -> impl Future<Output = Response<Body>> + 'a {
        async move {
            if rest == "/chat/" {
                // FastAPI's redirect to the route without the trailing slash.
                let root = self.options.root_path.trim_end_matches('/');
                let path = req.uri().path().trim_end_matches('/');
                let location = match req.uri().query() {
                    Some(query) => format!("{root}{path}?{query}"),
                    None => format!("{root}{path}"),
                };
                return error::redirect(&location);
            }
            let shape = match AgentEndpoint::route(rest, req.method()) {
                Ok(AgentRoute::Chat(shape)) => shape,
                Ok(AgentRoute::Docs(docs)) => {
                    // Where the agent's routes hang, as the client sees them: the server's
                    // `root_path` and the path up to `rest`.
                    let path = req.uri().path();
                    let own = path.strip_suffix(rest).unwrap_or(path);
                    let mount = rayai_core::route::join_prefix(
                        self.options.root_path.trim_end_matches('/'),
                        own,
                    );
                    let mount = mount.trim_end_matches('/');
                    return agent.docs(docs, req.method(), mount, req.uri().query());
                }
                Err(resp) => return resp,
            };
            let http11 = req.version() == Version::HTTP_11;
            let session_header = session_header(req.headers());
            let model_id = match model_id_header(req.headers()) {
                Ok(id) => id,
                Err(why) => return error::detail(StatusCode::BAD_REQUEST, &why),
            };
            let (body, held) = match crate::intake::read_whole(req, &self.options).await {
                Ok(read) => read,
                Err(resp) => return resp,
            };
            let parsed = chat::parse(&body, shape);
            // The body's bytes are parsed: they no longer count against the process's budget.
            drop((body, held));
            let request = match parsed {
                Ok(r) => r,
                Err(detail) => {
                    return error::json_response(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        &serde_json::json!({ "detail": detail }),
                    );
                }
            };
            let cut_off =
                deadline.map(|(at, secs)| (at, error::timeout_message(&request_id, secs)));
            let exchange = Exchange {
                request_id,
                session_header,
                model_id,
                http11,
                cut_off,
                retry_after_s: agent
                    .backpressure_retry_after_s()
                    .or(self.options.backpressure_retry_after_s),
                sse_keep_alive: self.options.sse_keep_alive(),
            };
            agent.answer(request, shape, exchange).await
        }
    }

    /// An application's ingress: the path below the prefix, the prefix as [`RootPath`], the body
    /// within the limit, the response body cut off at the deadline.
    async fn app(
        &self,
        service: HttpService,
        prefix: &str,
        rest: &str,
        req: Request<Incoming>,
        request_id: Arc<str>,
        deadline: Option<tokio::time::Instant>,
    ) -> Response<Body> {
        let limit = self.options.max_body_bytes;
        let declared = crate::intake::declared_length(&req);
        if declared.is_some_and(|n| n > limit) {
            return error::too_large(limit);
        }
        let version = req.version();
        let (mut parts, body) = req.into_parts();
        let body = match Intake::new(body, declared, &self.options) {
            Ok(body) => body.on_connection(),
            Err(why) => return why.response(version),
        };
        // The ingress may keep the body's bytes until it answers: they count until then.
        let held = body.held();
        let path = if rest.is_empty() { "/" } else { rest };
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        parts.uri = match http::Uri::builder().path_and_query(path_and_query).build() {
            Ok(uri) => uri,
            Err(_) => return error::detail(StatusCode::BAD_REQUEST, "Invalid path"),
        };
        let session = parts
            .headers
            .get(X_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("default")
            .to_owned();
        let model_id = match model_id_header(&parts.headers) {
            Ok(id) => id,
            Err(why) => return error::detail(StatusCode::BAD_REQUEST, &why),
        };
        let root = self.options.root_path.trim_end_matches('/');
        parts.extensions.insert(RootPath(if root.is_empty() {
            prefix.to_owned()
        } else {
            rayai_core::route::join_prefix(root, prefix)
                .trim_end_matches('/')
                .to_owned()
        }));
        let mut ctx = RequestContext::new(request_id, session);
        if let Some(model_id) = model_id {
            ctx = ctx.with_multiplexed_model_id(model_id);
        }
        parts.extensions.insert(ctx);
        let body = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).boxed_unsync();
        let resp = call_service(service, Request::from_parts(parts, body)).await;
        // A body that stalled or went over the budget is answered so, whatever the handler
        // made of the error it read.
        if let Some(why) = held.refusal() {
            return why.response(version);
        }
        drop(held);
        resp.map(|body| match deadline {
            Some(at) => Body::from(DeadlineBody::new(body, at).boxed_unsync()),
            None => Body::from(body),
        })
    }

    /// Whether the server takes requests now: not draining, and (in the replica role) its
    /// deployments run.
    #[cfg(feature = "grpc")]
    pub(crate) fn serving(&self) -> bool {
        !self.draining.load(Ordering::SeqCst) && self.local_missing().is_none()
    }

    fn healthz(&self) -> Response<Body> {
        if self.draining.load(Ordering::SeqCst) {
            error::text(StatusCode::SERVICE_UNAVAILABLE, "draining")
        } else if let Some(missing) = self.local_missing() {
            error::text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("starting: deployment `{missing}` does not run yet"),
            )
        } else {
            error::text(StatusCode::OK, "success")
        }
    }

    /// In the replica role, a deployment of this process that does not run (yet).
    fn local_missing(&self) -> Option<&str> {
        let Role::Replica(local) = &self.role else {
            return None;
        };
        local
            .iter()
            .find(|name| self.local_handle(name).is_none())
            .map(String::as_str)
    }

    /// A deployment whose replicas run in this process (the replica role).
    fn local_handle(&self, name: &str) -> Option<DeploymentHandle> {
        match &self.role {
            Role::Replica(local) if local.iter().any(|l| l == name) => self.controller.handle(name),
            _ => None,
        }
    }

    /// A request from a proxy or another process's handle to a deployment running here.
    async fn wire(&self, req: Request<Incoming>, request_id: &str) -> Response<Body> {
        wire::serve(
            req,
            request_id,
            |name| self.local_handle(name),
            &self.options,
            self.draining.load(Ordering::SeqCst),
        )
        .await
    }

    fn routes_json(&self) -> Response<Body> {
        let snapshot = self.controller.snapshot();
        let map: BTreeMap<&str, &str> = snapshot
            .routes()
            .iter()
            .map(|r| (r.prefix(), r.app()))
            .collect();
        error::json_response(
            StatusCode::OK,
            &serde_json::to_value(map).unwrap_or_default(),
        )
    }
}
