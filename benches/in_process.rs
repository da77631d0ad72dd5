//! In-process load benchmark. **Its ratios are NOT rayai's real ratio to bare hyper.**
//!
//! The load generator runs inside the servers' process, on a runtime of its own, over loopback:
//! it shares the process, the allocator and the two cores with both servers, and its own cost
//! hides much of the gap between them. Measured from outside (`cargo bench --bench load`, a
//! load generator of its own process, alternating rounds against a bare hyper baseline of its
//! own process), the gap is wider. Use this bench only to compare rayai's own variants with each
//! other (isolation modes, replicas, a handler with layers, log capture and the dashboard), never
//! for the ratio to bare hyper.
//!
//! ```text
//! cargo bench --bench in_process            # every case
//! cargo bench --bench in_process -- quick   # shorter runs
//! ```
//!
//! For each server it prints requests/s, p50 and p99 at concurrency 1, 16 and 64, and the
//! in-process ratio full/bare; then frames/s of a text stream of 10,000 chunks. The load
//! generator runs on its own runtime, each worker on one keep-alive HTTP/1.1 connection; every
//! loop is bounded by time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rayai::prelude::*;
use rayai::{HttpOptions, Server};
use tokio::net::{TcpListener, TcpStream};

/// The agent under test: `echo` of the conformance example, without its options.
#[agent(num_cpus = 0.5, memory = "64MB", max_ongoing_requests = 100)]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
        Some(rayai::stream::iter((0..n).map(|_| Ok("tok".to_owned()))).boxed())
    }
}

/// The same agent on the server's runtime (`isolation = "shared"`: no hop between threads).
#[agent(
    num_cpus = 0.1,
    memory = "64MB",
    max_ongoing_requests = 100,
    isolation = "shared"
)]
#[derive(Default)]
struct EchoShared;

/// The same agent as 4 replicas, each taking at most 32 requests at once.
#[agent(
    num_cpus = 0.1,
    memory = "64MB",
    num_replicas = 4,
    max_ongoing_requests = 32
)]
#[derive(Default)]
struct EchoFour;

/// 4 replicas on the server's runtime.
#[agent(
    num_cpus = 0.1,
    memory = "64MB",
    num_replicas = 4,
    max_ongoing_requests = 32,
    isolation = "shared"
)]
#[derive(Default)]
struct EchoFourShared;

macro_rules! echo_agent {
    ($($t:ty),*) => {$(
        impl Agent for $t {
            async fn run(&self, data: Value) -> Result<Value, AgentError> {
                Ok(json!({ "echo": data }))
            }

            fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
                Echo.run_stream(data)
            }
        }
    )*};
}
echo_agent!(EchoShared, EchoFour, EchoFourShared);

/// A handler that answers the same JSON, for the middleware cases.
#[deployment(
    num_cpus = 0.1,
    memory = "64MB",
    max_ongoing_requests = 100,
    isolation = "shared"
)]
#[derive(Default)]
struct EchoHandler;

impl Handler for EchoHandler {
    async fn call(&self, req: rayai::Request) -> rayai::Response {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
        let data = parsed.get_mut("data").map(Value::take).unwrap_or_default();
        let out = json!({ "result": { "echo": data }, "session_id": "default" }).to_string();
        rayai::Response::new(rayai::handler::full(out))
    }
}

const BODY: &str = r#"{"data":{"messages":[{"role":"user","content":"hello there"}],"n":3},"session_id":"default"}"#;

type BareBody = Either<
    Full<Bytes>,
    StreamBody<futures::stream::BoxStream<'static, Result<Frame<Bytes>, Infallible>>>,
>;

/// The bare server: parse the JSON, answer the same bytes as rayai, or stream the same frames.
async fn bare(req: Request<Incoming>) -> Result<Response<BareBody>, Infallible> {
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut parsed: Value = serde_json::from_slice(&body).unwrap_or_default();
    let data = parsed.get_mut("data").map(Value::take).unwrap_or_default();
    if parsed.get("stream").and_then(Value::as_str) == Some("text") {
        let n = data.get("n").and_then(Value::as_u64).unwrap_or(0);
        let frames = futures::stream::iter(
            (0..n).map(|_| Ok(Frame::data(Bytes::from_static(b"data: tok\n\n")))),
        )
        .chain(futures::stream::once(async {
            Ok(Frame::data(Bytes::from_static(DONE)))
        }))
        .boxed();
        let resp = Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(Either::Right(StreamBody::new(frames)))
            .unwrap();
        return Ok(resp);
    }
    let mut out = BytesMut::with_capacity(128);
    out.put_slice(b"{\"result\":");
    serde_json::to_writer((&mut out).writer(), &json!({ "echo": data })).unwrap();
    out.put_slice(b",\"session_id\":\"default\"}");
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-request-id", request_id())
        .body(Either::Left(Full::new(out.freeze())))
        .unwrap();
    Ok(resp)
}

