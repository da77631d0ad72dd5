//! Server-Sent Events: the frames of the contract (`docs/contract.md`) and the body that writes
//! them as the agent yields.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use rayai_core::Error;
use serde_json::Value;

/// The frame that ends a stream, byte for byte as RayAI writes it.
pub const DONE_FRAME: &[u8] = b"data: {\"type\": \"done\"}\n\n";

/// The comment a silent stream sends to keep proxies from cutting it: SSE clients ignore lines
/// that start with `:`.
pub(crate) const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// Encodes an agent's stream item as one SSE event; `false` when the item is skipped.
pub(crate) trait Frame {
    fn encode(&self, out: &mut BytesMut) -> bool;
}

impl Frame for String {
    /// One event whose lines are the chunk's lines (SSE's rule for multi-line data); empty chunks
    /// are skipped.
    fn encode(&self, out: &mut BytesMut) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut rest = self.as_str();
        loop {
            let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
            out.put_slice(b"data: ");
            out.put_slice(&rest.as_bytes()[..end]);
            out.put_u8(b'\n');
            if end == rest.len() {
                break;
            }
            let skip = if rest[end..].starts_with("\r\n") {
                2
            } else {
                1
            };
            rest = &rest[end + skip..];
        }
        out.put_u8(b'\n');
        true
    }
}

impl Frame for Value {
    /// One event of compact JSON; empty objects are skipped.
    fn encode(&self, out: &mut BytesMut) -> bool {
        if matches!(self, Value::Object(m) if m.is_empty()) {
            return false;
        }
        out.put_slice(b"data: ");
        // Writing JSON into memory cannot fail.
        let _ = serde_json::to_writer((&mut *out).writer(), self);
        out.put_slice(b"\n\n");
        true
    }
}

/// The error frame: `data: {"type": "error", "content": "<message>"}`.
pub(crate) fn error_frame(message: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(message.len() + 48);
    out.put_slice(b"data: {\"type\": \"error\", \"content\": ");
    let _ = serde_json::to_writer((&mut out).writer(), message);
    out.put_slice(b"}\n\n");
    out.freeze()
}

/// The body of a streamed response: one frame per item, as soon as it is yielded, then `done`;
/// or an error frame and the end. Dropping it drops the agent's stream. While the stream is
/// silent, a [`KEEP_ALIVE`] comment after each `keep_alive` without a frame.
pub(crate) struct Frames<S> {
    stream: Option<S>,
    deadline: Option<(Pin<Box<tokio::time::Sleep>>, Bytes)>,
    keep_alive: Option<KeepAlive>,
    buf: BytesMut,
    ends: Ends,
}

/// How a stream of frames ends: the frames after the last item, and the error frame.
pub(crate) struct Ends {
    /// Written after the last item.
    pub(crate) done: Bytes,
    /// The frame that ends a stream whose agent failed (or that was cut off), given the message.
    pub(crate) error: fn(&str) -> Bytes,
}

impl Ends {
    /// The chat contract's: `done`, and the `{"type": "error"}` frame.
    fn contract() -> Self {
        Ends {
            done: Bytes::from_static(DONE_FRAME),
            error: error_frame,
        }
    }
}

impl<S> Frames<S> {
    /// Frames of `stream`; at `deadline` the stream is cut off with the given error frame; after
    /// each `keep_alive` without a frame, a keep-alive comment.
    pub(crate) fn new(
        stream: S,
        deadline: Option<(tokio::time::Instant, String)>,
        keep_alive: Option<Duration>,
    ) -> Self {
        Frames::with_ends(stream, deadline, keep_alive, Bytes::new(), Ends::contract())
    }

    /// Frames of `stream` after `start`, ending as `ends` says.
    pub(crate) fn with_ends(
        stream: S,
        deadline: Option<(tokio::time::Instant, String)>,
        keep_alive: Option<Duration>,
        start: Bytes,
        ends: Ends,
    ) -> Self {
        Frames {
            stream: Some(stream),
            deadline: deadline.map(|(at, message)| {
                (
                    Box::pin(tokio::time::sleep_until(at)),
                    (ends.error)(&message),
                )
            }),
            keep_alive: keep_alive.map(|every| KeepAlive {
                sleep: Box::pin(tokio::time::sleep(every)),
                every,
                last: tokio::time::Instant::now(),
            }),
            buf: BytesMut::from(&start[..]),
            ends,
        }
    }

