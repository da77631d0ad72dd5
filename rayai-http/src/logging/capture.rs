//! Log capture for the dashboard: a `tracing_subscriber` layer that keeps the last events of the
//! process in a bounded ring buffer, with the fields the page filters on.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;

use super::numbers::{push_padded, push_thousandths};

/// Lines the ring buffer keeps.
const CAPACITY: usize = 5000;

/// One captured event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct LogLine {
    /// Its place in the capture, from 1: the page asks for lines after the last it saw.
    pub(crate) seq: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) ts_ms: u64,
    pub(crate) level: &'static str,
    pub(crate) target: &'static str,
    pub(crate) message: String,
    pub(crate) request_id: Option<String>,
    pub(crate) deployment: Option<String>,
    pub(crate) replica: Option<String>,
}

#[derive(Default)]
struct Ring {
    next: u64,
    lines: VecDeque<LogLine>,
}

fn ring() -> &'static Mutex<Ring> {
    static RING: OnceLock<Mutex<Ring>> = OnceLock::new();
    RING.get_or_init(Mutex::default)
}

/// A `tracing_subscriber` layer that feeds the dashboard's log view: the access log and every
/// other event the process emits (the agents' own included), the last 5,000 of them.
///
/// Add it to the subscriber the program installs; without it the page's log view stays empty.
///
/// # Examples
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// tracing_subscriber::registry()
///     .with(tracing_subscriber::fmt::layer())
///     .with(rayai_http::LogLayer::new())
///     .init();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct LogLayer {
    _private: (),
}

impl LogLayer {
    /// The layer (every instance writes to the process's one buffer).
    pub fn new() -> Self {
        LogLayer::default()
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
    request_id: Option<String>,
    deployment: Option<String>,
    replica: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            name => {
                self.name(field);
                self.rest.push_str(value);
                self.keep(name, value);
            }
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        push_padded(&mut self.rest, value, 1);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.name(field);
        push_thousandths(&mut self.rest, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => {
                self.message.clear();
                let _ = write!(self.message, "{value:?}");
            }
            name => {
                let start = self.rest.len() + name.len() + 2;
                let _ = write!(self.rest, " {name}={value:?}");
                let shown = self.rest[start..].to_owned();
                self.keep(name, &shown);
            }
        }
    }
}

impl Fields {
    /// ` name=` before a field's value.
    fn name(&mut self, field: &Field) {
        self.rest.push(' ');
        self.rest.push_str(field.name());
        self.rest.push('=');
    }

    /// Keeps the value of a field the page filters on.
    fn keep(&mut self, name: &str, value: &str) {
        let slot = match name {
            "request_id" => &mut self.request_id,
            "deployment" => &mut self.deployment,
            "replica" => &mut self.replica,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.request_id.is_none() {
            // An agent's event inside a request: the request it serves.
            fields.request_id =
                rayai_core::RequestContext::current().map(|c| c.request_id().to_owned());
        }
        if fields.deployment.is_none()
            && let Some(replica) = &fields.replica
        {
            // Replica ids are `<deployment>#<n>`.
            fields.deployment = replica.rsplit_once('#').map(|(d, _)| d.to_owned());
        }
        let ts_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut ring = ring().lock().unwrap_or_else(|p| p.into_inner());
        ring.next += 1;
        let line = LogLine {
            seq: ring.next,
            ts_ms,
            level: event.metadata().level().as_str(),
            target: event.metadata().target(),
            message: {
                let mut message = fields.message;
                message.push_str(&fields.rest);
                message
            },
            request_id: fields.request_id,
            deployment: fields.deployment,
            replica: fields.replica,
        };
        if ring.lines.len() == CAPACITY {
            ring.lines.pop_front();
        }
        ring.lines.push_back(line);
    }
}

/// What the page asks for: lines after `since` that match every filter given.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pub(crate) since: u64,
    pub(crate) deployment: Option<String>,
    pub(crate) replica: Option<String>,
    pub(crate) request_id: Option<String>,
    pub(crate) limit: usize,
}

/// The lines `query` selects (the newest `query.limit`), and the last sequence number captured.
pub(crate) fn select(query: &Query) -> (Vec<LogLine>, u64) {
    let ring = ring().lock().unwrap_or_else(|p| p.into_inner());
    let matches = |want: &Option<String>, have: &Option<String>| match want {
        None => true,
        Some(w) => have.as_deref().is_some_and(|h| h.contains(w.as_str())),
    };
    let mut picked: Vec<LogLine> = ring
        .lines
        .iter()
        .rev()
        .take_while(|l| l.seq > query.since)
        .filter(|l| {
            matches(&query.deployment, &l.deployment)
                && matches(&query.replica, &l.replica)
                && matches(&query.request_id, &l.request_id)
        })
        .take(query.limit.max(1))
        .cloned()
        .collect();
    picked.reverse();
    (picked, ring.next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn captures_events_with_their_ids_and_filters_them() {
        let subscriber = tracing_subscriber::registry().with(LogLayer::new());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                request_id = "req-abc",
                replica = "echo#0",
                "hello from a test"
            );
            tracing::warn!(deployment = "other", "unrelated");
        });
        let (lines, last) = select(&Query {
            request_id: Some("req-abc".into()),
            limit: 100,
            ..Query::default()
        });
        assert!(last >= 2);
        let line = lines
            .iter()
            .find(|l| l.message.starts_with("hello from a test"))
            .expect("the event is captured");
        assert_eq!(line.deployment.as_deref(), Some("echo"));
        assert_eq!(line.replica.as_deref(), Some("echo#0"));
        assert_eq!(line.level, "INFO");
        assert!(
            lines
                .iter()
                .all(|l| l.request_id.as_deref() == Some("req-abc"))
        );
    }
}
