//! The server's options (Ray Serve's `HttpOptions`).

use std::time::Duration;

use crate::error::Error;

/// How the HTTP server listens and what it tolerates.
///
/// # Examples
///
/// ```
/// use rayai_http::HttpOptions;
///
/// let opts = HttpOptions { port: 0, request_timeout_s: Some(5.0), ..HttpOptions::default() };
/// assert_eq!(opts.host, "127.0.0.1");
/// assert_eq!(opts.max_body_bytes, 16 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HttpOptions {
    /// Address to bind (default `127.0.0.1`).
    pub host: String,
    /// Port to bind (default 8000; 0 picks a free one).
    pub port: u16,
    /// Where the server is mounted behind a reverse proxy (Ray's `root_path`, e.g. `/serve`):
    /// taken off every request's path before routing; a path outside it is a 404. Handlers see it
    /// in their [`rayai_core::handler::RootPath`]. Empty (the default) mounts at `/`.
    pub root_path: String,
    /// Largest request body accepted; a larger one is a 413 (default 16 MiB).
    pub max_body_bytes: u64,
    /// Time a request may take before its response starts, queueing included; then a 408, and a
    /// stream already running is cut off (default: no limit).
    pub request_timeout_s: Option<f64>,
    /// When set, an overloaded deployment answers 429 with this `Retry-After` instead of 503.
    pub backpressure_retry_after_s: Option<u32>,
    /// Time a client has to send a request's headers before the connection is closed (default 30).
    pub header_read_timeout_s: f64,
    /// An idle keep-alive connection (no request in flight, no bytes moving) is closed after this
    /// many seconds (default 90; 0 keeps it open).
    pub keep_alive_timeout_s: f64,
    /// A PEM certificate chain: with `tls_key_path`, the server speaks HTTPS (HTTP/1.1 and h2
    /// by ALPN) instead of plain HTTP.
    pub tls_cert_path: Option<std::path::PathBuf>,
    /// The PEM private key of `tls_cert_path`.
    pub tls_key_path: Option<std::path::PathBuf>,
    /// Time in-flight work gets to finish on shutdown, in total: the connections' requests and
    /// streams and the replicas' work share this one deadline, which starts when the listener
    /// closes (default 20).
    pub graceful_shutdown_timeout_s: f64,
    /// Port of the dashboard (default `Some(8265)`; 0 picks a free one; `None` turns it off).
    pub dashboard_port: Option<u16>,
    /// Address the dashboard binds (default `127.0.0.1`).
    pub dashboard_host: String,
    /// When set, the dashboard and its status API ask for `Authorization: Bearer <token>` (or
    /// `?token=<token>`); anything else is a 401. From the environment: `RAYAI_DASHBOARD_TOKEN`,
    /// else `RAYAI_AUTH_TOKEN`, else Ray's `RAY_AUTH_TOKEN`.
    pub dashboard_token: Option<String>,
    /// Port of a listener that serves only `GET /metrics`, for scrapers (Ray's
    /// `metrics_export_port`), on `host`; it works with the dashboard off and asks for no token.
    /// Default `None` (no such listener); 0 picks a free one.
    pub metrics_export_port: Option<u16>,
    /// Port of the gRPC listener (Ray's `grpc_options.port`; Ray's default is 9000), on `host`:
    /// applications' gRPC services routed by the `application` metadata key, the
    /// `rayai.v1.Agents` service, health and reflection. Needs the `grpc` feature. Default
    /// `None` (no gRPC listener); 0 picks a free one.
    pub grpc_port: Option<u16>,
    /// When the dashboard cannot bind its port, serve without it (a warning) instead of failing
    /// to start (default `false`).
    pub dashboard_best_effort: bool,
    /// Refuse to start an application unless every replica it asks for fits on the node now
    /// (default `false`: start what fits, the minimum of every deployment first, and keep the
    /// rest pending until resources free up). `rayai serve --strict`, `RAYAI_STRICT=1`.
    pub strict_placement: bool,
    /// Seconds between the start of a shutdown and the listener closing (default 5; 0 closes it
    /// at once): `/-/healthz` answers `503` from the start while new connections are still
    /// accepted and served, so load balancers see the server leave before it refuses
    /// connections. `RAYAI_DRAIN_DELAY_S`.
    pub drain_delay_s: f64,
    /// Host names the dashboard and the metrics export port answer besides the address they
    /// are bound to, as `host` or `host:port` (`dash.example.com`, `10.0.0.5:8265`,
    /// `[fd00::1]`); an entry without a port admits the name on any port. A request naming
    /// another host is a `403`: this is what stops a DNS-rebinding page from reading a loopback
    /// dashboard. Default empty. `RAYAI_DASHBOARD_ALLOWED_HOSTS`, comma-separated.
    pub dashboard_allowed_hosts: Vec<String>,
    /// Serve the dashboard on an address other machines can reach (anything but loopback)
    /// without a `dashboard_token`. Default `false`: such a server refuses to start, since the
    /// dashboard shows logs and deploys applications. `RAYAI_DASHBOARD_ALLOW_INSECURE=1`.
    pub dashboard_allow_insecure: bool,
    /// An agent's SSE stream silent for this many seconds sends a comment line
    /// (`: keep-alive`), again after each such silence, so that proxies with idle timeouts keep
    /// it open; SSE clients ignore comments. Default 15; 0 turns it off.
    /// `RAYAI_SSE_KEEP_ALIVE_S`.
    pub sse_keep_alive_s: f64,
    /// Seconds a request body may go without a byte arriving while it is read; then the request
    /// is answered `408` and its connection closed. Default 10; 0 turns it off.
    /// `RAYAI_BODY_READ_TIMEOUT_S`.
    pub body_read_timeout_s: f64,
    /// Most connections open at once, on every listener of the server together; beyond it new
    /// connections wait in the listen backlog, and connections waiting on their client (no
    /// request yet, a stalled head or body, idle keep-alive) get one second. Default `None`:
    /// derived from the process's file-descriptor limit (three quarters of it, at least 32).
    /// `RAYAI_MAX_CONNECTIONS`.
    pub max_connections: Option<usize>,
    /// Most request-body bytes held in memory by the whole process at once; a request that
    /// would go beyond it is answered `503` with `Retry-After` before more of its body is read.
    /// Default 256 MiB. `RAYAI_MAX_BODY_BYTES_IN_FLIGHT`.
    pub max_body_bytes_in_flight: u64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            root_path: String::new(),
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_s: None,
            backpressure_retry_after_s: None,
            header_read_timeout_s: 30.0,
            graceful_shutdown_timeout_s: 20.0,
            keep_alive_timeout_s: 90.0,
            tls_cert_path: None,
            tls_key_path: None,
            dashboard_port: Some(8265),
            dashboard_host: "127.0.0.1".to_owned(),
            dashboard_token: None,
            metrics_export_port: None,
            grpc_port: None,
            dashboard_best_effort: false,
            strict_placement: false,
            drain_delay_s: 5.0,
            dashboard_allowed_hosts: Vec::new(),
            dashboard_allow_insecure: false,
            sse_keep_alive_s: 15.0,
            body_read_timeout_s: 10.0,
            max_connections: None,
            max_body_bytes_in_flight: 256 * 1024 * 1024,
        }
    }
}

