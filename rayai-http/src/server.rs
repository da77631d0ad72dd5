//! The server: listens, serves connections over HTTP/1.1 and HTTP/2, deploys applications at
//! route prefixes, drains on shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rayai_core::handler::HttpService;
use rayai_core::route::{join_prefix, validate_prefix};
use rayai_core::{
    App, Controller, DeploymentHandle, DeploymentKind, DeploymentStatus, Error, RequestContext,
    RouteTable,
};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use crate::HttpOptions;
use crate::chat::AgentEndpoint;
use crate::service::{Endpoint, Proxy, ServerService, Shared, server_service};
use std::convert::Infallible;

/// A running HTTP server.
///
/// Cloning is cheap: every clone is the same server.
///
/// # Examples
///
/// ```no_run
/// # async fn example(app: rayai_core::App) -> rayai_core::Result<()> {
/// use rayai_http::{HttpOptions, Server};
///
/// let server = Server::start(HttpOptions { port: 0, ..HttpOptions::default() }).await?;
/// server.deploy(app, "/").await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    controller: Controller,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
    apps: Mutex<HashMap<String, Vec<DeploymentHandle>>>,
}

impl Server {
    /// Binds `options.host:options.port` and starts serving (no routes yet).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound.
    pub async fn start(options: HttpOptions) -> Result<Server, Error> {
        Server::start_with(options, Controller::global()).await
    }

    /// Binds and starts serving, placing replicas with `controller` (a node of declared
    /// resources, such as a fake inventory of GPUs in tests).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound.
    pub async fn start_with(options: HttpOptions, controller: Controller) -> Result<Server, Error> {
        Server::start_inner(options, controller, None).await
    }

