//! The response body: a whole buffer, or frames produced over time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use http_body::{Frame, SizeHint};
use rayai_core::handler::{BoxError, HttpBody};
use tokio::sync::watch;

/// The body of every response rayai writes: a whole buffer, chunks produced over time (SSE),
/// or a handler's body. Opaque: build one with [`Body::full`], [`Body::stream`] or `From` an
/// [`HttpBody`].
///
/// # Examples
///
/// ```
/// use http_body::Body as _;
/// use rayai_http::Body;
///
/// let body = Body::full("hello");
/// assert_eq!(body.size_hint().exact(), Some(5));
/// ```
#[derive(Default)]
pub struct Body {
    kind: Kind,
    /// How the body ends early when the server shuts down, when it can still be running then.
    end: Option<Box<End>>,
}

#[derive(Default)]
enum Kind {
    /// A complete body (taken when sent).
    Full(Option<Bytes>),
    /// Chunks sent as they are produced.
    Stream(BoxStream<'static, Bytes>),
    /// A handler's body.
    Http(HttpBody),
    /// Nothing at all.
    #[default]
    Empty,
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Full(_) => "full",
            Kind::Stream(_) => "stream",
            Kind::Http(_) => "http",
            Kind::Empty => "empty",
        };
        f.debug_tuple("Body").field(&kind).finish()
    }
}

impl Body {
    /// A complete body.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        Body::of(Kind::Full(Some(bytes.into())))
    }

    fn of(kind: Kind) -> Self {
        Body { kind, end: None }
    }

    /// This body as a handler body (for tower layers and handles).
    pub fn into_http(self) -> HttpBody {
        match self {
            Body {
                kind: Kind::Http(body),
                end: None,
            } => body,
            body => rayai_core::handler::boxed(body),
        }
    }

    /// A body of chunks produced over time.
    pub fn stream(stream: impl Stream<Item = Bytes> + Send + 'static) -> Self {
        Body::of(Kind::Stream(Box::pin(stream)))
    }

    /// This body, ended when `signal` turns true (the end of the shutdown's grace period) if it
    /// is still waiting for its next frame then: an event stream (`event_stream`) with the
    /// contract's error frame and a clean end of body (an event stream by its `headers`), any other body with an abort (HTTP/1.1
    /// closes the connection without the last chunk, HTTP/2 resets the stream), so a client
    /// never takes a cut body for a whole one. Its producer (an agent's stream) is dropped.
    ///
    /// A body of known length is left as it is: a complete one is written at once, and one cut
    /// when its connection closes is seen short of its length, as an abort is.
    ///
    /// `in_flight` is kept until the body is written (or dropped): the connection is busy until
    /// then, however long the body pauses.
    pub(crate) fn ending_on(
        self,
        signal: &watch::Receiver<bool>,
        headers: &http::HeaderMap,
        in_flight: crate::idle::InFlight,
    ) -> Self {
        let complete = match &self.kind {
            Kind::Full(_) | Kind::Empty => true,
            Kind::Stream(_) => false,
            Kind::Http(body) => {
                http_body::Body::is_end_stream(body)
                    || http_body::Body::size_hint(body).exact().is_some()
            }
        };
        if complete || self.end.is_some() {
            return self;
        }
        Body {
            kind: self.kind,
            end: Some(Box::new(End {
                signal: signal.clone(),
                waiting: None,
                event_stream: is_event_stream(headers),
                _in_flight: in_flight,
            })),
        }
    }
}

impl From<HttpBody> for Body {
    fn from(body: HttpBody) -> Self {
        Body::of(Kind::Http(body))
    }
}

/// The message of the frame that ends an event stream cut off by a shutdown.
pub(crate) const SHUTDOWN_MESSAGE: &str = "The server is shutting down.";

/// How a running body ends at the end of a shutdown's grace period.
struct End {
    /// Turns true when running bodies are to end.
    signal: watch::Receiver<bool>,
    /// Waits for the signal, once the body has had to wait for a frame.
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// An event stream: ended with the error frame rather than aborted.
    event_stream: bool,
    /// The request, in flight on its connection while the body runs.
    _in_flight: crate::idle::InFlight,
}

impl End {
    /// Ready once the body is to end; registers the task to wake then.
    fn poll_signal(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if *self.signal.borrow() {
            return Poll::Ready(());
        }
        let signal = &self.signal;
        let waiting = self.waiting.get_or_insert_with(|| {
            let mut signal = signal.clone();
            Box::pin(async move {
                if signal.wait_for(|end| *end).await.is_err() {
                    // The listener is gone without a shutdown: nothing will end this body.
                    std::future::pending::<()>().await;
                }
            })
        });
        waiting.as_mut().poll(cx)
    }

    /// The last frame of a body cut off now.
    fn last_frame(&self) -> Result<Frame<Bytes>, BoxError> {
        if self.event_stream {
            Ok(Frame::data(crate::sse::error_frame(SHUTDOWN_MESSAGE)))
        } else {
            Err(SHUTDOWN_MESSAGE.into())
        }
    }
}

impl Kind {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Kind::Http(body) => http_body::Body::poll_frame(Pin::new(body), cx),
            Kind::Empty => Poll::Ready(None),
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = this.kind.poll_frame(cx);
        let Some(end) = this.end.as_mut() else {
            return polled;
        };
        if polled.is_ready() || end.poll_signal(cx).is_pending() {
            return polled;
        }
        // Shut down while waiting: the producer goes, and one last frame (or the abort) ends
        // the body.
        let last = end.last_frame();
        this.kind = Kind::Empty;
        this.end = None;
        Poll::Ready(Some(last))
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(_) => false,
            Kind::Http(body) => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Kind::Full(None) | Kind::Empty => SizeHint::with_exact(0),
            Kind::Stream(_) => SizeHint::default(),
            Kind::Http(body) => body.size_hint(),
        }
    }
}

/// A handler's body, aborted at a deadline: the request timeout cuts a running stream off with
/// an error, so the connection (HTTP/1.1) or stream (HTTP/2) is reset and the client sees a
/// broken body rather than a clean end it could take for the whole answer (as Ray Serve).
pub(crate) struct DeadlineBody {
    body: HttpBody,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    pub(crate) fn new(body: HttpBody, at: tokio::time::Instant) -> Self {
        DeadlineBody {
            body,
            deadline: Box::pin(tokio::time::sleep_until(at)),
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err("the request timed out".into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Whether the response is a stream of Server-Sent Events.
fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}
