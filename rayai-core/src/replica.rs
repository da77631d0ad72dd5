//! One replica: a user's agent on an executor of its own.
//!
//! With [`Isolation::Thread`] (the default) each replica runs its agent on its own threads (a
//! current-thread tokio runtime on a dedicated thread, or a multi-thread runtime when it declares
//! more than one CPU), so an agent that blocks its thread stalls only itself: never the proxy,
//! health checks or other deployments. With [`Isolation::Shared`] it runs on the server's runtime:
//! no hop between threads, for agents that never block.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::{FutureExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::agent::{DynAgent, EventStream, TextStream};
use crate::error::panic_message;
use crate::handler::{DynHandler, HttpBody};
use crate::{Error, Isolation, ReplicaContext, RequestContext};
use http::{Request, Response};
use http_body_util::BodyExt;

/// Where a replica's code runs.
pub(crate) enum Executor {
    /// A runtime on threads of its own, stopped when dropped.
    Own {
        handle: tokio::runtime::Handle,
        _stop: oneshot::Sender<()>,
    },
    /// The runtime of the server that calls it.
    Shared,
}

impl Executor {
    pub(crate) fn new(isolation: Isolation, name: &str, threads: usize) -> io::Result<Self> {
        match isolation {
            Isolation::Thread => Executor::start(name, threads),
            Isolation::Shared => Ok(Executor::Shared),
        }
    }

    fn start(name: &str, threads: usize) -> io::Result<Self> {
        let mut builder = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
        } else {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(threads);
            b
        };
        let runtime = builder.enable_all().thread_name(name).build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                runtime.shutdown_background();
            })?;
        Ok(Executor::Own {
            handle,
            _stop: stop,
        })
    }

    /// Runs `future` on this executor and waits for it: spawned on the replica's own runtime,
    /// or polled in place on the caller's (no task, no hop). Either way, dropping the returned
    /// future cancels `future`, and a panic in it is an [`Error::Panicked`].
    pub(crate) async fn run<F>(&self, future: F) -> Result<F::Output, Error>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Executor::Own { handle, .. } => {
                AbortOnDrop(handle.spawn(future)).await.map_err(join_error)
            }
            Executor::Shared => AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .map_err(|panic| Error::Panicked(panic_message(&*panic))),
        }
    }

    pub(crate) fn spawn<F>(&self, future: F) -> AbortOnDrop<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self {
            Executor::Own { handle, .. } => AbortOnDrop(handle.spawn(future)),
            Executor::Shared => AbortOnDrop(tokio::spawn(future)),
        }
    }
}

/// A spawned task that is cancelled when its handle is dropped: a caller that goes away takes
/// its work with it.
pub(crate) struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

/// How busy a replica is, and whether it takes requests: what the router reads and reserves.
#[derive(Debug)]
pub(crate) struct Load {
    ongoing: AtomicU32,
    max_ongoing: u32,
    accepting: AtomicBool,
}

impl Load {
    pub(crate) fn new(max_ongoing: u32) -> Self {
        Load {
            ongoing: AtomicU32::new(0),
            max_ongoing,
            accepting: AtomicBool::new(true),
        }
    }

    pub(crate) fn ongoing(&self) -> u32 {
        self.ongoing.load(Ordering::SeqCst)
    }

    /// Takes one of the replica's slots if it has a free one and accepts requests.
    pub(crate) fn try_reserve(&self) -> bool {
        if !self.accepting.load(Ordering::Relaxed) {
            return false;
        }
        self.ongoing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_ongoing).then_some(n + 1)
            })
            .is_ok()
    }

    pub(crate) fn release(&self) {
        self.ongoing.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }
}

/// A running replica.
pub(crate) struct Replica {
    ctx: ReplicaContext,
    load: Load,
    served: AtomicU64,
    target: Target,
    executor: Executor,
    dead: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
    /// Wakes the deployment's controller (a replica died).
    kick: Arc<tokio::sync::Notify>,
}

impl AsRef<Load> for Arc<Replica> {
    fn as_ref(&self) -> &Load {
        &self.load
    }
}

