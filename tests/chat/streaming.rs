//! Server-Sent Events: byte-exact text frames, JSON event frames, each sent as the agent yields
//! it, the `done` frame, an error or a panic inside a stream, and streams an agent lacks.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use rayai::HttpOptions;
use rayai::prelude::*;

use crate::common::{self, EXCHANGE_TIMEOUT, open_post, post, serve};
use crate::fixtures::StreamPanics;
use crate::{DONE, agents, conformance, is_uuid4, sse_events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_stream_frames_are_byte_exact_and_end_with_done() {
    let server = conformance().await;
    let s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["a", "", "b\nc", "d e"]}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(s.header("cache-control"), "no-cache");
    assert_eq!(s.header("connection"), "keep-alive");
    assert_eq!(s.header("transfer-encoding"), "chunked");
    assert!(is_uuid4(s.header("x-request-id")));
    let r = s.into_reply().await;
    assert_eq!(
        r.body,
        format!("data: a\n\ndata: b\ndata: c\n\ndata: d e\n\n{DONE}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_frames_are_json_and_end_with_done() {
    let server = conformance().await;
    let s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"events": [{"type": "token", "content": "hi\n"}, {}, {"n": [1, {"x": null}]}]}, "stream": "events"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(s.header("cache-control"), "no-cache");
    let r = s.into_reply().await;
    assert!(r.body.ends_with(DONE), "{:?}", r.body);
    let body = &r.body[..r.body.len() - DONE.len()];
    let events: Vec<Value> = sse_events(body)
        .into_iter()
        .map(|e| serde_json::from_str(e).expect("a JSON event"))
        .collect();
    assert_eq!(
        events,
        [
            json!({"type": "token", "content": "hi\n"}),
            json!({"n": [1, {"x": null}]})
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_frames_arrive_as_the_agent_yields_them() {
    let server = conformance().await;
    let mut s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["one", "two", "three"], "delay_ms": 300}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let first = s.frame(EXCHANGE_TIMEOUT).await.expect("a first frame");
    assert_eq!(first, Bytes::from_static(b"data: one\n\n"));
    // The agent is still sleeping before its second chunk: nothing more has been sent.
    assert_eq!(
        s.try_frame(Duration::from_millis(100)).await,
        Err(common::Silent),
        "a second frame came within 100 ms of the first"
    );
    let rest: Vec<u8> = s.rest(EXCHANGE_TIMEOUT).await.concat();
    assert_eq!(
        String::from_utf8(rest).unwrap(),
        format!("data: two\n\ndata: three\n\n{DONE}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_inside_a_stream_is_an_error_frame_without_done() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = open_post(
        addr,
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["a"], "fail": "oops"}, "stream": "text"}"#,
    )
    .await
    .into_reply()
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        "data: a\n\ndata: {\"type\": \"error\", \"content\": \"oops\"}\n\n"
    );

    let r = open_post(
        addr,
        "/agents/echo/chat",
        r#"{"data": {"events": [{"k": 1}], "fail": "bad \"event\""}, "stream": "events"}"#,
    )
    .await
    .into_reply()
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = sse_events(&r.body);
    assert_eq!(events.len(), 2, "{:?}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(events[0]).unwrap(),
        json!({"k": 1})
    );
    assert_eq!(
        events[1],
        r#"{"type": "error", "content": "bad \"event\""}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_inside_a_stream_is_an_error_frame_and_the_server_keeps_serving() {
    let app = App::new().agent::<StreamPanics>().agent::<agents::Echo>();
    let server = serve(app, HttpOptions::default()).await;
    let addr = server.local_addr();
    let r = open_post(
        addr,
        "/agents/stream_panics/chat",
        r#"{"data": {"panic": true}, "stream": "text"}"#,
    )
    .await
    .into_reply()
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let events = sse_events(&r.body);
    assert_eq!(events.len(), 2, "{:?}", r.body);
    assert_eq!(events[0], "before");
    assert!(
        events[1].starts_with(r#"{"type": "error", "content": "#),
        "{:?}",
        r.body
    );
    let error: Value = serde_json::from_str(events[1]).unwrap();
    assert!(
        error["content"]
            .as_str()
            .unwrap()
            .contains("the stream fell over"),
        "{error}"
    );

    let r = open_post(
        addr,
        "/agents/stream_panics/chat",
        r#"{"data": {}, "stream": "text"}"#,
    )
    .await
    .into_reply()
    .await;
    assert_eq!(r.body, format!("data: before\n\ndata: after\n\n{DONE}"));
    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_stream_on_an_agent_without_run_stream_is_400() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/plain/chat",
        r#"{"data": {}, "stream": "text"}"#,
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        "application/json",
        r#"{"detail":"Agent does not support text streaming. Implement run_stream() method."}"#,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_on_an_agent_without_run_stream_events_is_400() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/plain/chat",
        r#"{"data": {}, "stream": "events"}"#,
    )
    .await;
    r.assert(
        StatusCode::BAD_REQUEST,
        "application/json",
        r#"{"detail":"Agent does not support event streaming. Implement run_stream_events() method."}"#,
    );
}

/// A stream that yields faster than the client reads (its items are ready together, and the
/// replica hands them over in batches): every frame arrives once and in order, then `done`, or
/// then the error frame when the stream fails after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_ready_frames_arrive_once_in_order_then_done_or_the_error() {
    let server = conformance().await;
    let addr = server.local_addr();
    let chunks: Vec<String> = (0..3000).map(|i| format!("c{i}")).collect();
    let expected: String = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    for fail in [None, Some("late")] {
        let mut data = json!({ "chunks": chunks });
        if let Some(message) = fail {
            data["fail"] = json!(message);
        }
        let body = json!({ "data": data, "stream": "text" }).to_string();
        let r = open_post(addr, "/agents/echo/chat", &body)
            .await
            .into_reply()
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let tail = match fail {
            None => DONE.to_owned(),
            Some(message) => {
                format!("data: {{\"type\": \"error\", \"content\": \"{message}\"}}\n\n")
            }
        };
        assert!(
            r.body.len() == expected.len() + tail.len()
                && r.body.starts_with(&expected)
                && r.body.ends_with(&tail),
            "{} bytes, starting {:?}, ending {:?}",
            r.body.len(),
            &r.body[..r.body.len().min(80)],
            &r.body[r.body.len().saturating_sub(80)..]
        );
    }
}