impl HttpOptions {
    /// The defaults, with `RAYAI_HOST` and `RAYAI_PORT` from the environment when set (this is
    /// how `rayai serve --host --port` reaches a project's `main`), and `RAYAI_DASHBOARD_PORT`
    /// (0 turns the dashboard off), `RAYAI_DASHBOARD_HOST`, `RAYAI_DASHBOARD_TOKEN` (else
    /// `RAYAI_AUTH_TOKEN`, else Ray's `RAY_AUTH_TOKEN`), `RAYAI_METRICS_EXPORT_PORT` (0 or unset:
    /// no metrics listener of its own), `RAYAI_STRICT` (`1` refuses what does not fit, see
    /// `strict_placement`), `RAYAI_DRAIN_DELAY_S` (see `drain_delay_s`),
    /// `RAYAI_DASHBOARD_ALLOWED_HOSTS` (comma-separated `host[:port]`),
    /// `RAYAI_DASHBOARD_ALLOW_INSECURE` (`1`) and `RAYAI_SSE_KEEP_ALIVE_S` (seconds, 0 turns
    /// the keep-alive comments off).
    ///
    /// A variable whose value is wrong is ignored with a warning that names it; use
    /// [`HttpOptions::try_from_env`] to refuse it instead.
    pub fn from_env() -> Self {
        Self::read_env(|name| std::env::var(name).ok()).unwrap_or_else(|e| {
            tracing::warn!("{e}; ignoring the environment");
            HttpOptions::default()
        })
    }

