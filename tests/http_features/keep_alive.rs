//! Keep-alive: idle connections are closed after `keep_alive_timeout_s`; busy ones are not.

use std::time::{Duration, Instant};

use rayai::handler::full;
use rayai::prelude::*;
use rayai::{Controller, HttpOptions, NodeResources, Request, Response, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sleeps `?ms=N` milliseconds, then answers `done`.
#[deployment(num_cpus = 0.1, memory = "16MB", isolation = "shared")]
#[derive(Default)]
struct Sleepy;

impl Handler for Sleepy {
    async fn call(&self, req: Request) -> Response {
        let ms = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("ms="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Response::new(full("done"))
    }
}

/// A server with `keep_alive_timeout_s`, serving [`Sleepy`] at `/`.
async fn server(keep_alive_timeout_s: f64) -> Server {
    let options = HttpOptions {
        port: 0,
        dashboard_port: None,
        keep_alive_timeout_s,
        ..HttpOptions::default()
    };
    let server = Server::start_with(options, Controller::new(NodeResources::new(8.0, 8 << 30)))
        .await
        .unwrap();
    server.deploy(Sleepy::deployment(), "/").await.unwrap();
    server
}

/// Sends one request on `tcp` and reads until its body `done` arrives.
async fn exchange(tcp: &mut TcpStream, path: &str) {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"done") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the response: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_timeout() {
    let server = server(0.3).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    exchange(&mut tcp, "/").await;
    let idle_since = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap();
    assert_eq!(n, 0, "the server closes the idle connection");
    assert!(
        idle_since.elapsed() >= Duration::from_millis(250),
        "not before the timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_with_a_request_in_flight_is_not_idle() {
    let server = server(0.3).await;
    let mut tcp = TcpStream::connect(server.local_addr()).await.unwrap();
    // The handler takes longer than the keep-alive timeout; the response still arrives, and the
    // connection serves another request after it.
    exchange(&mut tcp, "/?ms=800").await;
    exchange(&mut tcp, "/").await;
}
