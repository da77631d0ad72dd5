//! The server's options (Ray Serve's `HttpOptions`).

use std::time::Duration;

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
    /// Largest request body accepted; a larger one is a 413 (default 16 MiB).
    pub max_body_bytes: u64,
    /// Time a request may take before its response starts, queueing included; then a 408, and a
    /// stream already running is cut off (default: no limit).
    pub request_timeout_s: Option<f64>,
    /// When set, an overloaded deployment answers 429 with this `Retry-After` instead of 503.
    pub backpressure_retry_after_s: Option<u32>,
    /// Time a client has to send a request's headers before the connection is closed (default 30).
    pub header_read_timeout_s: f64,
    /// Time in-flight requests get to finish on shutdown (default 20).
    pub graceful_shutdown_timeout_s: f64,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout_s: None,
            backpressure_retry_after_s: None,
            header_read_timeout_s: 30.0,
            graceful_shutdown_timeout_s: 20.0,
        }
    }
}

impl HttpOptions {
    /// The defaults, with `RAYAI_HOST` and `RAYAI_PORT` from the environment when set (this is
    /// how `rayai serve --host --port` reaches a project's `main`).
    pub fn from_env() -> Self {
        let mut opts = HttpOptions::default();
        if let Ok(host) = std::env::var("RAYAI_HOST") {
            opts.host = host;
        }
        if let Some(port) = std::env::var("RAYAI_PORT")
            .ok()
            .and_then(|p| p.parse().ok())
        {
            opts.port = port;
        }
        opts
    }

    pub(crate) fn request_timeout(&self) -> Option<Duration> {
        secs(self.request_timeout_s?)
    }

    pub(crate) fn header_read_timeout(&self) -> Option<Duration> {
        secs(self.header_read_timeout_s)
    }

    pub(crate) fn graceful_shutdown_timeout(&self) -> Duration {
        secs(self.graceful_shutdown_timeout_s).unwrap_or(Duration::ZERO)
    }
}

fn secs(s: f64) -> Option<Duration> {
    (s.is_finite() && s > 0.0).then(|| Duration::from_secs_f64(s))
}
