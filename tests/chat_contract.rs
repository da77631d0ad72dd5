//! End to end: the HTTP contract of CONTRACT.md, pinned on a real server (`127.0.0.1:0`) with a
//! real HTTP/1.1 and HTTP/2 client. Each test starts its own server.

#[path = "../examples/conformance/agents.rs"]
mod agents;
mod common;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use rayai::prelude::*;
use rayai::{HttpOptions, Server};

use common::{
    EXCHANGE_TIMEOUT, Proto, eventually, get, json_post, open, open_post, post, post_with, raw,
    serve, start_post, within,
};

/// The frame that ends every successful stream, byte for byte.
const DONE: &str = "data: {\"type\": \"done\"}\n\n";

/// How long a test waits for a condition it polls.
const POLL: Duration = Duration::from_secs(5);

/// The conformance server with default options.
async fn conformance() -> Server {
    serve(agents::app(), HttpOptions::default()).await
}

fn is_uuid4(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b' | b'A' | b'B')
}

/// The `data:` payloads of each event of an SSE body (events end with a blank line).
fn sse_events(body: &str) -> Vec<&str> {
    assert!(
        body.ends_with("\n\n"),
        "body does not end an event: {body:?}"
    );
    body[..body.len() - 2]
        .split("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("event is not `data: ...`: {event:?}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Agents of these tests only.

/// `run` returns a list, which is not a JSON object.
#[agent(name = "returns_list", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct ReturnsList;

impl Agent for ReturnsList {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!([1, 2]))
    }
}

/// `run_stream` yields `before`, then panics when `data.panic` is true (else yields `after`).
#[agent(name = "stream_panics", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct StreamPanics;

impl Agent for StreamPanics {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        Ok(json!({ "ok": true }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let panic = data.get("panic").and_then(Value::as_bool) == Some(true);
        Some(
            try_stream! {
                yield "before".to_owned();
                if panic {
                    panic!("the stream fell over");
                }
                yield "after".to_owned();
            }
            .boxed(),
        )
    }
}

/// Answers with the request context it sees, from `run` and from `run_stream`.
#[agent(name = "whoami", num_cpus = 0.1, memory = "16MB")]
#[derive(Default)]
struct WhoAmI;

fn context_json() -> Result<Value, AgentError> {
    let ctx = RequestContext::current().ok_or_else(|| AgentError::new("no request context"))?;
    Ok(json!({ "request_id": ctx.request_id(), "session_id": ctx.session_id() }))
}

impl Agent for WhoAmI {
    async fn run(&self, _data: Value) -> Result<Value, AgentError> {
        context_json()
    }

    fn run_stream(&self, _data: Value) -> Option<TextStream<'_>> {
        Some(
            try_stream! {
                yield context_json()?.to_string();
            }
            .boxed(),
        )
    }
}

/// One pair of flags per test that uses [`Watched`] (`data.flag` picks the pair): set when a
/// `run` or stream starts, and when one is dropped before it finished.
static STARTED: [AtomicBool; 5] = [const { AtomicBool::new(false) }; 5];
static DROPPED: [AtomicBool; 5] = [const { AtomicBool::new(false) }; 5];

const FLAG_STREAM_HANGUP: usize = 0;
const FLAG_RUN_HANGUP: usize = 1;
const FLAG_STREAM_TIMEOUT: usize = 2;
const FLAG_RUN_TIMEOUT: usize = 3;
const FLAG_H2_RESET: usize = 4;

/// Records in [`DROPPED`] that the work it lives in was dropped before it finished.
struct Watch {
    flag: usize,
    finished: bool,
}

impl Watch {
    fn start(flag: usize) -> Self {
        STARTED[flag].store(true, Ordering::SeqCst);
        Watch {
            flag,
            finished: false,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            DROPPED[self.flag].store(true, Ordering::SeqCst);
        }
    }
}

fn flag(data: &Value) -> Option<usize> {
    data.get("flag")
        .and_then(Value::as_u64)
        .and_then(|f| usize::try_from(f).ok())
}

fn millis(data: &Value, key: &str) -> Duration {
    Duration::from_millis(data.get(key).and_then(Value::as_u64).unwrap_or(0))
}

/// One request at a time. `run` sleeps `data.ms`; `run_stream` yields `tick 1` at once, then
/// `tick n` every `data.delay_ms`, up to 1000 ticks. Both watch themselves with `data.flag`.
#[agent(
    name = "watched",
    num_cpus = 0.1,
    memory = "16MB",
    max_ongoing_requests = 1
)]
#[derive(Default)]
struct Watched;

