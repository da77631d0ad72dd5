//! The server: listens, serves connections over HTTP/1.1 and HTTP/2, deploys applications at
//! route prefixes, drains on shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rayai_core::route::{join_prefix, validate_prefix};
use rayai_core::{App, Controller, DeploymentHandle, DeploymentStatus, Error, RouteTable};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use crate::HttpOptions;
use crate::chat::AgentEndpoint;
use crate::service::{Endpoint, Proxy, Shared};

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
        let listener = TcpListener::bind((options.host.as_str(), options.port)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            options,
            routes: ArcSwap::from_pointee(RouteTable::new()),
            draining: false.into(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (stopped_tx, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, shared.clone(), stop_rx, stopped_tx));
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
    /// `{route_prefix}/agents/{name}`. An application of the same name deployed before is
    /// replaced (its old replicas drain and stop).
    ///
    /// # Errors
    ///
    /// An invalid prefix or application, a route another application holds, or a replica that
    /// fails to start. Nothing changes on error.
    pub async fn deploy(&self, app: App, route_prefix: &str) -> Result<(), Error> {
        validate_prefix(route_prefix)?;
        app.validate()?;
        let mut apps = self.inner.apps.lock().await;
        let planned: Vec<(String, String)> = app
            .deployments()
            .iter()
            .map(|d| {
                let name = d.config().name().to_owned();
                (join_prefix(route_prefix, &format!("/agents/{name}")), name)
            })
            .collect();
        {
            let table = self.inner.shared.routes.load();
            for (prefix, name) in &planned {
                table.check(prefix, name)?;
            }
        }
        // A redeployed application replaces the old one, which serves until the new one runs. When
        // the node cannot hold both, the old one drains first and gives its resources back.
        let grace = self.inner.shared.options.graceful_shutdown_timeout();
        let handles = match self.inner.controller.deploy_app(app.clone()).await {
            Ok(handles) => handles,
            Err(Error::Infeasible { .. })
                if planned.iter().any(|(_, name)| apps.contains_key(name)) =>
            {
                let old: Vec<DeploymentHandle> = planned
                    .iter()
                    .filter_map(|(_, name)| apps.remove(name))
                    .flatten()
                    .collect();
                futures::future::join_all(old.iter().map(|d| d.shutdown(grace))).await;
                self.inner.controller.deploy_app(app).await?
            }
            Err(e) => return Err(e),
        };
        let mut table = RouteTable::clone(&self.inner.shared.routes.load());
        let mut replaced: Vec<DeploymentHandle> = Vec::new();
        for ((prefix, name), handle) in planned.into_iter().zip(handles) {
            table.remove_app(&name);
            table.insert(
                &prefix,
                &name,
                Endpoint::Agent(AgentEndpoint::new(handle.clone())),
            )?;
            if let Some(old) = apps.insert(name, vec![handle]) {
                replaced.extend(old);
            }
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
            .get(name)
            .and_then(|d| d.first().cloned())
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

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    stopped: watch::Sender<bool>,
) {
    let builder = Arc::new(connection_builder(&shared.options));
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
        let service = Proxy(shared.clone());
        let mut stop = stop.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopping(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_rx);
    let grace = shared.options.graceful_shutdown_timeout();
    let _ = tokio::time::timeout(grace, open_tx.closed()).await;
    let _ = stopped.send(true);
}
