//! gRPC in rayai, as Ray Serve's gRPC guide has it: a tonic service (`proto/greeter.proto`) as
//! the `greeter` and `sleeper` applications' deployments, and the conformance agents, over
//! HTTP and over gRPC (`rayai.v1.Agents`).
//!
//! ```text
//! cargo run -p grpc -- --port 8000 --grpc-port 9000
//! ```
//!
//! | gRPC | served by |
//! |---|---|
//! | `greeter.v1.Greeter/SayHello`, `SayHelloStream`, `SayHelloToAll` (client streaming), `Chat` (bidirectional) (metadata `application: greeter`) | the `Greeter` deployment, 2 replicas |
//! | `greeter.v1.Sleeper/Sleep` (metadata `application: sleeper`) | the `Sleeper` deployment: one call at a time, one queued |
//! | `rayai.v1.Agents/Chat`, `ChatStream` | the conformance agents (`echo`, `counter`, ...) |
//! | `grpc.health.v1.Health`, server reflection | the server |

use clap::Parser;
use rayai::HttpOptions;
use rayai::serve::ServeArgs;

#[global_allocator]
static ALLOCATOR: rayai::alloc::Allocator = rayai::alloc::Allocator;

/// The command line.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeArgs,
    /// The gRPC port (Ray's default, 9000); 0 picks a free one.
    #[arg(long, env = "RAYAI_GRPC_PORT", default_value_t = 9000)]
    grpc_port: u16,
}

#[tokio::main]
async fn main() -> rayai::Result<()> {
    let args = Args::parse();
    let server = rayai::serve::start(args.serve.apply(HttpOptions {
        grpc_port: Some(args.grpc_port),
        dashboard_best_effort: true,
        ..HttpOptions::try_from_env()?
    }))
    .await?;
    server.deploy(grpc::greeter_app(), "/greeter").await?;
    server.deploy(grpc::sleeper_app(), "/sleeper").await?;
    server.deploy(conformance::agents::app(), "/").await?;
    println!("grpc example on http://{}", server.local_addr());
    if let Some(addr) = server.grpc_addr() {
        println!("gRPC on {addr}");
    }
    if let Some(dash) = server.dashboard_addr() {
        println!("dashboard on http://{dash}");
    }
    rayai::serve::shutdown_signal().await;
    server.shutdown().await;
    Ok(())
}
