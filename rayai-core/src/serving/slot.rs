//! A reserved place on a replica, and the small waiter that learns when places free up.

use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use futures::{FutureExt, StreamExt};
use http::{Request, Response};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::{Notify, mpsc, oneshot};

use super::executor::join_error;
use super::replica::{Replica, Routed};
use crate::agent::{DynAgent, EventStream, TextStream};
use crate::error::{Error, panic_message};
use crate::handle::AnyBox;
use crate::handler::{BoxError, HttpBody};
use crate::request::RequestContext;
use crate::stream::{Msg, ReplicaStream};
use crate::target::Target;

/// Requests waiting for a place on one deployment's replicas, and the signal that wakes them
/// when a place frees up: all a [`Slot`] needs to know of its router.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    queued: AtomicU32,
    /// Queued requests that wait for particular replicas (those holding their model).
    picky: AtomicU32,
    wake: Notify,
}

impl Waiter {
    /// Requests waiting now.
    pub(crate) fn queued(&self) -> u32 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Counts one more waiting request until the guard is dropped (with a slot, refused or
    /// cancelled); returns how many waited before it. A `picky` request waits for particular
    /// replicas: while one waits, a freed slot wakes every waiting request.
    pub(crate) fn enqueue(&self, picky: bool) -> (u32, QueueGuard<'_>) {
        if picky {
            self.picky.fetch_add(1, Ordering::SeqCst);
        }
        (
            self.queued.fetch_add(1, Ordering::SeqCst),
            QueueGuard {
                waiter: self,
                picky,
                served: false,
            },
        )
    }

    /// Resolves at the next wake-up; see [`Notify::notified`].
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Wakes every waiting request (new replicas, or shutting down).
    pub(crate) fn wake_all(&self) {
        self.wake.notify_waiters();
    }

    /// A place was given back: wakes one waiting request, if any waits.
    fn slot_freed(&self) {
        if self.picky.load(Ordering::SeqCst) > 0 {
            self.wake.notify_waiters();
        } else if self.queued.load(Ordering::SeqCst) > 0 {
            self.wake.notify_one();
        }
    }
}

/// Counts a request out of the queue however it leaves.
pub(crate) struct QueueGuard<'a> {
    waiter: &'a Waiter,
    picky: bool,
    /// It leaves with a slot, or refused at once.
    served: bool,
}

impl QueueGuard<'_> {
    /// The request leaves with a slot (or was refused before it waited).
    pub(crate) fn served(&mut self) {
        self.served = true;
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        let before = self.waiter.queued.fetch_sub(1, Ordering::SeqCst);
        if self.picky {
            self.waiter.picky.fetch_sub(1, Ordering::SeqCst);
        }
        // A request that gives up (its client left, its deadline passed) may have been the one
        // a freed place was meant for, and the requests behind it wait their turn instead of
        // looking: the next one looks now.
        if !self.served && before > 1 {
            self.waiter.wake.notify_one();
        }
    }
}

/// A reserved place on a replica; the place is given back when this is dropped.
pub(crate) struct Slot<R: Routed = Replica> {
    replica: Arc<R>,
    waiter: Arc<Waiter>,
}

impl<R: Routed> Drop for Slot<R> {
    fn drop(&mut self) {
        self.replica.load().release();
        self.waiter.slot_freed();
    }
}

impl<R: Routed> Slot<R> {
    /// A place already reserved on `replica` (its load counts it).
    pub(crate) fn new(replica: Arc<R>, waiter: Arc<Waiter>) -> Self {
        Slot { replica, waiter }
    }

    /// The replica the place is on.
    pub(crate) fn replica(&self) -> &Arc<R> {
        &self.replica
    }
}

impl Slot {
    /// Runs the agent's `run` on the replica. Dropping the returned future cancels the run.
    pub(crate) async fn call(self, ctx: RequestContext, data: Value) -> Result<Value, Error> {
        let replica = self.replica.clone();
        replica.count_served();
        let agent = agent(&replica)?;
        let task = ctx.scope(async move {
            let _slot = self;
            agent.run(data).await
        });
        let started = tokio::time::Instant::now();
        let result = replica.executor.run(task).await;
        replica.record(started, matches!(result, Ok(Ok(_))));
        match result {
            Ok(result) => result.map_err(Error::Agent),
            Err(error) => {
                if let Error::Panicked(message) = &error {
                    replica.mark_dead(format!("panicked: {message}"));
                }
                Err(error)
            }
        }
    }