    /// [`HttpOptions::from_env`], refusing a variable whose value is wrong.
    ///
    /// # Errors
    ///
    /// [`Error::Env`] naming the variable, its value and what it should be.
    pub fn try_from_env() -> Result<Self, Error> {
        Self::read_env(|name| std::env::var(name).ok())
    }

    /// The options from the variables `lookup` finds.
    fn read_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut opts = HttpOptions::default();
        if let Some(host) = lookup("RAYAI_HOST") {
            opts.host = host;
        }
        if let Some(port) = var(&lookup, "RAYAI_PORT", "a port number (0 to 65535)")? {
            opts.port = port;
        }
        let dashboard = "a port number (0 to 65535; 0 turns the dashboard off)";
        if let Some(port) = var::<u16>(&lookup, "RAYAI_DASHBOARD_PORT", dashboard)? {
            // As `--dashboard-port`: 0 turns the dashboard off.
            opts.dashboard_port = (port != 0).then_some(port);
        }
        if let Some(host) = lookup("RAYAI_DASHBOARD_HOST") {
            opts.dashboard_host = host;
        }
        if let Some(token) = TOKEN_VARIABLES.iter().find_map(|name| lookup(name)) {
            opts.dashboard_token = Some(token).filter(|t| !t.is_empty());
        }
        let metrics = "a port number (0 to 65535; 0 turns the metrics listener off)";
        if let Some(port) = var::<u16>(&lookup, "RAYAI_METRICS_EXPORT_PORT", metrics)? {
            opts.metrics_export_port = (port != 0).then_some(port);
        }
        let grpc = "a port number (0 to 65535; 0 turns the gRPC listener off)";
        if let Some(port) = var::<u16>(&lookup, "RAYAI_GRPC_PORT", grpc)? {
            opts.grpc_port = (port != 0).then_some(port);
        }
        if let Some(strict) = lookup("RAYAI_STRICT") {
            opts.strict_placement = match strict.trim() {
                "1" | "true" | "yes" => true,
                "" | "0" | "false" | "no" => false,
                _ => {
                    return Err(Error::Env {
                        variable: "RAYAI_STRICT",
                        value: strict,
                        expected: "1 or 0",
                    });
                }
            };
        }
        let delay = "a number of seconds (0 or more)";
        if let Some(s) = var::<f64>(&lookup, "RAYAI_DRAIN_DELAY_S", delay)? {
            if !(s.is_finite() && (0.0..=MAX_DRAIN_DELAY_S).contains(&s)) {
                return Err(Error::Env {
                    variable: "RAYAI_DRAIN_DELAY_S",
                    value: lookup("RAYAI_DRAIN_DELAY_S").unwrap_or_default(),
                    expected: delay,
                });
            }
            opts.drain_delay_s = s;
        }
        if let Some(hosts) = lookup("RAYAI_DASHBOARD_ALLOWED_HOSTS") {
            opts.dashboard_allowed_hosts = allowed_hosts(hosts)?;
        }
        if let Some(value) = lookup("RAYAI_DASHBOARD_ALLOW_INSECURE") {
            opts.dashboard_allow_insecure = flag("RAYAI_DASHBOARD_ALLOW_INSECURE", value)?;
        }
        let keep_alive = "a number of seconds (0 turns the keep-alive comments off)";
        if let Some(s) = var::<f64>(&lookup, "RAYAI_SSE_KEEP_ALIVE_S", keep_alive)? {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::Env {
                    variable: "RAYAI_SSE_KEEP_ALIVE_S",
                    value: lookup("RAYAI_SSE_KEEP_ALIVE_S").unwrap_or_default(),
                    expected: keep_alive,
                });
            }
            opts.sse_keep_alive_s = s;
        }
        let seconds = "a number of seconds (0 turns the timeout off)";
        if let Some(s) = var::<f64>(&lookup, "RAYAI_BODY_READ_TIMEOUT_S", seconds)? {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::Env {
                    variable: "RAYAI_BODY_READ_TIMEOUT_S",
                    value: lookup("RAYAI_BODY_READ_TIMEOUT_S").unwrap_or_default(),
                    expected: seconds,
                });
            }
            opts.body_read_timeout_s = s;
        }
        let count = "a number of connections (1 or more)";
        if let Some(n) = var::<usize>(&lookup, "RAYAI_MAX_CONNECTIONS", count)? {
            if n == 0 {
                return Err(Error::Env {
                    variable: "RAYAI_MAX_CONNECTIONS",
                    value: n.to_string(),
                    expected: count,
                });
            }
            opts.max_connections = Some(n);
        }
        let bytes = "a number of bytes";
        if let Some(n) = var::<u64>(&lookup, "RAYAI_MAX_BODY_BYTES_IN_FLIGHT", bytes)? {
            opts.max_body_bytes_in_flight = n;
        }
        Ok(opts)
    }

    /// The silence after which an SSE stream sends a keep-alive comment; `None` when off.
    pub(crate) fn sse_keep_alive(&self) -> Option<Duration> {
        secs(self.sse_keep_alive_s)
    }

    /// The time a request body may go without a byte; `None` when off.
    pub(crate) fn body_read_timeout(&self) -> Option<Duration> {
        secs(self.body_read_timeout_s)
    }

    /// The most connections open at once: the configured number, or three quarters of the
    /// file-descriptor limit (the rest for the replicas, the log and the process's own files).
    pub(crate) fn connection_cap(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(65_536);
            let limit = usize::try_from(limit).unwrap_or(usize::MAX).min(1 << 20);
            (limit / 4 * 3).max(32)
        })
    }

    pub(crate) fn request_timeout(&self) -> Option<Duration> {
        secs(self.request_timeout_s?)
    }

    pub(crate) fn header_read_timeout(&self) -> Option<Duration> {
        secs(self.header_read_timeout_s)
    }

    pub(crate) fn keep_alive_timeout(&self) -> Option<Duration> {
        secs(self.keep_alive_timeout_s)
    }

    pub(crate) fn graceful_shutdown_timeout(&self) -> Duration {
        secs(self.graceful_shutdown_timeout_s).unwrap_or(Duration::ZERO)
    }

    /// The drain delay: none for a value that is not a positive number, at most
    /// [`MAX_DRAIN_DELAY_S`] (a value set in code is clamped, never a panic).
    pub(crate) fn drain_delay(&self) -> Duration {
        if self.drain_delay_s.is_nan() {
            return Duration::ZERO;
        }
        secs(self.drain_delay_s.min(MAX_DRAIN_DELAY_S)).unwrap_or(Duration::ZERO)
    }
}

