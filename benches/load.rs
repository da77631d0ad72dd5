//! Load benchmark: rayai's full stack against a bare hyper server that parses the same JSON and
//! answers the same bytes, in one process run, over loopback.
//!
//! ```text
//! cargo bench --bench load            # every case
//! cargo bench --bench load -- quick   # shorter runs
//! ```
//!
//! For each server it prints requests/s, p50 and p99 at concurrency 1, 16 and 64, and the
//! ratio full/bare; then frames/s of a text stream of 10,000 chunks. The load generator runs on
//! its own runtime, each worker on one keep-alive HTTP/1.1 connection; every loop is bounded by
//! time.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, StreamBody};
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

const BODY: &str = r#"{"data":{"messages":[{"role":"user","content":"hello there"}],"n":3},"session_id":"default"}"#;

/// The bare server: parse the JSON, answer the same bytes as rayai, or stream the same frames.
async fn bare(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, Infallible>>, Infallible> {
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
            (0..n).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"data: tok\n\n")))),
        )
        .chain(futures::stream::once(async {
            Ok(Frame::data(Bytes::from_static(rayai_http_done())))
        }));
        let resp = Response::builder()
            .header("content-type", "text/event-stream; charset=utf-8")
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .unwrap();
        return Ok(resp);
    }
    let mut out = BytesMut::with_capacity(128);
    out.put_slice(b"{\"result\":");
    serde_json::to_writer((&mut out).writer(), &json!({ "echo": data })).unwrap();
    out.put_slice(b",\"session_id\":\"default\"}");
    let resp = Response::builder()
        .header("content-type", "application/json")
        .header("x-request-id", uuid_like())
        .body(BodyExt::boxed(Full::new(out.freeze())))
        .unwrap();
    Ok(resp)
}

fn rayai_http_done() -> &'static [u8] {
    b"data: {\"type\": \"done\"}\n\n"
}

/// A fresh id per response, as rayai writes one (its cost belongs to both sides).
fn uuid_like() -> String {
    format!("{:032x}", fastrand_u128())
}

fn fastrand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    u128::from(h.finish())
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
        ..HttpOptions::default()
    })
    .await
    .unwrap();
    server
        .deploy(App::new().agent::<Echo>(), "/")
        .await
        .unwrap();
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
        assert!(tail.ends_with(rayai_http_done()));
        rates.push(n as f64 / secs);
    }
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let (warmup, duration) = if quick {
        (Duration::from_millis(200), Duration::from_millis(800))
    } else {
        (Duration::from_millis(500), Duration::from_secs(3))
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
    let (bare_addr, rayai) = servers.block_on(async { (start_bare().await, start_rayai().await) });
    let rayai_addr = rayai.local_addr();
    let _guard = servers.enter();

    println!("rayai load benchmark: echo agent, full stack vs bare hyper (same JSON, same bytes)");
    println!(
        "{:<6} {:>5} {:>12} {:>10} {:>10}",
        "server", "conc", "req/s", "p50", "p99"
    );
    for concurrency in [1usize, 16, 64] {
        let b = clients.block_on(load(
            bare_addr,
            "/agents/echo/chat",
            concurrency,
            warmup,
            duration,
        ));
        let r = clients.block_on(load(
            rayai_addr,
            "/agents/echo/chat",
            concurrency,
            warmup,
            duration,
        ));
        for (name, s) in [("bare", &b), ("rayai", &r)] {
            println!(
                "{name:<6} {concurrency:>5} {:>12.0} {:>10.1?} {:>10.1?}",
                s.rps, s.p50, s.p99
            );
        }
        println!(
            "ratio  {concurrency:>5} throughput {:.2}x, p99 {:.2}x",
            r.rps / b.rps,
            r.p99.as_secs_f64() / b.p99.as_secs_f64()
        );
    }
    let runs = if quick { 3 } else { 7 };
    let b = clients.block_on(stream_rate(bare_addr, "/agents/echo/chat", 10_000, runs));
    let r = clients.block_on(stream_rate(rayai_addr, "/agents/echo/chat", 10_000, runs));
    println!(
        "text stream of 10,000 chunks: bare {b:.0} frames/s, rayai {r:.0} frames/s, ratio {:.2}x",
        r / b
    );
    servers.block_on(rayai.shutdown());
}