    /// Starts the silence over: something was just sent. Only the time is noted (a clock read);
    /// the timer is moved when it fires, not for every frame.
    fn sent(&mut self) {
        if let Some(keep_alive) = self.keep_alive.as_mut() {
            keep_alive.last = tokio::time::Instant::now();
        }
    }

    /// The buffered frames, as one chunk of the body.
    fn flush(&mut self) -> Poll<Option<Bytes>> {
        self.sent();
        Poll::Ready(Some(self.buf.split().freeze()))
    }
}

/// Frames that are ready together go out as one chunk, up to this many bytes: fewer chunks for
/// hyper to frame and fewer writes, and no frame waits for another.
const COALESCE_BYTES: usize = 16 * 1024;

impl<S, T> Stream for Frames<S>
where
    S: Stream<Item = Result<T, Error>> + Unpin,
    T: Frame,
{
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = &mut *self;
        loop {
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some((sleep, frame)) = this.deadline.as_mut()
                && sleep.as_mut().poll(cx).is_ready()
            {
                this.buf.extend_from_slice(frame);
                this.stream = None;
                return this.flush();
            }
            let next = match Pin::new(stream).poll_next(cx) {
                Poll::Ready(next) => next,
                Poll::Pending if !this.buf.is_empty() => return this.flush(),
                Poll::Pending => {
                    if let Some(keep_alive) = this.keep_alive.as_mut()
                        && keep_alive.poll_silent(cx).is_ready()
                    {
                        this.buf.extend_from_slice(KEEP_ALIVE);
                        return this.flush();
                    }
                    return Poll::Pending;
                }
            };
            match next {
                Some(Ok(item)) => {
                    if item.encode(&mut this.buf) && this.buf.len() >= COALESCE_BYTES {
                        return this.flush();
                    }
                }
                Some(Err(e)) => {
                    this.buf
                        .extend_from_slice(&(this.ends.error)(&e.to_string()));
                    this.stream = None;
                    return this.flush();
                }
                None => {
                    this.buf.extend_from_slice(&this.ends.done);
                    this.stream = None;
                    return this.flush();
                }
            }
        }
    }
}

/// The keep-alive timer of a stream: a comment after `every` without a frame.
struct KeepAlive {
    sleep: Pin<Box<tokio::time::Sleep>>,
    every: Duration,
    /// When something was last sent.
    last: tokio::time::Instant,
}

