//! The server: a thin hyper front. It listens, serves connections over HTTP/1.1 and HTTP/2 (and
//! TLS), and reads the routes the controller publishes; deploying, redeploying and the route
//! table belong to the controller.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::roles::Role;
use rayai_core::{App, Controller, DeploymentHandle, DeploymentStatus, Placement};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::HttpOptions;
use crate::conn::{ConnOptions, FLUSH, accept_loop};
use crate::deploy::{ApplyReport, Declarative, DeployConfig, DeployError};
use crate::error::{Error, TlsProblem};
use crate::idle::Gate;
use crate::monitor::{Identity, Monitor};
use crate::service::{Proxy, ServerService, Shared, server_service};

/// A running HTTP server.
///
/// Cloning is cheap: every clone is the same server.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), rayai_http::Error> {
/// use rayai_core::{Agent, AgentError, App, Controller, Deployment, DeploymentConfig};
/// use rayai_core::NodeResources;
/// use rayai_http::{HttpOptions, Server};
/// use serde_json::Value;
///
/// struct Echo;
/// impl Agent for Echo {
///     async fn run(&self, data: Value) -> Result<Value, AgentError> { Ok(data) }
/// }
/// let echo = Deployment::from_fn(DeploymentConfig::new("echo").with_num_cpus(0.5), |_| async { Ok(Echo) });
///
/// // Port 0 picks a free port; the dashboard is off; shutdown closes the listener at once; a
/// // node of declared size.
/// let options = HttpOptions {
///     port: 0,
///     dashboard_port: None,
///     drain_delay_s: 0.0,
///     ..HttpOptions::default()
/// };
/// let server = Server::start_with(options, Controller::new(NodeResources::new(1.0, 4 << 30))).await?;
/// server.deploy(App::new().deployment(echo), "/").await?;
/// assert_eq!(server.controller().snapshot().routes().iter().count(), 1);
/// println!("POST http://{}/agents/echo/chat", server.local_addr());
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.inner.local_addr)
            .finish_non_exhaustive()
    }
}

struct Inner {
    shared: Arc<Shared>,
    declarative: Arc<Declarative>,
    local_addr: SocketAddr,
    metrics_export_addr: Option<SocketAddr>,
    /// The gRPC listener's address, and what turns true when it has closed.
    grpc: Option<(SocketAddr, watch::Receiver<bool>)>,
    /// Turns true when the listener is to close.
    stop: watch::Sender<bool>,
    /// Turns true when the listener has closed and its connections are done.
    closed: watch::Receiver<bool>,
    /// Set by the first call to [`Server::shutdown`].
    shutting_down: AtomicBool,
    /// Turns true when the shutdown is complete: connections and replicas done.
    stopped: watch::Sender<bool>,
    /// The deployments of the applications deployed so far, for the replica role's check.
    deployed: watch::Sender<Vec<String>>,
}

impl Server {
    /// Binds `options.host:options.port` and starts serving (no routes yet).
    ///
    /// # Errors
    ///
    /// [`Error::Bind`] when the address cannot be bound, [`Error::Tls`] for bad TLS files.
    pub async fn start(options: HttpOptions) -> Result<Server, Error> {
        Server::start_with(options, Controller::global().await).await
    }

    /// Binds and starts serving, placing replicas with `controller` (a node of declared
    /// resources, such as a fake inventory of GPUs in tests).
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    pub async fn start_with(options: HttpOptions, controller: Controller) -> Result<Server, Error> {
        Server::start_inner(options, controller, None).await
    }