/// The longest drain delay: an hour (a load balancer notices within seconds).
const MAX_DRAIN_DELAY_S: f64 = 3600.0;

/// The variables the dashboard's token is read from, first set first.
pub(crate) const TOKEN_VARIABLES: [&str; 3] = [
    "RAYAI_DASHBOARD_TOKEN",
    "RAYAI_AUTH_TOKEN",
    "RAY_AUTH_TOKEN",
];

/// `RAYAI_DASHBOARD_ALLOWED_HOSTS`: comma-separated `host[:port]` entries, blanks skipped.
fn allowed_hosts(value: String) -> Result<Vec<String>, Error> {
    let hosts: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    if hosts
        .iter()
        .any(|h| crate::dashboard::HostName::parse(h).is_none())
    {
        return Err(Error::Env {
            variable: "RAYAI_DASHBOARD_ALLOWED_HOSTS",
            value,
            expected: "a comma-separated list of host[:port] entries",
        });
    }
    Ok(hosts)
}

/// A yes-or-no variable: `1`, `true`, `yes` or `0`, `false`, `no`, blank.
fn flag(variable: &'static str, value: String) -> Result<bool, Error> {
    match value.trim() {
        "1" | "true" | "yes" => Ok(true),
        "" | "0" | "false" | "no" => Ok(false),
        _ => Err(Error::Env {
            variable,
            value,
            expected: "1 or 0",
        }),
    }
}