impl KeepAlive {
    /// Ready when the stream has been silent for `every`. When the timer fires early (a frame
    /// was sent since it was set), it is moved to `every` after that frame.
    fn poll_silent(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            std::task::ready!(self.sleep.as_mut().poll(cx));
            let due = self.last + self.every;
            if due <= tokio::time::Instant::now() {
                self.sleep
                    .as_mut()
                    .reset(tokio::time::Instant::now() + self.every);
                return Poll::Ready(());
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

use std::future::Future as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        let mut out = BytesMut::new();
        s.to_owned().encode(&mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn text_chunks_are_one_event_with_a_line_per_line() {
        assert_eq!(text("hello"), "data: hello\n\n");
        assert_eq!(text("a\nb"), "data: a\ndata: b\n\n");
        assert_eq!(text("a\r\nb\rc\n"), "data: a\ndata: b\ndata: c\ndata: \n\n");
        assert_eq!(text(""), "");
    }

    #[test]
    fn events_are_compact_json_and_empty_ones_skipped() {
        let mut out = BytesMut::new();
        assert!(serde_json::json!({"type": "token", "content": "hi\n"}).encode(&mut out));
        assert_eq!(
            &out[..],
            b"data: {\"type\":\"token\",\"content\":\"hi\\n\"}\n\n"
        );
        let mut out = BytesMut::new();
        assert!(!serde_json::json!({}).encode(&mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn error_frame_has_rayai_spacing() {
        assert_eq!(
            &error_frame("boom \"x\"")[..],
            b"data: {\"type\": \"error\", \"content\": \"boom \\\"x\\\"\"}\n\n"
        );
    }

    /// A stream of `items`, each `Ok(None)` a pause of `pause` before the next.
    fn paced(
        items: Vec<Option<&'static str>>,
        pause: Duration,
    ) -> impl Stream<Item = Result<String, Error>> + Unpin {
        Box::pin(futures::stream::iter(items).then(move |item| async move {
            match item {
                Some(text) => Ok(text.to_owned()),
                None => {
                    tokio::time::sleep(pause).await;
                    Ok(String::new())
                }
            }
        }))
    }

    /// The chunks of the body, as they were handed to hyper.
    async fn chunks(frames: impl Stream<Item = Bytes>) -> Vec<String> {
        frames
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
            .await
    }

    /// The events of the body (each with its blank line), whatever chunks carried them.
    async fn body(frames: impl Stream<Item = Bytes>) -> Vec<String> {
        let mut events = Vec::new();
        for chunk in chunks(frames).await {
            assert!(
                chunk.ends_with("\n\n"),
                "a chunk ends with an event: {chunk:?}"
            );
            events.extend(chunk.split_inclusive("\n\n").map(str::to_owned));
        }
        events
    }

    #[tokio::test(start_paused = true)]
    async fn frames_ready_together_go_in_one_chunk_and_none_waits() {
        // "b" and "c" are ready together after a pause; "a" goes before the pause.
        let stream = paced(
            vec![Some("a"), None, Some("b"), Some("c")],
            Duration::from_secs(1),
        );
        assert_eq!(
            chunks(Frames::new(stream, None, None)).await,
            [
                "data: a\n\n",
                "data: b\n\ndata: c\n\ndata: {\"type\": \"done\"}\n\n"
            ]
        );
        // A long burst is cut into chunks of about COALESCE_BYTES.
        let line = "x".repeat(1000);
        let burst: Vec<Result<String, Error>> = (0..40).map(|_| Ok(line.clone())).collect();
        let got = chunks(Frames::new(futures::stream::iter(burst), None, None)).await;
        assert!(got.len() >= 3, "{}", got.len());
        assert!(got.iter().all(|c| c.len() < COALESCE_BYTES + 1100));
        assert_eq!(got.concat().matches("data: x").count(), 40);
    }

    use futures::StreamExt as _;

    #[tokio::test(start_paused = true)]
    async fn a_silent_stream_sends_keep_alive_comments_and_frames_reset_the_timer() {
        let second = Duration::from_secs(1);
        // 2.5 s of silence, a frame, 0.9 s of silence (less than the keep-alive), a frame.
        let stream = paced(
            vec![Some("a"), None, None, Some("b"), Some("c")],
            Duration::from_millis(1250),
        );
        let got = body(Frames::new(stream, None, Some(second))).await;
        assert_eq!(
            got,
            [
                "data: a\n\n",
                ": keep-alive\n\n",
                ": keep-alive\n\n",
                "data: b\n\n",
                "data: c\n\n",
                "data: {\"type\": \"done\"}\n\n",
            ]
        );
        let stream = paced(vec![Some("a"), None, Some("b")], Duration::from_millis(900));
        let got = body(Frames::new(stream, None, Some(second))).await;
        assert_eq!(
            got,
            [
                "data: a\n\n",
                "data: b\n\n",
                "data: {\"type\": \"done\"}\n\n"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_keep_alive_when_off_and_the_deadline_still_cuts_off() {
        let stream = paced(vec![Some("a"), None, Some("b")], Duration::from_secs(60));
        let got = body(Frames::new(stream, None, None)).await;
        assert_eq!(
            got,
            [
                "data: a\n\n",
                "data: b\n\n",
                "data: {\"type\": \"done\"}\n\n"
            ]
        );
        let stream = paced(vec![Some("a"), None, Some("b")], Duration::from_secs(60));
        let at = tokio::time::Instant::now() + Duration::from_millis(2500);
        let frames = Frames::new(
            stream,
            Some((at, "late".to_owned())),
            Some(Duration::from_secs(1)),
        );
        let got = body(frames).await;
        assert_eq!(
            got,
            [
                "data: a\n\n",
                ": keep-alive\n\n",
                ": keep-alive\n\n",
                "data: {\"type\": \"error\", \"content\": \"late\"}\n\n",
            ]
        );
    }
}
