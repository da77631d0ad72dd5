//! Dynamic batching, as Ray Serve's `@serve.batch`: a [`Batcher`] collects concurrent calls into
//! one call of a batch function and hands each caller its own result.
//!
//! A model that is cheaper per item on a batch (a GPU forward pass, an embedding endpoint that
//! takes many texts) keeps one `Batcher` per replica; each request calls [`Batcher::call`] with its
//! own input and awaits its own output, while the batcher runs the function on up to
//! `max_batch_size` inputs at once.
//!
//! # Semantics
//!
//! - The first call of a batch starts a timer of `batch_wait_timeout`. The batch runs as soon as it
//!   holds `max_batch_size` items, or when the timer fires with whatever it holds then (a partial
//!   batch). A full batch never waits for the timer.
//! - Batches of one `Batcher` run one after another, never concurrently (Ray Serve's default,
//!   `max_concurrent_batches = 1`): a model on one GPU gains nothing from two batches at once.
//!   Calls that arrive while a batch runs wait for the next one; if `max_batch_size` of them are
//!   already waiting when it ends, the next batch runs at once.
//! - The function returns one result per input, in the inputs' order; each caller gets exactly
//!   its own. An error for one item reaches only that item's caller ([`BatchError::Item`]).
//! - A panic in the function fails every caller of that batch ([`BatchError::Panicked`]);
//!   returning the wrong number of results fails every caller of that batch
//!   ([`BatchError::WrongLength`]). Either way the batcher goes on with the next batch.
//! - A caller that goes away (its future is dropped: the client disconnected, a timeout fired)
//!   before its batch runs is taken out of the batch: its input is not computed and it takes no
//!   place from other callers. One that goes away while its batch runs only loses its result.
//! - The batches run on a background task, spawned by [`Batcher::new`] with `tokio::spawn`; it
//!   stops once every clone of the `Batcher` is dropped and the running batch, if any, is done.
//!
//! # Examples
//!
//! An agent whose requests share one batched "model" call:
//!
//! ```
//! use std::time::Duration;
//!
//! use rayai_core::batch::Batcher;
//! use rayai_core::{Agent, AgentError};
//! use serde_json::{Value, json};
//!
//! struct Embedder {
//!     batch: Batcher<String, usize>,
//! }
//!
//! impl Default for Embedder {
//!     // Runs inside the replica's tokio runtime, which `Batcher::new` needs.
//!     fn default() -> Self {
//!         let batch = Batcher::new(16, Duration::from_millis(10), |texts: Vec<String>| async move {
//!             // One "forward pass" for the whole batch.
//!             texts.iter().map(|t| Ok(t.len())).collect()
//!         });
//!         Embedder { batch }
//!     }
//! }
//!
//! impl Agent for Embedder {
//!     async fn run(&self, data: Value) -> Result<Value, AgentError> {
//!         let text = data["text"].as_str().unwrap_or_default().to_owned();
//!         let embedding = self.batch.call(text).await?; // a `BatchError` converts with `?`
//!         Ok(json!({ "embedding": embedding }))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let agent = Embedder::default();
//! let answer = agent.run(json!({ "text": "hello" })).await.unwrap();
//! assert_eq!(answer, json!({ "embedding": 5 }));
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::{AgentError, panic_message};

/// Collects concurrent calls into one batch call and hands each caller its own result.
///
/// Cloning is cheap (a channel handle) and every clone feeds the same batches. See the
/// [module documentation](self) for the exact semantics.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use rayai_core::batch::Batcher;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let square = Batcher::new(4, Duration::from_millis(5), |xs: Vec<u64>| async move {
///     xs.into_iter().map(|x| Ok(x * x)).collect()
/// });
///
/// // Three concurrent callers: one batch of three, each gets its own square.
/// let (a, b, c) = tokio::join!(square.call(2), square.call(3), square.call(4));
/// assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (4, 9, 16));
/// # }
/// ```
pub struct Batcher<Req, Resp> {
    queue: mpsc::UnboundedSender<Pending<Req, Resp>>,
    max_batch_size: usize,
    batch_wait_timeout: Duration,
}