/// What a replica runs: an agent (the chat contract) or a handler (any HTTP).
#[derive(Clone)]
pub(crate) enum Target {
    Agent(Arc<dyn DynAgent>),
    Handler(Arc<dyn DynHandler>),
    Callable(Arc<dyn crate::callable::DynCallable>),
}

/// Builds one replica's agent or handler, on the replica's executor.
pub(crate) type Factory = Arc<
    dyn Fn(ReplicaContext) -> futures::future::BoxFuture<'static, Result<Target, crate::AgentError>>
        + Send
        + Sync,
>;

impl Replica {
    /// Starts the executor and runs the agent's constructor on it.
    pub(crate) async fn start(
        ctx: ReplicaContext,
        config: &crate::DeploymentConfig,
        factory: &Factory,
        kick: Arc<tokio::sync::Notify>,
    ) -> Result<Arc<Replica>, Error> {
        let max_ongoing = config.max_ongoing_requests();
        let executor = Executor::new(
            config.isolation(),
            ctx.replica_id(),
            config.threads_per_replica(),
        )?;
        let fail = |cause: Error| Error::ReplicaStart {
            deployment: ctx.deployment().to_owned(),
            replica: ctx.replica_id().to_owned(),
            cause: Box::new(cause),
        };
        let target = match executor.spawn(factory(ctx.clone())).await {
            Ok(Ok(target)) => target,
            Ok(Err(e)) => return Err(fail(Error::Agent(e))),
            Err(join) => return Err(fail(join_error(join))),
        };
        Ok(Arc::new(Replica {
            ctx,
            load: Load::new(max_ongoing),
            served: AtomicU64::new(0),
            target,
            executor,
            dead: AtomicBool::new(false),
            last_error: std::sync::Mutex::new(None),
            kick,
        }))
    }

