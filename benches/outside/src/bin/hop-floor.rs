//! `hop-floor`: the least an HTTP proxy can do, a process of its own, to show what a hop
//! between two processes costs on this machine whoever writes the proxy. It is the floor the
//! load benchmark holds rayai's proxy role against (`proxy hop` section).
//!
//! For each client connection it opens one HTTP/1.1 keep-alive connection to `--upstream`
//! (hyper's `client::conn::http1`, `TCP_NODELAY`) and forwards every request of the client's
//! connection on it, head and body as they are, and the answer back as it comes: no routing, no
//! pool, no parsing of bodies, no headers added. hyper 1 (hyper-util's `auto` server builder)
//! on tokio's multi-threaded runtime with its default workers, as `baseline`. It prints
//! `hop-floor on http://<addr> (pid <pid>)` once it listens, and exits on SIGTERM or Ctrl-C.
//!
//! ```text
//! hop-floor --port 0 --upstream 127.0.0.1:8001
//! ```

use clap::Parser;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// The command line.
#[derive(Parser)]
#[command(
    name = "hop-floor",
    about = "The least HTTP/1.1 proxy: one upstream connection per client connection"
)]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// The server requests go to (`host:port`).
    #[arg(long)]
    upstream: String,
}

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// The answer when the upstream cannot be reached.
fn bad_gateway() -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}

/// One HTTP/1.1 connection to `upstream`, driven by a task of its own.
async fn connect(upstream: &str) -> Option<SendRequest<Incoming>> {
    let stream = TcpStream::connect(upstream).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// Serves one client connection over its own upstream connection (a `502` for every request
/// when there is none).
async fn proxy(client: TcpStream, upstream: String) {
    // One request at a time on an HTTP/1.1 connection: the lock is never contended.
    let sender = std::sync::Arc::new(Mutex::new(connect(&upstream).await));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let sender = sender.clone();
        async move {
            let mut sender = sender.lock().await;
            let Some(sender) = sender.as_mut() else {
                return Ok::<_, std::convert::Infallible>(bad_gateway());
            };
            if sender.ready().await.is_err() {
                return Ok(bad_gateway());
            }
            Ok(match sender.send_request(req).await {
                Ok(resp) => resp.map(BodyExt::boxed_unsync),
                Err(_) => bad_gateway(),
            })
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(client), service)
        .await;
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listener = rayai_bench::listen("hop-floor", args.port).await;
    let upstream = args.upstream;
    rayai_bench::serve_until_stopped(listener, |stream| proxy(stream, upstream.clone())).await;
}