const DONE: &[u8] = b"data: {\"type\": \"done\"}\n\n";

/// A fresh id per response, as rayai writes one (its cost belongs to both sides).
fn request_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{:036x}",
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

async fn start_bare() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper::service::service_fn(bare))
                    .await;
            });
        }
    });
    addr
}

async fn start_rayai() -> Server {
    let server = Server::start(HttpOptions {
        port: 0,
        dashboard_port: None,
        ..HttpOptions::default()
    })
    .await
    .unwrap();
    let app = App::new()
        .agent::<Echo>()
        .agent::<EchoShared>()
        .agent::<EchoFour>()
        .agent::<EchoFourShared>();
    server.deploy(app, "/").await.unwrap();
    server
        .deploy(App::named("plain").handler::<EchoHandler>(), "/plain")
        .await
        .unwrap();
    let layered = App::named("layered")
        .handler::<EchoHandler>()
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(tower_http::cors::CorsLayer::permissive())
        .layer(rayai::BearerAuthLayer::new("bench"));
    server.deploy(layered, "/layered").await.unwrap();
    server
}

struct Stats {
    rps: f64,
    p50: Duration,
    p99: Duration,
}

/// `concurrency` workers, each on its own connection, for `duration` after `warmup`.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Stats {
    let start = Instant::now() + warmup;
    let end = start + duration;
    let workers = (0..concurrency).map(|_| {
        tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(1 << 16);
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let req = Request::post(path)
                    .header("host", "bench")
                    .header("content-type", "application/json")
                    .header("authorization", "Bearer bench")
                    .header("origin", "http://bench")
                    .body(Full::new(Bytes::from_static(BODY.as_bytes())))
                    .unwrap();
                let resp = sender.send_request(req).await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let _ = resp.into_body().collect().await.unwrap();
                if t0 >= start {
                    latencies.push(t0.elapsed());
                }
            }
            latencies
        })
    });
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Stats {
        rps: all.len() as f64 / duration.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}