    /// Binds and starts serving with a tower layer around the whole server (every route, the
    /// proxy endpoints too): CORS, auth, limits for everything at once.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the address cannot be bound.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> rayai_core::Result<()> {
    /// use rayai_http::{HttpOptions, Server};
    ///
    /// let layer = tower::layer::util::Identity::new();
    /// let server = Server::start_layered(HttpOptions::default(), rayai_core::Controller::global(), layer).await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_layered<L, B>(
        options: HttpOptions,
        controller: Controller,
        layer: L,
    ) -> Result<Server, Error>
    where
        L: tower::Layer<ServerService> + Send + Sync + 'static,
        L::Service: tower::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
                Error = Infallible,
            > + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower::Service<http::Request<hyper::body::Incoming>>>::Future:
            Send + 'static,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<rayai_core::handler::BoxError> + 'static,
    {
        let wrap: ServerLayerFn = Arc::new(move |service| {
            let layered = tower::ServiceBuilder::new()
                .map_response(|resp: http::Response<B>| {
                    resp.map(|b| crate::Body::Http(rayai_core::handler::boxed(b)))
                })
                .service(layer.layer(service));
            ServerService::new(layered)
        });
        Server::start_inner(options, controller, Some(wrap)).await
    }

    async fn start_inner(
        options: HttpOptions,
        controller: Controller,
        layer: Option<ServerLayerFn>,
    ) -> Result<Server, Error> {
        let tls = tls_acceptor(&options)?;
        let listener = TcpListener::bind((options.host.as_str(), options.port)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            routes: ArcSwap::from_pointee(RouteTable::new()),
            draining: false.into(),
            monitor: crate::dashboard::Monitor::new(controller.clone()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        if shared.options.dashboard_port.is_some() {
            // A dashboard that cannot bind (the port is taken) leaves the server serving.
            match crate::dashboard::start(shared.clone(), stop_rx.clone()).await {
                Ok(addr) => tracing::info!(address = %addr, "the dashboard is listening"),
                Err(e) => tracing::warn!(error = %e, "the dashboard could not start"),
            }
        }
        let layered = layer.map(|wrap| wrap(server_service(shared.clone())));
        tokio::spawn(accept_loop(
            listener,
            tls,
            layered,
            shared.clone(),
            stop_rx,
            stopped_tx,
        ));
        tracing::info!(address = %local_addr, "rayai is listening");
        Ok(Server {
            inner: Arc::new(Inner {
                shared,
                controller,
                local_addr,
                stop,
                stopped,
                apps: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Starts `app`'s deployments and serves them under `route_prefix`: each agent at
    /// `{route_prefix}/agents/{name}`, and the app's ingress (its first handler) at
    /// `route_prefix` itself, wrapped in the app's layers. An application of the same name
    /// deployed before is replaced: the old one serves until the new one runs.
    ///
    /// # Errors
    ///
    /// An invalid prefix or application, a route another application holds, or a replica that
    /// fails to start. Nothing changes on error.
    pub async fn deploy(&self, app: App, route_prefix: &str) -> Result<(), Error> {
        validate_prefix(route_prefix)?;
        app.validate()?;
        let mut apps = self.inner.apps.lock().await;
        // (route prefix, route's app name, deployment name), agents first, then the ingress.
        let mut planned: Vec<(String, String, String)> = app
            .deployments()
            .iter()
            .filter(|d| d.kind() == DeploymentKind::Agent)
            .map(|d| {
                let name = d.config().name().to_owned();
                (
                    join_prefix(route_prefix, &format!("/agents/{name}")),
                    name.clone(),
                    name,
                )
            })
            .collect();
        if let Some(ingress) = app.ingress() {
            planned.push((
                route_prefix.to_owned(),
                app.name().to_owned(),
                ingress.config().name().to_owned(),
            ));
        }
        {
            let table = self.inner.shared.routes.load();
            for (prefix, route_app, _) in &planned {
                table.check(prefix, route_app)?;
            }
        }
        // A redeployed application replaces the old one, which serves until the new one runs. When
        // the node cannot hold both, the old one drains first and gives its resources back.
        let grace = self.inner.shared.options.graceful_shutdown_timeout();
        let mut route_apps: Vec<String> = planned
            .iter()
            .map(|(_, route_app, _)| route_app.clone())
            .collect();
        route_apps.push(app.name().to_owned());
        let handles = match self.inner.controller.deploy_app(app.clone()).await {
            Ok(handles) => handles,
            Err(Error::Infeasible { .. })
                if route_apps.iter().any(|name| apps.contains_key(name)) =>
            {
                let old: Vec<DeploymentHandle> = route_apps
                    .iter()
                    .filter_map(|name| apps.remove(name))
                    .flatten()
                    .collect();
                futures::future::join_all(old.iter().map(|d| d.shutdown(grace))).await;
                self.inner.controller.deploy_app(app.clone()).await?
            }
            Err(e) => return Err(e),
        };
        let by_name: HashMap<String, DeploymentHandle> = handles
            .iter()
            .map(|h| (h.name().to_owned(), h.clone()))
            .collect();
        let retry_after = self.inner.shared.options.backpressure_retry_after_s;
        let mut table = RouteTable::clone(&self.inner.shared.routes.load());
        let mut replaced: Vec<DeploymentHandle> = Vec::new();
        for (prefix, route_app, deployment) in planned {
            let handle = by_name[&deployment].clone();
            let endpoint = match handle.kind() {
                DeploymentKind::Agent => Endpoint::Agent(AgentEndpoint::new(handle)),
                _ => Endpoint::App(app.apply_layers(handler_service(handle, retry_after))),
            };
            table.remove_app(&route_app);
            table.insert(&prefix, &route_app, endpoint)?;
        }
        // What keeps each deployment running: an agent under its own name, the app's other
        // deployments (its ingress, and what it composes) under the app's name.
        let (agents, others): (Vec<DeploymentHandle>, Vec<DeploymentHandle>) = handles
            .into_iter()
            .partition(|h| h.kind() == DeploymentKind::Agent);
        for agent in agents {
            if let Some(old) = apps.insert(agent.name().to_owned(), vec![agent]) {
                replaced.extend(old);
            }
        }
        if !others.is_empty()
            && let Some(old) = apps.insert(app.name().to_owned(), others)
        {
            replaced.extend(old);
        }
        self.inner.shared.routes.store(Arc::new(table));
        for old in replaced {
            tokio::spawn(async move { old.shutdown(grace).await });
        }
        Ok(())
    }

    /// A snapshot of every deployment this server runs, by name.
    pub async fn status(&self) -> Vec<DeploymentStatus> {
        let mut all: Vec<DeploymentStatus> = self
            .inner
            .apps
            .lock()
            .await
            .values()
            .flatten()
            .map(DeploymentHandle::status)
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The controller that places this server's replicas.
    pub fn controller(&self) -> &Controller {
        &self.inner.controller
    }

    /// The running deployment named `name`, if any.
    pub async fn deployment(&self, name: &str) -> Option<DeploymentHandle> {
        self.inner
            .apps
            .lock()
            .await
            .values()
            .flatten()
            .find(|d| d.name() == name)
            .cloned()
    }

    /// Shuts down gracefully: `/-/healthz` turns 503 at once, new connections are refused,
    /// in-flight requests and streams get `graceful_shutdown_timeout_s` to finish, then the
    /// replicas stop. Returns when all of that is done.
    pub async fn shutdown(&self) {
        self.inner.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.inner.stop.send(true);
        self.stopped().await;
        let grace = self.inner.shared.options.graceful_shutdown_timeout();
        let apps: Vec<DeploymentHandle> = self
            .inner
            .apps
            .lock()
            .await
            .drain()
            .flat_map(|(_, d)| d)
            .collect();
        futures::future::join_all(apps.iter().map(|d| d.shutdown(grace))).await;
    }

    /// Waits until the server has stopped accepting and its connections have closed.
    pub async fn stopped(&self) {
        let mut stopped = self.inner.stopped.clone();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// The address the dashboard listens on; `None` when it is off or could not bind.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.inner.shared.monitor.dashboard_addr()
    }
}

/// The service that sends an app's requests to its ingress deployment; errors (overload, a
/// panic) become the responses of CONTRACT.md.
fn handler_service(handle: DeploymentHandle, retry_after_s: Option<u32>) -> HttpService {
    HttpService::new(tower::service_fn(
        move |mut req: http::Request<rayai_core::HttpBody>| {
            let handle = handle.clone();
            let ctx = req
                .extensions_mut()
                .remove::<RequestContext>()
                .unwrap_or_else(|| RequestContext::new("", "default"));
            async move {
                Ok(match handle.serve(ctx, req).await {
                    Ok(resp) => resp,
                    Err(e) => {
                        crate::error::from_error(&e, retry_after_s).map(crate::Body::into_http)
                    }
                })
            }
        },
    ))
}

fn connection_builder(options: &HttpOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout())
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    builder
}

/// Resolves once `stop` is true.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one connection (plain or TLS) until it closes; gracefully once `stop` is set or it
/// has been idle for the keep-alive timeout.
async fn serve_connection<I>(
    io: I,
    builder: Arc<auto::Builder<TokioExecutor>>,
    service: Proxy,
    activity: Arc<crate::idle::Activity>,
    keep_alive: Option<Duration>,
    mut stop: watch::Receiver<bool>,
    open: watch::Receiver<()>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let idle = async {
        match keep_alive {
            Some(timeout) => crate::idle::idle_timeout(&activity, timeout).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stopping(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = idle => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    drop(open);
}

/// The TLS acceptor for `options`, when it names a certificate and a key (PEM files).
fn tls_acceptor(options: &HttpOptions) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let (cert, key) = match (&options.tls_cert_path, &options.tls_key_path) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => {
            return Err(Error::InvalidConfig {
                deployment: "http".to_owned(),
                reason: "TLS needs both tls_cert_path and tls_key_path".to_owned(),
            });
        }
    };
    let bad =
        |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| Error::InvalidConfig {
            deployment: "http".to_owned(),
            reason: format!("cannot read the TLS {what} {}: {e}", path.display()),
        };
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad("certificate", cert, &e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| bad("certificate and key", cert, &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Wraps the whole server's service in the server-wide layers.
type ServerLayerFn = Arc<dyn Fn(ServerService) -> ServerService + Send + Sync>;

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    layered: Option<ServerService>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let builder = Arc::new(connection_builder(&shared.options));
    let tls = tls.map(Arc::new);
    // Every connection holds a receiver; when they are all gone, the connections are closed.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = stopping(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        let builder = builder.clone();
        let activity = crate::idle::Activity::new();
        let service = Proxy {
            shared: shared.clone(),
            activity: activity.clone(),
            layered: layered.clone(),
        };
        let keep_alive = shared.options.keep_alive_timeout();
        let stop = stop.clone();
        let open = open_rx.clone();
        match tls.clone() {
            None => {
                let io = crate::idle::Tracked::new(stream, activity.clone());
                tokio::spawn(serve_connection(
                    io, builder, service, activity, keep_alive, stop, open,
                ));
            }
            Some(acceptor) => {
                let handshake_timeout = shared
                    .options
                    .header_read_timeout()
                    .unwrap_or(Duration::from_secs(30));
                tokio::spawn(async move {
                    // A client that never finishes its handshake is dropped like a slow header.
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let io = crate::idle::Tracked::new(tls, activity.clone());
                            serve_connection(
                                io, builder, service, activity, keep_alive, stop, open,
                            )
                            .await;
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(open_rx);
    let grace = shared.options.graceful_shutdown_timeout();
    let _ = tokio::time::timeout(grace, open_tx.closed()).await;
    let _ = stopped.send(true);
}