/// One waiting caller: its input, and where its result goes.
struct Pending<Req, Resp> {
    req: Req,
    reply: oneshot::Sender<Result<Resp, BatchError>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// A batcher that calls `f` with up to `max_batch_size` inputs at a time, waiting at most
    /// `batch_wait_timeout` after a batch's first call for the batch to fill.
    ///
    /// `f` gets the inputs in the order the calls arrived and must return one result per input,
    /// in the same order. It runs on a background task spawned here, so the batcher must be
    /// built inside a tokio runtime (as in an agent's constructor or `Default`, which run on the
    /// replica's runtime); the batches then run on that runtime. The task ends when every clone
    /// of the batcher is dropped, so `f` must not hold a clone of its own batcher.
    ///
    /// # Panics
    ///
    /// If `max_batch_size` is 0, or if called outside a tokio runtime.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use rayai_core::AgentError;
    /// use rayai_core::batch::{BatchError, Batcher};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let parse = Batcher::new(32, Duration::from_millis(2), |texts: Vec<String>| async move {
    ///     texts
    ///         .iter()
    ///         .map(|t| t.parse::<i64>().map_err(AgentError::from))
    ///         .collect()
    /// });
    ///
    /// let (good, bad) = tokio::join!(parse.call("7".into()), parse.call("seven".into()));
    /// assert_eq!(good.unwrap(), 7);
    /// assert!(matches!(bad, Err(BatchError::Item(_)))); // only the bad input's caller fails
    /// # }
    /// ```
    pub fn new<F, Fut>(max_batch_size: usize, batch_wait_timeout: Duration, f: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Result<Resp, AgentError>>> + Send + 'static,
    {
        assert!(max_batch_size > 0, "max_batch_size must be at least 1");
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(run_batches(waiting, f, max_batch_size, batch_wait_timeout));
        Batcher {
            queue,
            max_batch_size,
            batch_wait_timeout,
        }
    }

    /// Adds `req` to the next batch and waits for its result.
    ///
    /// Dropping the returned future before the batch runs takes `req` out of the batch.
    ///
    /// # Errors
    ///
    /// - [`BatchError::Item`]: the batch function returned an error for this input.
    /// - [`BatchError::Panicked`]: the batch function panicked on this input's batch.
    /// - [`BatchError::WrongLength`]: the batch function returned too many or too few results.
    /// - [`BatchError::Closed`]: the background task is gone (its runtime was shut down).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use rayai_core::batch::Batcher;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let upper = Batcher::new(8, Duration::from_millis(1), |words: Vec<String>| async move {
    ///     words.into_iter().map(|w| Ok(w.to_uppercase())).collect()
    /// });
    /// assert_eq!(upper.call("ray".to_owned()).await.unwrap(), "RAY");
    /// # }
    /// ```
    pub async fn call(&self, req: Req) -> Result<Resp, BatchError> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send(Pending { req, reply })
            .map_err(|_| BatchError::Closed)?;
        result.await.unwrap_or(Err(BatchError::Closed))
    }
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
            max_batch_size: self.max_batch_size,
            batch_wait_timeout: self.batch_wait_timeout,
        }
    }
}

impl<Req, Resp> fmt::Debug for Batcher<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("max_batch_size", &self.max_batch_size)
            .field("batch_wait_timeout", &self.batch_wait_timeout)
            .finish_non_exhaustive()
    }
}

