//! Logs by default, as Ray Serve always has them: a program that installs no tracing subscriber
//! of its own gets one when it starts serving. `RUST_LOG` chooses what is logged (`info` unless
//! set, which includes the access log, one line per request); lines are readable text, or one
//! JSON object per line with `RAYAI_LOG_FORMAT=json`, on standard error; and the dashboard's log
//! view is fed. A program that installs its own subscriber keeps it.
//!
//! Lines are built without the general formatting machinery ([`text`]) and written in batches
//! by a thread of their own ([`batch`]): a request's access log line costs a copy into a buffer,
//! not a system call.

mod batch;
pub(crate) mod capture;
mod numbers;
mod text;

pub(crate) use batch::flush;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use capture::LogLayer;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Readable lines (colored on a terminal).
    Text,
    /// One JSON object per line, as log shippers ingest them.
    Json,
}

impl Format {
    /// `RAYAI_LOG_FORMAT`: `json`, or text for anything else (a warning names a bad value).
    fn from_env(value: Option<&str>) -> (Format, Option<String>) {
        match value.map(str::trim) {
            None | Some("") => (Format::Text, None),
            Some(v) if v.eq_ignore_ascii_case("json") => (Format::Json, None),
            Some(v) if v.eq_ignore_ascii_case("text") => (Format::Text, None),
            Some(v) => (
                Format::Text,
                Some(format!(
                    "ignoring RAYAI_LOG_FORMAT={v:?}: expected `json` or `text`"
                )),
            ),
        }
    }
}

/// The filter: `RUST_LOG` when it is set and valid, else `info`.
fn filter(rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        None => (EnvFilter::new("info"), None),
        Some(spec) => match EnvFilter::try_new(spec) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!("ignoring RUST_LOG={spec:?} ({e}); logging at info")),
            ),
        },
    }
}

/// Installs the default subscriber unless the program already has one. Returns whether it did.
pub(crate) fn init_default() -> bool {
    if tracing::dispatcher::has_been_set() {
        return false;
    }
    let (filter, filter_problem) = filter(std::env::var("RUST_LOG").ok().as_deref());
    let (format, format_problem) =
        Format::from_env(std::env::var("RAYAI_LOG_FORMAT").ok().as_deref());
    // One filter for every layer: an event nobody logs is never built.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new());
    let installed = match format {
        Format::Text => {
            use std::io::IsTerminal;
            registry
                .with(text::TextLayer::new(std::io::stderr().is_terminal()))
                .try_init()
        }
        Format::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(|| Batched)
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
    if installed.is_err() {
        return false;
    }
    for problem in [filter_problem, format_problem].into_iter().flatten() {
        tracing::warn!("{problem}");
    }
    true
}

/// A writer into the batches of standard error, for `fmt`'s JSON layer (it writes each event in
/// one call).
struct Batched;

impl std::io::Write for Batched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        batch::append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_rayai_log_format() {
        assert_eq!(Format::from_env(None).0, Format::Text);
        assert_eq!(Format::from_env(Some("JSON")).0, Format::Json);
        assert_eq!(Format::from_env(Some("text")).0, Format::Text);
        let (format, problem) = Format::from_env(Some("yaml"));
        assert_eq!(format, Format::Text);
        assert!(problem.unwrap().contains("RAYAI_LOG_FORMAT=\"yaml\""));
    }

    #[test]
    fn rust_log_is_honoured_and_a_bad_one_falls_back_to_info() {
        assert_eq!(filter(None).0.to_string(), "info");
        assert_eq!(filter(Some("rayai=debug")).0.to_string(), "rayai=debug");
        let (fallback, problem) = filter(Some("rayai=nonsense[{"));
        assert_eq!(fallback.to_string(), "info");
        assert!(problem.unwrap().contains("RUST_LOG"));
    }
}
