//! Load: a full queue is a 503 (or a 429 when configured), each replica keeps its own state, and
//! an agent that blocks its thread stalls nothing else.

use http::StatusCode;
use rayai::prelude::*;
use rayai::{HttpOptions, Server};

use crate::common::{
    self, EXCHANGE_TIMEOUT, eventually, get, post, post_with, serve, start_post, within,
};
use crate::{POLL, agents, conformance, is_uuid4};

/// Starts two `slow` requests of 2 s and waits until one runs and the other is queued.
async fn fill_slow(server: &Server) -> [common::InFlight; 2] {
    let addr = server.local_addr();
    let running = start_post(addr, "/agents/slow/chat", r#"{"data": {"ms": 2000}}"#);
    let queued = start_post(addr, "/agents/slow/chat", r#"{"data": {"ms": 2000}}"#);
    let slow = server.deployment("slow").expect("slow is deployed");
    eventually(POLL, "one slow request running and one queued", || {
        let slow = slow.clone();
        async move { slow.replicas()[0].ongoing_requests == 1 && slow.queued_requests() == 1 }
    })
    .await;
    [running, queued]
}

/// The 503 and 429 body when `slow`'s one queue place is taken.
const BACKPRESSURE: &str =
    "Request dropped due to backpressure (num_queued_requests=1, max_queued_requests=1).";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_503_text_with_the_backpressure_message() {
    let server = serve(App::new().agent::<agents::Slow>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let _busy = fill_slow(&server).await;

    let r = post(addr, "/agents/slow/chat", r#"{"data": {"ms": 1}}"#).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        r.header("content-type").starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    assert_eq!(r.body, BACKPRESSURE);
    assert!(!r.headers.contains_key("retry-after"));
    assert!(is_uuid4(r.header("x-request-id")));

    let r = post_with(
        addr,
        "/agents/slow/chat",
        &[("x-request-id", "mine-503")],
        r#"{"data": {"ms": 1}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("x-request-id"), "mine-503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_is_429_with_retry_after_when_configured() {
    let options = HttpOptions {
        backpressure_retry_after_s: Some(2),
        ..HttpOptions::default()
    };
    let server = serve(App::new().agent::<agents::Slow>(), options).await;
    let _busy = fill_slow(&server).await;

    let r = post(server.local_addr(), "/agents/slow/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), "2");
    assert!(r.header("content-type").starts_with("text/plain"));
    assert_eq!(r.body, BACKPRESSURE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_can_choose_429_with_its_own_retry_after() {
    // The server answers overload with 503; this deployment chose a 429 and 7 s.
    let slow = rayai::Deployment::agent::<agents::Slow>()
        .map_config(|c| c.with_backpressure_retry_after(7));
    let server = serve(App::new().deployment(slow), HttpOptions::default()).await;
    let _busy = fill_slow(&server).await;

    let r = post(server.local_addr(), "/agents/slow/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    assert_eq!(r.header("retry-after"), "7");
    assert_eq!(r.body, BACKPRESSURE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_replicas_keep_their_own_state() {
    let server = conformance().await;
    let addr = server.local_addr();
    let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for _ in 0..40 {
        let r = post(addr, "/agents/counter/chat", r#"{"data": {}}"#).await;
        assert_eq!(r.status, StatusCode::OK);
        let body = r.json();
        let replica = body["result"]["replica"].as_str().unwrap().to_owned();
        let count = body["result"]["count"].as_u64().unwrap();
        seen.entry(replica).or_default().push(count);
    }
    assert_eq!(seen.len(), 2, "both replicas serve: {seen:?}");
    for (replica, counts) in &seen {
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(
            counts, &expected,
            "replica {replica} counts one per request"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_agent_does_not_stall_other_agents_or_healthz() {
    let server = conformance().await;
    let addr = server.local_addr();
    let blocked = start_post(addr, "/agents/blocking/chat", r#"{"data": {"ms": 1500}}"#);
    let blocking = server.deployment("blocking").unwrap();
    eventually(POLL, "the blocking request to be running", || {
        let blocking = blocking.clone();
        async move { blocking.replicas()[0].ongoing_requests == 1 }
    })
    .await;

    let r = post(addr, "/agents/echo/chat", r#"{"data": {"a": 1}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    let h = get(addr, "/-/healthz").await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(
        !blocked.is_finished(),
        "the blocking request finished before echo and healthz answered"
    );

    let r = within(EXCHANGE_TIMEOUT, "the blocking request", blocked.reply()).await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"blocked_ms":1500},"session_id":"default"}"#,
    );
}
