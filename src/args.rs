//! The command-line arguments every rayai program takes for where it serves.

use crate::HttpOptions;

/// Where a program serves: `--port`, `--host` and `--dashboard-port`, as `serve run` and
/// `rayai serve` take them, else `RAYAI_PORT`, `RAYAI_HOST` and `RAYAI_DASHBOARD_PORT` (how a
/// pod's environment sets them). Flatten it into a program's own `clap` parser and apply it to the
/// options.
///
/// # Examples
///
/// ```
/// use clap::Parser;
/// use rayai::HttpOptions;
/// use rayai::serve::ServeArgs;
///
/// #[derive(Parser)]
/// struct Args {
///     #[command(flatten)]
///     serve: ServeArgs,
/// }
///
/// let args = Args::parse_from(["demo", "--port", "9000", "--dashboard-port", "0"]);
/// let options = args.serve.apply(HttpOptions::default());
/// assert_eq!((options.host.as_str(), options.port), ("127.0.0.1", 9000));
/// assert_eq!(options.dashboard_port, None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ServeArgs {
    /// Port to serve the applications on.
    #[arg(long, env = "RAYAI_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, env = "RAYAI_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the dashboard, `/metrics` and the status API (on 127.0.0.1); 0 turns it off.
    #[arg(long, env = "RAYAI_DASHBOARD_PORT", default_value_t = 8265)]
    pub dashboard_port: u16,
}

impl ServeArgs {
    /// `options` with these addresses.
    #[must_use]
    pub fn apply(&self, options: HttpOptions) -> HttpOptions {
        HttpOptions {
            host: self.host.clone(),
            port: self.port,
            dashboard_port: (self.dashboard_port != 0).then_some(self.dashboard_port),
            ..options
        }
    }
}
