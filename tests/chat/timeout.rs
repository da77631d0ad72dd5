//! `request_timeout_s`: a 408 in text naming the request id, counting time spent queued; a
//! running stream is cut off, and the agent's work cancelled.

use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common::{eventually, open_post, post, post_with, serve, start_post};
use crate::fixtures::{DROPPED, FLAG_RUN_TIMEOUT, FLAG_STREAM_TIMEOUT, Watched};
use crate::{DONE, POLL, agents, is_uuid4, sse_events, wait_for_free_slot};

/// Options with a request timeout of half a second.
fn half_second_timeout() -> HttpOptions {
    HttpOptions {
        request_timeout_s: Some(0.5),
        ..HttpOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_is_408_text_with_the_request_id() {
    let server = serve(App::new().agent::<agents::Slow>(), half_second_timeout()).await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/slow/chat", r#"{"data": {"ms": 3000}}"#).await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    assert!(
        r.header("content-type").starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    let id = r.header("x-request-id");
    assert!(is_uuid4(id));
    assert_eq!(r.body, format!("Request {id} timed out after 0.5s."));

    let r = post_with(
        addr,
        "/agents/slow/chat",
        &[("x-request-id", "late-1")],
        r#"{"data": {"ms": 3000}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    assert_eq!(r.body, "Request late-1 timed out after 0.5s.");

    let r = post(addr, "/agents/slow/chat", r#"{"data": {"ms": 1}}"#).await;
    assert_eq!(r.status, StatusCode::OK, "a quick request is not cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_counts_time_spent_queued() {
    let server = serve(App::new().agent::<agents::Slow>(), half_second_timeout()).await;
    let addr = server.local_addr();
    // `slow` runs one request at a time: the second waits ~400 ms for the first, then needs
    // 400 ms of its own, so it passes 0.5 s only if the clock started while it was queued.
    let first = start_post(addr, "/agents/slow/chat", r#"{"data": {"ms": 400}}"#);
    let slow = server.deployment("slow").unwrap();
    eventually(POLL, "the first request to be running", || {
        let slow = slow.clone();
        async move { slow.replicas()[0].ongoing_requests == 1 }
    })
    .await;
    let r = post(addr, "/agents/slow/chat", r#"{"data": {"ms": 400}}"#).await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT, "{r:?}");
    let id = r.header("x-request-id");
    assert_eq!(r.body, format!("Request {id} timed out after 0.5s."));
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_cuts_off_a_running_stream() {
    let server = serve(App::new().agent::<agents::Echo>(), half_second_timeout()).await;
    let s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["a", "b", "c", "d", "e"], "delay_ms": 300}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let r = s.into_reply().await;
    assert!(
        !r.body.contains(DONE),
        "the stream ran to its end: {:?}",
        r.body
    );
    let events = sse_events(&r.body);
    let (last, chunks) = events.split_last().expect("at least one frame");
    let chunks_sent = chunks.len() + usize::from(!last.starts_with('{'));
    assert!(chunks_sent < 5, "{:?}", r.body);
    if last.starts_with('{') {
        assert!(
            last.starts_with(r#"{"type": "error", "content": "#),
            "{:?}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_timeout_cancels_the_agent() {
    let server = serve(App::new().agent::<Watched>(), half_second_timeout()).await;
    let addr = server.local_addr();

    let r = post(
        addr,
        "/agents/watched/chat",
        &format!(r#"{{"data": {{"flag": {FLAG_RUN_TIMEOUT}, "ms": 30000}}}}"#),
    )
    .await;
    assert_eq!(r.status, StatusCode::REQUEST_TIMEOUT);
    eventually(POLL, "the timed-out run to be dropped", || async {
        DROPPED[FLAG_RUN_TIMEOUT].load(Ordering::SeqCst)
    })
    .await;
    wait_for_free_slot(&server, "watched").await;

    let s = open_post(
        addr,
        "/agents/watched/chat",
        &format!(
            r#"{{"data": {{"flag": {FLAG_STREAM_TIMEOUT}, "delay_ms": 300}}, "stream": "text"}}"#
        ),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let r = s.into_reply().await;
    assert!(r.body.starts_with("data: tick 1\n\n"), "{:?}", r.body);
    assert!(!r.body.contains(DONE), "{:?}", r.body);
    eventually(POLL, "the cut-off stream to be dropped", || async {
        DROPPED[FLAG_STREAM_TIMEOUT].load(Ordering::SeqCst)
    })
    .await;
    wait_for_free_slot(&server, "watched").await;
}