/// Why a [`Batcher::call`] has no result.
///
/// It is a `std::error::Error`, so `?` turns it into an [`AgentError`] in an agent's code.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use rayai_core::batch::{BatchError, Batcher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A buggy batch function that drops the last result.
/// let short = Batcher::new(2, Duration::from_secs(1), |xs: Vec<u8>| async move {
///     xs.iter().skip(1).map(|&x| Ok(x)).collect()
/// });
/// let (a, b) = tokio::join!(short.call(1), short.call(2));
/// for result in [a, b] {
///     match result {
///         Err(BatchError::WrongLength { expected, got }) => assert_eq!((expected, got), (2, 1)),
///         other => panic!("unexpected {other:?}"),
///     }
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The batch function returned this error for this caller's input.
    #[error("{0}")]
    Item(AgentError),
    /// The batch function panicked; every caller of that batch gets this. The message is the
    /// panic's.
    #[error("batch function panicked: {0}")]
    Panicked(String),
    /// The batch function returned a different number of results than it got inputs; every
    /// caller of that batch gets this.
    #[error("batch function returned {got} results for {expected} inputs")]
    WrongLength {
        /// How many inputs the batch had.
        expected: usize,
        /// How many results the function returned.
        got: usize,
    },
    /// The batcher's background task is gone (its tokio runtime was shut down).
    #[error("the batcher is closed")]
    Closed,
}

/// The background task: forms batches from `waiting` and runs them one after another, until
/// every `Batcher` is dropped.
async fn run_batches<Req, Resp, F, Fut>(
    mut waiting: mpsc::UnboundedReceiver<Pending<Req, Resp>>,
    f: F,
    max_batch_size: usize,
    batch_wait_timeout: Duration,
) where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Vec<Result<Resp, AgentError>>>,
{
    let mut batch = Vec::with_capacity(max_batch_size);
    while let Some(first) = waiting.recv().await {
        batch.push(first);
        let deadline = deadline_after(batch_wait_timeout);
        fill(&mut waiting, &mut batch, max_batch_size, deadline).await;
        run_batch(&f, batch.drain(..)).await;
    }
}

/// `batch_wait_timeout` from now; a timeout too large for the clock means "about never".
fn deadline_after(batch_wait_timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(batch_wait_timeout)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 86_400))
}

/// Adds waiting callers to `batch` until it holds `max_batch_size` callers that are still
/// there, `deadline` passes, or every `Batcher` is gone; then takes out callers that went away.
async fn fill<Req, Resp>(
    waiting: &mut mpsc::UnboundedReceiver<Pending<Req, Resp>>,
    batch: &mut Vec<Pending<Req, Resp>>,
    max_batch_size: usize,
    deadline: Instant,
) {
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    loop {
        if batch.len() >= max_batch_size {
            // Full; but a caller that went away keeps no place.
            batch.retain(|p| !p.reply.is_closed());
            if batch.len() >= max_batch_size {
                return;
            }
        }
        tokio::select! {
            // Callers already waiting when the timer fires still make this batch.
            biased;
            next = waiting.recv() => match next {
                Some(pending) => batch.push(pending),
                None => break,
            },
            () = &mut timer => break,
        }
    }
    batch.retain(|p| !p.reply.is_closed());
}

