//! The wire between a proxy (or a handle) and a replica process: HTTP on the replica process's
//! serving port, which takes HTTP/1.1 and HTTP/2 without TLS (h2c). The client pools its
//! connections: HTTP/1.1 keep-alive by default (its own pool, [`super::pool`]), HTTP/2 with
//! `RAYAI_WIRE=h2` (hyper-util's client). HTTP/1.1 is the default because it costs less per
//! request: measured with callgrind over 2000 requests through a proxy and one replica process,
//! 119k and 77k instructions per request in the proxy and the replica process over HTTP/2, 88k
//! and 47k over HTTP/1.1 with the same client, 69k and 48k with our own pool.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `POST /-/replica/<deployment>/call` | the agent's JSON input | `200` and `run`'s JSON value |
//! | `POST /-/replica/<deployment>/typed` | a typed deployment's request as JSON | `200` and its response as JSON |
//! | `POST /-/replica/<deployment>/text`, `/events` | the JSON input | `200` and one line per item: `{"i": item}`, then `{"end": true}` or `{"e": error}` |
//! | `<any method> /-/replica/<deployment>/serve` | the request's own body | the handler's response |
//! | `GET /-/replica/<deployment>/health` | | `200` and `{"capacity": n}` (running replicas times `max_ongoing_requests`) while the deployment takes requests here |
//!
//! Every request carries `x-request-id`, `x-rayai-session` and, for sticky sessions,
//! `x-rayai-session-key`, and for a multiplexed model `serve_multiplexed_model_id`; `serve` carries the request's own URI in `x-rayai-uri`. An error is
//! any status with `x-rayai-error: 1` and a JSON body that [`decode_error`] turns back into the
//! same [`Error`], so the proxy answers exactly what a single process answers. A replica that
//! refuses a request before its code sees it (draining, not serving that deployment) adds
//! `x-rayai-refused: 1`: the proxy sends the request to another replica.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{self, StreamExt};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rayai_core::handler::{BoxError, HttpBody};
use rayai_core::remote::{Failure, RemoteStream, Transport};
use rayai_core::{AgentError, DeploymentHandle, Error, RequestContext};
use serde_json::{Value, json};

use super::pool::{self, Leased, Pool, error_text};
use crate::{Body, HttpOptions};

/// The path prefix of the wire's requests.
pub(crate) const PREFIX: &str = "/-/replica/";
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_SESSION: HeaderName = HeaderName::from_static("x-rayai-session");
const X_SESSION_KEY: HeaderName = HeaderName::from_static("x-rayai-session-key");
/// The request's multiplexed model id, as a client sends it to the proxy.
pub(crate) const X_MODEL_ID: HeaderName = HeaderName::from_static("serve_multiplexed_model_id");
const X_URI: HeaderName = HeaderName::from_static("x-rayai-uri");
const X_ERROR: HeaderName = HeaderName::from_static("x-rayai-error");
const X_REFUSED: HeaderName = HeaderName::from_static("x-rayai-refused");
/// The largest error or JSON answer read from a replica.
const MAX_ANSWER: usize = 64 << 20;

/// An error as it crosses the wire.
pub(crate) fn encode_error(error: &Error) -> Value {
    match error {
        Error::Agent(e) => json!({
            "kind": "agent",
            "status": e.status().as_u16(),
            "message": e.message(),
            "detail": e.detail(),
            "retry_after": e.retry_after(),
        }),
        Error::Panicked(message) => json!({ "kind": "panicked", "message": message }),
        Error::NotAnObject(kind) => json!({ "kind": "not_an_object", "type": kind }),
        Error::TextStreamUnsupported => json!({ "kind": "text_unsupported" }),
        Error::EventStreamUnsupported => json!({ "kind": "events_unsupported" }),
        Error::Backpressure { queued, max } => {
            json!({ "kind": "backpressure", "queued": queued, "max": max })
        }
        Error::ShuttingDown(deployment) => {
            json!({ "kind": "shutting_down", "deployment": deployment })
        }
        Error::ReplicaStopped => json!({ "kind": "replica_stopped" }),
        Error::Unavailable { deployment, reason } => {
            json!({ "kind": "unavailable", "deployment": deployment, "reason": reason })
        }
        Error::ReplicaLost {
            deployment,
            replica,
            reason,
        } => json!({
            "kind": "lost", "deployment": deployment, "replica": replica, "reason": reason,
        }),
        other => json!({ "kind": "other", "message": other.to_string() }),
    }
}

