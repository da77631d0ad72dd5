//! Connections: one way to bind, one accept loop and one way to serve a connection, shared by
//! every listener (the serving port, the dashboard, the metrics export port), with the same
//! bounds on every phase of a connection (see `idle`): its first byte and each request head
//! within `header_read_timeout_s`, an idle keep-alive connection closed after
//! `keep_alive_timeout_s`, a stalled request body answered `408` (see `intake`).
//!
//! The listeners of one server share one [`Gate`]: at most `max_connections` open at once. At
//! the cap the accept loop stops accepting (new connections wait in the listen backlog) and the
//! connections waiting on their clients get `idle::UNDER_PRESSURE` to move. Accept errors (out of
//! file descriptors) back off, and are logged at most once a second with their count.
//!
//! How connections end on shutdown: once the listener stops, idle connections close, busy ones
//! finish what they are doing (HTTP/1.1 closes after the response, HTTP/2 sends `GOAWAY`) within
//! the grace period. At its end, a response still streaming is ended properly (an event stream
//! with the contract's error frame and a clean end of body, any other body aborted: see
//! [`Body::ending_on`]), a request not yet answered is answered `503`, and the connections get
//! a moment ([`FLUSH`]) to write that before the ones still open are cut.
//!
//! Connections can upgrade (HTTP/1.1 `Upgrade: websocket`, HTTP/2's extended `CONNECT`): the
//! request carries hyper's `OnUpgrade` to the application, which takes the connection over once
//! the `101` is sent. An upgraded connection is no longer hyper's, but it is still counted here
//! until it closes, and it is cut at the end of the grace period like any other.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};

use crate::HttpOptions;
use crate::body::{Body, SHUTDOWN_MESSAGE};
use crate::error::{self, Error};
use crate::idle::{Activity, Bounds, Expired, Tracked, expired};

/// How a listener treats its connections.
#[derive(Clone)]
pub(crate) struct ConnOptions {
    /// The bounds of the phases a connection waits on its client.
    pub(crate) bounds: Bounds,
    /// Time connections get to finish once the listener stops; then their streams are ended.
    pub(crate) grace: Duration,
    /// TLS, when the listener speaks HTTPS.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
    /// The connections open on every listener of the server.
    pub(crate) gate: Arc<Gate>,
}

impl ConnOptions {
    /// The server's bounds and `gate`, plain HTTP, the server's grace period.
    pub(crate) fn new(options: &HttpOptions, gate: Arc<Gate>) -> Self {
        ConnOptions {
            bounds: Bounds {
                header: options.header_read_timeout(),
                keep_alive: options.keep_alive_timeout(),
            },
            grace: options.graceful_shutdown_timeout(),
            tls: None,
            gate,
        }
    }
}

/// The cap on the connections open at once, shared by the listeners of one server.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    cap: usize,
    /// Bumped each time an accept loop finds the server at its cap.
    full: watch::Sender<u64>,
}

impl Gate {
    pub(crate) fn new(cap: usize) -> Arc<Gate> {
        let cap = cap.clamp(1, Semaphore::MAX_PERMITS);
        Arc::new(Gate {
            permits: Arc::new(Semaphore::new(cap)),
            cap,
            full: watch::channel(0).0,
        })
    }

    /// The number of connections the gate lets in at once.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// A place for one more connection, waiting (and telling the connections the server is
    /// full) while there is none.
    async fn enter(self: &Arc<Self>) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return permit;
        }
        self.full.send_modify(|n| *n = n.wrapping_add(1));
        loop {
            if let Ok(permit) = self.permits.clone().acquire_owned().await {
                return permit;
            }
        }
    }

    fn pressure(self: &Arc<Self>) -> Pressure {
        Pressure {
            gate: self.clone(),
            full: self.full.subscribe(),
        }
    }
}

/// Whether the server is at its connection cap, for a connection's bounds.
pub(crate) struct Pressure {
    gate: Arc<Gate>,
    full: watch::Receiver<u64>,
}

impl Pressure {
    pub(crate) fn on(&self) -> bool {
        self.gate.permits.available_permits() == 0
    }

