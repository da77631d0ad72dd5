//! SSE keep-alive: a stream silent for `sse_keep_alive_s` sends `: keep-alive` comments (again
//! after each such silence), which an SSE client ignores: the events it parses are exactly the
//! agent's frames and the `done` frame. `0` sends none.

use http::StatusCode;
use rayai::HttpOptions;

use crate::common::{open_post, serve};
use crate::{DONE, agents};

/// What a standard SSE parser (the WHATWG event-stream rules, for the `data` field) makes of a
/// body, in order: `Comment` for each comment line, `Event(data)` for each event dispatched.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Comment(String),
    Event(String),
}

fn parse_sse(body: &str) -> Vec<Item> {
    let mut items = Vec::new();
    let mut data: Option<String> = None;
    for line in body.split('\n') {
        if line.is_empty() {
            // A blank line dispatches the event, when it has data.
            if let Some(d) = data.take() {
                items.push(Item::Event(d));
            }
        } else if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.trim_start().to_owned()));
        } else {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            if field == "data" {
                let d = data.get_or_insert_with(String::new);
                if !d.is_empty() {
                    d.push('\n');
                }
                d.push_str(value);
            }
        }
    }
    items
}

/// The events alone: what an `EventSource` delivers.
fn events(items: &[Item]) -> Vec<&str> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Event(d) => Some(d.as_str()),
            Item::Comment(_) => None,
        })
        .collect()
}

/// The conformance server with this keep-alive.
async fn server(keep_alive_s: f64) -> rayai::Server {
    serve(
        agents::app(),
        HttpOptions {
            sse_keep_alive_s: keep_alive_s,
            ..HttpOptions::default()
        },
    )
    .await
}

/// Asserts that at least one keep-alive comment comes before each event (the agent waits
/// `delay_ms` before each item, four times the keep-alive), and only keep-alive comments.
fn assert_comments_between_events(items: &[Item]) {
    let mut comments_since_event = 0;
    let mut before_done = 0;
    for item in items {
        match item {
            Item::Comment(c) => {
                assert_eq!(c, "keep-alive", "{items:?}");
                comments_since_event += 1;
            }
            Item::Event(_) => {
                before_done += 1;
                // The `done` frame follows the last item at once: no silence before it.
                if before_done < events(items).len() {
                    assert!(
                        comments_since_event > 0,
                        "no comment before {item:?}: {items:?}"
                    );
                }
                comments_since_event = 0;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_text_stream_sends_comments_that_sse_clients_ignore() {
    let server = server(0.2).await;
    let s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["a", "b\nc", "d"], "delay_ms": 800}, "stream": "text"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    assert_eq!(s.header("content-type"), "text/event-stream; charset=utf-8");
    let reply = s.into_reply().await;
    assert!(reply.body.ends_with(DONE), "{:?}", reply.body);
    assert!(reply.body.contains(": keep-alive\n\n"), "{:?}", reply.body);
    let items = parse_sse(&reply.body);
    assert_eq!(
        events(&items),
        ["a", "b\nc", "d", r#"{"type": "done"}"#],
        "{:?}",
        reply.body
    );
    assert_comments_between_events(&items);
    // With the comments taken out, the body is the frames, byte for byte.
    assert_eq!(
        reply.body.replace(": keep-alive\n\n", ""),
        format!("data: a\n\ndata: b\ndata: c\n\ndata: d\n\n{DONE}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_event_stream_sends_comments_too() {
    let server = server(0.2).await;
    let s = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"events": [{"n": 1}, {"n": 2}], "delay_ms": 800}, "stream": "events"}"#,
    )
    .await;
    assert_eq!(s.status, StatusCode::OK);
    let reply = s.into_reply().await;
    let items = parse_sse(&reply.body);
    assert_eq!(
        events(&items),
        [r#"{"n":1}"#, r#"{"n":2}"#, r#"{"type": "done"}"#],
        "{:?}",
        reply.body
    );
    assert_comments_between_events(&items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_the_comments_off() {
    let server = server(0.0).await;
    let reply = open_post(
        server.local_addr(),
        "/agents/echo/chat",
        r#"{"data": {"chunks": ["a", "b"], "delay_ms": 600}, "stream": "text"}"#,
    )
    .await
    .into_reply()
    .await;
    assert_eq!(reply.body, format!("data: a\n\ndata: b\n\n{DONE}"));
}