/// The error [`encode_error`] wrote.
pub(crate) fn decode_error(value: &Value) -> Error {
    let text = |key: &str| value[key].as_str().unwrap_or_default().to_owned();
    let number = |key: &str| {
        value[key]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    match value["kind"].as_str().unwrap_or_default() {
        "agent" => {
            let status = value["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut e = AgentError::new(text("message")).with_status(status);
            if !value["detail"].is_null() {
                e = e.with_detail(value["detail"].clone());
            }
            if let Some(secs) = value["retry_after"]
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
            {
                e = e.with_retry_after(secs);
            }
            Error::Agent(e)
        }
        "panicked" => Error::Panicked(text("message")),
        "not_an_object" => Error::NotAnObject(python_type(value["type"].as_str())),
        "text_unsupported" => Error::TextStreamUnsupported,
        "events_unsupported" => Error::EventStreamUnsupported,
        "backpressure" => Error::Backpressure {
            queued: number("queued"),
            max: number("max"),
        },
        "shutting_down" => Error::ShuttingDown(text("deployment")),
        "replica_stopped" => Error::ReplicaStopped,
        "unavailable" => Error::Unavailable {
            deployment: text("deployment"),
            reason: text("reason"),
        },
        "lost" => Error::ReplicaLost {
            deployment: text("deployment"),
            replica: text("replica"),
            reason: text("reason"),
        },
        _ => Error::Agent(AgentError::new(text("message"))),
    }
}

/// The `&'static` name of a Python type a [`Error::NotAnObject`] names.
fn python_type(name: Option<&str>) -> &'static str {
    match name {
        Some("None") => "None",
        Some("bool") => "bool",
        Some("float") => "float",
        Some("int") => "int",
        Some("str") => "str",
        Some("list") => "list",
        _ => "dict",
    }
}

// ----- the replica's side -----

/// An error answer: `x-rayai-error`, and `x-rayai-refused` when the request never reached the
/// replica's code.
fn error_response(error: &Error) -> Response<Body> {
    let refused = matches!(error, Error::ShuttingDown(_));
    let status = if refused {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    let mut resp = json_answer(status, &encode_error(error));
    resp.headers_mut()
        .insert(X_ERROR, HeaderValue::from_static("1"));
    if refused {
        resp.headers_mut()
            .insert(X_REFUSED, HeaderValue::from_static("1"));
    }
    resp
}

fn refused(status: StatusCode, message: String) -> Response<Body> {
    let mut resp = json_answer(status, &json!({ "kind": "other", "message": message }));
    resp.headers_mut()
        .insert(X_ERROR, HeaderValue::from_static("1"));
    resp.headers_mut()
        .insert(X_REFUSED, HeaderValue::from_static("1"));
    resp
}

fn json_answer(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::full(serde_json::to_vec(value).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The request context a wire request carries.
fn context(req: &Request<Incoming>, fallback_id: &str) -> RequestContext {
    let header = |name: &HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header(&X_REQUEST_ID).unwrap_or_else(|| fallback_id.to_owned());
    let session = header(&X_SESSION).unwrap_or_else(|| "default".to_owned());
    let mut ctx = RequestContext::new(id, session);
    if let Some(key) = header(&X_SESSION_KEY) {
        ctx = ctx.with_session_key(key);
    }
    match header(&X_MODEL_ID) {
        Some(model) => ctx.with_multiplexed_model_id(model),
        None => ctx,
    }
}

/// Serves one wire request on a replica process: `local` finds the deployments that run here,
/// `options` bound the body as any request's (size, read timeout, the process's budget),
/// `draining` refuses new work.
pub(crate) async fn serve(
    req: Request<Incoming>,
    request_id: &str,
    local: impl Fn(&str) -> Option<DeploymentHandle>,
    options: &HttpOptions,
    draining: bool,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some((deployment, op)) = path
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.split_once('/'))
    else {
        return refused(StatusCode::NOT_FOUND, format!("no wire route {path}"));
    };
    if draining {
        return error_response(&Error::ShuttingDown(deployment.to_owned()));
    }
    let Some(handle) = local(deployment) else {
        return refused(
            StatusCode::NOT_FOUND,
            format!("deployment `{deployment}` does not run in this process"),
        );
    };
    if op == "health" {
        return health(&handle);
    }
    let ctx = context(&req, request_id);
    if op == "serve" {
        let declared = crate::intake::declared_length(&req);
        let version = req.version();
        let (parts, body) = req.into_parts();
        let body = match crate::intake::Intake::new(body, declared, options) {
            Ok(body) => body.on_connection(),
            Err(why) => return why.response(version),
        };
        let req = Request::from_parts(parts, rayai_core::handler::boxed(body));
        return serve_http(handle, ctx, req).await;
    }
    let data: Value = match crate::intake::read_whole(req, options).await {
        Ok((bytes, _held)) => match serde_json::from_slice(&bytes) {
            Ok(data) => data,
            Err(e) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    format!("the request is not JSON: {e}"),
                );
            }
        },
        Err(resp) => {
            let status = resp.status();
            return refused(status, format!("the request body was refused ({status})"));
        }
    };
    match op {
        "call" => match handle.call_with(ctx, data).await {
            Ok(value) => json_answer(StatusCode::OK, &value),
            Err(e) => error_response(&e),
        },
        "typed" => match handle.call_typed_json(ctx, data).await {
            Ok(value) => json_answer(StatusCode::OK, &value),
            Err(e) => error_response(&e),
        },
        "text" => match handle.stream_text(ctx, data).await {
            Ok(items) => lines(items.map(|r| r.map(Value::String))),
            Err(e) => error_response(&e),
        },
        "events" => match handle.stream_events(ctx, data).await {
            Ok(items) => lines(items),
            Err(e) => error_response(&e),
        },
        _ => refused(StatusCode::NOT_FOUND, format!("no wire operation {op}")),
    }
}

/// Whether the deployment takes requests here, and how many at once: its running replicas
/// times their `max_ongoing_requests`.
fn health(handle: &DeploymentHandle) -> Response<Body> {
    let running = handle.status().running_replicas;
    if running == 0 {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "deployment `{}` has no running replica here yet",
                handle.name()
            ),
        );
    }
    let capacity = running.saturating_mul(handle.config().max_ongoing_requests());
    json_answer(StatusCode::OK, &json!({ "capacity": capacity }))
}

