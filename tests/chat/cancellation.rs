//! A client that goes away cancels the agent's work and frees its replica slot: a hang-up mid
//! stream, a hang-up during `run`, an HTTP/2 stream reset.

use bytes::Bytes;
use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common::{
    self, EXCHANGE_TIMEOUT, Proto, eventually, json_post, open_post, post, serve, start_post,
};
use crate::fixtures::{
    DROPPED, FLAG_H2_RESET, FLAG_RUN_HANGUP, FLAG_STREAM_HANGUP, STARTED, Watched,
};
use crate::{POLL, wait_for_free_slot};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hangup_mid_stream_cancels_the_stream_and_frees_the_slot() {
    let server = serve(App::new().agent::<Watched>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let flag = FLAG_STREAM_HANGUP;
    let mut s = open_post(
        addr,
        "/agents/watched/chat",
        &format!(r#"{{"data": {{"flag": {flag}, "delay_ms": 30000}}, "stream": "text"}}"#),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        s.frame(EXCHANGE_TIMEOUT).await,
        Some(Bytes::from_static(b"data: tick 1\n\n"))
    );
    assert!(STARTED[flag].load(Ordering::SeqCst));
    assert!(!DROPPED[flag].load(Ordering::SeqCst), "dropped too early");

    drop(s);
    eventually(POLL, "the agent's stream to be dropped", || async {
        DROPPED[flag].load(Ordering::SeqCst)
    })
    .await;
    wait_for_free_slot(&server, "watched").await;
    let r = post(addr, "/agents/watched/chat", r#"{"data": {"ms": 0}}"#).await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"slept_ms":0},"session_id":"default"}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hangup_cancels_a_running_run_and_frees_the_slot() {
    let server = serve(App::new().agent::<Watched>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let flag = FLAG_RUN_HANGUP;
    let pending = start_post(
        addr,
        "/agents/watched/chat",
        &format!(r#"{{"data": {{"flag": {flag}, "ms": 30000}}}}"#),
    );
    eventually(POLL, "the agent's run to start", || async {
        STARTED[flag].load(Ordering::SeqCst)
    })
    .await;
    assert!(!DROPPED[flag].load(Ordering::SeqCst));

    drop(pending);
    eventually(POLL, "the agent's run to be dropped", || async {
        DROPPED[flag].load(Ordering::SeqCst)
    })
    .await;
    wait_for_free_slot(&server, "watched").await;
    let r = post(addr, "/agents/watched/chat", r#"{"data": {"ms": 0}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_reset_cancels_the_agent_stream_and_keeps_the_connection() {
    let server = serve(App::new().agent::<Watched>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let flag = FLAG_H2_RESET;
    let mut conn = common::Conn::connect(addr, Proto::H2).await;
    let mut s = conn
        .open(json_post(
            addr,
            Proto::H2,
            "/agents/watched/chat",
            &[],
            &format!(r#"{{"data": {{"flag": {flag}, "delay_ms": 30000}}, "stream": "text"}}"#),
        ))
        .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(
        s.frame(EXCHANGE_TIMEOUT).await,
        Some(Bytes::from_static(b"data: tick 1\n\n"))
    );
    assert!(!DROPPED[flag].load(Ordering::SeqCst), "dropped too early");

    // Dropping the body resets the HTTP/2 stream; the connection stays open.
    drop(s);
    eventually(POLL, "the agent's stream to be dropped", || async {
        DROPPED[flag].load(Ordering::SeqCst)
    })
    .await;
    wait_for_free_slot(&server, "watched").await;
    let r = conn
        .open(json_post(
            addr,
            Proto::H2,
            "/agents/watched/chat",
            &[],
            r#"{"data": {"ms": 0}}"#,
        ))
        .await
        .into_reply()
        .await;
    r.assert(
        StatusCode::OK,
        "application/json",
        r#"{"result":{"slept_ms":0},"session_id":"default"}"#,
    );
}
