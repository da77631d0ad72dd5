//! Entry points for the fuzz targets (`fuzz/`) and the property tests: the code that reads
//! client bytes, reachable from outside the crate. Not part of the API.
//!
//! Each function is a thin wrapper over the crate's own code, with plain types in and out, so
//! that a test or a fuzz target can check what the server would do with any input.

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Version, header};
use serde_json::Value;

use crate::chat::{self, Shape, StreamMode};
use crate::sse::{self, Frame as _, Frames};

/// Which request shape a chat body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatShape {
    /// `POST .../chat`: `{"data": {...}, "session_id": ..., "stream": ...}`.
    Chat,
    /// `POST .../`: `{"query": "...", "session_id": ..., "stream": ...}`.
    Query,
}

/// What `stream` asked for, in a valid body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatStream {
    /// `false`, `0` or absent.
    Off,
    /// `"text"`.
    Text,
    /// `"events"`.
    Events,
}

/// A body the chat endpoint accepted: what it hands the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBody {
    /// The agent's input (for [`ChatShape::Query`], the query as a user message).
    pub data: Value,
    /// The session id, when the body gives one.
    pub session_id: Option<String>,
    /// The answer's mode.
    pub stream: ChatStream,
}

/// Reads `body` as the chat endpoint does: the request it accepts, or the `detail` list of its
/// 422.
///
/// # Errors
///
/// The `detail` value of the 422 the server answers.
pub fn chat_body(body: &[u8], shape: ChatShape) -> Result<ChatBody, Value> {
    let shape = match shape {
        ChatShape::Chat => Shape::Chat,
        ChatShape::Query => Shape::Query,
    };
    let request = chat::parse(body, shape)?;
    Ok(ChatBody {
        data: request.data,
        session_id: request.session_id,
        stream: match request.stream {
            StreamMode::Off => ChatStream::Off,
            StreamMode::Text => ChatStream::Text,
            StreamMode::Events => ChatStream::Events,
        },
    })
}

/// The server's check of a request path before the route lookup.
///
/// # Errors
///
/// The 400's message, for a path that could escape its route prefix once normalised.
pub fn check_path(path: &str) -> Result<(), &'static str> {
    crate::service::check_path(path)
}

/// Whether a request of `version` with these `Host` header values (in order, possibly none)
/// passes the server's `Host` check.
pub fn host_is_valid(version: Version, hosts: &[HeaderValue]) -> bool {
    let mut req = Request::new(());
    *req.version_mut() = version;
    for host in hosts {
        req.headers_mut().append(header::HOST, host.clone());
    }
    crate::service::host_is_valid(&req)
}

/// The SSE frame of a text chunk (`"stream": "text"`); `None` when the chunk is skipped.
pub fn sse_text_frame(chunk: &str) -> Option<Bytes> {
    let mut out = BytesMut::new();
    chunk.to_owned().encode(&mut out).then(|| out.freeze())
}

/// The SSE frame of an event (`"stream": "events"`); `None` when the event is skipped.
pub fn sse_json_frame(event: &Value) -> Option<Bytes> {
    let mut out = BytesMut::new();
    event.encode(&mut out).then(|| out.freeze())
}

/// The SSE frame that ends a stream with an error.
pub fn sse_error_frame(message: &str) -> Bytes {
    sse::error_frame(message)
}

/// The body of a text stream, chunk by chunk, as the server writes it: one frame per chunk that
/// is not skipped, then the `done` frame; or, when the agent's stream fails with `error` after
/// its chunks, the error frame instead of `done`. Frames ready together share a chunk.
pub fn sse_text_stream(chunks: &[String], error: Option<&str>) -> Vec<Bytes> {
    let items = chunks.iter().cloned().map(Ok).chain(error.map(|message| {
        Err(rayai_core::Error::Agent(rayai_core::AgentError::new(
            message,
        )))
    }));
    let frames = Frames::new(futures::stream::iter(items), None, None);
    futures::executor::block_on(futures::StreamExt::collect(frames))
}
