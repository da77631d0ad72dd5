//! Connections: one way to bind, one accept loop and one way to serve a connection, shared by
//! every listener (the serving port, the dashboard, the metrics export port), with the same
//! bounds on every phase of a connection (see `idle`): its first byte and each request head
//! within `header_read_timeout_s`, an idle keep-alive connection closed after
//! `keep_alive_timeout_s`, a stalled request body answered `408` (see `intake`).
//!
//! The listeners of one server share one `idle::Gate`: at most `max_connections` open at once. At
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
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};

use crate::HttpOptions;
use crate::body::{Body, SHUTDOWN_MESSAGE};
use crate::error::{self, Error};
use crate::idle::{Activity, Bounds, CONNECTION, Expired, Gate, Pressure, Tracked, expired};

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
    signals: Arc<Signals>,
    /// Turns true at the end of the grace period (for bodies, and HTTP/2 requests, which run in
    /// tasks of their own).
    ending: watch::Receiver<bool>,
}

impl<S: ConnService> hyper::service::Service<Request<Incoming>> for Counted<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let request_id = req.headers().get(crate::service::X_REQUEST_ID).cloned();
        let http1 = req.version() < http::Version::HTTP_2;
        let call = CONNECTION.scope(self.activity.clone(), self.inner.call(req));
        let ending = self.ending.clone();
        let signals = self.signals.clone();
        Box::pin(async move {
            let answered = if http1 {
                // HTTP/1: the request runs in its connection's task, which the end of the grace
                // period wakes (see `Signals`): a look at the flag at each poll is enough.
                let mut call = std::pin::pin!(call);
                std::future::poll_fn(|cx| match call.as_mut().poll(cx) {
                    Poll::Ready(resp) => Poll::Ready(Some(resp)),
                    Poll::Pending if signals.has(END) => Poll::Ready(None),
                    Poll::Pending => Poll::Pending,
                })
                .await
            } else {
                let mut end = ending.clone();
                tokio::select! {
                    biased;
                    resp = call => Some(resp),
                    () = stopping(&mut end) => None,
                }
            };
            let resp = match answered {
                Some(Ok(resp)) => resp,
                Some(Err(never)) => match never {},
                None => return Ok(shutting_down(request_id)),
            };
            // In flight until its body is written.
            let mut resp = resp;
            let body = std::mem::take(resp.body_mut());
            *resp.body_mut() = body.ending_on(&ending, resp.headers(), in_flight);
            Ok(resp)
        })
    }
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

/// What a listener tells one of its connections, and the connection's watchdog: flags, and the
/// connection task's waker. Setting a flag is an atomic `or` and one wake-up; the connection
/// task looks at the flags when it runs, so a request pays for none of it.
pub(crate) struct Signals {
    flags: std::sync::atomic::AtomicU8,
    waker: AtomicWaker,
}

/// Close gracefully: the listener stops (HTTP/1.1 closes after the response, HTTP/2 sends
/// `GOAWAY`), or the connection has been idle too long.
const STOP: u8 = 1;
/// The grace period is over: requests still unanswered are answered `503`.
const END: u8 = 2;
/// Close now.
const CUT: u8 = 4;

impl Signals {
    fn new() -> Arc<Signals> {
        Arc::new(Signals {
            flags: std::sync::atomic::AtomicU8::new(0),
            waker: AtomicWaker::new(),
        })
    }

    fn raise(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::AcqRel);
        self.waker.wake();
    }

    fn has(&self, flag: u8) -> bool {
        self.flags.load(Ordering::Acquire) & flag != 0
    }
}

/// The open connections of one listener, to raise a flag on all of them.
#[derive(Default)]
struct Registry {
    slots: std::sync::Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    open: Vec<Option<Arc<Signals>>>,
    free: Vec<usize>,
    /// Flags raised on every connection, for those that register later.
    raised: u8,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a connection's signals (with the flags raised so far); its slot.
    fn add(&self, signals: &Arc<Signals>) -> usize {
        let mut slots = self.lock();
        if slots.raised != 0 {
            signals.raise(slots.raised);
        }
        match slots.free.pop() {
            Some(i) => {
                slots.open[i] = Some(signals.clone());
                i
            }
            None => {
                slots.open.push(Some(signals.clone()));
                slots.open.len() - 1
            }
        }
    }

    fn remove(&self, slot: usize) {
        let mut slots = self.lock();
        if let Some(entry) = slots.open.get_mut(slot) {
            *entry = None;
            slots.free.push(slot);
        }
    }