/// A stream's items as lines, each sent as it comes.
fn lines(
    items: impl futures::Stream<Item = Result<Value, Error>> + Send + 'static,
) -> Response<Body> {
    let items = items.map(Some).chain(stream::once(async { None }));
    let mut ended = false;
    let body = items.filter_map(move |item| {
        let line = if ended {
            None
        } else {
            match item {
                Some(Ok(value)) => Some(json!({ "i": value })),
                Some(Err(e)) => {
                    ended = true;
                    Some(json!({ "e": encode_error(&e) }))
                }
                None => {
                    ended = true;
                    Some(json!({ "end": true }))
                }
            }
        };
        let bytes = line.map(|line| {
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            Bytes::from(bytes)
        });
        async move { bytes }
    });
    let mut resp = Response::new(Body::stream(body));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Forwards an HTTP request to a handler deployment here, under its own URI.
async fn serve_http(
    handle: DeploymentHandle,
    ctx: RequestContext,
    req: Request<HttpBody>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    if let Some(uri) = parts
        .headers
        .remove(&X_URI)
        .and_then(|v| v.to_str().ok().and_then(|s| s.parse::<Uri>().ok()))
    {
        parts.uri = uri;
    }
    parts.headers.remove(&X_SESSION);
    parts.headers.remove(&X_SESSION_KEY);
    let req = Request::from_parts(parts, body);
    match handle.serve(ctx, req).await {
        Ok(resp) => resp.map(Body::from),
        Err(e) => error_response(&e),
    }
}

// ----- the proxy's side -----

/// Requests to replica processes over pooled connections: HTTP/1.1 keep-alive connections (one
/// per request in flight), or with `http2` one multiplexed HTTP/2 connection per replica
/// process.
pub(crate) struct WireClient {
    connections: Connections,
}

/// Where the client's connections come from.
enum Connections {
    /// HTTP/1.1 keep-alive connections of our own pool.
    Http1(Pool),
    /// hyper-util's client, HTTP/2 only.
    Http2(Box<Client<HttpConnector, HttpBody>>),
}

impl WireClient {
    pub(crate) fn new(http2: bool) -> Arc<WireClient> {
        if !http2 {
            return Arc::new(WireClient {
                connections: Connections::Http1(Pool::default()),
            });
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let mut builder = Client::builder(TokioExecutor::new());
        // Windows large enough that requests and answers do not wait for window updates.
        builder
            .pool_idle_timeout(Duration::from_secs(60))
            .http2_only(true)
            .http2_initial_stream_window_size(4 << 20)
            .http2_initial_connection_window_size(32 << 20);
        Arc::new(WireClient {
            connections: Connections::Http2(Box::new(builder.build(connector))),
        })
    }

    /// A request to `address` (with `path` as its URI: the pool sends it on a connection to
    /// `address`, and the HTTP/2 client wants the whole URI).
    fn request(
        address: &str,
        path: &str,
        method: Method,
        ctx: &RequestContext,
        body: HttpBody,
    ) -> Result<(String, Request<HttpBody>), Failure> {
        let uri = pool::path_uri(path)?;
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        if let Ok(v) = HeaderValue::from_str(ctx.request_id()) {
            headers.insert(X_REQUEST_ID, v);
        }
        if let Ok(v) = HeaderValue::from_str(ctx.session_id()) {
            headers.insert(X_SESSION, v);
        }
        if let Some(v) = ctx.sticky_key().and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert(X_SESSION_KEY, v);
        }
        if let Ok(v) = HeaderValue::from_str(ctx.multiplexed_model_id())
            && !v.is_empty()
        {
            headers.insert(X_MODEL_ID, v);
        }
        Ok((address.to_owned(), req))
    }

    /// Sends `req` to its address, as it is, on a pooled connection.
    fn transmit(
        &self,
        address: String,
        mut req: Request<HttpBody>,
    ) -> BoxFuture<'static, Result<Response<Leased>, Failure>> {
        match &self.connections {
            Connections::Http1(pool) => {
                let pool = pool.clone();
                Box::pin(async move { pool.send(&address, req).await })
            }
            Connections::Http2(client) => {
                let client = Client::clone(client);
                Box::pin(async move {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    *req.uri_mut() = format!("http://{address}{path}")
                        .parse::<Uri>()
                        .map_err(|e| Failure::Unsent(format!("bad address {address:?}: {e}")))?;
                    let resp = client.request(req).await.map_err(classify)?;
                    Ok(resp.map(Leased::plain))
                })
            }
        }
    }

    /// Sends `req`; an answer marked as an error becomes the [`Failure`] it says.
    fn send(
        &self,
        req: Result<(String, Request<HttpBody>), Failure>,
    ) -> BoxFuture<'static, Result<Response<Leased>, Failure>> {
        let sent = req.map(|(address, req)| self.transmit(address, req));
        Box::pin(async move {
            let resp = sent?.await?;
            if resp.headers().contains_key(&X_ERROR) {
                let refused = resp.headers().contains_key(&X_REFUSED);
                let value = read_answer(resp.into_body()).await?;
                let error = decode_error(&value);
                return Err(if refused {
                    Failure::Refused(error.to_string())
                } else {
                    Failure::Answered(error)
                });
            }
            Ok(resp)
        })
    }

    fn json_request(
        address: &str,
        deployment: &str,
        op: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> Result<(String, Request<HttpBody>), Failure> {
        let body = rayai_core::handler::full(serde_json::to_vec(data).unwrap_or_default());
        let (address, mut req) = Self::request(
            address,
            &format!("{PREFIX}{deployment}/{op}"),
            Method::POST,
            ctx,
            body,
        )?;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok((address, req))
    }

    fn stream<T: Send + 'static>(
        &self,
        req: Result<(String, Request<HttpBody>), Failure>,
        item: fn(Value) -> Option<T>,
    ) -> BoxFuture<'static, Result<RemoteStream<T>, Failure>> {
        let sent = self.send(req);
        Box::pin(async move {
            let resp = sent.await?;
            Ok(line_stream(resp.into_body(), item))
        })
    }
}

