//! End to end: the HTTP contract of `docs/contract.md`, pinned on a real server (`127.0.0.1:0`)
//! with a real HTTP/1.1 and HTTP/2 client, on the agents of the conformance example and a few of
//! the tests' own (`fixtures`); and the monitoring endpoints of that server. Each test starts its
//! own server.

#[path = "../common/mod.rs"]
mod common;

mod agent_status;
mod cancellation;
mod connections;
mod docs;
mod errors;
mod fixtures;
mod load;
mod monitoring;
mod multiplex;
mod openai;
mod request_ids;
mod responses;
mod sse_keepalive;
mod streaming;
mod timeout;
mod typed;
mod validation;

use std::time::Duration;

use conformance::agents;
use rayai::{HttpOptions, Server};

use common::{eventually, serve};

/// The frame that ends every successful stream, byte for byte.
const DONE: &str = "data: {\"type\": \"done\"}\n\n";

/// How long a test waits for a condition it polls.
const POLL: Duration = Duration::from_secs(5);

/// The conformance server with default options.
async fn conformance() -> Server {
    serve(agents::app(), HttpOptions::default()).await
}

/// Whether `s` is a UUID4 in its hyphenated form.
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

/// Waits until the first replica of `name` serves no request.
async fn wait_for_free_slot(server: &Server, name: &str) {
    let d = server.deployment(name).expect("deployed");
    eventually(POLL, "the replica's slot to be free", || {
        let d = d.clone();
        async move { d.replicas()[0].ongoing_requests == 0 }
    })
    .await;
}