    /// Resolves when an accept loop next finds the server at its cap.
    pub(crate) async fn changed(&mut self) {
        if self.full.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Accept errors, logged at most once a second with their count.
struct AcceptErrors {
    since_log: u64,
    logged: Option<tokio::time::Instant>,
    backoff: Duration,
}

impl AcceptErrors {
    const FIRST: Duration = Duration::from_millis(5);
    const MOST: Duration = Duration::from_secs(1);

    fn new() -> Self {
        AcceptErrors {
            since_log: 0,
            logged: None,
            backoff: Self::FIRST,
        }
    }

    /// Counts `e`, logs when a second has passed, and returns how long to wait before the next
    /// accept (doubling, up to a second).
    fn failed(&mut self, e: &std::io::Error) -> Duration {
        self.since_log += 1;
        let now = tokio::time::Instant::now();
        if self
            .logged
            .is_none_or(|at| now - at >= Duration::from_secs(1))
        {
            tracing::warn!(
                error = %e,
                count = self.since_log,
                "accept failed ({} times since the last report); backing off",
                self.since_log
            );
            self.since_log = 0;
            self.logged = Some(now);
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Self::MOST);
        wait
    }

    fn accepted(&mut self) {
        self.backoff = Self::FIRST;
    }
}

/// Binds `host:port` for `what` (`the dashboard`, ...); the error names the address and `hint`,
/// the option that changes it.
pub(crate) async fn bind(
    what: &'static str,
    host: &str,
    port: u16,
    hint: &'static str,
) -> Result<(TcpListener, SocketAddr), Error> {
    let address = || format!("{host}:{port}");
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| Error::bind(what, address(), hint, e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::bind(what, address(), hint, e))?;
    Ok((listener, addr))
}

/// The service of one connection: answers requests, never fails.
pub(crate) trait ConnService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> ConnService for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Time the connections get, once their streams are ended at the end of the grace period, to
/// write their last bytes before they are cut.
pub(crate) const FLUSH: Duration = Duration::from_millis(500);

/// A service that counts its requests in flight on the connection's [`Activity`], so that a
/// connection busy with a long request is never idle, and ends them at the end of a shutdown's
/// grace period.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    /// Turns true at the end of the grace period.
    ending: watch::Receiver<bool>,
}

impl<S: ConnService> hyper::service::Service<Request<Incoming>> for Counted<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let request_id = req.headers().get(crate::service::X_REQUEST_ID).cloned();
        // For the bodies read from it (see `intake`).
        req.extensions_mut().insert(self.activity.clone());
        let call = self.inner.call(req);
        let mut ending = self.ending.clone();
        Box::pin(async move {
            let resp = tokio::select! {
                biased;
                resp = call => {
                    let resp = match resp {
                        Ok(resp) => resp,
                        Err(never) => match never {},
                    };
                    let event_stream = is_event_stream(&resp);
                    // In flight until its body is written.
                    resp.map(|body| body.ending_on(&ending, event_stream, in_flight))
                }
                () = stopping(&mut ending) => shutting_down(request_id),
            };
            Ok(resp)
        })
    }
}

/// Whether the response is a stream of Server-Sent Events.
fn is_event_stream(resp: &Response<Body>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// The answer to a request still unanswered at the end of the grace period (its work is
/// dropped): a `503` with its request id.
fn shutting_down(request_id: Option<HeaderValue>) -> Response<Body> {
    let mut resp = error::text(StatusCode::SERVICE_UNAVAILABLE, SHUTDOWN_MESSAGE);
    let id = request_id.unwrap_or_else(|| {
        let mut buf = uuid::Uuid::encode_buffer();
        let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
        HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("shutdown"))
    });
    resp.headers_mut().insert(crate::service::X_REQUEST_ID, id);
    resp
}