    /// Opens one of the agent's streams on the replica. Dropping the returned stream cancels it.
    pub(crate) async fn stream<K: StreamKind>(
        self,
        ctx: RequestContext,
        data: Value,
    ) -> Result<ReplicaStream<K::Item>, Error> {
        let replica = self.replica.clone();
        replica.count_served();
        let agent = agent(&replica)?;
        let (started_tx, started) = oneshot::channel::<Result<(), Error>>();
        let (tx, rx) = mpsc::channel::<Msg<K::Item>>(32);
        let dying = replica.clone();
        let began = tokio::time::Instant::now();
        let task = ctx.scope(async move {
            let _slot = self;
            let opened = std::panic::catch_unwind(AssertUnwindSafe(|| K::open(&*agent, data)));
            let mut stream = match opened {
                Ok(Some(stream)) => stream,
                Ok(None) => {
                    let _ = started_tx.send(Err(K::unsupported()));
                    return;
                }
                Err(panic) => {
                    let message = panic_message(&*panic);
                    dying.mark_dead(format!("panicked: {message}"));
                    dying.record(began, false);
                    let _ = started_tx.send(Err(Error::Panicked(message)));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            loop {
                // Waits for the next item, then takes the items that are ready now with it (up
                // to `BATCH`) and sends them as one message: a stream that yields faster than
                // the HTTP side writes costs one hand-over between threads per batch, not per
                // item, and an item that comes alone is sent at once.
                let mut polled = Some(AssertUnwindSafe(stream.next()).catch_unwind().await);
                // An item alone goes as it is; a `Vec` only once a second one is ready.
                let (mut one, mut many) = (None, Vec::new());
                let mut last = None;
                while let Some(next) = polled.take() {
                    match next {
                        Ok(Some(Ok(item))) => {
                            if let Some(first) = one.take() {
                                many.reserve_exact(BATCH);
                                many.push(first);
                            }
                            if many.is_empty() {
                                one = Some(item);
                            } else {
                                many.push(item);
                            }
                            if many.len() < BATCH {
                                polled = AssertUnwindSafe(stream.next())
                                    .catch_unwind()
                                    .now_or_never();
                            }
                        }
                        Ok(Some(Err(e))) => last = Some(Msg::Fail(Error::Agent(e))),
                        Ok(None) => last = Some(Msg::End),
                        Err(panic) => {
                            let message = panic_message(&*panic);
                            dying.mark_dead(format!("panicked: {message}"));
                            last = Some(Msg::Fail(Error::Panicked(message)));
                        }
                    }
                }
                let batch = match one {
                    Some(item) => Some(Msg::Item(item)),
                    None => (!many.is_empty()).then_some(Msg::Items(many)),
                };
                if let Some(batch) = batch
                    && tx.send(batch).await.is_err()
                {
                    return;
                }
                if let Some(msg) = last {
                    // The stream ended or failed: one processed request.
                    dying.record(began, matches!(msg, Msg::End));
                    let _ = tx.send(msg).await;
                    return;
                }
            }
        });
        let task = replica.executor.spawn(task);
        match started.await {
            Ok(Ok(())) => Ok(ReplicaStream::new(rx, task)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(match task.await {
                Err(join) => join_error(join),
                Ok(()) => Error::ReplicaStopped,
            }),
        }
    }
}

impl Slot {
    /// Runs a typed call on the replica. Dropping the future cancels it.
    pub(crate) async fn call_any(
        self,
        ctx: RequestContext,
        request: AnyBox,
    ) -> Result<AnyBox, Error> {
        let replica = self.replica.clone();
        let Target::Callable(callable) = &replica.target else {
            return Err(Error::WrongKind {
                deployment: replica.context().deployment().to_owned(),
                expected: "a typed (Callable) deployment",
            });
        };
        replica.count_served();
        let callable = callable.clone();
        let task = ctx.scope(async move {
            let _slot = self;
            callable.call(request).await
        });
        let started = tokio::time::Instant::now();
        let result = replica.executor.run(task).await;
        replica.record(started, matches!(result, Ok(Ok(_))));
        match result {
            Ok(result) => result,
            Err(error) => {
                if let Error::Panicked(message) = &error {
                    replica.mark_dead(format!("panicked: {message}"));
                }
                Err(error)
            }
        }
    }

    /// Runs the handler on the replica. The slot stays taken until the response body ends or is
    /// dropped; dropping the future before the response cancels the handler.
    pub(crate) async fn serve(
        self,
        ctx: RequestContext,
        req: Request<HttpBody>,
    ) -> Result<Response<HttpBody>, Error> {
        let replica = self.replica.clone();
        let Target::Handler(handler) = &replica.target else {
            return Err(Error::WrongKind {
                deployment: replica.context().deployment().to_owned(),
                expected: "a handler",
            });
        };
        replica.count_served();
        let handler = handler.clone();
        let task = ctx.scope(async move { handler.call(req).await });
        let started = tokio::time::Instant::now();
        let result = replica.executor.run(task).await;
        replica.record(started, matches!(result, Ok(Ok(_))));
        match result {
            Ok(Ok(resp)) => Ok(resp.map(|body| HeldBody { body, _slot: self }.boxed_unsync())),
            Ok(Err(error)) => Err(Error::Service(error)),
            Err(error) => {
                if let Error::Panicked(message) = &error {
                    replica.mark_dead(format!("panicked: {message}"));
                }
                Err(error)
            }
        }
    }
}

/// The most items of a replica's stream sent to the HTTP side as one message.
const BATCH: usize = 32;

/// A response body that keeps its replica's slot until it ends or is dropped.
struct HeldBody {
    body: HttpBody,
    _slot: Slot,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Which of an agent's streams to open.
pub(crate) trait StreamKind: Send + 'static {
    type Item: Send + 'static;
    fn open(
        agent: &dyn DynAgent,
        data: Value,
    ) -> Option<futures::stream::BoxStream<'_, Result<Self::Item, crate::error::AgentError>>>;
    fn unsupported() -> Error;
}

/// `run_stream`: text chunks.
pub(crate) struct Text;

impl StreamKind for Text {
    type Item = String;
    fn open(agent: &dyn DynAgent, data: Value) -> Option<TextStream<'_>> {
        agent.run_stream(data)
    }
    fn unsupported() -> Error {
        Error::TextStreamUnsupported
    }
}

/// `run_stream_events`: JSON events.
pub(crate) struct Events;

impl StreamKind for Events {
    type Item = Value;
    fn open(agent: &dyn DynAgent, data: Value) -> Option<EventStream<'_>> {
        agent.run_stream_events(data)
    }
    fn unsupported() -> Error {
        Error::EventStreamUnsupported
    }
}

/// The agent a replica runs, or the error for a chat request to another kind of deployment.
fn agent(replica: &Replica) -> Result<Arc<dyn DynAgent>, Error> {
    match &replica.target {
        Target::Agent(agent) => Ok(agent.clone()),
        _ => Err(Error::WrongKind {
            deployment: replica.context().deployment().to_owned(),
            expected: "an agent",
        }),
    }
}
