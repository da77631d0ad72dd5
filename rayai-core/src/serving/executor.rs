//! Where a replica's code runs.
//!
//! With [`Isolation::Thread`] each replica runs its code on its own threads (a current-thread
//! tokio runtime on a dedicated thread, or a multi-thread runtime when it declares more than one
//! CPU), so code that blocks its thread stalls only that replica: never the proxy, health checks
//! or other deployments. With [`Isolation::Shared`] it runs on the server's runtime: no hop
//! between threads, for code that never blocks. [`Isolation::Auto`] (the default) has the
//! threads of `Thread` and polls calls in place as `Shared` does while that is safe: see
//! [`Adaptive`].

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Isolation;
use crate::error::{Error, panic_message};

/// Where a replica's code runs.
pub(crate) enum Executor {
    /// A runtime on threads of its own, stopped when dropped. With `inline` (`Isolation::Auto`)
    /// calls run in place while they are quick, and on these threads otherwise.
    Own {
        handle: tokio::runtime::Handle,
        inline: Option<Inline>,
        _stop: oneshot::Sender<()>,
    },
    /// The runtime of the server that calls it.
    Shared,
}

impl Executor {
    pub(crate) fn new(isolation: Isolation, name: &str, threads: usize) -> io::Result<Self> {
        match isolation {
            Isolation::Auto => Executor::start(name, threads, true),
            Isolation::Thread => Executor::start(name, threads, false),
            Isolation::Shared => Ok(Executor::Shared),
        }
    }

    fn start(name: &str, threads: usize, auto: bool) -> io::Result<Self> {
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
            inline: auto.then(|| Inline::new(name)),
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
            Executor::Own {
                handle,
                inline: Some(inline),
                ..
            } if inline.may_start() => {
                Adaptive {
                    state: State::Inline(Box::pin(future)),
                    handle,
                    inline,
                    cap: None,
                }
                .await
            }
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

impl<T> AbortOnDrop<T> {
    /// Cancels `task` when dropped.
    pub(crate) fn new(task: JoinHandle<T>) -> Self {
        AbortOnDrop(task)
    }
}

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

pub(crate) fn join_error(join: tokio::task::JoinError) -> Error {
    match join.try_into_panic() {
        Ok(payload) => Error::Panicked(panic_message(&*payload)),
        Err(_) => Error::ReplicaStopped,
    }
}

/// A poll of a replica's code on the caller's thread longer than this is slow
/// (`Isolation::Auto`): it blocked, computed, or its thread was preempted.
const SLOW_POLL: Duration = Duration::from_millis(10);

/// A poll longer than this sends the replica's calls to its own threads at once: no preemption
/// of a busy machine lasts that long.
const BLOCKING_POLL: Duration = Duration::from_millis(100);

/// Slow polls in a row (no quick one between them) that send the replica's calls to its own
/// threads: one alone may be the scheduler's doing.
const SLOW_POLLS_IN_A_ROW: u32 = 3;

/// How many threads, in the whole process, are polling replica code in place right now: at
/// most one less than the workers of the runtime they belong to, so that code that blocks can
/// never take every worker.
static INLINE_POLLS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread is already polling replica code in place (a call nested in one
    /// counts once).
    static POLLING_INLINE: Cell<bool> = const { Cell::new(false) };
}

/// The state of a replica whose calls run in place while they are quick.
pub(crate) struct Inline {
    /// Set once its code blocked or computed in place (see [`Inline::polled`]): from then on
    /// its calls go to its own threads.
    slow: AtomicBool,
    /// Slow polls since the last quick one.
    slow_in_a_row: AtomicU32,
    name: Box<str>,
}

impl Inline {
    fn new(name: &str) -> Self {
        Inline {
            slow: AtomicBool::new(false),
            slow_in_a_row: AtomicU32::new(0),
            name: name.into(),
        }
    }

    fn may_start(&self) -> bool {
        !self.slow.load(Ordering::Relaxed)
    }

    /// Counts a poll in place that took `took`: one over [`BLOCKING_POLL`], or
    /// [`SLOW_POLLS_IN_A_ROW`] over [`SLOW_POLL`], sends the calls to the replica's threads.
    fn polled(&self, took: Duration) {
        if took <= SLOW_POLL {
            if self.slow_in_a_row.load(Ordering::Relaxed) != 0 {
                self.slow_in_a_row.store(0, Ordering::Relaxed);
            }
            return;
        }
        let in_a_row = self.slow_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if (took > BLOCKING_POLL || in_a_row >= SLOW_POLLS_IN_A_ROW)
            && !self.slow.swap(true, Ordering::Relaxed)
        {
            let ms = took.as_secs_f64() * 1000.0;
            tracing::info!(
                target: "rayai::replica",
                replica = &*self.name,
                poll_ms = ms,
                "its code ran {ms:.1} ms in one poll (it blocks or computes without awaiting): \
                 the replica's calls now run on its own threads",
            );
        }
    }
}

/// How many threads of the calling runtime may poll replica code in place at once: none on a
/// current-thread runtime (its only thread is the one a blocking call would stall).
fn inline_cap() -> usize {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            handle.metrics().num_workers().saturating_sub(1)
        }
        _ => 0,
    }
}