/// Frames per second of one text stream of `n` chunks (median of `runs`).
async fn stream_rate(addr: SocketAddr, path: &'static str, n: usize, runs: usize) -> f64 {
    let mut rates = Vec::new();
    for _ in 0..runs {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let body = format!(r#"{{"data":{{"n":{n}}},"stream":"text"}}"#);
        let t0 = Instant::now();
        let req = Request::post(path)
            .header("host", "bench")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let mut resp = sender.send_request(req).await.unwrap().into_body();
        let mut frames = 0usize;
        let mut tail = Vec::new();
        while let Some(frame) = resp.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                frames += data.windows(2).filter(|w| w == b"\n\n").count();
                tail = data.to_vec();
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        assert_eq!(frames, n + 1, "every chunk and the done frame");
        assert!(tail.ends_with(DONE));
        rates.push(n as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

/// A second server with the dashboard on (its own port) serving the shared echo agent.
async fn start_with_dashboard() -> Server {
    let options = HttpOptions {
        port: 0,
        dashboard_port: Some(0),
        ..HttpOptions::default()
    };
    let server = Server::start_with(
        options,
        rayai::Controller::new(rayai::NodeResources::new(8.0, 8 << 30)),
    )
    .await
    .unwrap();
    server
        .deploy(App::new().agent::<EchoShared>(), "/")
        .await
        .unwrap();
    server
}

/// A group of cases: its label, the rayai variants (name, path) and the concurrencies.
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [usize],
);

/// Runs `rounds` alternating measurements of each target and keeps each one's median round.
fn compare(
    clients: &tokio::runtime::Runtime,
    targets: &[(&str, SocketAddr, &'static str)],
    concurrency: usize,
    rounds: usize,
    warmup: Duration,
    duration: Duration,
) -> Vec<Stats> {
    let mut all: Vec<Vec<Stats>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (_, addr, path)) in targets.iter().enumerate() {
            all[i].push(clients.block_on(load(*addr, path, concurrency, warmup, duration)));
        }
    }
    all.into_iter()
        .map(|mut runs| {
            runs.sort_by(|a, b| a.rps.total_cmp(&b.rps));
            runs.swap_remove(runs.len() / 2)
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (warmup, duration, rounds) = if quick {
        (Duration::from_millis(200), Duration::from_millis(800), 1)
    } else {
        (Duration::from_millis(300), Duration::from_secs(2), 3)
    };
    // Servers on one runtime, the load generator on another, as two processes would be.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bare_addr, rayai, monitored) = servers.block_on(async {
        (
            start_bare().await,
            start_rayai().await,
            start_with_dashboard().await,
        )
    });
    let rayai_addr = rayai.local_addr();
    let _guard = servers.enter();

    println!(
        "rayai IN-PROCESS load benchmark: the load generator shares the servers' process, so the \
         ratios below are NOT rayai's real ratio to bare hyper (see `cargo bench --bench load`)"
    );
    println!(
        "median of {rounds} alternating rounds of {duration:?} per case; \
         in-process ratio = rayai / bare"
    );
    println!(
        "{:<28} {:>5} {:>10} {:>10} {:>10} {:>7} {:>7}",
        "server", "conc", "req/s", "p50", "p99", "x rps", "x p99"
    );
    let cases: [Case; 3] = [
        (
            "1 replica",
            &[
                ("rayai thread isolation", "/agents/echo/chat"),
                ("rayai shared isolation", "/agents/echo_shared/chat"),
            ],
            &[1, 16, 64],
        ),
        (
            "handler app: no layers vs CORS + bearer auth + timeout",
            &[
                ("rayai handler, no layers", "/plain"),
                ("rayai handler, 3 layers", "/layered"),
            ],
            &[64],
        ),
        (
            "4 replicas x 32",
            &[
                ("rayai thread isolation", "/agents/echo_four/chat"),
                ("rayai shared isolation", "/agents/echo_four_shared/chat"),
            ],
            &[64],
        ),
    ];
    for (label, variants, concurrencies) in cases {
        println!("-- {label}");
        for &concurrency in concurrencies {
            let mut targets = vec![("bare hyper", bare_addr, "/agents/echo/chat")];
            targets.extend(
                variants
                    .iter()
                    .map(|(name, path)| (*name, rayai_addr, *path)),
            );
            let stats = compare(&clients, &targets, concurrency, rounds, warmup, duration);
            let bare = &stats[0];
            for ((name, _, _), s) in targets.iter().zip(&stats) {
                println!(
                    "{name:<28} {concurrency:>5} {:>10.0} {:>10.1?} {:>10.1?} {:>7.2} {:>7.2}",
                    s.rps,
                    s.p50,
                    s.p99,
                    s.rps / bare.rps,
                    s.p99.as_secs_f64() / bare.p99.as_secs_f64()
                );
            }
        }
    }
    // Monitoring: the same agent before any log capture, then with the dashboard's log capture
    // installed (a global subscriber, so it stays on for what follows), dashboard off and on.
    println!(
        "-- monitoring: shared echo agent at c=64; ratio against no log capture, no dashboard"
    );
    let path = "/agents/echo_shared/chat";
    let baseline = compare(
        &clients,
        &[("", rayai_addr, path)],
        64,
        rounds,
        warmup,
        duration,
    )
    .remove(0);
    {
        use tracing_subscriber::prelude::*;
        let _ = tracing_subscriber::registry()
            .with(rayai::LogLayer::new().with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .try_init();
    }
    let targets = [
        ("logs captured, dashboard off", rayai_addr, path),
        ("logs captured, dashboard on", monitored.local_addr(), path),
    ];
    let stats = compare(&clients, &targets, 64, rounds, warmup, duration);
    let rows = std::iter::once(("no log capture, no dashboard", &baseline))
        .chain(targets.iter().map(|(name, _, _)| *name).zip(&stats));
    for (name, s) in rows {
        println!(
            "{name:<28} {:>5} {:>10.0} {:>10.1?} {:>10.1?} {:>7.2} {:>7.2}",
            64,
            s.rps,
            s.p50,
            s.p99,
            s.rps / baseline.rps,
            s.p99.as_secs_f64() / baseline.p99.as_secs_f64()
        );
    }
    let runs = if quick { 3 } else { 7 };
    let b = clients.block_on(stream_rate(bare_addr, "/agents/echo/chat", 10_000, runs));
    println!("-- text stream of 10,000 chunks (median of {runs})");
    println!("{:<28} {b:>10.0} frames/s", "bare hyper");
    for (name, path) in [
        ("rayai thread isolation", "/agents/echo/chat"),
        ("rayai shared isolation", "/agents/echo_shared/chat"),
    ] {
        let r = clients.block_on(stream_rate(rayai_addr, path, 10_000, runs));
        println!("{name:<28} {r:>10.0} frames/s  ratio {:.2}", r / b);
    }
    servers.block_on(rayai.shutdown());
}
