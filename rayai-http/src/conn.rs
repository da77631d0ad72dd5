//! Connections: one way to bind, one accept loop and one way to serve a connection, shared by
//! every listener (the serving port, the dashboard, the metrics export port), with the same
//! timeouts: the request head must arrive
//! within `header_read_timeout_s`, an idle keep-alive connection closes after
//! `keep_alive_timeout_s`, and on shutdown connections get the grace period to finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::Body;
use crate::error::Error;
use crate::idle::{Activity, Tracked, idle_timeout};

/// How a listener treats its connections.
#[derive(Clone)]
pub(crate) struct ConnOptions {
    /// Time to receive a request head (and the TLS handshake).
    pub(crate) header_read_timeout: Option<Duration>,
    /// Idle time after which a keep-alive connection closes.
    pub(crate) keep_alive: Option<Duration>,
    /// Time connections get to finish once the listener stops.
    pub(crate) grace: Duration,
    /// TLS, when the listener speaks HTTPS.
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
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

/// A service that counts its requests in flight on the connection's [`Activity`], so that a
/// connection busy with a long request is never idle.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: ConnService> hyper::service::Service<Request<Incoming>> for Counted<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        let call = self.inner.call(req);
        Box::pin(async move {
            let resp = call.await;
            drop(in_flight);
            resp
        })
    }
}

/// Accepts connections on `listener` and serves each with `service` until `stop` turns true;
/// then waits (at most the grace period) for open connections and sets `stopped`.
pub(crate) async fn accept_loop<S: ConnService>(
    listener: TcpListener,
    service: S,
    options: ConnOptions,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let builder = Arc::new(connection_builder(options.header_read_timeout));
    // Every connection holds a receiver; when they are all gone, the connections are closed.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopping(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Activity::new();
        let conn = Conn {
            builder: builder.clone(),
            service: Counted {
                inner: service.clone(),
                activity: activity.clone(),
            },
            activity,
            keep_alive: options.keep_alive,
            stop: stop.clone(),
            _open: open_rx.clone(),
        };
        match options.tls.clone() {
            None => {
                tokio::spawn(conn.serve(stream));
            }
            Some(acceptor) => {
                let handshake_timeout = options
                    .header_read_timeout
                    .unwrap_or(Duration::from_secs(30));
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
    let _ = tokio::time::timeout(options.grace, open_tx.closed()).await;
    let _ = stopped.send(true);
}

fn connection_builder(header_read_timeout: Option<Duration>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
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
    keep_alive: Option<Duration>,
    stop: watch::Receiver<bool>,
    /// Held while the connection is open.
    _open: watch::Receiver<()>,
}

impl<S: ConnService> Conn<S> {
    /// Serves the connection until it closes; gracefully once the listener stops or it has
    /// been idle for the keep-alive timeout.
    async fn serve<I>(mut self, io: I)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let io = Tracked::new(io, self.activity.clone());
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), self.service.clone());
        let mut conn = std::pin::pin!(conn);
        let idle = async {
            match self.keep_alive {
                Some(timeout) => idle_timeout(&self.activity, timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = conn.as_mut() => {}
            () = stopping(&mut self.stop) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            () = idle => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}