    /// Binds and starts serving with a tower layer around the whole server (every route, the
    /// proxy endpoints too): CORS, auth, limits for everything at once.
    ///
    /// # Errors
    ///
    /// As [`Server::start`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), rayai_http::Error> {
    /// use rayai_http::{HttpOptions, Server};
    ///
    /// let layer = tower::layer::util::Identity::new();
    /// let controller = rayai_core::Controller::global().await;
    /// let server = Server::start_layered(HttpOptions::default(), controller, layer).await?;
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
                    resp.map(|b| crate::Body::from(rayai_core::handler::boxed(b)))
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
        let options = crate::render::start(options)?;
        let tls = tls_acceptor(&options)?;
        let (role, roles) = if crate::render::session().is_some() {
            (Role::All, None)
        } else {
            crate::roles::from_env().await?
        };
        if let Some(roles) = roles {
            tracing::info!(?role, discovery = %roles.discovery.describe(), "role");
            controller.set_roles(roles);
        }
        let address = format!("{}:{}", options.host, options.port);
        let hint = "choose another port with --port or RAYAI_PORT";
        let listener = TcpListener::bind((options.host.as_str(), options.port))
            .await
            .map_err(|e| Error::bind("the server", address.clone(), hint, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::bind("the server", address, hint, e))?;
        let monitor = Arc::new(Monitor::new(
            controller.clone(),
            Identity::of_this_process(local_addr, &options),
        ));
        let (stop, stop_rx) = watch::channel(false);
        let (closed_tx, closed) = watch::channel(false);
        // One cap on the connections of every listener of this server.
        let gate = Gate::new(options.connection_cap());
        tracing::debug!(max_connections = gate.cap(), "connection cap");
        // A dashboard that cannot bind (the port is taken) is an error, unless the program
        // asked for best effort: then the server serves without it.
        let declarative = Arc::new(Declarative::new(
            controller.clone(),
            options.clone(),
            local_addr,
        ));
        let dashboard = crate::dashboard::start(
            &options,
            gate.clone(),
            monitor.clone(),
            declarative.clone(),
            stop_rx.clone(),
        );
        match dashboard.await {
            Ok(Some(addr)) => tracing::info!(address = %addr, "dashboard on http://{addr}"),
            Ok(None) => {}
            Err(e) if options.dashboard_best_effort => {
                tracing::warn!("{e}; serving without the dashboard");
            }
            Err(e) => {
                let _ = stop.send(true);
                return Err(e);
            }
        }
        let metrics_export_addr = match crate::dashboard::start_metrics_export(
            &options,
            gate.clone(),
            monitor.clone(),
            stop_rx.clone(),
        )
        .await
        {
            Ok(addr) => addr,
            Err(e) => {
                let _ = stop.send(true);
                return Err(e);
            }
        };
        if let Some(addr) = metrics_export_addr {
            tracing::info!(address = %addr, "metrics on http://{addr}/metrics");
        }
        let grpc_listener = match options.grpc_port {
            None => None,
            Some(port) => Some(grpc_bind(&options, port).await.inspect_err(|_| {
                let _ = stop.send(true);
            })?),
        };
        let conn = ConnOptions {
            tls,
            ..ConnOptions::new(&options, gate)
        };
        let shared = Arc::new(Shared {
            options,
            controller,
            draining: false.into(),
            monitor,
            role,
        });
        let layered = layer.map(|wrap| wrap(server_service(shared.clone())));
        let service = Proxy {
            shared: shared.clone(),
            layered,
        };
        #[cfg(feature = "grpc")]
        let grpc = grpc_listener.map(|(listener, addr)| {
            let (grpc_closed_tx, grpc_closed) = watch::channel(false);
            shared.monitor.enable_grpc();
            let grpc_service = crate::grpc::GrpcService::new(shared.clone());
            tokio::spawn(accept_loop(
                listener,
                grpc_service,
                ConnOptions {
                    tls: conn.tls.clone(),
                    ..ConnOptions::new(&shared.options, conn.gate.clone())
                },
                stop_rx.clone(),
                grpc_closed_tx,
            ));
            tracing::info!(address = %addr, "gRPC on {addr}");
            (addr, grpc_closed)
        });
        #[cfg(not(feature = "grpc"))]
        let grpc: Option<(SocketAddr, watch::Receiver<bool>)> =
            grpc_listener.map(|never| match never {});
        tokio::spawn(accept_loop(listener, service, conn, stop_rx, closed_tx));
        tracing::info!(address = %local_addr, "serving on http://{local_addr}");
        let server = Server {
            inner: Arc::new(Inner {
                shared,
                declarative,
                local_addr,
                metrics_export_addr,
                grpc,
                stop,
                closed,
                shutting_down: AtomicBool::new(false),
                stopped: watch::channel(false).0,
                deployed: watch::channel(Vec::new()).0,
            }),
        };
        if let Role::Replica(local) = &server.inner.shared.role {
            tokio::spawn(check_replica_role(
                local.clone(),
                server.inner.deployed.subscribe(),
            ));
        }
        Ok(server)
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Starts `app`'s deployments and serves them under `route_prefix`: each agent at
    /// `{route_prefix}/agents/{name}`, and the app's ingress (its first handler) at
    /// `route_prefix` itself, wrapped in the app's layers. An application of the same name
    /// deployed before is replaced: the old one serves until the new one runs. Replicas that do
    /// not fit on the node now wait as pending (unless `strict_placement`). The controller does
    /// the work ([`Controller::deploy_app_with`]); this server serves what it publishes.
    ///
    /// # Errors
    ///
    /// An invalid prefix or application, a route another application holds, or a replica that
    /// fails to start. Nothing changes on error.
    pub async fn deploy(&self, app: App, route_prefix: &str) -> Result<(), rayai_core::Error> {
        if let Some(render) = crate::render::session() {
            // Rendering manifests: the application is checked and recorded, not started.
            app.validate()?;
            rayai_core::route::validate_prefix(route_prefix)?;
            render.record(&app, route_prefix);
            return Ok(());
        }
        let placement = if self.inner.shared.options.strict_placement {
            Placement::Strict
        } else {
            Placement::StartWhatFits
        };
        let deployed = app.clone();
        self.controller()
            .deploy_app_with(app, route_prefix, placement)
            .await?;
        self.inner.declarative.catalog().deployed(&deployed);
        self.inner.deployed.send_modify(|names| {
            names.extend(
                deployed
                    .deployments()
                    .iter()
                    .map(|d| d.config().name().to_owned()),
            );
        });
        Ok(())
    }

    /// Makes the application `build` returns deployable by a config whose `import_path` is
    /// `import_path` (`PUT /api/serve/applications/`, `rayai deploy`, [`Server::apply_config`]),
    /// as Ray imports `module:attr`. Applications deployed with [`Server::deploy`] are found by
    /// their name as well, and every `#[agent]` of the binary as `agents:<name>` (the whole set
    /// as `agents:app`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn example(server: rayai_http::Server) {
    /// fn shop() -> rayai_core::App { rayai_core::App::named("shop") }
    /// server.register_app("shop:app", shop);
    /// # }
    /// ```
    pub fn register_app(
        &self,
        import_path: &str,
        build: impl Fn() -> App + Send + Sync + 'static,
    ) -> &Self {
        self.inner
            .declarative
            .catalog()
            .register(import_path, Arc::new(build));
        self
    }

    /// Applies a declarative config as `PUT /api/serve/applications/` does: every application it
    /// lists is deployed or updated with its overrides, and the declarative applications it no
    /// longer lists are deleted (applications deployed in code are left alone).
    ///
    /// # Errors
    ///
    /// [`DeployError`]: a bad field (with its path), an unknown import path or deployment, an HTTP
    /// option that differs from this server's (nothing changes then), or an application that
    /// could not be deployed (those before it in the config were).
    pub async fn apply_config(&self, config: &DeployConfig) -> Result<ApplyReport, DeployError> {
        self.inner.declarative.apply(config).await
    }

    /// A snapshot of every deployment of the applications served, by name.
    pub fn status(&self) -> Vec<DeploymentStatus> {
        let snapshot = self.controller().snapshot();
        snapshot
            .deployments()
            .into_iter()
            .map(|d| d.status())
            .collect()
    }

    /// The controller that places this server's replicas and owns its applications.
    pub fn controller(&self) -> &Controller {
        &self.inner.shared.controller
    }

    /// The running deployment named `name` among the applications served, if any.
    pub fn deployment(&self, name: &str) -> Option<DeploymentHandle> {
        self.controller().snapshot().deployment(name).cloned()
    }

    /// Shuts down gracefully, in the order load balancers need, and returns when it is done:
    ///
    /// 1. `/-/healthz` answers `503` at once, while the listener still accepts and serves new
    ///    connections for [`HttpOptions::drain_delay_s`];
    /// 2. then the listener closes: new connections are refused;
    /// 3. then in-flight work gets [`HttpOptions::graceful_shutdown_timeout_s`] in total: the
    ///    connections finish their requests and streams, then the replicas theirs, all within
    ///    that one deadline;
    /// 4. at the deadline a response still streaming is ended properly (an agent's SSE stream
    ///    with the contract's error frame and a clean end of body, any other body aborted), a
    ///    request not yet answered is answered `503`, the connections still open are closed and
    ///    the replicas stopped.
    ///
    /// It takes at most the drain delay plus the grace period plus one second. Calling it again,
    /// or from several tasks, waits for the same shutdown; it goes on if the caller stops
    /// waiting.
    pub async fn shutdown(&self) {
        if !self.inner.shutting_down.swap(true, Ordering::SeqCst) {
            // `/-/healthz` says 503 from this poll on, not from when the task below first runs.
            self.inner.shared.draining.store(true, Ordering::SeqCst);
            self.inner.shared.monitor.set_draining();
            let server = self.clone();
            tokio::spawn(async move { server.shut_down().await });
        }
        self.stopped().await;
    }

    async fn shut_down(&self) {
        // `stopped` turns true when this ends, however it ends (a panic in user code's drop
        // included): no caller of `shutdown` waits forever.
        let _done = Done(&self.inner.stopped);
        let shared = &self.inner.shared;
        let delay = shared.options.drain_delay();
        if !delay.is_zero() {
            tracing::info!(
                drain_delay_s = delay.as_secs_f64(),
                "draining: /-/healthz answers 503; the listener closes in {delay:?}"
            );
            tokio::time::sleep(delay).await;
        }
        // One deadline for the connections and the replicas.
        let grace = shared.options.graceful_shutdown_timeout();
        let deadline = tokio::time::Instant::now() + grace;
        let _ = self.inner.stop.send(true);
        tracing::info!(
            graceful_shutdown_timeout_s = grace.as_secs_f64(),
            "the listener is closed; in-flight requests have {grace:?} to finish"
        );
        let mut closed = self.inner.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
        if let Some((_, grpc_closed)) = &self.inner.grpc {
            let mut grpc_closed = grpc_closed.clone();
            let _ = grpc_closed.wait_for(|closed| *closed).await;
        }
        // The replicas get what is left of it (their requests from connections are done or
        // cut by now), and a moment to stop past it at most.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let until = deadline.max(tokio::time::Instant::now()) + REPLICAS_STOP;
        let replicas = self.controller().shutdown(left);
        if tokio::time::timeout_at(until, replicas).await.is_err() {
            tracing::warn!("the replicas were still stopping at the end of the grace period");
        }
        tracing::info!("shut down");
        crate::logging::flush();
    }

    /// Waits until the server has shut down (see [`Server::shutdown`]): its listener closed,
    /// its connections and its replicas done. Never returns for a server that is not shutting
    /// down.
    pub async fn stopped(&self) {
        if let Some(render) = crate::render::session() {
            render.finish();
        }
        let mut stopped = self.inner.stopped.subscribe();
        let _ = stopped.wait_for(|s| *s).await;
    }

    /// The address the gRPC listener listens on (`grpc_port`); `None` when it is off.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.inner.grpc.as_ref().map(|(addr, _)| *addr)
    }