/// Whether a failed request reached the replica: a connection that could not be made never
/// did; anything else may have.
fn classify(error: hyper_util::client::legacy::Error) -> Failure {
    let text = error_text(&error);
    if error.is_connect() {
        Failure::Unsent(text)
    } else {
        Failure::Lost(text)
    }
}

async fn read_bytes(body: Leased) -> Result<Bytes, Failure> {
    Ok(http_body_util::Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| Failure::Lost(format!("the answer was cut: {e}")))?
        .to_bytes())
}

async fn read_answer(body: Leased) -> Result<Value, Failure> {
    let bytes = read_bytes(body).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Failure::Lost(format!("the answer is not JSON: {e}")))
}

/// The items of a line stream, as they arrive; a body that ends without its last line ends the
/// stream with [`Error::ReplicaLost`].
fn line_stream<T: Send + 'static>(body: Leased, item: fn(Value) -> Option<T>) -> RemoteStream<T> {
    struct State {
        body: Leased,
        buffer: BytesMut,
        done: bool,
    }
    let state = State {
        body,
        buffer: BytesMut::new(),
        done: false,
    };
    let lost = |reason: String| Error::ReplicaLost {
        deployment: String::new(),
        replica: String::new(),
        reason,
    };
    stream::unfold(state, move |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            if let Some(at) = st.buffer.iter().position(|&b| b == b'\n') {
                let line = st.buffer.split_to(at + 1);
                let Ok(value) = serde_json::from_slice::<Value>(&line[..at]) else {
                    st.done = true;
                    return Some((Err(lost("a stream line is not JSON".to_owned())), st));
                };
                if let Some(v) = value.get("i") {
                    return match item(v.clone()) {
                        Some(t) => Some((Ok(t), st)),
                        None => {
                            st.done = true;
                            Some((Err(lost("a stream item has the wrong type".to_owned())), st))
                        }
                    };
                }
                st.done = true;
                if let Some(e) = value.get("e") {
                    return Some((Err(decode_error(e)), st));
                }
                return None;
            }
            if st.buffer.len() > MAX_ANSWER {
                st.done = true;
                return Some((Err(lost("a stream item is too large".to_owned())), st));
            }
            match st.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        st.buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    st.done = true;
                    return Some((
                        Err(lost(format!("the stream was cut: {}", error_text(&e)))),
                        st,
                    ));
                }
                None => {
                    st.done = true;
                    return Some((
                        Err(lost("the stream ended before its last item".to_owned())),
                        st,
                    ));
                }
            }
        }
    })
    .boxed()
}

