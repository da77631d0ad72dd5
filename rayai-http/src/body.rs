//! The response body: a whole buffer, or frames produced over time.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use http_body::{Frame, SizeHint};
use rayai_core::handler::{BoxError, HttpBody};

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
pub struct Body(Kind);

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
        let kind = match &self.0 {
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
        Body(Kind::Full(Some(bytes.into())))
    }

    /// This body as a handler body (for tower layers and handles).
    pub fn into_http(self) -> HttpBody {
        match self.0 {
            Kind::Http(body) => body,
            _ => rayai_core::handler::boxed(self),
        }
    }

    /// A body of chunks produced over time.
    pub fn stream(stream: impl Stream<Item = Bytes> + Send + 'static) -> Self {
        Body(Kind::Stream(Box::pin(stream)))
    }
}

impl From<HttpBody> for Body {
    fn from(body: HttpBody) -> Self {
        Body(Kind::Http(body))
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(stream) => stream
                .as_mut()
                .poll_next(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b)))),
            Kind::Http(body) => Pin::new(body).poll_frame(cx),
            Kind::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Stream(_) => false,
            Kind::Http(body) => body.is_end_stream(),
            Kind::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
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

use std::future::Future as _;
