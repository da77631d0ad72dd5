//! Test support for the end-to-end tests (each test binary includes it as `mod common`): a server
//! on `127.0.0.1:0`, and a small HTTP client on hyper's connection API (HTTP/1.1 and HTTP/2 prior
//! knowledge) that can read a body frame by frame, hang up mid-response, or write raw bytes.

#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rayai::{App, HttpOptions, Server, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// How long any single exchange may take before the test fails instead of hanging.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a server on a free port of 127.0.0.1 and deploys `app` at `/`.
pub async fn serve(app: App, options: HttpOptions) -> Server {
    // A node of its own per test server: tests run in parallel in one process, and the process's
    // node (the default) would be shared between them.
    let node = rayai::NodeResources::new(64.0, 64 << 30);
    let server = Server::start_with(
        HttpOptions {
            host: "127.0.0.1".to_owned(),
            port: 0,
            // Tests never bind a fixed port: a dashboard asked for on port 0 runs, the default
            // one (8265) does not.
            dashboard_port: options.dashboard_port.filter(|&port| port == 0),
            // Shutdown closes the listener at once (a test of the drain delay starts its own).
            drain_delay_s: 0.0,
            ..options
        },
        rayai::Controller::new(node),
    )
    .await
    .expect("the server starts");
    server.deploy(app, "/").await.expect("the app deploys");
    server
}

/// Which HTTP version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1.
    H1,
    /// HTTP/2 over cleartext with prior knowledge (h2c).
    H2,
}

/// A request body for [`open`].
pub type ReqBody = BoxBody<Bytes, Infallible>;

/// A whole body.
pub fn full(body: &str) -> ReqBody {
    Full::new(Bytes::copy_from_slice(body.as_bytes())).boxed()
}

/// A body sent in these chunks, with no `content-length` (HTTP/1.1 chunked encoding).
pub fn chunked(chunks: Vec<Bytes>) -> ReqBody {
    let frames = chunks.into_iter().map(|c| Ok(Frame::data(c)));
    StreamBody::new(rayai::stream::iter(frames)).boxed()
}