    /// The address the dashboard (the page, `/metrics` and the status API) listens on; `None`
    /// when it is off or could not bind.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.inner.shared.monitor.dashboard_addr()
    }

    /// The address of the metrics export port, which serves `/metrics` alone; `None` unless
    /// [`HttpOptions::metrics_export_port`] asks for one.
    pub fn metrics_export_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_export_addr
    }
}

/// The TLS acceptor for `options`, when it names a certificate and a key (PEM files).
/// Binds the gRPC listener (the `grpc` feature).
#[cfg(feature = "grpc")]
async fn grpc_bind(options: &HttpOptions, port: u16) -> Result<(TcpListener, SocketAddr), Error> {
    crate::conn::bind(
        "the gRPC listener",
        &options.host,
        port,
        "choose another port with --grpc-port or RAYAI_GRPC_PORT",
    )
    .await
}

/// Without the `grpc` feature, a `grpc_port` is refused.
#[cfg(not(feature = "grpc"))]
async fn grpc_bind(_: &HttpOptions, port: u16) -> Result<std::convert::Infallible, Error> {
    Err(Error::Grpc(format!(
        "grpc_port {port}: this program was built without rayai's `grpc` feature; add it \
         (features = [\"grpc\"]) to serve gRPC"
    )))
}

fn tls_acceptor(options: &HttpOptions) -> Result<Option<tokio_rustls::TlsAcceptor>, Error> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let (cert, key) = match (&options.tls_cert_path, &options.tls_key_path) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err(Error::Tls(TlsProblem::Incomplete)),
    };
    let bad = |what, path: &std::path::Path, e: &dyn std::fmt::Display| {
        Error::Tls(TlsProblem::Unreadable {
            what,
            path: path.to_owned(),
            reason: e.to_string(),
        })
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

/// Marks the shutdown done when dropped.
struct Done<'a>(&'a watch::Sender<bool>);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        // Stored even with no one waiting yet (`send` would drop it): a later `stopped` sees it.
        self.0.send_replace(true);
    }
}