/// Accepts connections on `listener` and serves each with `service` until `stop` turns true;
/// then waits (at most the grace period) for open connections, upgraded ones included, ends
/// the streams and requests still running, gives the connections [`FLUSH`] to write that, cuts
/// those still open, and sets `stopped`.
pub(crate) async fn accept_loop<S: ConnService>(
    listener: TcpListener,
    service: S,
    options: ConnOptions,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let builder = Arc::new(connection_builder());
    let mut errors = AcceptErrors::new();
    // Every connection holds a receiver; when they are all gone, the connections are closed.
    let (open_tx, open_rx) = watch::channel(());
    // Turns true when the grace period is over (or is dropped, when this loop ends):
    // connections still open are cut.
    let (cut_tx, cut_rx) = watch::channel(false);
    // Turns true at the end of the grace period: running responses end, unanswered requests
    // are answered 503.
    let (end_tx, end_rx) = watch::channel(false);
    loop {
        // A place first: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            permit = options.gate.enter() => permit,
            () = stopping(&mut stop) => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    errors.accepted();
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    let wait = errors.failed(&e);
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = stopping(&mut stop) => break,
                    }
                }
            },
            () = stopping(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new(options.bounds);
        let conn = Conn {
            builder: builder.clone(),
            service: Counted {
                inner: service.clone(),
                activity: activity.clone(),
                ending: end_rx.clone(),
            },
            activity,
            bounds: options.bounds,
            pressure: options.gate.pressure(),
            stop: stop.clone(),
            cut: cut_rx.clone(),
            _open: open_rx.clone(),
            _permit: permit,
        };
        match options.tls.clone() {
            None => {
                tokio::spawn(conn.serve(stream));
            }
            Some(acceptor) => {
                let handshake_timeout = options.bounds.header.unwrap_or(Duration::from_secs(30));
                tokio::spawn(async move {
                    // A client that never finishes its handshake is dropped like a slow header.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn.serve(tls).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(open_rx);
    drop(cut_rx);
    drop(end_rx);
    if tokio::time::timeout(options.grace, open_tx.closed())
        .await
        .is_err()
    {
        tracing::info!("the grace period is over: ending the requests and streams still open");
        let _ = end_tx.send(true);
        if tokio::time::timeout(FLUSH, open_tx.closed()).await.is_err() {
            tracing::debug!("cutting the connections still open");
            let _ = cut_tx.send(true);
        }
    }
    let _ = stopped.send(true);
}

/// Hyper's connection settings. Its own header timeout is off: it would also close an idle
/// keep-alive connection (its clock starts when it waits for the next head); the connection's
/// watchdog bounds each phase instead.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    // RFC 8441: WebSockets over HTTP/2 (`CONNECT` with `:protocol websocket`).
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}

/// Resolves once `stop` is true.
pub(crate) async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One accepted connection, before it is served.
struct Conn<S> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: Counted<S>,
    activity: Arc<Activity>,
    bounds: Bounds,
    pressure: Pressure,
    stop: watch::Receiver<bool>,
    /// True once the grace period is over.
    cut: watch::Receiver<bool>,
    /// Held while the connection is open.
    _open: watch::Receiver<()>,
    /// Its place under the server's connection cap.
    _permit: OwnedSemaphorePermit,
}

impl<S: ConnService> Conn<S> {
    /// Serves the connection until it closes; gracefully once the listener stops or it has
    /// been idle for the keep-alive timeout, at once when its client takes too long with a
    /// request head (or, at the connection cap, a body). An upgraded connection lives on in the
    /// application's hands: this waits for it to close, and cuts it (and any connection still
    /// open) when the grace period is over.
    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (io, mut closed) = Cuttable::new(Tracked::new(io, self.activity.clone()));
        let cut = io.cut.clone();
        let serving = async {
            {
                let conn = self
                    .builder
                    .serve_connection_with_upgrades(TokioIo::new(io), self.service.clone());
                let mut conn = std::pin::pin!(conn);
                let watchdog = expired(&self.activity, self.bounds, &mut self.pressure);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = stopping(&mut self.stop) => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                    why = watchdog => {
                        tracing::debug!(?why, "closing a connection waiting on its client");
                        if why != Expired::Idle {
                            cut.cut();
                        }
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            }
            // Hyper is done with the connection and has dropped it; an upgraded one lives on
            // until the application drops it.
            let _ = (&mut closed).await;
        };
        tokio::select! {
            () = serving => {}
            () = stopping(&mut self.cut) => cut.cut(),
        }
    }
}

/// A connection's I/O that can be cut: once cut, reads and writes fail, and a task waiting on
/// either is woken to see it. This is how the end of the grace period reaches a connection
/// that hyper no longer serves (an upgraded one, in the application's hands) or that a request
/// keeps busy.
struct Cuttable<I> {
    io: I,
    cut: Arc<Cut>,
    /// Dropped with the I/O, wherever it is by then.
    _alive: oneshot::Sender<()>,
}

/// The switch of a [`Cuttable`], and the tasks to wake when it is thrown.
#[derive(Default)]
struct Cut {
    done: AtomicBool,
    read: AtomicWaker,
    write: AtomicWaker,
}

impl Cut {
    fn cut(&self) {
        self.done.store(true, Ordering::Release);
        self.read.wake();
        self.write.wake();
    }

    /// Registers the task to wake on a cut, then whether it happened.
    fn check(&self, waker: &AtomicWaker, cx: &Context<'_>) -> std::io::Result<()> {
        waker.register(cx.waker());
        if self.done.load(Ordering::Acquire) {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            ))
        } else {
            Ok(())
        }
    }
}

impl<I> Cuttable<I> {
    /// The I/O, and a future that resolves when it is dropped.
    fn new(io: I) -> (Self, oneshot::Receiver<()>) {
        let (alive, closed) = oneshot::channel();
        let io = Cuttable {
            io,
            cut: Arc::default(),
            _alive: alive,
        };
        (io, closed)
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Cuttable<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.cut.check(&self.cut.read, cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Cuttable<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.cut.check(&self.cut.write, cx)?;
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.cut.check(&self.cut.write, cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.cut.check(&self.cut.write, cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.cut.done.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