/// A place among the [`INLINE_POLLS`], held for one poll.
struct InlinePermit {
    counted: bool,
}

impl InlinePermit {
    /// A place for a poll starting `now`, if the calling runtime has one (`cap`).
    fn acquire(cap: usize, now: std::time::Instant) -> Option<Self> {
        if POLLING_INLINE.with(Cell::get) {
            return Some(InlinePermit { counted: false });
        }
        let mut polls = INLINE_POLLS.load(Ordering::Relaxed);
        loop {
            if polls >= cap {
                return None;
            }
            match INLINE_POLLS.compare_exchange_weak(
                polls,
                polls + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => polls = actual,
            }
        }
        POLLING_INLINE.with(|p| p.set(true));
        watchdog::polling_since(now);
        Some(InlinePermit { counted: true })
    }
}

impl Drop for InlinePermit {
    fn drop(&mut self) {
        if self.counted {
            watchdog::polled();
            POLLING_INLINE.with(|p| p.set(false));
            INLINE_POLLS.fetch_sub(1, Ordering::Release);
        }
    }
}

/// Keeps a runtime alive while one of its workers is held by replica code polled in place.
///
/// The other workers of a tokio runtime may all be asleep on condition variables when one
/// starts a poll that blocks: none of them then drives the runtime's sockets and timers, and
/// nothing wakes them (the sleeping one that would is the one blocked). So every thread that
/// polls in place notes when its poll began, and a watchdog thread looks every
/// [`PERIOD`](watchdog::PERIOD): a poll running for longer than that gets one empty task
/// spawned on its runtime from outside, which wakes a sleeping worker; that worker then drives
/// the sockets and timers while the other is held.
mod watchdog {
    use std::cell::OnceCell;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, Instant};

    /// How often the watchdog looks, and how long a poll runs before it wakes the runtime.
    pub(super) const PERIOD: Duration = Duration::from_millis(10);

    /// One thread that polls in place: when its poll began (nanoseconds since [`epoch`], 0
    /// when it polls nothing), and its runtime.
    struct Watched {
        since: AtomicU64,
        runtime: tokio::runtime::Handle,
    }

    /// The threads that poll in place.
    fn watched() -> &'static Mutex<Vec<Arc<Watched>>> {
        static WATCHED: OnceLock<Mutex<Vec<Arc<Watched>>>> = OnceLock::new();
        WATCHED.get_or_init(|| {
            let spawned = std::thread::Builder::new()
                .name("rayai-watchdog".into())
                .spawn(watch);
            if let Err(e) = spawned {
                tracing::warn!("the watchdog of in-place polls did not start: {e}");
            }
            Mutex::new(Vec::new())
        })
    }

    fn epoch() -> Instant {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// This thread's entry, made at its first poll in place (when it is in a runtime) and
    /// removed when the thread ends.
    struct Entry(Arc<Watched>);

    impl Drop for Entry {
        fn drop(&mut self) {
            let mut all = watched().lock().unwrap_or_else(|p| p.into_inner());
            all.retain(|w| !Arc::ptr_eq(w, &self.0));
        }
    }

    thread_local! {
        static ENTRY: OnceCell<Option<Entry>> = const { OnceCell::new() };
    }

    fn with_entry(f: impl FnOnce(&Watched)) {
        let _ = ENTRY.try_with(|entry| {
            let entry = entry.get_or_init(|| {
                let runtime = tokio::runtime::Handle::try_current().ok()?;
                let watched_thread = Arc::new(Watched {
                    since: AtomicU64::new(0),
                    runtime,
                });
                watched()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(watched_thread.clone());
                Some(Entry(watched_thread))
            });
            if let Some(Entry(watched_thread)) = entry {
                f(watched_thread);
            }
        });
    }

    /// This thread starts a poll in place, at `now`.
    pub(super) fn polling_since(now: Instant) {
        let ns = u64::try_from(now.saturating_duration_since(epoch()).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        with_entry(|w| w.since.store(ns, Ordering::Relaxed));
    }

    /// This thread's poll in place ended.
    pub(super) fn polled() {
        with_entry(|w| w.since.store(0, Ordering::Relaxed));
    }

    /// The watchdog: wakes the runtime of each poll that runs longer than [`PERIOD`], once
    /// per poll.
    fn watch() {
        let mut woken: Vec<(Arc<Watched>, u64)> = Vec::new();
        loop {
            std::thread::sleep(PERIOD);
            let now = u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX);
            let all: Vec<Arc<Watched>> =
                watched().lock().unwrap_or_else(|p| p.into_inner()).clone();
            woken.retain(|(w, _)| all.iter().any(|a| Arc::ptr_eq(a, w)));
            for w in all {
                let since = w.since.load(Ordering::Relaxed);
                let held = since != 0
                    && now.saturating_sub(since) >= u64::try_from(PERIOD.as_nanos()).unwrap_or(0);
                let done = woken
                    .iter()
                    .any(|(v, at)| Arc::ptr_eq(v, &w) && *at == since);
                if held && !done {
                    drop(w.runtime.spawn(async {}));
                    woken.retain(|(v, _)| !Arc::ptr_eq(v, &w));
                    woken.push((w, since));
                }
            }
        }
    }
}