/// The variable `name` parsed, `None` when unset or blank.
fn var<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    expected: &'static str,
) -> Result<Option<T>, Error> {
    match lookup(name) {
        None => Ok(None),
        Some(value) if value.trim().is_empty() => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| Error::Env {
            variable: name,
            value,
            expected,
        }),
    }
}

/// `s` seconds, when positive: to the nanosecond, and saturating (a float-to-integer `as`
/// saturates) where `Duration::from_secs_f64` would panic. Read on every request, it is also a
/// few instructions where `from_secs_f64`'s exact rounding takes dozens.
fn secs(s: f64) -> Option<Duration> {
    let nanos = (s * 1e9) as u64;
    (s.is_finite() && s > 0.0).then(|| Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn variables_set_the_options() {
        let opts = HttpOptions::read_env(env(&[
            ("RAYAI_PORT", "9000"),
            ("RAYAI_DASHBOARD_PORT", "0"),
            ("RAYAI_STRICT", "1"),
        ]))
        .unwrap();
        assert_eq!(opts.port, 9000);
        assert_eq!(opts.dashboard_port, None);
        assert!(opts.strict_placement);
        assert_eq!(opts.metrics_export_port, None);
        assert_eq!(opts.dashboard_token, None);
    }

    #[test]
    fn the_token_comes_from_the_first_variable_set() {
        let token =
            |vars: &[(&str, &str)]| HttpOptions::read_env(env(vars)).unwrap().dashboard_token;
        assert_eq!(token(&[("RAY_AUTH_TOKEN", "ray")]).as_deref(), Some("ray"));
        let both = [("RAY_AUTH_TOKEN", "ray"), ("RAYAI_AUTH_TOKEN", "rayai")];
        assert_eq!(token(&both).as_deref(), Some("rayai"));
        let all = [
            ("RAY_AUTH_TOKEN", "ray"),
            ("RAYAI_AUTH_TOKEN", "rayai"),
            ("RAYAI_DASHBOARD_TOKEN", "dash"),
        ];
        assert_eq!(token(&all).as_deref(), Some("dash"));
        assert_eq!(token(&[("RAYAI_DASHBOARD_TOKEN", "")]), None);
    }

    #[test]
    fn the_grpc_port_is_read_and_zero_turns_it_off() {
        let read = |v: &str| {
            HttpOptions::read_env(|name| (name == "RAYAI_GRPC_PORT").then(|| v.to_owned()))
                .map(|o| o.grpc_port)
        };
        assert_eq!(read("9000").unwrap(), Some(9000));
        assert_eq!(read("0").unwrap(), None);
        assert!(read("nine").is_err());
        assert_eq!(HttpOptions::default().grpc_port, None);
    }

    #[test]
    fn the_metrics_export_port_is_read_and_zero_turns_it_off() {
        let port = |v: &str| {
            HttpOptions::read_env(env(&[("RAYAI_METRICS_EXPORT_PORT", v)]))
                .map(|o| o.metrics_export_port)
        };
        assert_eq!(port("9100").unwrap(), Some(9100));
        assert_eq!(port("0").unwrap(), None);
        let e = port("x").unwrap_err();
        assert!(
            e.to_string().starts_with("RAYAI_METRICS_EXPORT_PORT=\"x\""),
            "{e}"
        );
    }

    #[test]
    fn the_drain_delay_is_read_and_checked() {
        let delay = |v: &str| {
            HttpOptions::read_env(env(&[("RAYAI_DRAIN_DELAY_S", v)])).map(|o| o.drain_delay_s)
        };
        assert_eq!(HttpOptions::default().drain_delay_s, 5.0);
        assert_eq!(delay("0").unwrap(), 0.0);
        assert_eq!(delay("2.5").unwrap(), 2.5);
        for bad in ["-1", "soon", "inf", "NaN", "1e9"] {
            let e = delay(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("RAYAI_DRAIN_DELAY_S="),
                "{bad}: {e}"
            );
        }
        let in_code = |drain_delay_s| {
            HttpOptions {
                drain_delay_s,
                ..HttpOptions::default()
            }
            .drain_delay()
        };
        assert_eq!(in_code(1e12), Duration::from_secs(3600));
        assert_eq!(in_code(f64::INFINITY), Duration::from_secs(3600));
        assert_eq!(in_code(f64::NAN), Duration::ZERO);
        assert_eq!(in_code(-3.0), Duration::ZERO);
    }

    #[test]
    fn a_wrong_value_is_one_error_naming_the_variable() {
        let e = HttpOptions::read_env(env(&[("RAYAI_PORT", "eighty")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RAYAI_PORT=\"eighty\" is not a port number (0 to 65535)"
        );
        let e = HttpOptions::read_env(env(&[("RAYAI_DASHBOARD_PORT", "70000")])).unwrap_err();
        assert!(
            e.to_string().starts_with("RAYAI_DASHBOARD_PORT=\"70000\""),
            "{e}"
        );
        let e = HttpOptions::read_env(env(&[("RAYAI_STRICT", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("RAYAI_STRICT"), "{e}");
        assert!(HttpOptions::read_env(env(&[("RAYAI_PORT", " ")])).is_ok());
    }

    #[test]
    fn dashboard_hosts_insecure_and_keep_alive_are_read() {
        let opts = HttpOptions::read_env(env(&[
            (
                "RAYAI_DASHBOARD_ALLOWED_HOSTS",
                " dash.example.com, [::1]:8265,,10.0.0.5:80 ",
            ),
            ("RAYAI_DASHBOARD_ALLOW_INSECURE", "1"),
            ("RAYAI_SSE_KEEP_ALIVE_S", "0.5"),
        ]))
        .unwrap();
        assert_eq!(
            opts.dashboard_allowed_hosts,
            ["dash.example.com", "[::1]:8265", "10.0.0.5:80"]
        );
        assert!(opts.dashboard_allow_insecure);
        assert_eq!(opts.sse_keep_alive(), Some(Duration::from_millis(500)));
        let defaults = HttpOptions::read_env(env(&[])).unwrap();
        assert!(defaults.dashboard_allowed_hosts.is_empty());
        assert!(!defaults.dashboard_allow_insecure);
        assert_eq!(defaults.sse_keep_alive(), Some(Duration::from_secs(15)));
        let off = HttpOptions::read_env(env(&[("RAYAI_SSE_KEEP_ALIVE_S", "0")])).unwrap();
        assert_eq!(off.sse_keep_alive(), None);
        for (name, bad) in [
            ("RAYAI_DASHBOARD_ALLOWED_HOSTS", "a b"),
            ("RAYAI_DASHBOARD_ALLOWED_HOSTS", "user@host"),
            ("RAYAI_DASHBOARD_ALLOW_INSECURE", "maybe"),
            ("RAYAI_SSE_KEEP_ALIVE_S", "-1"),
            ("RAYAI_SSE_KEEP_ALIVE_S", "soon"),
        ] {
            let e = HttpOptions::read_env(env(&[(name, bad)])).unwrap_err();
            assert!(e.to_string().starts_with(name), "{e}");
        }
    }
}
