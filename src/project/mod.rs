//! Projects laid out for `rayai serve`: agents in `agents/<name>.rs`, discovered at compile time,
//! configured at start by `rayai.toml` and `RAYAI_*` variables.
//!
//! A project's `main` is one line, and needs no editing when agents are added:
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     rayai::project::main()
//! }
//! ```
//!
//! What it reads at start:
//!
//! | variable | meaning |
//! |---|---|
//! | `RAYAI_HOST`, `RAYAI_PORT` | where to listen (over `rayai.toml`'s `[http]`; default 127.0.0.1:8000) |
//! | `RAYAI_DASHBOARD_PORT` | the port of the dashboard, the status API and `/metrics` (default 8265; 0 turns it off) |
//! | `RAYAI_DASHBOARD_TOKEN` (else `RAYAI_AUTH_TOKEN`, `RAY_AUTH_TOKEN`) | the bearer token the dashboard and the status API ask for (default: none) |
//! | `RAYAI_METRICS_EXPORT_PORT` | serve `/metrics` alone on this port too (default: no such port) |
//! | `RAYAI_AGENTS` | comma-separated agents to serve (default: all) |
//! | `RAYAI_CONFIG` | the config file (default `rayai.toml` in the working directory, if there) |
//! | `RAYAI_PLAN` | `1`: print the resource plan and exit instead of serving |
//! | `RAYAI_STRICT` | `1`: refuse to start unless every replica fits (default: start what fits, the rest pending) |
//! | `RUST_LOG` | what is logged (default `info`, with one access-log line per request) |
//! | `RAYAI_LOG_FORMAT` | `json` for one JSON object per log line (default: readable text) |

mod config;
mod serve_config;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

pub use config::{ConfigError, ProjectConfig};
pub use serve_config::{Format, load_serve_config, parse_serve_config};

use crate::{App, HttpOptions};

/// Why a project could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ProjectError {
    /// The binary has no `#[agent]`.
    NoAgents,
    /// `RAYAI_AGENTS` names agents the project does not have.
    UnknownAgents {
        /// The names asked for that do not exist.
        unknown: Vec<String>,
        /// The names that exist.
        known: Vec<String>,
    },
    /// `rayai.toml` is wrong.
    Config(ConfigError),
    /// The runtime refused the application or could not bind.
    Serve(crate::Error),
    /// `rayai.toml`'s `[[applications]]` could not be applied.
    Deploy(crate::deploy::DeployError),
}

impl fmt::Display for ProjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProjectError::NoAgents => f.write_str(
                "no agents found: add one to agents/ (`rayai create-agent NAME`) and rebuild",
            ),
            ProjectError::UnknownAgents { unknown, known } => write!(
                f,
                "unknown agent{} {}; this project has: {}",
                if unknown.len() == 1 { "" } else { "s" },
                unknown.join(", "),
                known.join(", ")
            ),
            ProjectError::Config(e) => write!(f, "{e}"),
            ProjectError::Serve(e) => write!(f, "{e}"),
            ProjectError::Deploy(e) => {
                write!(f, "{}: [[applications]]: {e}", config_path().display())?;
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    write!(f, ": {cause}")?;
                    source = cause.source();
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ProjectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ProjectError::Config(e) => Some(e),
            ProjectError::Serve(e) => Some(e),
            ProjectError::Deploy(e) => Some(e),
            _ => None,
        }
    }
}

impl From<ConfigError> for ProjectError {
    fn from(e: ConfigError) -> Self {
        ProjectError::Config(e)
    }
}

impl From<crate::Error> for ProjectError {
    fn from(e: crate::Error) -> Self {
        ProjectError::Serve(e)
    }
}

impl From<crate::DeploymentError> for ProjectError {
    fn from(e: crate::DeploymentError) -> Self {
        ProjectError::Serve(e.into())
    }
}

/// A project's `main`: runs [`serve_discovered`] on a new runtime, prints an error and fails.
pub fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve_discovered()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The application of every `#[agent]` in the binary, filtered by `RAYAI_AGENTS` and configured
/// by the config file ([`config_path`]).
///
/// # Errors
///
/// No agents, an unknown agent asked for, or a mistake in the config file.
pub fn discovered_app() -> Result<App, ProjectError> {
    let app = App::discover();
    let known: Vec<String> = app
        .deployments()
        .iter()
        .map(|d| d.config().name().to_owned())
        .collect();
    if known.is_empty() {
        return Err(ProjectError::NoAgents);
    }
    let app = match load_config()? {
        Some(config) => config.apply_agents(app, &known)?,
        None => app,
    };
    let wanted = std::env::var("RAYAI_AGENTS").unwrap_or_default();
    let wanted: Vec<&str> = wanted
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if wanted.is_empty() {
        return Ok(app);
    }
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|w| !known.iter().any(|k| k == *w))
        .map(|w| (*w).to_owned())
        .collect();
    if !unknown.is_empty() {
        return Err(ProjectError::UnknownAgents { unknown, known });
    }
    Ok(app.filter(|name| wanted.contains(&name)))
}

/// The config file: `RAYAI_CONFIG` when set, else `rayai.toml` in the working directory.
pub fn config_path() -> PathBuf {
    std::env::var_os("RAYAI_CONFIG").map_or_else(|| PathBuf::from("rayai.toml"), PathBuf::from)
}

fn load_config() -> Result<Option<ProjectConfig>, ConfigError> {
    let path = config_path();
    if std::env::var_os("RAYAI_CONFIG").is_none() && !path.exists() {
        return Ok(None);
    }
    ProjectConfig::load(&path).map(Some)
}