    fn raise(&self, flag: u8) {
        let mut slots = self.lock();
        slots.raised |= flag;
        for signals in slots.open.iter().flatten() {
            signals.raise(flag);
        }
    }
}

/// A connection's place in its listener's [`Registry`], given back when it closes.
struct Registered {
    registry: Arc<Registry>,
    slot: usize,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(self.slot);
    }
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
    let registry = Arc::new(Registry::default());
    // Every connection holds a receiver; when they are all gone, the connections are closed.
    let (open_tx, open_rx) = watch::channel(());
    // Turns true at the end of the grace period: running response bodies end.
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
        let signals = Signals::new();
        let registered = Registered {
            slot: registry.add(&signals),
            registry: registry.clone(),
        };
        let conn = Conn {
            builder: builder.clone(),
            service: Counted {
                inner: service.clone(),
                activity: activity.clone(),
                signals: signals.clone(),
                ending: end_rx.clone(),
            },
            activity,
            bounds: options.bounds,
            pressure: options.gate.pressure(),
            signals,
            _registered: registered,
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
    drop(end_rx);
    registry.raise(STOP);
    if tokio::time::timeout(options.grace, open_tx.closed())
        .await
        .is_err()
    {
        tracing::info!("the grace period is over: ending the requests and streams still open");
        let _ = end_tx.send(true);
        registry.raise(END);
        if tokio::time::timeout(FLUSH, open_tx.closed()).await.is_err() {
            tracing::debug!("cutting the connections still open");
            registry.raise(CUT);
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
    signals: Arc<Signals>,
    _registered: Registered,
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
    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            builder,
            service,
            activity,
            bounds,
            mut pressure,
            signals,
            ..
        } = self;
        // The watchdog runs beside the connection and wakes it only when a phase runs out.
        let watchdog = {
            let (activity, signals) = (activity.clone(), signals.clone());
            tokio::spawn(async move {
                let why = expired(&activity, bounds, &mut pressure).await;
                tracing::debug!(?why, "closing a connection waiting on its client");
                signals.raise(if why == Expired::Idle { STOP } else { CUT });
            })
        };
        let (io, mut closed) = Cuttable::new(Tracked::new(io, activity));
        let cut = io.cut.clone();
        {
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let mut graceful = false;
            std::future::poll_fn(|cx| {
                signals.waker.register(cx.waker());
                if signals.has(CUT) {
                    cut.cut();
                }
                if !graceful && signals.has(STOP) {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
                conn.as_mut().poll(cx).map(|_| ())
            })
            .await;
        }
        watchdog.abort();
        // Hyper is done with the connection and has dropped it; an upgraded one lives on until
        // the application drops it, or the grace period ends.
        std::future::poll_fn(|cx| {
            signals.waker.register(cx.waker());
            if signals.has(CUT) {
                cut.cut();
            }
            Pin::new(&mut closed).poll(cx).map(|_| ())
        })
        .await;
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

    /// Whether the switch was thrown.
    fn check(&self) -> std::io::Result<()> {
        if self.done.load(Ordering::Acquire) {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionAborted,
                "the server is shutting down",
            ))
        } else {
            Ok(())
        }
    }

    /// `io`'s answer to a poll, after [`Cut::check`] let it through: a task left waiting is
    /// registered to wake on a cut, which it sees at once if the cut came meanwhile. A poll
    /// that is ready registers nothing (most are: a write, a read of a request that came).
    fn waiting<T>(
        &self,
        waker: &AtomicWaker,
        cx: &Context<'_>,
        io: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if io.is_ready() {
            return io;
        }
        waker.register(cx.waker());
        match self.check() {
            Ok(()) => Poll::Pending,
            Err(cut) => Poll::Ready(Err(cut)),
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
        self.cut.check()?;
        let io = Pin::new(&mut self.io).poll_read(cx, buf);
        self.cut.waiting(&self.cut.read, cx, io)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Cuttable<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.cut.check()?;
        let io = Pin::new(&mut self.io).poll_write(cx, data);
        self.cut.waiting(&self.cut.write, cx, io)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.cut.check()?;
        let io = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.cut.waiting(&self.cut.write, cx, io)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.cut.check()?;
        let io = Pin::new(&mut self.io).poll_flush(cx);
        self.cut.waiting(&self.cut.write, cx, io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.cut.done.load(Ordering::Acquire) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