/// A complete response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The header's value; panics (naming it) when it is missing or not text.
    pub fn header(&self, name: &str) -> &str {
        header_str(&self.headers, name)
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the status, the exact `content-type` and the exact body together, showing the
    /// whole reply when any of them differs.
    #[track_caller]
    pub fn assert(&self, status: StatusCode, content_type: &str, body: &str) {
        let content_type_seen = self
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("<not text>"));
        assert_eq!(
            (self.status, content_type_seen, self.body.as_str()),
            (status, Some(content_type), body),
            "(status, content-type, body) of {self:#?}"
        );
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` header in {headers:?}"))
        .to_str()
        .unwrap_or_else(|_| panic!("`{name}` is not text"))
}

/// Cancels a task when dropped: dropping the guard of a connection closes its socket.
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A request builder for `path` (origin-form for HTTP/1.1, absolute for HTTP/2).
pub fn request(
    addr: SocketAddr,
    proto: Proto,
    method: Method,
    path: &str,
) -> http::request::Builder {
    let builder = Request::builder().method(method);
    match proto {
        Proto::H1 => builder.uri(path).header(header::HOST, addr.to_string()),
        Proto::H2 => builder.uri(format!("http://{addr}{path}")),
    }
}

/// A JSON `POST` of `body` to `path`, with extra headers.
pub fn json_post(
    addr: SocketAddr,
    proto: Proto,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<ReqBody> {
    let mut builder =
        request(addr, proto, Method::POST, path).header(header::CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(full(body)).expect("a valid request")
}

/// Nothing arrived on a response body in the time given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Silent;

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<ReqBody>),
    H2(hyper::client::conn::http2::SendRequest<ReqBody>),
}

/// One client connection; dropping it closes the socket.
pub struct Conn {
    sender: Sender,
    _task: AbortOnDrop<()>,
}

impl Conn {
    /// Connects to `addr` and does the handshake of `proto`.
    pub async fn connect(addr: SocketAddr, proto: Proto) -> Conn {
        let handshake = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let io = TokioIo::new(tcp);
            match proto {
                Proto::H1 => {
                    let (send, conn) = hyper::client::conn::http1::handshake(io)
                        .await
                        .expect("HTTP/1.1 handshake");
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    (Sender::H1(send), task)
                }
                Proto::H2 => {
                    let (send, conn) =
                        hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                            .await
                            .expect("HTTP/2 handshake");
                    let task = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    (Sender::H2(send), task)
                }
            }
        };
        let (sender, task) = within(EXCHANGE_TIMEOUT, "the connection", handshake).await;
        Conn {
            sender,
            _task: AbortOnDrop(task),
        }
    }

    /// Sends `req` on this connection and waits for the response head. Dropping the returned
    /// body before its end cancels the request (HTTP/2: `RST_STREAM`).
    pub async fn open(&mut self, req: Request<ReqBody>) -> Streaming {
        let exchange = async {
            match &mut self.sender {
                Sender::H1(send) => {
                    send.ready().await.expect("the connection takes a request");
                    send.send_request(req).await.expect("an HTTP/1.1 response")
                }
                Sender::H2(send) => {
                    send.ready().await.expect("the connection takes a request");
                    send.send_request(req).await.expect("an HTTP/2 response")
                }
            }
        };
        let resp = within(EXCHANGE_TIMEOUT, "the response head", exchange).await;
        let (parts, body) = resp.into_parts();
        Streaming {
            status: parts.status,
            headers: parts.headers,
            body,
            _conn: None,
        }
    }
}

/// A response whose head has arrived; its body is read frame by frame. Dropping it hangs up (the
/// whole connection, when the response owns it).
pub struct Streaming {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    _conn: Option<Conn>,
}

/// Sends `req` on a new connection and waits for the response head.
pub async fn open(addr: SocketAddr, proto: Proto, req: Request<ReqBody>) -> Streaming {
    let mut conn = Conn::connect(addr, proto).await;
    let mut streaming = conn.open(req).await;
    streaming._conn = Some(conn);
    streaming
}

impl Streaming {
    /// The header's value; panics when missing.
    pub fn header(&self, name: &str) -> &str {
        header_str(&self.headers, name)
    }

    /// The next data frame, `Ok(None)` at the end of the body, `Err(Silent)` when none came in
    /// `wait`. Panics on a broken body.
    pub async fn try_frame(&mut self, wait: Duration) -> Result<Option<Bytes>, Silent> {
        let next = async {
            loop {
                match self.body.frame().await {
                    None => return None,
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            return Some(data);
                        }
                    }
                    Some(Err(e)) => panic!("the response body broke: {e}"),
                }
            }
        };
        tokio::time::timeout(wait, next).await.map_err(|_| Silent)
    }

    /// The next data frame, `None` at the end; panics when none came in `wait`.
    pub async fn frame(&mut self, wait: Duration) -> Option<Bytes> {
        self.try_frame(wait)
            .await
            .unwrap_or_else(|Silent| panic!("no frame and no end of body within {wait:?}"))
    }

    /// Every remaining frame until the end of the body, each within `wait` of the previous.
    pub async fn rest(&mut self, wait: Duration) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while let Some(frame) = self.frame(wait).await {
            frames.push(frame);
        }
        frames
    }

    /// Every remaining frame, each within `wait` of the previous, and how the body ended:
    /// `Ok(())` at a clean end, `Err(message)` when it broke (an aborted connection or stream).
    pub async fn rest_or_break(&mut self, wait: Duration) -> (Vec<Bytes>, Result<(), String>) {
        let mut frames = Vec::new();
        loop {
            let next = tokio::time::timeout(wait, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no frame and no end of body within {wait:?}"));
            match next {
                None => return (frames, Ok(())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        frames.push(data);
                    }
                }
                Some(Err(e)) => return (frames, Err(e.to_string())),
            }
        }
    }

    /// Reads the rest of the body into a [`Reply`].
    pub async fn into_reply(mut self) -> Reply {
        let frames = self.rest(EXCHANGE_TIMEOUT).await;
        let bytes: Vec<u8> = frames.concat();
        Reply {
            status: self.status,
            headers: std::mem::take(&mut self.headers),
            body: String::from_utf8(bytes).expect("a UTF-8 body"),
        }
    }
}

/// Sends `req` and reads the whole response.
pub async fn send(addr: SocketAddr, proto: Proto, req: Request<ReqBody>) -> Reply {
    open(addr, proto, req).await.into_reply().await
}

/// `POST path` with a JSON body over HTTP/1.1.
pub async fn post(addr: SocketAddr, path: &str, body: &str) -> Reply {
    post_with(addr, path, &[], body).await
}

/// `POST path` with a JSON body and extra headers over HTTP/1.1.
pub async fn post_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    send(
        addr,
        Proto::H1,
        json_post(addr, Proto::H1, path, headers, body),
    )
    .await
}

/// `GET path` over HTTP/1.1.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    let req = request(addr, Proto::H1, Method::GET, path)
        .body(full(""))
        .expect("a valid request");
    send(addr, Proto::H1, req).await
}

/// `POST path` with a JSON body over HTTP/1.1, returning once the response head is in.
pub async fn open_post(addr: SocketAddr, path: &str, body: &str) -> Streaming {
    open(addr, Proto::H1, json_post(addr, Proto::H1, path, &[], body)).await
}

/// A request running in the background. Dropping it hangs up.
pub struct InFlight(AbortOnDrop<Reply>);

impl InFlight {
    /// Whether the whole response has arrived.
    pub fn is_finished(&self) -> bool {
        self.0.0.is_finished()
    }

    /// Waits for the whole response.
    pub async fn reply(mut self) -> Reply {
        let handle = &mut self.0.0;
        within(EXCHANGE_TIMEOUT, "the in-flight reply", handle)
            .await
            .expect("the request task")
    }
}

/// Starts `POST path` over HTTP/1.1 in the background.
pub fn start_post(addr: SocketAddr, path: &str, body: &str) -> InFlight {
    let req = json_post(addr, Proto::H1, path, &[], body);
    InFlight(AbortOnDrop(tokio::spawn(send(addr, Proto::H1, req))))
}

/// Writes `bytes` on a new connection (then half-closes it when `close_write`), and reads what
/// the server sends until it closes the connection; panics if it does not within `wait`.
pub async fn raw(addr: SocketAddr, bytes: &[u8], close_write: bool, wait: Duration) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(bytes).await.expect("write");
    if close_write {
        tcp.shutdown().await.expect("half-close");
    }
    let mut out = Vec::new();
    within(wait, "the server to close the connection", async {
        // A reset after the server's reply is also the server closing.
        let _ = tcp.read_to_end(&mut out).await;
    })
    .await;
    out
}

/// Awaits `fut`, failing the test (naming `what`) after `wait`.
pub async fn within<F: Future>(wait: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(wait, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {wait:?} waiting for {what}"))
}

/// Polls `condition` until it holds, failing the test (naming `what`) after `wait`.
pub async fn eventually<F, Fut>(wait: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + wait;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {wait:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Starts a server on a free port of 127.0.0.1 that places replicas with `controller` (a node of
/// declared resources), with nothing deployed yet.
pub async fn start_on(controller: rayai::Controller) -> Server {
    let options = HttpOptions {
        host: "127.0.0.1".to_owned(),
        port: 0,
        dashboard_port: None,
        drain_delay_s: 0.0,
        ..HttpOptions::default()
    };
    Server::start_with(options, controller)
        .await
        .expect("the server starts")
}

/// Starts a server as [`start_on`] does and deploys `app` at `/`.
pub async fn serve_on(controller: rayai::Controller, app: App) -> Server {
    let server = start_on(controller).await;
    server.deploy(app, "/").await.expect("the app deploys");
    server
}