/// The HTTP options: the defaults, then `[http]` from the config file, then the `RAYAI_*`
/// variables [`HttpOptions::from_env`] reads.
///
/// # Errors
///
/// A mistake in the config file.
pub fn http_options() -> Result<HttpOptions, ProjectError> {
    let mut options = HttpOptions::default();
    if let Some(config) = load_config()? {
        options = config.apply_http(options)?;
    }
    let from_env = HttpOptions::try_from_env()?;
    if std::env::var_os("RAYAI_HOST").is_some() {
        options.host = from_env.host;
    }
    if std::env::var_os("RAYAI_PORT").is_some() {
        options.port = from_env.port;
    }
    if std::env::var_os("RAYAI_DASHBOARD_PORT").is_some() {
        options.dashboard_port = from_env.dashboard_port;
    }
    if std::env::var_os("RAYAI_DASHBOARD_HOST").is_some() {
        options.dashboard_host = from_env.dashboard_host;
    }
    let token_variables = [
        "RAYAI_DASHBOARD_TOKEN",
        "RAYAI_AUTH_TOKEN",
        "RAY_AUTH_TOKEN",
    ];
    if token_variables
        .iter()
        .any(|name| std::env::var_os(name).is_some())
    {
        options.dashboard_token = from_env.dashboard_token;
    }
    if std::env::var_os("RAYAI_METRICS_EXPORT_PORT").is_some() {
        options.metrics_export_port = from_env.metrics_export_port;
    }
    if std::env::var_os("RAYAI_GRPC_PORT").is_some() {
        options.grpc_port = from_env.grpc_port;
    }
    if std::env::var_os("RAYAI_STRICT").is_some() {
        options.strict_placement = from_env.strict_placement;
    }
    if std::env::var_os("RAYAI_DRAIN_DELAY_S").is_some() {
        options.drain_delay_s = from_env.drain_delay_s;
    }
    if std::env::var_os("RAYAI_DASHBOARD_ALLOWED_HOSTS").is_some() {
        options.dashboard_allowed_hosts = from_env.dashboard_allowed_hosts;
    }
    if std::env::var_os("RAYAI_DASHBOARD_ALLOW_INSECURE").is_some() {
        options.dashboard_allow_insecure = from_env.dashboard_allow_insecure;
    }
    if std::env::var_os("RAYAI_SSE_KEEP_ALIVE_S").is_some() {
        options.sse_keep_alive_s = from_env.sse_keep_alive_s;
    }
    Ok(options)
}

/// Serves the project's agents ([`discovered_app`]) at `/` until Ctrl-C or SIGTERM, printing the
/// endpoints once they answer; with `RAYAI_PLAN=1`, prints the resource plan and returns.
///
/// When the config file lists `[[applications]]` (Ray Serve's schema), those are served instead,
/// applied as a declarative config: `agents:app` names the project's agents (with the file's
/// `[agents.*]` overrides), `agents:<name>` one of them.
///
/// # Errors
///
/// As [`discovered_app`] and [`http_options`], or the runtime refuses the application.
pub async fn serve_discovered() -> Result<(), ProjectError> {
    let app = discovered_app()?;
    let options = http_options()?;
    let declared = load_config()?.and_then(|c| c.applications());
    if std::env::var("RAYAI_PLAN").is_ok_and(|v| v == "1") {
        println!("{}", crate::plan(&app).await);
        return Ok(());
    }
    let server = crate::serve::start(options).await?;
    let on_signal = server.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        eprintln!("shutting down: draining in-flight requests");
        on_signal.shutdown().await;
    });
    match declared {
        Some(config) => {
            let all = app.clone();
            server.register_app("agents:app", move || all.clone());
            for d in app.deployments() {
                let one = app.clone().filter(|n| n == d.config().name());
                server.register_app(&format!("agents:{}", d.config().name()), move || {
                    one.clone()
                });
            }
            server
                .apply_config(&config)
                .await
                .map_err(ProjectError::Deploy)?;
        }
        None => server.deploy(app, "/").await?,
    }
    print_endpoints(&server);
    server.stopped().await;
    Ok(())
}

fn print_endpoints(server: &crate::Server) {
    let addr = server.local_addr().to_string();
    let snapshot = server.controller().snapshot();
    let routes: Vec<_> = snapshot.routes().iter().collect();
    let agents = routes.iter().filter(|r| !r.target().is_ingress()).count();
    let mut out = format!("\nrayai is serving {agents} agent(s) at http://{addr}\n");
    for route in &routes {
        let name = route.target().deployment().name();
        let prefix = route.prefix().trim_end_matches('/');
        if route.target().is_ingress() {
            out += &format!("\n  {}: http://{addr}{prefix}/\n", route.app());
            continue;
        }
        out += &format!("\n  {name}: POST http://{addr}{prefix}/chat\n");
        out += &format!(
            "    curl -X POST http://{addr}{prefix}/chat -H 'content-type: application/json' \\
             -d '{{\"data\": {{\"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}}}'\n"
        );
    }
    out += &format!("\n  routes: http://{addr}/-/routes   health: http://{addr}/-/healthz\n");
    if let Some(dashboard) = server.dashboard_addr() {
        out += &format!(
            "  dashboard: http://{dashboard}   status: http://{dashboard}/api/serve/applications/   \
             metrics: http://{dashboard}/metrics\n"
        );
    }
    out += "\nPress Ctrl-C to stop.\n";
    println!("{out}");
}
