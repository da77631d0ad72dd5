//! Deployments of these tests only: agents and typed callables that greet, square, halve, refuse,
//! fail, take one request at a time, sleep until cancelled, name their replica, or forward.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rayai::prelude::*;
use tokio::sync::Notify;

/// Greets `data.name`.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Greeter;

impl Agent for Greeter {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let name = data.get("name").and_then(Value::as_str).unwrap_or("nobody");
        Ok(json!({ "greeting": format!("hello, {name}") }))
    }
}

/// Squares an integer: a typed deployment.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Square;

impl Callable for Square {
    type Request = i64;
    type Response = i64;
    async fn call(&self, n: i64) -> Result<i64, AgentError> {
        Ok(n * n)
    }
}

/// Halves a float: a typed deployment whose types differ from [`Square`]'s.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Halve;

impl Callable for Halve {
    type Request = f64;
    type Response = f64;
    async fn call(&self, x: f64) -> Result<f64, AgentError> {
        Ok(x / 2.0)
    }
}

/// Always refuses.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct Refuser;

impl Callable for Refuser {
    type Request = ();
    type Response = ();
    async fn call(&self, (): ()) -> Result<(), AgentError> {
        Err(AgentError::new("nope"))
    }
}

/// Always fails, as a JSON agent.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
pub(crate) struct FailingAgent;

impl Agent for FailingAgent {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Err(AgentError::new("agent says nope"))
    }
}

/// Opened by `busy_callee_rejects_a_second_call_with_backpressure` to let [`OneAtATime`] answer.
pub(crate) static ONE_AT_A_TIME_GATE: Notify = Notify::const_new();

/// Takes one request at a time and queues none; each waits for [`ONE_AT_A_TIME_GATE`].
#[deployment(
    num_cpus = 0.1,
    memory = "16MB",
    isolation = "shared",
    max_ongoing_requests = 1,
    max_queued_requests = 0
)]
#[derive(Default)]
pub(crate) struct OneAtATime;

impl Callable for OneAtATime {
    type Request = u32;
    type Response = u32;
    async fn call(&self, n: u32) -> Result<u32, AgentError> {
        ONE_AT_A_TIME_GATE.notified().await;
        Ok(n + 1)
    }
}

/// Callables that sleep 30 s and record in their flag when their future is dropped before that.
macro_rules! sleepers {
    ($($name:ident, $started:ident, $flag:ident, $doc:literal, #[$config:meta];)*) => {$(
        #[doc = concat!("Set when a [`", stringify!($name), "`] call starts running.")]
        pub(crate) static $started: AtomicBool = AtomicBool::new(false);

        #[doc = concat!("Set when a [`", stringify!($name), "`] call is dropped before it finished.")]
        pub(crate) static $flag: AtomicBool = AtomicBool::new(false);

        #[doc = $doc]
        #[$config]
        #[derive(Default)]
        pub(crate) struct $name;

        impl Callable for $name {
            type Request = ();
            type Response = ();
            async fn call(&self, (): ()) -> Result<(), AgentError> {
                struct OnCancel;
                impl Drop for OnCancel {
                    fn drop(&mut self) {
                        $flag.store(true, Ordering::SeqCst);
                    }
                }
                let on_cancel = OnCancel;
                $started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                std::mem::forget(on_cancel);
                Ok(())
            }
        }
    )*};
}

sleepers! {
    Sleeper, SLEEPER_STARTED, SLEEPER_CANCELLED,
    "Sleeps on a thread of its own (the default isolation): cancellation crosses runtimes.",
    #[deployment(num_cpus = 0.1, memory = "16MB")];
    SharedSleeper, SHARED_SLEEPER_STARTED, SHARED_SLEEPER_CANCELLED,
    "Sleeps on the caller's runtime (shared isolation).",
    #[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")];
}

/// Answers its replica's id.
#[agent(
    num_cpus = 0.1,
    memory = "16MB",
    num_replicas = 4,
    isolation = "shared"
)]
pub(crate) struct WhoAmI {
    replica: String,
}

impl Construct for WhoAmI {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(WhoAmI {
            replica: ctx.replica_id().to_owned(),
        })
    }
}

impl Agent for WhoAmI {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "replica": self.replica }))
    }
}

/// Asks [`WhoAmI`] through a handle taken from its replica context, inside its own request.
#[agent(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
pub(crate) struct Forwarder {
    ctx: ReplicaContext,
}

impl Construct for Forwarder {
    async fn construct(ctx: ReplicaContext) -> Result<Self, AgentError> {
        Ok(Forwarder { ctx })
    }
}

impl Agent for Forwarder {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let who = self
            .ctx
            .handle("who_am_i")
            .map_err(|e| AgentError::new(e.to_string()))?;
        who.call(data)
            .await
            .map_err(|e| AgentError::new(e.to_string()))
    }
}
