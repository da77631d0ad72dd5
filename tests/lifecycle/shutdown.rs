//! Shutdown and isolation: shutdown lets a running stream finish and turns new connections away;
//! an agent that blocks its thread stalls neither other agents nor `/-/healthz`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;
use rayai::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::common::{
    EXCHANGE_TIMEOUT, eventually, get, open_post, post, serve_on, start_post, within,
};
use crate::fixtures::{BLOCKER_STARTED, Blocker, Quick, TICKER_ENDED, Ticker};
use crate::{POLL, chat, node};

/// Whether a new connection to `addr` is turned away: refused, or closed without a response.
/// Panics when it is served a `200`: `/-/healthz` says 503 from the moment shutdown begins.
async fn turned_away(addr: std::net::SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect(addr).await else {
        return true;
    };
    let request = b"GET /-/healthz HTTP/1.1\r\nhost: rayai\r\nconnection: close\r\n\r\n";
    if tcp.write_all(request).await.is_err() {
        return true;
    }
    let mut answer = Vec::new();
    within(EXCHANGE_TIMEOUT, "the server to answer or close", async {
        // A reset counts as closing.
        let _ = tcp.read_to_end(&mut answer).await;
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.starts_with("HTTP/1.1 200"),
        "a connection made after shutdown began was served: {answer:?}"
    );
    answer.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_stream_finish_and_turns_new_connections_away() {
    let server = serve_on(node(), App::new().agent::<Ticker>()).await;
    let addr = server.local_addr();
    let mut stream = open_post(addr, &chat("ticker"), r#"{"data": {}, "stream": "text"}"#).await;
    assert_eq!(stream.status, StatusCode::OK);
    let mut body = String::new();
    while !body.contains("tick 1") {
        let frame = stream
            .frame(EXCHANGE_TIMEOUT)
            .await
            .expect("the first chunk");
        body.push_str(&String::from_utf8_lossy(&frame));
    }

    let stopping = {
        let server = server.clone();
        tokio::spawn(async move {
            server.shutdown().await;
            Instant::now()
        })
    };
    eventually(POLL, "new connections to be turned away", || {
        turned_away(addr)
    })
    .await;

    while let Some(frame) = stream.frame(EXCHANGE_TIMEOUT).await {
        body.push_str(&String::from_utf8_lossy(&frame));
    }
    assert_eq!(
        body,
        "data: tick 1\n\ndata: tick 2\n\ndata: tick 3\n\ndata: tick 4\n\ndata: tick 5\n\n\
         data: {\"type\": \"done\"}\n\n"
    );

    let returned = within(POLL, "shutdown to return", stopping)
        .await
        .expect("the shutdown task");
    let ended = TICKER_ENDED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .expect("the stream ran to its end");
    assert!(
        returned >= ended,
        "shutdown returned before the stream ended"
    );
    assert!(
        turned_away(addr).await,
        "a connection after shutdown was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_blocking_its_thread_stalls_neither_other_agents_nor_healthz() {
    let app = App::new().agent::<Blocker>().agent::<Quick>();
    let server = serve_on(node(), app).await;
    let addr = server.local_addr();

    let blocked = start_post(addr, &chat("blocker"), r#"{"data": {}}"#);
    eventually(POLL, "the blocking request to start", || async {
        BLOCKER_STARTED.load(Ordering::SeqCst)
    })
    .await;
    let started = Instant::now();

    let path = chat("quick");
    let quick = (0..20).map(|_| post(addr, &path, r#"{"data": {}}"#));
    let (replies, health) = tokio::join!(futures::future::join_all(quick), get(addr, "/-/healthz"));
    let elapsed = started.elapsed();
    assert!(
        !blocked.is_finished(),
        "the blocking request returned first ({elapsed:?})"
    );
    for r in &replies {
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    assert_eq!(
        (health.status, health.body.as_str()),
        (StatusCode::OK, "success")
    );
    assert!(
        elapsed < Duration::from_secs(1),
        "20 requests took {elapsed:?}"
    );

    let r = blocked.reply().await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}