    /// Marks the replica dead (it panicked or failed its health check): it takes no new
    /// requests, and the controller replaces it.
    pub(crate) fn mark_dead(&self, reason: String) {
        self.load.stop_accepting();
        tracing::warn!(replica = %self.id(), %reason, "replica is dead; replacing it");
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(reason);
        }
        self.dead.store(true, Ordering::SeqCst);
        self.kick.notify_one();
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Runs the agent's health check on the replica's executor, bounded by `timeout`.
    pub(crate) async fn check_health(&self, timeout: std::time::Duration) -> Result<(), String> {
        let Target::Agent(agent) = &self.target else {
            return Ok(());
        };
        let agent = agent.clone();
        let check = self
            .executor
            .spawn(async move { agent.check_health().await });
        match tokio::time::timeout(timeout, check).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(format!("health check failed: {e}")),
            Ok(Err(join)) => Err(format!("health check failed: {}", join_error(join))),
            Err(_) => Err(format!(
                "health check timed out after {:.1}s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// Waits until the replica serves nothing (at most `timeout`); it takes no new requests.
    pub(crate) async fn drain(&self, timeout: std::time::Duration) {
        self.load.stop_accepting();
        let idle = async {
            while self.load.ongoing() > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(timeout, idle).await;
    }

    pub(crate) fn id(&self) -> &str {
        self.ctx.replica_id()
    }

    fn agent(&self) -> Result<Arc<dyn DynAgent>, Error> {
        match &self.target {
            Target::Agent(agent) => Ok(agent.clone()),
            _ => Err(Error::WrongKind {
                deployment: self.ctx.deployment().to_owned(),
                expected: "an agent",
            }),
        }
    }

    pub(crate) fn load(&self) -> &Load {
        &self.load
    }

    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

fn join_error(join: tokio::task::JoinError) -> Error {
    match join.try_into_panic() {
        Ok(payload) => Error::Panicked(panic_message(&*payload)),
        Err(_) => Error::ReplicaStopped,
    }
}

/// A reserved place on a replica; the place is given back when this is dropped.
pub(crate) struct Slot {
    replica: Arc<Replica>,
    on_release: Arc<crate::router::Router>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.replica.load.release();
        self.on_release.slot_freed();
    }
}

impl Slot {
    pub(crate) fn new(replica: Arc<Replica>, router: Arc<crate::router::Router>) -> Self {
        Slot {
            replica,
            on_release: router,
        }
    }

    /// Runs the agent's `run` on the replica. Dropping the returned future cancels the run.
    pub(crate) async fn call(self, ctx: RequestContext, data: Value) -> Result<Value, Error> {
        let replica = self.replica.clone();
        replica.served.fetch_add(1, Ordering::Relaxed);
        let agent = replica.agent()?;
        let task = ctx.scope(async move {
            let _slot = self;
            agent.run(data).await
        });
        match replica.executor.run(task).await {
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
        replica.served.fetch_add(1, Ordering::Relaxed);
        let agent = replica.agent()?;
        let (started_tx, started) = oneshot::channel::<Result<(), Error>>();
        let (tx, rx) = mpsc::channel::<Msg<K::Item>>(32);
        let dying = replica.clone();
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
                    let _ = started_tx.send(Err(Error::Panicked(message)));
                    return;
                }
            };
            let _ = started_tx.send(Ok(()));
            loop {
                let msg = match AssertUnwindSafe(stream.next()).catch_unwind().await {
                    Ok(Some(Ok(item))) => Msg::Item(item),
                    Ok(Some(Err(e))) => Msg::Fail(Error::Agent(e)),
                    Ok(None) => Msg::End,
                    Err(panic) => {
                        let message = panic_message(&*panic);
                        dying.mark_dead(format!("panicked: {message}"));
                        Msg::Fail(Error::Panicked(message))
                    }
                };
                let last = !matches!(msg, Msg::Item(_));
                if tx.send(msg).await.is_err() || last {
                    return;
                }
            }
        });
        let task = replica.executor.spawn(task);
        match started.await {
            Ok(Ok(())) => Ok(ReplicaStream {
                rx,
                done: false,
                _task: task,
            }),
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
        request: crate::callable::AnyBox,
    ) -> Result<crate::callable::AnyBox, Error> {
        let replica = self.replica.clone();
        let Target::Callable(callable) = &replica.target else {
            return Err(Error::WrongKind {
                deployment: replica.ctx.deployment().to_owned(),
                expected: "a typed (Callable) deployment",
            });
        };
        replica.served.fetch_add(1, Ordering::Relaxed);
        let callable = callable.clone();
        let task = ctx.scope(async move {
            let _slot = self;
            callable.call(request).await
        });
        match replica.executor.run(task).await {
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
                deployment: replica.ctx.deployment().to_owned(),
                expected: "a handler",
            });
        };
        replica.served.fetch_add(1, Ordering::Relaxed);
        let handler = handler.clone();
        let task = ctx.scope(async move { handler.call(req).await });
        match replica.executor.run(task).await {
            Ok(resp) => Ok(resp.map(|body| HeldBody { body, _slot: self }.boxed_unsync())),
            Err(error) => {
                if let Error::Panicked(message) = &error {
                    replica.mark_dead(format!("panicked: {message}"));
                }
                Err(error)
            }
        }
    }
}

/// A response body that keeps its replica's slot until it ends or is dropped.
struct HeldBody {
    body: HttpBody,
    _slot: Slot,
}

impl http_body::Body for HeldBody {
    type Data = bytes::Bytes;
    type Error = crate::handler::BoxError;

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
    ) -> Option<futures::stream::BoxStream<'_, Result<Self::Item, crate::AgentError>>>;
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

enum Msg<T> {
    Item(T),
    End,
    Fail(Error),
}

/// The items of a stream running on a replica. It ends after the agent's stream ends, or after
/// one error (the agent's error, its panic, or its replica stopping). Dropping it cancels the
/// agent's stream and frees the replica's slot.
pub struct ReplicaStream<T> {
    rx: mpsc::Receiver<Msg<T>>,
    done: bool,
    _task: AbortOnDrop<()>,
}

impl<T> futures::Stream for ReplicaStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let msg = std::task::ready!(self.rx.poll_recv(cx));
        Poll::Ready(match msg {
            Some(Msg::Item(item)) => Some(Ok(item)),
            Some(Msg::End) => {
                self.done = true;
                None
            }
            Some(Msg::Fail(e)) => {
                self.done = true;
                Some(Err(e))
            }
            None => {
                self.done = true;
                Some(Err(Error::ReplicaStopped))
            }
        })
    }
}