/// Runs `f` on one batch and sends each caller its result.
async fn run_batch<Req, Resp, F, Fut>(f: &F, batch: impl Iterator<Item = Pending<Req, Resp>>)
where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Vec<Result<Resp, AgentError>>>,
{
    let (reqs, replies): (Vec<Req>, Vec<_>) = batch.map(|p| (p.req, p.reply)).unzip();
    if reqs.is_empty() {
        return;
    }
    let expected = reqs.len();
    // `f` may panic while building its future as well as while it runs.
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(|| f(reqs))) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    match outcome {
        Ok(results) if results.len() == expected => {
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away meanwhile just loses its result.
                let _ = reply.send(result.map_err(BatchError::Item));
            }
        }
        Ok(results) => {
            let got = results.len();
            tracing::warn!(
                expected,
                got,
                "batch function returned the wrong number of results"
            );
            for reply in replies {
                let _ = reply.send(Err(BatchError::WrongLength { expected, got }));
            }
        }
        Err(panic) => {
            let message = panic_message(&*panic);
            tracing::warn!(%message, batch_size = expected, "batch function panicked");
            for reply in replies {
                let _ = reply.send(Err(BatchError::Panicked(message.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use futures::future::join_all;

    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    /// Every batch a batch function was given, in order.
    type Log = Arc<Mutex<Vec<Vec<u32>>>>;

    /// A batcher that records every batch it is given and answers `x * 10`.
    fn recording(max: usize, wait: Duration) -> (Batcher<u32, u32>, Log) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let batcher = Batcher::new(max, wait, move |xs: Vec<u32>| {
            log.lock().unwrap().push(xs.clone());
            async move { xs.into_iter().map(|x| Ok(x * 10)).collect() }
        });
        (batcher, seen)
    }

    fn batches(seen: &Mutex<Vec<Vec<u32>>>) -> Vec<Vec<u32>> {
        seen.lock().unwrap().clone()
    }

    #[test]
    fn batcher_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync>() {}
        fn assert_clone<T: Clone>() {}
        assert_send_sync::<Batcher<String, Vec<f32>>>();
        assert_clone::<Batcher<String, Vec<f32>>>();
        assert_send_sync::<BatchError>();
    }

    #[tokio::test(start_paused = true)]
    async fn full_batch_runs_without_waiting_for_the_timeout() {
        let (batcher, seen) = recording(4, Duration::from_secs(3600));
        let start = Instant::now();
        let results = join_all((1..=4).map(|x| batcher.call(x))).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        let results: Vec<u32> = results.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, [10, 20, 30, 40]);
        assert_eq!(batches(&seen), [vec![1, 2, 3, 4]]);
    }

    #[tokio::test(start_paused = true)]
    async fn partial_batch_runs_when_the_timeout_fires() {
        let (batcher, seen) = recording(8, WAIT);
        let start = Instant::now();
        let callers: Vec<_> = (1..=3)
            .map(|x| {
                let b = batcher.clone();
                tokio::spawn(async move { (b.call(x).await, Instant::now()) })
            })
            .collect();

        tokio::time::sleep(WAIT - Duration::from_millis(1)).await;
        assert!(batches(&seen).is_empty(), "ran before the timeout");

        tokio::time::sleep(Duration::from_millis(2)).await;
        assert_eq!(batches(&seen), [vec![1, 2, 3]]);
        for (x, caller) in (1..=3).zip(callers) {
            let (result, answered) = caller.await.unwrap();
            assert_eq!(result.unwrap(), x * 10);
            assert_eq!(answered - start, WAIT);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn results_are_routed_to_their_callers() {
        // The function answers in input order with values unrelated to arrival order.
        let batcher = Batcher::new(5, WAIT, |names: Vec<&'static str>| async move {
            names.iter().map(|n| Ok(format!("hello {n}"))).collect()
        });
        let names = ["ann", "bob", "cy", "dee", "eve"];
        let results = join_all(names.iter().map(|&n| batcher.call(n))).await;
        for (name, result) in names.iter().zip(results) {
            assert_eq!(result.unwrap(), format!("hello {name}"));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_item_error_reaches_only_its_caller() {
        let batcher = Batcher::new(4, WAIT, |xs: Vec<i32>| async move {
            xs.into_iter()
                .map(|x| {
                    if x < 0 {
                        Err(AgentError::new(format!("{x} is negative")))
                    } else {
                        Ok(x)
                    }
                })
                .collect()
        });
        let results = join_all([1, -2, 3, 4].map(|x| batcher.call(x))).await;
        assert_eq!(results[0].as_ref().unwrap(), &1);
        match &results[1] {
            Err(BatchError::Item(e)) => assert_eq!(e.message(), "-2 is negative"),
            other => panic!("expected an item error, got {other:?}"),
        }
        assert_eq!(results[2].as_ref().unwrap(), &3);
        assert_eq!(results[3].as_ref().unwrap(), &4);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_fails_its_batch_and_the_next_batch_succeeds() {
        let batcher = Batcher::new(2, WAIT, |xs: Vec<u32>| async move {
            if xs.contains(&13) {
                panic!("unlucky batch");
            }
            xs.into_iter().map(Ok).collect()
        });
        let (a, b) = tokio::join!(batcher.call(13), batcher.call(1));
        for result in [a, b] {
            match result {
                Err(BatchError::Panicked(message)) => assert_eq!(message, "unlucky batch"),
                other => panic!("expected Panicked, got {other:?}"),
            }
        }
        let (c, d) = tokio::join!(batcher.call(2), batcher.call(3));
        assert_eq!((c.unwrap(), d.unwrap()), (2, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_before_the_future_is_built_is_caught_too() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = calls.clone();
        let batcher = Batcher::new(1, WAIT, move |xs: Vec<u32>| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                panic!("first call panics synchronously");
            }
            async move { xs.into_iter().map(Ok).collect() }
        });
        assert!(matches!(
            batcher.call(1).await,
            Err(BatchError::Panicked(_))
        ));
        assert_eq!(batcher.call(2).await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_length_fails_every_caller_of_the_batch() {
        let batcher = Batcher::new(3, WAIT, |xs: Vec<u32>| async move {
            xs.into_iter().skip(1).map(Ok).collect()
        });
        let results = join_all((0..3).map(|x| batcher.call(x))).await;
        for result in results {
            match result {
                Err(BatchError::WrongLength { expected, got }) => {
                    assert_eq!((expected, got), (3, 2));
                }
                other => panic!("expected WrongLength, got {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_is_left_out_of_a_partial_batch() {
        let (batcher, seen) = recording(8, WAIT);
        let a = tokio::spawn({
            let b = batcher.clone();
            async move { b.call(1).await }
        });
        // Gives up long before the batch's timer fires.
        let cancelled = tokio::time::timeout(Duration::from_millis(10), batcher.call(2)).await;
        assert!(cancelled.is_err());
        let c = batcher.call(3).await;
        assert_eq!(a.await.unwrap().unwrap(), 10);
        assert_eq!(c.unwrap(), 30);
        assert_eq!(batches(&seen), [vec![1, 3]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_caller_does_not_hold_a_place_in_a_full_batch() {
        let (batcher, seen) = recording(2, Duration::from_secs(3600));
        let start = Instant::now();
        let cancelled = tokio::time::timeout(Duration::from_millis(10), batcher.call(1)).await;
        assert!(cancelled.is_err());
        // Item 2 would fill the batch with the cancelled item 1; it must wait for item 3 instead.
        let (b, c) = tokio::join!(batcher.call(2), async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            batcher.call(3).await
        });
        assert_eq!((b.unwrap(), c.unwrap()), (20, 30));
        assert_eq!(start.elapsed(), Duration::from_millis(20));
        assert_eq!(batches(&seen), [vec![2, 3]]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_of_only_cancelled_callers_is_not_run() {
        let (batcher, seen) = recording(8, WAIT);
        let cancelled = tokio::time::timeout(Duration::from_millis(10), batcher.call(1)).await;
        assert!(cancelled.is_err());
        tokio::time::sleep(WAIT * 2).await;
        assert!(batches(&seen).is_empty());
        assert_eq!(batcher.call(2).await.unwrap(), 20);
        assert_eq!(batches(&seen), [vec![2]]);
    }

    #[tokio::test(start_paused = true)]
    async fn many_callers_are_all_answered_in_batches_of_at_most_max() {
        let running = Arc::new(AtomicUsize::new(0));
        let most_running = Arc::new(AtomicUsize::new(0));
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let (r, m, s) = (running.clone(), most_running.clone(), sizes.clone());
        let batcher = Batcher::new(8, Duration::from_millis(5), move |xs: Vec<u32>| {
            s.lock().unwrap().push(xs.len());
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            let r = r.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                xs.into_iter().map(|x| Ok(x + 1)).collect()
            }
        });
        let callers: Vec<_> = (0..100u32)
            .map(|x| {
                let b = batcher.clone();
                tokio::spawn(async move {
                    // Spread arrivals over time so that batches form in several ways.
                    tokio::time::sleep(Duration::from_millis(u64::from(x % 7))).await;
                    (x, b.call(x).await)
                })
            })
            .collect();
        for caller in callers {
            let (x, result) = caller.await.unwrap();
            assert_eq!(result.unwrap(), x + 1);
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| (1..=8).contains(&n)), "{sizes:?}");
        assert_eq!(most_running.load(Ordering::SeqCst), 1, "batches overlapped");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_on_a_multi_thread_runtime() {
        let largest = Arc::new(AtomicUsize::new(0));
        let l = largest.clone();
        let batcher = Batcher::new(8, Duration::from_millis(1), move |xs: Vec<u32>| {
            l.fetch_max(xs.len(), Ordering::SeqCst);
            async move { xs.into_iter().map(|x| Ok(x * 2)).collect() }
        });
        let callers: Vec<_> = (0..100u32)
            .map(|x| {
                let b = batcher.clone();
                tokio::spawn(async move { (x, b.call(x).await) })
            })
            .collect();
        for caller in callers {
            let (x, result) = caller.await.unwrap();
            assert_eq!(result.unwrap(), x * 2);
        }
        assert!(largest.load(Ordering::SeqCst) <= 8);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_every_clone_stops_the_background_task() {
        let (alive, stopped) = oneshot::channel::<()>();
        let batcher = Batcher::new(2, WAIT, move |xs: Vec<u32>| {
            let _owned_by_the_task = &alive;
            async move { xs.into_iter().map(Ok).collect() }
        });
        let clone = batcher.clone();
        assert_eq!(clone.call(7).await.unwrap(), 7);
        drop(batcher);
        drop(clone);
        // `alive` is dropped (and `stopped` wakes with an error) only when the task ends.
        let ended = tokio::time::timeout(Duration::from_secs(1), stopped).await;
        assert!(matches!(ended, Ok(Err(_))), "the task is still running");
    }

    #[test]
    fn a_batcher_whose_runtime_is_gone_is_closed() {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let batcher = first.block_on(async {
            Batcher::new(2, WAIT, |xs: Vec<u32>| async move {
                xs.into_iter().map(Ok).collect()
            })
        });
        drop(first);
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let result = second.block_on(batcher.call(1));
        assert!(matches!(result, Err(BatchError::Closed)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_timeout_runs_what_is_already_waiting() {
        let (batcher, seen) = recording(8, Duration::ZERO);
        let results = join_all((1..=3).map(|x| batcher.call(x))).await;
        assert!(results.into_iter().all(|r| r.is_ok()));
        assert_eq!(batches(&seen).concat(), [1, 2, 3]);
    }

    #[tokio::test]
    #[should_panic(expected = "max_batch_size must be at least 1")]
    async fn zero_max_batch_size_panics() {
        let _ = Batcher::new(0, WAIT, |xs: Vec<u32>| async move {
            xs.into_iter().map(Ok).collect()
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_huge_timeout_does_not_overflow() {
        let (batcher, _) = recording(1, Duration::MAX);
        assert_eq!(batcher.call(4).await.unwrap(), 40);
    }

    #[test]
    fn errors_say_what_went_wrong() {
        assert_eq!(
            BatchError::Item(AgentError::new("bad input")).to_string(),
            "bad input"
        );
        assert_eq!(
            BatchError::WrongLength {
                expected: 3,
                got: 2
            }
            .to_string(),
            "batch function returned 2 results for 3 inputs"
        );
        let agent_error: AgentError = BatchError::Closed.into();
        assert_eq!(agent_error.message(), "the batcher is closed");
    }
}
