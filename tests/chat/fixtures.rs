//! Agents of these tests only: a `run` that returns no object, a stream that panics, an agent
//! that answers with its request context, and one that records when its work is dropped.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rayai::prelude::*;

/// `run` returns a list, which is not a JSON object.
#[agent(name = "returns_list", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct ReturnsList;

impl Agent for ReturnsList {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!([1, 2]))
    }
}

/// `run_stream` yields `before`, then panics when `data.panic` is true (else yields `after`).
#[agent(name = "stream_panics", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct StreamPanics;

impl Agent for StreamPanics {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "ok": true }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let panic = data.get("panic").and_then(Value::as_bool) == Some(true);
        Some(
            try_stream! {
                yield "before".to_owned();
                if panic {
                    panic!("the stream fell over");
                }
                yield "after".to_owned();
            }
            .boxed(),
        )
    }
}

/// Answers with the request context it sees, from `run` and from `run_stream`.
#[agent(name = "whoami", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
pub(crate) struct WhoAmI;

fn context_json() -> Result<Value, AgentError> {
    let ctx = RequestContext::current().ok_or_else(|| AgentError::new("no request context"))?;
    Ok(json!({ "request_id": ctx.request_id(), "session_id": ctx.session_id() }))
}

impl Agent for WhoAmI {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        context_json()
    }

    fn run_stream(&self, _data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                yield context_json()?.to_string();
            }
            .boxed(),
        )
    }
}

/// One pair of flags per test that uses [`Watched`] (`data.flag` picks the pair): set when a
/// `run` or stream starts, and when one is dropped before it finished.
pub(crate) static STARTED: [AtomicBool; 5] = [const { AtomicBool::new(false) }; 5];
pub(crate) static DROPPED: [AtomicBool; 5] = [const { AtomicBool::new(false) }; 5];

pub(crate) const FLAG_STREAM_HANGUP: usize = 0;
pub(crate) const FLAG_RUN_HANGUP: usize = 1;
pub(crate) const FLAG_STREAM_TIMEOUT: usize = 2;
pub(crate) const FLAG_RUN_TIMEOUT: usize = 3;
pub(crate) const FLAG_H2_RESET: usize = 4;

/// Records in [`DROPPED`] that the work it lives in was dropped before it finished.
struct Watch {
    flag: usize,
    finished: bool,
}

impl Watch {
    fn start(flag: usize) -> Self {
        STARTED[flag].store(true, Ordering::SeqCst);
        Watch {
            flag,
            finished: false,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            DROPPED[self.flag].store(true, Ordering::SeqCst);
        }
    }
}

/// `data.flag`: which pair of [`STARTED`] and [`DROPPED`] flags a request watches.
fn flag(data: &Value) -> Option<usize> {
    data.get("flag")
        .and_then(Value::as_u64)
        .and_then(|f| usize::try_from(f).ok())
}

/// `data[key]` milliseconds (none when absent).
fn millis(data: &Value, key: &str) -> Duration {
    Duration::from_millis(data.get(key).and_then(Value::as_u64).unwrap_or(0))
}

/// One request at a time. `run` sleeps `data.ms`; `run_stream` yields `tick 1` at once, then
/// `tick n` every `data.delay_ms`, up to 1000 ticks. Both watch themselves with `data.flag`.
#[agent(
    name = "watched",
    num_cpus = 0.1,
    memory = "16MB",
    max_ongoing_requests = 1
)]
#[derive(Default)]
pub(crate) struct Watched;

impl Agent for Watched {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let mut watch = flag(&data).map(Watch::start);
        let ms = millis(&data, "ms");
        tokio::time::sleep(ms).await;
        if let Some(w) = watch.as_mut() {
            w.finished = true;
        }
        Ok(json!({ "slept_ms": ms.as_millis() as u64 }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let flag = flag(&data);
        let delay = millis(&data, "delay_ms");
        Some(
            try_stream! {
                let _watch = flag.map(Watch::start);
                for n in 1..=1000 {
                    if n > 1 {
                        tokio::time::sleep(delay).await;
                    }
                    yield format!("tick {n}");
                }
            }
            .boxed(),
        )
    }
}
