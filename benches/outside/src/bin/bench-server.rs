//! `bench-server`: the rayai server of the load benchmark, a process of its own, as a user
//! writes one (`rayai::serve::start`, the default log subscriber, default options).
//!
//! | agent | what it is |
//! |---|---|
//! | `echo` | the conformance example's `echo`, with its options (`num_cpus = 0.25`, `memory = "64MB"`, everything else the defaults: 1 replica, 5 ongoing requests, an unbounded queue, `isolation = "auto"`) |
//! | `echo_shared` | the same with `isolation = "shared"` |
//! | `echo4` | the same with `num_replicas = 4` |
//!
//! Each `run` answers `{"echo": data}` (or fails with `data.fail`, waits `data.delay_ms`, as
//! the conformance example's); each `run_stream` yields `data.n` chunks `tok`.
//!
//! It takes `--port`, `--host` and `--dashboard-port` (0 turns the dashboard off), serves with
//! no drain delay so that it stops at once on SIGTERM, and prints
//! `bench-server on http://<addr> (pid <pid>)` once its agents are deployed. `RUST_LOG` chooses
//! what is logged, as for any rayai program: unset or `info` writes the access log (one line per
//! request on standard error), `warn` filters it out.
//!
//! With `--grpc-port <port>` (0 picks a free one; without it, no gRPC listener and nothing
//! more is deployed) it also serves gRPC on that port (rayai's `grpc_port`), with the grpc
//! example's `greeter` application deployed at `/greeter` (its `Greeter` tonic service, 2
//! replicas, as the example deploys it) and the same service with `isolation = "shared"` as the
//! application `greeter_shared` at `/greeter_shared` (on the server's runtime with no guard:
//! what `"auto"`'s guards cost), without `echo4` (to fit 2 CPUs), and prints a second line,
//! `bench-server gRPC on http://<addr> (pid <pid>)`, after the first.
//!
//! ```text
//! RUST_LOG=warn bench-server --port 0 --dashboard-port 0
//! RUST_LOG=warn bench-server --port 0 --dashboard-port 0 --grpc-port 0
//! ```

use std::time::Duration;

use clap::Parser;
use rayai::HttpOptions;
use rayai::prelude::*;
use rayai::serve::ServeArgs;

/// The allocator the examples and generated projects ship with.
#[global_allocator]
static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;

/// The command line.
#[derive(Parser)]
#[command(
    name = "bench-server",
    about = "rayai's echo agents for the load benchmark"
)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// Serve gRPC on this port too (0 picks a free one), with the grpc example's `greeter`
    /// application deployed; without it, no gRPC listener.
    #[arg(long)]
    grpc_port: Option<u16>,
}

/// The conformance example's `echo`.
#[agent(name = "echo", num_cpus = 0.25, memory = "64MB")]
#[derive(Default)]
struct Echo;

/// `echo` on the server's runtime: no hop between threads.
#[agent(
    name = "echo_shared",
    num_cpus = 0.25,
    memory = "64MB",
    isolation = "shared"
)]
#[derive(Default)]
struct EchoShared;

/// `echo` as 4 replicas.
#[agent(name = "echo4", num_cpus = 0.25, memory = "64MB", num_replicas = 4)]
#[derive(Default)]
struct Echo4;

/// The conformance example's `echo` run: `{"echo": data}`, or `data.fail`, after `data.delay_ms`.
async fn echo(data: Value) -> Result<Value, AgentError> {
    if let Some(message) = data.get("fail").and_then(Value::as_str) {
        return Err(AgentError::new(message.to_owned()));
    }
    if let Some(ms) = data.get("delay_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Ok(json!({ "echo": data }))
}

/// `data.n` chunks `tok`.
fn toks(data: &Value) -> TextStream<'static> {
    let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
    rayai::stream::iter((0..n).map(|_| Ok("tok".to_owned()))).boxed()
}

macro_rules! echo_agent {
    ($($t:ty),*) => {$(
        impl Agent for $t {
            async fn run(&self, data: Value) -> Result<Value, AgentError> {
                echo(data).await
            }

            fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
                Some(toks(&data))
            }
        }
    )*};
}
echo_agent!(Echo, EchoShared, Echo4);

#[tokio::main]
async fn main() -> rayai::Result<()> {
    let args = Args::parse();
    let server = rayai::serve::start(args.serve.apply(HttpOptions {
        drain_delay_s: 0.0,
        grpc_port: args.grpc_port,
        ..HttpOptions::default()
    }))
    .await?;
    // The gRPC server of the bench serves no `echo4` (its 4 replicas' CPUs go to the greeters).
    let app = App::new().agent::<Echo>().agent::<EchoShared>();
    let app = if args.grpc_port.is_some() {
        app
    } else {
        app.agent::<Echo4>()
    };
    server.deploy(app, "/").await?;
    if args.grpc_port.is_some() {
        server.deploy(grpc::greeter_app(), "/greeter").await?;
        let shared = grpc::greeter_app()
            .with_name("greeter_shared")
            .map_deployments(|d| {
                d.map_config(|c| {
                    c.with_name("greeter_shared")
                        .with_isolation(rayai::Isolation::Shared)
                })
            });
        server.deploy(shared, "/greeter_shared").await?;
    }
    println!(
        "bench-server on http://{} (pid {})",
        server.local_addr(),
        std::process::id()
    );
    if let Some(addr) = server.grpc_addr() {
        println!(
            "bench-server gRPC on http://{addr} (pid {})",
            std::process::id()
        );
    }
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
