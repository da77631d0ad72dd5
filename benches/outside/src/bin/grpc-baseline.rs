//! `grpc-baseline`: the bare tonic server the gRPC load benchmark holds rayai against, a process
//! of its own. It serves the grpc example's `greeter.v1.Greeter` (the generated
//! `GreeterServer`, `grpc::pb`) with the example's logic: `SayHello` answers
//! `Hello, <name>!` (`world` for an empty name; `INVALID_ARGUMENT` past 1000 bytes) and the
//! replica's name, `SayHelloStream` `count` greetings `delay_ms` apart. Its replica is named as
//! rayai names the example's first replica (`greeter#0`), so that both answer the same bytes.
//!
//! tonic's own server (`tonic::transport::Server`, `add_service`, `TCP_NODELAY` on every
//! connection), on tokio's multi-threaded runtime with its default workers, as the HTTP
//! `baseline`. It prints `grpc-baseline on http://<addr> (pid <pid>)` once it listens, and exits
//! on SIGTERM or Ctrl-C.
//!
//! ```text
//! grpc-baseline --port 0
//! ```

use clap::Parser;
use grpc::pb::greeter_server::GreeterServer;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The command line.
#[derive(Parser)]
#[command(
    name = "grpc-baseline",
    about = "A bare tonic server answering as the grpc example's Greeter"
)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 9001)]
    port: u16,
}

/// The name rayai gives the example's first replica.
const REPLICA: &str = "greeter#0";

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = rayai_bench::listen("grpc-baseline", args.port).await;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    // The example's own `Greeter`, outside rayai: one instance, its replica name fixed.
    let greeter = GreeterServer::new(grpc::Greeter::named(REPLICA));
    Server::builder()
        .add_service(greeter)
        .serve_with_incoming_shutdown(incoming, rayai_bench::stop_signal())
        .await
        .expect("the server runs");
}