enum State<F: Future> {
    /// Polled in place, in the replica's runtime context.
    Inline(Pin<Box<F>>),
    /// Moved to the replica's own threads.
    Spawned(AbortOnDrop<F::Output>),
    Done,
}

/// A call of `Isolation::Auto`: polled on the caller's thread, inside the replica's runtime
/// context (what it spawns, its timers and its sockets belong to the replica's runtime), while
/// a place among the inline polls is free and its polls stay under [`SLOW_POLL`]; otherwise
/// handed to the replica's threads where it left off.
struct Adaptive<'a, F: Future> {
    state: State<F>,
    handle: &'a tokio::runtime::Handle,
    inline: &'a Inline,
    /// The calling runtime's [`inline_cap`], read at the first poll.
    cap: Option<usize>,
}

impl<F> Future for Adaptive<'_, F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Result<F::Output, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Inline(future) => {
                    let cap = *this.cap.get_or_insert_with(inline_cap);
                    let began = std::time::Instant::now();
                    let permit = match this.inline.may_start() {
                        true => InlinePermit::acquire(cap, began),
                        false => None,
                    };
                    let Some(permit) = permit else {
                        let State::Inline(future) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!()
                        };
                        this.state = State::Spawned(AbortOnDrop(this.handle.spawn(future)));
                        continue;
                    };
                    let polled = {
                        let _runtime = this.handle.enter();
                        std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx)))
                    };
                    drop(permit);
                    this.inline.polled(began.elapsed());
                    return match polled {
                        Ok(Poll::Pending) => Poll::Pending,
                        Ok(Poll::Ready(output)) => {
                            this.state = State::Done;
                            Poll::Ready(Ok(output))
                        }
                        Err(panic) => {
                            this.state = State::Done;
                            Poll::Ready(Err(Error::Panicked(panic_message(&*panic))))
                        }
                    };
                }
                State::Spawned(task) => {
                    let output = std::task::ready!(Pin::new(task).poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(output.map_err(join_error));
                }
                State::Done => panic!("an adaptive call polled after it finished"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    use super::*;

    /// Serialises the tests that hold or need the process's places for in-place polls.
    static PLACES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    /// Where `n` calls of `executor` ran.
    async fn names(executor: &Executor, n: usize) -> Vec<String> {
        let mut names = Vec::new();
        for _ in 0..n {
            names.push(executor.run(async { thread_name() }).await.unwrap());
        }
        names
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auto_runs_quick_calls_in_place_until_one_blocks() {
        let _places = PLACES.lock().await;
        let executor = Executor::new(Isolation::Auto, "probe#0", 1).unwrap();
        let before = names(&executor, 20).await;
        // Other tests of this binary may take the one place for a moment.
        assert!(
            before.iter().any(|name| name != "probe#0"),
            "quick calls run in place: {before:?}"
        );

        // What an in-place call spawns runs on the replica's runtime.
        let spawned = executor
            .run(async { tokio::spawn(async { thread_name() }).await.unwrap() })
            .await
            .unwrap();
        assert_eq!(spawned, "probe#0");

        // A panic is the replica's, as on its own thread.
        let panicked: Result<(), Error> = executor.run(async { panic!("in place") }).await;
        assert!(
            matches!(&panicked, Err(Error::Panicked(m)) if m == "in place"),
            "{panicked:?}"
        );

        // One call that blocks for longer than BLOCKING_POLL sends every later call to the
        // replica's thread.
        executor
            .run(async { std::thread::sleep(BLOCKING_POLL + Duration::from_millis(50)) })
            .await
            .unwrap();
        assert_eq!(names(&executor, 20).await, vec!["probe#0"; 20]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn auto_never_lets_replica_code_take_every_worker() {
        let _places = PLACES.lock().await;
        let executor = Arc::new(Executor::new(Isolation::Auto, "probe#1", 1).unwrap());
        let started = Arc::new(AtomicBool::new(false));
        let blocker = tokio::spawn({
            let (executor, started) = (executor.clone(), started.clone());
            async move {
                executor
                    .run(async move {
                        let name = thread_name();
                        started.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(400));
                        name
                    })
                    .await
                    .unwrap()
            }
        });
        while !started.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Polled from the other worker while the first one is held: it may not run in place.
        let during = tokio::spawn({
            let executor = executor.clone();
            async move { executor.run(async { thread_name() }).await.unwrap() }
        })
        .await
        .unwrap();
        let blocked_on = blocker.await.unwrap();
        if blocked_on != "probe#1" {
            assert_eq!(during, "probe#1", "the blocking call held the only place");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_blocking_in_place_leaves_the_runtime_its_timers_and_sockets() {
        let _places = PLACES.lock().await;
        for round in 0..5 {
            let name = format!("probe#5{round}");
            let executor = Arc::new(Executor::new(Isolation::Auto, &name, 1).unwrap());
            let started = Arc::new(AtomicBool::new(false));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            // As a request does: woken by a socket on the worker that drives the sockets, then
            // blocking in place, while the other worker sleeps.
            let blocker = tokio::spawn({
                let (executor, started) = (executor.clone(), started.clone());
                async move {
                    let _conn = listener.accept().await.unwrap();
                    executor
                        .run(async move {
                            started.store(true, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(500));
                        })
                        .await
                }
            });
            std::thread::sleep(Duration::from_millis(50));
            let _client = std::net::TcpStream::connect(addr).unwrap();
            while !started.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            // The watchdog wakes the sleeping worker to run the timers and sockets.
            let waited = std::time::Instant::now();
            tokio::time::sleep(Duration::from_millis(5)).await;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (accepted, connected) =
                tokio::join!(listener.accept(), tokio::net::TcpStream::connect(addr));
            accepted.unwrap();
            connected.unwrap();
            assert!(
                waited.elapsed() < Duration::from_millis(300),
                "round {round}: a timer and a connection took {:?} beside a blocked worker",
                waited.elapsed()
            );
            blocker.await.unwrap().unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn auto_on_a_current_thread_runtime_always_hops() {
        let executor = Executor::new(Isolation::Auto, "probe#2", 1).unwrap();
        assert_eq!(names(&executor, 5).await, vec!["probe#2"; 5]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thread_isolation_always_hops() {
        let executor = Executor::new(Isolation::Thread, "probe#3", 1).unwrap();
        assert_eq!(names(&executor, 5).await, vec!["probe#3"; 5]);
    }

    #[test]
    fn slow_polls_count_only_in_a_row() {
        let inline = Inline::new("probe#4");
        for _ in 0..10 {
            inline.polled(SLOW_POLL * 2);
            inline.polled(SLOW_POLL * 2);
            inline.polled(Duration::from_micros(5));
        }
        assert!(
            inline.may_start(),
            "a quick poll between slow ones resets the count"
        );
        for _ in 0..SLOW_POLLS_IN_A_ROW {
            inline.polled(SLOW_POLL * 2);
        }
        assert!(!inline.may_start());
    }
}