impl Agent for Watched {
    async fn run(&self, data: Value) -> Result<Value, AgentError> {
        let mut watch = flag(&data).map(Watch::start);
        let ms = millis(&data, "ms");
        tokio::time::sleep(ms).await;
        if let Some(w) = watch.as_mut() {
            w.finished = true;
        }
        Ok(json!({ "slept_ms": ms.as_millis() as u64 }))
    }

    fn run_stream(&self, data: Value) -> Option<TextStream<'_>> {
        let flag = flag(&data);
        let delay = millis(&data, "delay_ms");
        Some(
            try_stream! {
                let _watch = flag.map(Watch::start);
                for n in 1..=1000 {
                    if n > 1 {
                        tokio::time::sleep(delay).await;
                    }
                    yield format!("tick {n}");
                }
            }
            .boxed(),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Non-streaming success.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_result_then_session_id_in_client_key_order() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"z": 1, "a": [1, 2], "m": {"y": true, "b": null}, "s": "hé"}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.body,
        r#"{"result":{"echo":{"z":1,"a":[1,2],"m":{"y":true,"b":null},"s":"hé"}},"session_id":"default"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_returns_the_given_session_id() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"session_id": "abc-1", "data": {"k": "v"}, "extra": [1]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        r#"{"result":{"echo":{"k":"v"}},"session_id":"abc-1"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// x-request-id.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_echoed_verbatim() {
    let server = conformance().await;
    let id = "Client-Chosen id/42;x=1";
    let r = post_with(
        server.local_addr(),
        "/agents/echo/chat",
        &[("X-Request-ID", id)],
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-request-id"), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_a_fresh_uuid4_when_absent() {
    let server = conformance().await;
    let addr = server.local_addr();
    let a = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    let b = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    for r in [&a, &b] {
        let id = r.header("x-request-id");
        assert!(is_uuid4(id), "not a UUID4: {id:?}");
    }
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_on_404_405_and_422_responses() {
    let server = conformance().await;
    let addr = server.local_addr();
    let errors = [
        post(addr, "/agents/nope/chat", r#"{"data": {}}"#).await,
        post(addr, "/agents/echo/other", r#"{"data": {}}"#).await,
        get(addr, "/agents/echo/chat").await,
        post(addr, "/agents/echo/chat", "{").await,
    ];
    let statuses: Vec<u16> = errors.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [404, 404, 405, 422]);
    for r in &errors {
        assert!(is_uuid4(r.header("x-request-id")), "{r:?}");
    }
    let r = post_with(
        addr,
        "/agents/nope/chat",
        &[("x-request-id", "mine-404")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-request-id"), "mine-404");
    let r = post_with(
        addr,
        "/agents/echo/chat",
        &[("x-request-id", "mine-422")],
        "{}",
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.header("x-request-id"), "mine-422");
}

// ---------------------------------------------------------------------------------------------
// Agent errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_error_is_500_with_its_message_as_detail() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"fail": "it \"broke\""}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.body, r#"{"detail":"it \"broke\""}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_object_result_is_500_with_a_detail() {
    let server = serve(App::new().agent::<ReturnsList>(), HttpOptions::default()).await;
    let r = post(
        server.local_addr(),
        "/agents/returns_list/chat",
        r#"{"data": {}}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let detail = body["detail"].as_str().expect("a string detail");
    assert!(detail.contains("object"), "detail: {detail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_panic_is_500_and_the_agent_serves_the_next_request() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/panicky/chat", r#"{"data": {"panic": true}}"#).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.json();
    let detail = body["detail"].as_str().expect("a string detail");
    assert!(detail.contains("panicky was asked to panic"), "{detail:?}");

    let r = post(addr, "/agents/panicky/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, r#"{"result":{"ok":true},"session_id":"default"}"#);
    let r = post(addr, "/agents/echo/chat", r#"{"data": {"a": 1}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Streaming.

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
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.body,
        r#"{"detail":"Agent does not support text streaming. Implement run_stream() method."}"#
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
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.body,
        r#"{"detail":"Agent does not support event streaming. Implement run_stream_events() method."}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Routing errors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_agent_is_404_text_naming_the_path() {
    let server = conformance().await;
    let addr = server.local_addr();
    for path in ["/agents/nope/chat", "/agents/echoX/chat"] {
        let r = post(addr, path, r#"{"data": {}}"#).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.header("content-type"), "text/plain; charset=utf-8");
        assert_eq!(
            r.body,
            format!("Path '{path}' not found. Ping http://.../-/routes for available routes.")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_sub_path_of_a_known_agent_is_404_json() {
    let server = conformance().await;
    let addr = server.local_addr();
    for path in [
        "/agents/echo/chatx",
        "/agents/echo/chat/more",
        "/agents/echo",
    ] {
        let r = post(addr, path, r#"{"data": {}}"#).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.header("content-type"), "application/json", "{path}");
        assert_eq!(r.body, r#"{"detail":"Not Found"}"#, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_chat_is_405_with_allow_post() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/agents/echo/chat").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "POST");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.body, r#"{"detail":"Method Not Allowed"}"#);
}

// ---------------------------------------------------------------------------------------------
// Validation (422).

/// POSTs `body` to echo and returns the `detail` list of its 422.
async fn validation_errors(server: &Server, body: &str) -> Vec<Value> {
    let r = post(server.local_addr(), "/agents/echo/chat", body).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    match r.json() {
        Value::Object(mut m) => match m.remove("detail") {
            Some(Value::Array(list)) => list,
            other => panic!("detail is not a list: {other:?}"),
        },
        other => panic!("not an object: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_422_json_invalid_at_the_byte_offset() {
    let server = conformance().await;
    // Python's json module: "Expecting value: line 1 column 16 (char 15)".
    let e = validation_errors(&server, r#"{"data": {"a": }}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "json_invalid");
    assert_eq!(e[0]["loc"], json!(["body", 15]));
    assert_eq!(e[0]["msg"], "JSON decode error");
    // Truncated: the offset is the end of the body.
    let e = validation_errors(&server, r#"{"data": {"#).await;
    assert_eq!(e[0]["type"], "json_invalid");
    assert_eq!(e[0]["loc"], json!(["body", 10]));
    // Past the first line, the offset still counts from the start of the body ("line 2 column 7
    // (char 19)").
    let e = validation_errors(&server, "{\"data\": {},\n \"k\": x}").await;
    assert_eq!(e[0]["loc"], json!(["body", 19]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_body_is_422_missing_body() {
    let server = conformance().await;
    let e = validation_errors(&server, "").await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "missing");
    assert_eq!(e[0]["loc"], json!(["body"]));
    assert_eq!(e[0]["msg"], "Field required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_is_422_missing_data() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"session_id": "s"}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "missing");
    assert_eq!(e[0]["loc"], json!(["body", "data"]));
    assert_eq!(e[0]["msg"], "Field required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_not_an_object_is_422_dict_type() {
    let server = conformance().await;
    for data in ["[1]", "\"x\"", "1", "null"] {
        let e = validation_errors(&server, &format!(r#"{{"data": {data}}}"#)).await;
        assert_eq!(e.len(), 1, "{data}");
        assert_eq!(e[0]["type"], "dict_type", "{data}");
        assert_eq!(e[0]["loc"], json!(["body", "data"]), "{data}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_stream_values_are_422_literal_error() {
    let server = conformance().await;
    for stream in ["true", "null", "\"TEXT\"", "1", "\"\""] {
        let e =
            validation_errors(&server, &format!(r#"{{"data": {{}}, "stream": {stream}}}"#)).await;
        assert_eq!(e.len(), 1, "{stream}");
        assert_eq!(e[0]["type"], "literal_error", "{stream}");
        assert_eq!(e[0]["loc"], json!(["body", "stream"]), "{stream}");
        assert_eq!(
            e[0]["msg"], "Input should be False, 'text' or 'events'",
            "{stream}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_session_id_is_422_string_type() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"data": {}, "session_id": 5}"#).await;
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["type"], "string_type");
    assert_eq!(e[0]["loc"], json!(["body", "session_id"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_zero_is_accepted_as_false() {
    let server = conformance().await;
    let r = post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"x": 0}, "stream": 0}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.body,
        r#"{"result":{"echo":{"x":0}},"session_id":"default"}"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_error_is_listed_together() {
    let server = conformance().await;
    let e = validation_errors(&server, r#"{"data": [1], "session_id": 5, "stream": true}"#).await;
    let mut found: Vec<(String, Value)> = e
        .iter()
        .map(|x| (x["type"].as_str().unwrap().to_owned(), x["loc"].clone()))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("dict_type".to_owned(), json!(["body", "data"])),
            ("literal_error".to_owned(), json!(["body", "stream"])),
            ("string_type".to_owned(), json!(["body", "session_id"])),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Body limit (413).

fn small_limit() -> HttpOptions {
    HttpOptions {
        max_body_bytes: 1024,
        ..HttpOptions::default()
    }
}

/// A valid chat body of exactly `len` bytes.
fn body_of_len(len: usize) -> String {
    let skeleton = r#"{"data": {"pad": ""}}"#;
    let pad = "p".repeat(len - skeleton.len());
    format!(r#"{{"data": {{"pad": "{pad}"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_413_with_content_length() {
    let server = serve(App::new().agent::<agents::Echo>(), small_limit()).await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/echo/chat", &body_of_len(1024)).await;
    assert_eq!(r.status, StatusCode::OK, "a body at the limit is accepted");

    let r = post(addr, "/agents/echo/chat", &body_of_len(1025)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(r.json()["detail"].is_string(), "{:?}", r.body);
    assert!(r.headers.contains_key("x-request-id"));

    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_the_limit_is_413() {
    let server = serve(App::new().agent::<agents::Echo>(), small_limit()).await;
    let addr = server.local_addr();
    let body = body_of_len(1500);
    let chunks = body
        .as_bytes()
        .chunks(500)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/agents/echo/chat")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .unwrap();
    let r = open(addr, Proto::H1, req).await.into_reply().await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    assert!(r.json()["detail"].is_string(), "{:?}", r.body);

    // A chunked body under the limit is read whole.
    let body = body_of_len(900);
    let chunks = body
        .as_bytes()
        .chunks(300)
        .map(Bytes::copy_from_slice)
        .collect();
    let req = common::request(addr, Proto::H1, Method::POST, "/agents/echo/chat")
        .header("content-type", "application/json")
        .body(common::chunked(chunks))
        .unwrap();
    let r = open(addr, Proto::H1, req).await.into_reply().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["result"]["echo"]["pad"].as_str().unwrap().len(),
        900 - 21
    );

    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Backpressure.

/// Starts two `slow` requests of 2 s and waits until one runs and the other is queued.
async fn fill_slow(server: &Server) -> [common::InFlight; 2] {
    let addr = server.local_addr();
    let running = start_post(addr, "/agents/slow/chat", r#"{"data": {"ms": 2000}}"#);
    let queued = start_post(addr, "/agents/slow/chat", r#"{"data": {"ms": 2000}}"#);
    let slow = server.deployment("slow").await.expect("slow is deployed");
    eventually(POLL, "one slow request running and one queued", || {
        let slow = slow.clone();
        async move { slow.replicas()[0].ongoing_requests == 1 && slow.queued_requests() == 1 }
    })
    .await;
    [running, queued]
}

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

// ---------------------------------------------------------------------------------------------
// Replicas.

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

// ---------------------------------------------------------------------------------------------
// Cancellation when the client goes away.

async fn wait_for_free_slot(server: &Server, name: &str) {
    let d = server.deployment(name).await.expect("deployed");
    eventually(POLL, "the replica's slot to be free", || {
        let d = d.clone();
        async move { d.replicas()[0].ongoing_requests == 0 }
    })
    .await;
}

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
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        r#"{"result":{"slept_ms":0},"session_id":"default"}"#
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

// ---------------------------------------------------------------------------------------------
// Request context.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_reads_request_and_session_ids_from_its_context() {
    let server = serve(App::new().agent::<WhoAmI>(), HttpOptions::default()).await;
    let addr = server.local_addr();
    let r = post_with(
        addr,
        "/agents/whoami/chat",
        &[("x-request-id", "req-42")],
        r#"{"data": {}, "session_id": "sess-7"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["result"]["request_id"], "req-42");
    assert_eq!(body["result"]["request_id"], r.header("x-request-id"));
    assert_eq!(body["result"]["session_id"], "sess-7");
    assert_eq!(body["session_id"], "sess-7");

    // A generated id is the one the response carries; no session id is "default".
    let r = post(addr, "/agents/whoami/chat", r#"{"data": {}}"#).await;
    let body = r.json();
    assert_eq!(body["result"]["request_id"], r.header("x-request-id"));
    assert_eq!(body["result"]["session_id"], "default");

    // The stream sees the context too.
    let r = open(
        addr,
        Proto::H1,
        json_post(
            addr,
            Proto::H1,
            "/agents/whoami/chat",
            &[("x-request-id", "req-43")],
            r#"{"data": {}, "session_id": "sess-8", "stream": "text"}"#,
        ),
    )
    .await
    .into_reply()
    .await;
    let events = sse_events(&r.body);
    assert_eq!(events.len(), 2, "{:?}", r.body);
    assert_eq!(
        serde_json::from_str::<Value>(events[0]).unwrap(),
        json!({"request_id": "req-43", "session_id": "sess-8"})
    );
    assert_eq!(format!("data: {}\n\n", events[1]), DONE);
}

// ---------------------------------------------------------------------------------------------
// Broken HTTP.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_the_connection_and_the_server_keeps_serving() {
    let server = conformance().await;
    let addr = server.local_addr();
    let answer = raw(addr, b"GARBAGE\r\n\r\n", false, POLL).await;
    if !answer.is_empty() {
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 400"), "{text:?}");
    }
    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_body_closes_the_connection_and_the_server_keeps_serving() {
    let server = conformance().await;
    let addr = server.local_addr();
    // The head promises 100 bytes; 10 come, then the client half-closes.
    let mut bytes = b"POST /agents/echo/chat HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n".to_vec();
    bytes.extend_from_slice(br#"{"data":{}"#);
    let answer = raw(addr, &bytes, true, POLL).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 4"),
        "no success for a truncated body: {text:?}"
    );
    let r = post(addr, "/agents/echo/chat", r#"{"data": {}}"#).await;
    assert_eq!(r.status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// HTTP/2.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_serves_json_and_text_streams() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = common::send(
        addr,
        Proto::H2,
        json_post(
            addr,
            Proto::H2,
            "/agents/echo/chat",
            &[],
            r#"{"data": {"b": 1, "a": 2}}"#,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert!(is_uuid4(r.header("x-request-id")));
    assert_eq!(
        r.body,
        r#"{"result":{"echo":{"b":1,"a":2}},"session_id":"default"}"#
    );

    let s = open(
        addr,
        Proto::H2,
        json_post(
            addr,
            Proto::H2,
            "/agents/echo/chat",
            &[],
            r#"{"data": {"chunks": ["x", "y\nz"]}, "stream": "text"}"#,
        ),
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.header("content-type"), "text/event-stream; charset=utf-8");
    assert_eq!(s.header("cache-control"), "no-cache");
    assert!(!s.headers.contains_key("connection"));
    let r = s.into_reply().await;
    assert_eq!(r.body, format!("data: x\n\ndata: y\ndata: z\n\n{DONE}"));
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
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        r#"{"result":{"slept_ms":0},"session_id":"default"}"#
    );
}

// ---------------------------------------------------------------------------------------------
// Request timeout.

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
    let slow = server.deployment("slow").await.unwrap();
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

// ---------------------------------------------------------------------------------------------
// Proxy endpoints.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_success() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/-/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, "success");
    assert!(r.header("content-type").starts_with("text/plain"));
    assert!(is_uuid4(r.header("x-request-id")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_maps_each_agent_prefix_to_its_name() {
    let server = conformance().await;
    let r = get(server.local_addr(), "/-/routes").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({
            "/agents/blocking": "blocking",
            "/agents/counter": "counter",
            "/agents/echo": "echo",
            "/agents/panicky": "panicky",
            "/agents/plain": "plain",
            "/agents/slow": "slow",
        })
    );
}

// ---------------------------------------------------------------------------------------------
// RayAI 0.1.3 clients.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_shape_of_rayai_0_1_3_answers_response_and_session_id() {
    let server = conformance().await;
    let addr = server.local_addr();
    let r = post(addr, "/agents/echo/", r#"{"query": "hi"}"#).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.header("content-type"), "application/json");
    let body = r.json();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["response", "session_id"]);
    let response = body["response"].as_str().expect("response is a string");
    assert!(response.contains("hi"), "{response:?}");
    assert_eq!(body["session_id"], "default");

    let r = post(
        addr,
        "/agents/echo/",
        r#"{"query": "hi", "session_id": "s-3"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["session_id"], "s-3");
}

// ---------------------------------------------------------------------------------------------
// Isolation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_agent_does_not_stall_other_agents_or_healthz() {
    let server = conformance().await;
    let addr = server.local_addr();
    let blocked = start_post(addr, "/agents/blocking/chat", r#"{"data": {"ms": 1500}}"#);
    let blocking = server.deployment("blocking").await.unwrap();
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
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body,
        r#"{"result":{"blocked_ms":1500},"session_id":"default"}"#
    );
}
