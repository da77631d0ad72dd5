//! `serve::run` and `serve::start`: the process's server, as Ray Serve's `serve.run`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rayai_core::App;
use tokio::sync::Mutex;

use crate::{Error, HttpOptions, Server};

fn default_server() -> &'static Mutex<Option<Server>> {
    static SERVER: OnceLock<Mutex<Option<Server>>> = OnceLock::new();
    SERVER.get_or_init(|| Mutex::new(None))
}

/// Starts the process's server with `options` and returns it (it also becomes the server that
/// later [`run`] calls deploy to).
///
/// Like [`run`], it installs a log subscriber when the program has none: `RUST_LOG` (default
/// `info`, with the access log), `RAYAI_LOG_FORMAT=json` for one JSON object per line, and the
/// dashboard's log view fed. A program that installs its own keeps it.
///
/// # Errors
///
/// [`Error::Bind`] when the address cannot be bound.
pub async fn start(options: HttpOptions) -> Result<Server, Error> {
    crate::logging::init_default();
    let server = Server::start(options).await?;
    let mut current = default_server().lock().await;
    if current.is_none() {
        *current = Some(server.clone());
    }
    Ok(server)
}

/// Serves `app` at `route_prefix` and returns when the server has shut down: on Ctrl-C or
/// SIGTERM, gracefully, as [`Server::shutdown`] says (`/-/healthz` answers `503` for the drain
/// delay while the listener still accepts, then in-flight work gets the grace period; at most
/// `drain_delay_s + graceful_shutdown_timeout_s + 1` seconds in all).
///
/// The first call starts the process's server with [`HttpOptions::from_env`] (127.0.0.1:8000
/// unless `RAYAI_HOST`/`RAYAI_PORT` say otherwise), unless [`start`] started one; later calls add
/// their application to the same server. Logs go where [`start`] says.
///
/// # Errors
///
/// As [`start`] and [`Server::deploy`].
pub async fn run(app: App, route_prefix: &str) -> Result<(), Error> {
    crate::logging::init_default();
    let server = {
        let mut current = default_server().lock().await;
        match current.as_ref() {
            Some(server) => server.clone(),
            None => {
                let server = Server::start(HttpOptions::try_from_env()?).await?;
                *current = Some(server.clone());
                server
            }
        }
    };
    shut_down_on_signal(&server);
    server.deploy(app, route_prefix).await?;
    server.stopped().await;
    Ok(())
}

/// Shuts `server` (the process's) down on the first Ctrl-C or SIGTERM; once per process.
fn shut_down_on_signal(server: &Server) {
    static WATCHING: AtomicBool = AtomicBool::new(false);
    if WATCHING.swap(true, Ordering::SeqCst) {
        return;
    }
    // Registered now, not when the task first runs: a signal from here on is seen.
    let signal = signals();
    let server = server.clone();
    tokio::spawn(async move {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        server.shutdown().await;
    });
}

/// Resolves on Ctrl-C, or SIGTERM on Unix.
pub async fn shutdown_signal() {
    if let Some(render) = crate::render::session() {
        // Rendering manifests (`RAYAI_RENDER=k8s`): a program that deployed and now waits is
        // ready to serve, so what it deployed is complete. One waiting before it deploys (a
        // task watching for signals) waits for good: the render ends the process.
        if render.deployed_any() {
            render.finish();
        }
        return std::future::pending().await;
    }
    signals().await;
}

/// A future that resolves on Ctrl-C, or SIGTERM on Unix; on Unix both are registered before it
/// returns.
fn signals() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let next = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! { () = next(interrupt) => {}, () = next(terminate) => {} }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