impl Transport for WireClient {
    fn call_json(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<Bytes, Failure>> {
        let sent = self.send(Self::json_request(address, deployment, "call", ctx, data));
        Box::pin(async move { read_bytes(sent.await?.into_body()).await })
    }

    fn call_typed(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<Value, Failure>> {
        let sent = self.send(Self::json_request(address, deployment, "typed", ctx, data));
        Box::pin(async move { read_answer(sent.await?.into_body()).await })
    }

    fn stream_text(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<RemoteStream<String>, Failure>> {
        let req = Self::json_request(address, deployment, "text", ctx, data);
        self.stream(req, |v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    fn stream_events(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        data: &Value,
    ) -> BoxFuture<'static, Result<RemoteStream<Value>, Failure>> {
        let req = Self::json_request(address, deployment, "events", ctx, data);
        self.stream(req, Some)
    }

    fn serve(
        &self,
        address: &str,
        deployment: &str,
        ctx: &RequestContext,
        req: Request<HttpBody>,
    ) -> BoxFuture<'static, Result<Response<HttpBody>, Failure>> {
        let (parts, body) = req.into_parts();
        let wire = Self::request(
            address,
            &format!("{PREFIX}{deployment}/serve"),
            parts.method.clone(),
            ctx,
            body,
        )
        .map(|(address, mut wire)| {
            let headers = wire.headers_mut();
            for (name, value) in &parts.headers {
                if name != http::header::HOST && !headers.contains_key(name) {
                    headers.append(name, value.clone());
                }
            }
            if let Ok(v) = HeaderValue::from_str(&parts.uri.to_string()) {
                headers.insert(X_URI, v);
            }
            (address, wire)
        });
        let sent = self.send(wire);
        Box::pin(async move {
            let resp = sent.await?;
            Ok(resp.map(|body| body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
        })
    }

    fn probe(&self, address: &str, deployment: &str) -> BoxFuture<'static, Result<u32, String>> {
        let path = format!("{PREFIX}{deployment}/health");
        let req = pool::path_uri(&path).map(|uri| {
            let mut req = Request::new(rayai_core::handler::empty());
            *req.uri_mut() = uri;
            self.transmit(address.to_owned(), req)
        });
        Box::pin(async move {
            let describe = |f: Failure| match f {
                Failure::Unsent(why) | Failure::Refused(why) | Failure::Lost(why) => why,
                Failure::Answered(e) => e.to_string(),
            };
            let resp = req.map_err(describe)?.await.map_err(describe)?;
            let status = resp.status();
            let answer = read_answer(resp.into_body())
                .await
                .map_err(|_| format!("the health probe answered {status} and no JSON"))?;
            if status != StatusCode::OK {
                let why = decode_error(&answer);
                return Err(format!("the health probe answered {status}: {why}"));
            }
            answer["capacity"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| "the health probe answered no capacity".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_the_wire_unchanged() {
        let errors = [
            Error::Agent(
                AgentError::unprocessable(json!([{"loc": ["body"], "msg": "bad"}]))
                    .with_retry_after(3),
            ),
            Error::Agent(AgentError::new("boom")),
            Error::Panicked("oh no".into()),
            Error::NotAnObject("list"),
            Error::TextStreamUnsupported,
            Error::EventStreamUnsupported,
            Error::Backpressure { queued: 2, max: 1 },
            Error::ShuttingDown("echo".into()),
            Error::ReplicaStopped,
        ];
        for error in errors {
            let back = decode_error(&encode_error(&error));
            assert_eq!(back.to_string(), error.to_string());
            let (a, b) = (
                crate::error::from_error(&error, None),
                crate::error::from_error(&back, None),
            );
            assert_eq!(a.status(), b.status(), "{error}");
            assert_eq!(a.headers(), b.headers(), "{error}");
        }
    }
}