/// The time the replicas get, past the grace period, to stop (requests still running are
/// dropped): with [`FLUSH`], well within the second the shutdown may take past its grace.
const REPLICAS_STOP: std::time::Duration = std::time::Duration::from_millis(250);

const _: () = assert!(FLUSH.as_millis() + REPLICAS_STOP.as_millis() < 1000);

/// Wraps the whole server's service in the server-wide layers.
type ServerLayerFn = Arc<dyn Fn(ServerService) -> ServerService + Send + Sync>;

/// In the replica role: once the program has deployed its applications (the first one, then
/// two quiet seconds), a deployment named by `RAYAI_DEPLOYMENT` that none of them has is an
/// error naming the valid ones, and the process exits with status 2: a replica process that
/// serves nothing would only look healthy.
async fn check_replica_role(local: Vec<String>, mut deployed: watch::Receiver<Vec<String>>) {
    if deployed.wait_for(|names| !names.is_empty()).await.is_err() {
        return;
    }
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(2), deployed.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => break,
        }
    }
    let names = deployed.borrow().clone();
    if let Some((unknown, valid)) = crate::roles::unknown_deployments(&local, &names) {
        let message = crate::roles::unknown_message(&unknown, &valid);
        tracing::error!("{message}");
        eprintln!("error: {message}");
        std::process::exit(2);
    }
}
