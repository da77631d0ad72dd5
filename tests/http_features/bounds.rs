//! Every phase of a connection is bounded: a connection that sends nothing, a request head that
//! does not complete, a request body that stops arriving (`408` and a close), an idle keep-alive
//! connection (at its own timeout, above the header timeout too); the process's cap on body
//! bytes (`503` with `Retry-After`); and the connection cap, at which connections waiting on
//! their clients give way to new ones.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use rayai::handler::full;
use rayai::prelude::*;
use rayai::{HttpOptions, Request, Response, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, within};

/// Answers the length of the body it reads, or `unread: <error>` when reading fails.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Counts;

impl Handler for Counts {
    async fn call(&self, req: Request) -> Response {
        match req.into_body().collect().await {
            Ok(body) => Response::new(full(body.to_bytes().len().to_string())),
            Err(e) => Response::new(full(format!("unread: {e}"))),
        }
    }
}

/// The conformance example's echo agent.
#[agent(num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct Echo;

impl Agent for Echo {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "echo": data }))
    }
}

async fn server(options: HttpOptions) -> Server {
    common::serve(
        App::new().handler::<Counts>().agent::<Echo>(),
        HttpOptions {
            dashboard_port: None,
            ..options
        },
    )
    .await
}

/// Reads from `tcp` until the server closes it (or resets it), within `wait`.
async fn until_closed(tcp: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    within(wait, "the server to close the connection", async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

/// A normal request on a new connection is answered 200 within `wait`.
async fn served(addr: SocketAddr, wait: Duration) {
    let reply = within(
        wait,
        "a normal request to be served",
        common::get(addr, "/"),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
}

fn head_of(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let server = server(HttpOptions {
        header_read_timeout_s: 0.5,
        keep_alive_timeout_s: 30.0,
        ..HttpOptions::default()
    })
    .await;
    let began = Instant::now();
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    let sent = until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(sent.is_empty());
    let took = began.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed too early: {took:?}"
    );
    served(server.local_addr(), Duration::from_secs(5)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_honours_a_timeout_above_the_header_timeout() {
    let server = server(HttpOptions {
        header_read_timeout_s: 0.3,
        keep_alive_timeout_s: 1.5,
        ..HttpOptions::default()
    })
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = within(Duration::from_secs(5), "the answer", tcp.read(&mut buf))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    // Past the header timeout, the idle connection still serves a request.
    tokio::time::sleep(Duration::from_millis(800)).await;
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = within(
        Duration::from_secs(5),
        "the second answer",
        tcp.read(&mut buf),
    )
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the connection was closed before its keep-alive timeout"
    );
    let idle_since = idle_since.max(Instant::now());
    let rest = until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(rest.is_empty());
    let idle = idle_since.elapsed();
    assert!(
        idle >= Duration::from_millis(1300),
        "closed before the keep-alive timeout: {idle:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_agent_body_is_408_with_a_request_id_and_a_close() {
    let server = server(HttpOptions {
        body_read_timeout_s: 0.5,
        ..HttpOptions::default()
    })
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // Headers, then one byte of a declared 100-byte body.
    tcp.write_all(
        b"POST /agents/echo/chat HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n\
          content-length: 100\r\n\r\n{",
    )
    .await
    .unwrap();
    let began = Instant::now();
    let response = until_closed(&mut tcp, Duration::from_secs(5)).await;
    let head = head_of(&response);
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(began.elapsed() >= Duration::from_millis(400));
    served(server.local_addr(), Duration::from_secs(5)).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_ingress_body_is_408_whatever_the_handler_makes_of_it() {
    let server = server(HttpOptions {
        body_read_timeout_s: 0.5,
        ..HttpOptions::default()
    })
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // A chunked body that stops after its first chunk.
    tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        .await
        .unwrap();
    let response = until_closed(&mut tcp, Duration::from_secs(5)).await;
    let head = head_of(&response);
    assert!(head.starts_with("http/1.1 408"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_keeps_coming_is_not_timed_out() {
    let server = server(HttpOptions {
        body_read_timeout_s: 0.5,
        ..HttpOptions::default()
    })
    .await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 6\r\n\r\n")
        .await
        .unwrap();
    // Each byte within the timeout, the whole body well past it.
    for byte in b"abcdef" {
        tokio::time::sleep(Duration::from_millis(300)).await;
        tcp.write_all(&[*byte]).await.unwrap();
    }
    let mut buf = [0u8; 1024];
    let n = within(Duration::from_secs(5), "the answer", tcp.read(&mut buf))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n6"), "{text}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_process_budget_are_503_with_retry_after() {
    // Every server of this test binary shares the process's budget: this one's cap is what
    // the others' small bodies leave far from, and this body is far beyond it.
    let server = server(HttpOptions {
        max_body_bytes_in_flight: 4096,
        ..HttpOptions::default()
    })
    .await;
    let body = "x".repeat(64 * 1024);
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Answered before the body is sent.
    let response = until_closed(&mut tcp, Duration::from_secs(5)).await;
    let head = head_of(&response);
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("x-request-id: "), "{head}");
    // A body within the budget is read (once the other tests of this process, which share the
    // budget, hold little enough).
    let addr = server.local_addr();
    common::eventually(
        Duration::from_secs(10),
        "a small body to be read",
        || async move {
            let reply = common::post(addr, "/", "small").await;
            reply.status == 200 && reply.body == "5"
        },
    )
    .await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_clients_that_wait_give_way_to_new_ones() {
    let server = server(HttpOptions {
        max_connections: Some(6),
        header_read_timeout_s: 60.0,
        body_read_timeout_s: 60.0,
        ..HttpOptions::default()
    })
    .await;
    let addr = server.local_addr();
    let mut held = Vec::new();
    // Three that send nothing, three that stall in their body: the cap is reached.
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..3 {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\nab")
            .await
            .unwrap();
        held.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // With 60 s timeouts, only the pressure of the cap lets this one in, within seconds.
    let began = Instant::now();
    served(addr, Duration::from_secs(8)).await;
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "the cap held the new connection back: {:?}",
        began.elapsed()
    );
    // The new one took the place of one that was waiting on its client.
    let mut closed = 0;
    for mut tcp in held {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => {
                // A 408 or the like before the close.
                closed += 1;
            }
            Err(_) => {}
        }
    }
    assert!(closed >= 1, "no waiting connection gave way");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_closes_connections_that_send_nothing_or_half_a_head() {
    let server = common::serve(
        App::new().handler::<Counts>(),
        HttpOptions {
            dashboard_port: Some(0),
            header_read_timeout_s: 0.5,
            ..HttpOptions::default()
        },
    )
    .await;
    let dashboard = server.dashboard_addr().expect("the dashboard runs");
    let mut silent = TcpStream::connect(dashboard).await.unwrap();
    let mut partial = TcpStream::connect(dashboard).await.unwrap();
    partial
        .write_all(b"GET /api/serve/applications/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    assert!(
        until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_empty()
    );
    assert!(
        until_closed(&mut partial, Duration::from_secs(5))
            .await
            .is_empty()
    );
    server.shutdown().await;
}
