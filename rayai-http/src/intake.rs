//! Reading request bodies within bounds: a body that stops arriving for
//! `body_read_timeout_s` is a `408` and a closed connection, and the request-body bytes the whole
//! process holds at once stay within `max_body_bytes_in_flight` (a request that would go beyond
//! is a `503` with `Retry-After`, before more of its body is read).
//!
//! Every body the server reads goes through [`Intake`]: the agents' chat bodies, the bodies an
//! ingress reads, the dashboard's deploy API. A request's bytes count until its [`Held`] is
//! dropped: when its body has been parsed (agents) or its response is ready (an ingress, whose
//! handler may keep the bytes while it works).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use rayai_core::handler::BoxError;

use crate::HttpOptions;
use crate::body::Body;
use crate::error;

/// Request-body bytes held by the whole process (every server in it).
static HELD: AtomicU64 = AtomicU64::new(0);

/// Why a body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No byte arrived for the body-read timeout.
    Stalled,
    /// The process holds too many body bytes already.
    OverBudget,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Stalled => "the request body stopped arriving",
            Refusal::OverBudget => "the server holds too many request bodies",
        })
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    const NONE: u8 = 0;

    fn code(self) -> u8 {
        match self {
            Refusal::Stalled => 1,
            Refusal::OverBudget => 2,
        }
    }

    fn from_code(code: u8) -> Option<Refusal> {
        match code {
            1 => Some(Refusal::Stalled),
            2 => Some(Refusal::OverBudget),
            _ => None,
        }
    }

    /// The answer: `408` or `503` with `Retry-After`, closing an HTTP/1 connection (the rest of
    /// the body is not read).
    pub(crate) fn response(self, version: Version) -> Response<Body> {
        let mut resp = match self {
            Refusal::Stalled => error::text(
                StatusCode::REQUEST_TIMEOUT,
                "The request body was not received in time.",
            ),
            Refusal::OverBudget => {
                let mut resp = error::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The server is reading too many request bodies; retry later.",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                resp
            }
        };
        if version == Version::HTTP_11 || version == Version::HTTP_10 {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// One request's share of the process's body bytes, and how its reading ended. Released when
/// dropped.
pub(crate) struct Held {
    bytes: AtomicU64,
    refused: AtomicU8,
    cap: u64,
    /// The counter of the bytes held: the process's.
    budget: &'static AtomicU64,
}

impl Held {
    fn new(cap: u64, budget: &'static AtomicU64) -> Arc<Held> {
        Arc::new(Held {
            bytes: AtomicU64::new(0),
            refused: AtomicU8::new(Refusal::NONE),
            cap,
            budget,
        })
    }

    /// Counts `more` bytes, unless the process would hold more than the cap.
    fn reserve(&self, more: u64) -> Result<(), Refusal> {
        if more == 0 {
            return Ok(());
        }
        let before = self.budget.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > self.cap {
            self.budget.fetch_sub(more, Ordering::Relaxed);
            return Err(Refusal::OverBudget);
        }
        self.bytes.fetch_add(more, Ordering::Relaxed);
        Ok(())
    }

    fn refuse(&self, why: Refusal) -> Refusal {
        self.refused.store(why.code(), Ordering::Relaxed);
        why
    }

    /// Why the body was refused, if it was.
    pub(crate) fn refusal(&self) -> Option<Refusal> {
        Refusal::from_code(self.refused.load(Ordering::Relaxed))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.budget
            .fetch_sub(*self.bytes.get_mut(), Ordering::Relaxed);
    }
}

/// A request body read within the bounds: each frame counted against the process's budget, a
/// pause longer than the body-read timeout an error.
pub(crate) struct Intake<B = Incoming> {
    body: B,
    held: Arc<Held>,
    /// Bytes received; only those beyond the declared length reserved up front are counted as
    /// they come.
    received: u64,
    reserved: u64,
    stall: Option<Duration>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Counts the body as being read on its connection, until it ends.
    reading: Option<crate::idle::ReadingBody>,
}

impl<B> Intake<B> {
    /// The body of a request declaring `declared` bytes, whose bytes are reserved now: a
    /// refusal when the process holds too much already.
    pub(crate) fn new(
        body: B,
        declared: Option<u64>,
        options: &HttpOptions,
    ) -> Result<Self, Refusal> {
        Intake::counted_in(body, declared, options, &HELD)
    }

    fn counted_in(
        body: B,
        declared: Option<u64>,
        options: &HttpOptions,
        budget: &'static AtomicU64,
    ) -> Result<Self, Refusal> {
        let held = Held::new(options.max_body_bytes_in_flight, budget);
        let reserved = declared.unwrap_or(0);
        held.reserve(reserved)?;
        Ok(Intake {
            body,
            held,
            received: 0,
            reserved,
            stall: options.body_read_timeout(),
            timer: None,
            reading: None,
        })
    }

    /// Counts the body as being read on the connection the request came on, until it ends.
    pub(crate) fn on_connection(mut self) -> Self {
        self.reading = crate::idle::CONNECTION
            .try_with(|activity| activity.reading_body())
            .ok();
        self
    }

    /// The request's share of the budget, to keep while its bytes are in use.
    pub(crate) fn held(&self) -> Arc<Held> {
        self.held.clone()
    }
}

impl<B> http_body::Body for Intake<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    this.received += len;
                    let beyond = this.received.saturating_sub(this.reserved);
                    if beyond > 0 {
                        if let Err(why) = this.held.reserve(beyond) {
                            return Poll::Ready(Some(Err(this.held.refuse(why).into())));
                        }
                        this.reserved += beyond;
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.reading = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.reading = None;
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(stall) = this.stall else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.reading = None;
                        Poll::Ready(Some(Err(this.held.refuse(Refusal::Stalled).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The request's `Content-Length`, when it declares one.
pub(crate) fn declared_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads a whole request body: at most `max_body_bytes` (else `413`), within the body-read
/// timeout (`408`) and the process's budget (`503`); a body that breaks off is a `400`. The
/// bytes count against the budget until the returned [`Held`] is dropped.
pub(crate) fn read_whole(
    req: Request<Incoming>,
    options: &HttpOptions,
) -> impl Future<Output = Result<(Bytes, Arc<Held>), Response<Body>>> + use<> {
    // What needs the request's head is done here, before the future: the future holds the body
    // alone, not the head beside it (every layer of a request's future is moved as a whole).
    let limit = options.max_body_bytes;
    let declared = declared_length(&req);
    let version = req.version();
    let ready = if declared.is_some_and(|n| n > limit) {
        Err(error::too_large(limit))
    } else {
        Intake::new(req.into_body(), declared, options)
            .map(|intake| {
                let intake = intake.on_connection();
                let held = intake.held();
                (
                    Limited::new(intake, usize::try_from(limit).unwrap_or(usize::MAX)),
                    held,
                )
            })
            .map_err(|why| why.response(version))
    };
    async move {
        let (limited, held) = ready?;
        match limited.collect().await {
            Ok(collected) => Ok((collected.to_bytes(), held)),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error::too_large(limit)),
            Err(_) => Err(match held.refusal() {
                Some(why) => why.response(version),
                None => error::text(
                    StatusCode::BAD_REQUEST,
                    "The request body could not be read.",
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn options(stall_s: f64, cap: u64) -> HttpOptions {
        HttpOptions {
            body_read_timeout_s: stall_s,
            max_body_bytes_in_flight: cap,
            ..HttpOptions::default()
        }
    }

    type Chunks = StreamBody<
        futures::stream::BoxStream<'static, Result<Frame<Bytes>, std::convert::Infallible>>,
    >;

    fn chunks(parts: Vec<&'static [u8]>, then_stall: bool) -> Chunks {
        use futures::StreamExt;
        let head = futures::stream::iter(parts.into_iter().map(|p| Ok(Frame::data(p.into()))));
        let stream = if then_stall {
            head.chain(futures::stream::pending()).boxed()
        } else {
            head.boxed()
        };
        StreamBody::new(stream)
    }

    /// A budget of the test's own.
    fn budget() -> &'static AtomicU64 {
        Box::leak(Box::new(AtomicU64::new(0)))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_arriving_is_refused_as_stalled() {
        let b = budget();
        let intake = Intake::counted_in(chunks(vec![b"abc"], true), None, &options(2.0, 64), b)
            .expect("within the budget");
        let held = intake.held();
        let Err(err) = intake.collect().await else {
            panic!("the stalled body was read whole")
        };
        assert!(err.is::<Refusal>(), "{err}");
        assert_eq!(held.refusal(), Some(Refusal::Stalled));
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_count_until_released_and_the_cap_refuses_more() {
        let b = budget();
        let opts = options(0.0, 10);
        let intake = Intake::counted_in(chunks(vec![b"12345", b"6789"], false), None, &opts, b)
            .expect("within the budget");
        let held = intake.held();
        let body = intake.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"123456789");
        assert_eq!(b.load(Ordering::Relaxed), 9);
        // A second body of 5 declared bytes would pass the cap while the first is held.
        let refused = Intake::counted_in(chunks(vec![], false), Some(5), &opts, b);
        assert_eq!(refused.err(), Some(Refusal::OverBudget));
        drop(held);
        assert_eq!(b.load(Ordering::Relaxed), 0);
        let second = Intake::counted_in(chunks(vec![b"12345"], false), Some(5), &opts, b)
            .expect("room again");
        let body = second.collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"12345");
        // Declared bytes are not counted twice as they arrive; released with the body.
        assert_eq!(b.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_undeclared_body_is_refused_once_it_passes_the_cap() {
        let b = budget();
        let intake = Intake::counted_in(
            chunks(vec![b"12", b"345"], false),
            None,
            &options(0.0, 4),
            b,
        )
        .expect("within the budget");
        let held = intake.held();
        assert!(intake.collect().await.is_err());
        assert_eq!(held.refusal(), Some(Refusal::OverBudget));
    }

    #[test]
    fn refusals_close_http1_connections_and_ask_to_retry() {
        let resp = Refusal::OverBudget.response(Version::HTTP_11);
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        assert_eq!(resp.headers()[header::CONNECTION], "close");
        let resp = Refusal::Stalled.response(Version::HTTP_2);
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(resp.headers().get(header::CONNECTION).is_none());
    }
}
