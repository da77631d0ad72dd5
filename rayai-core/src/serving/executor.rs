//! Where a replica's code runs.
//!
//! With [`Isolation::Thread`] (the default) each replica runs its code on its own threads (a
//! current-thread tokio runtime on a dedicated thread, or a multi-thread runtime when it declares
//! more than one CPU), so code that blocks its thread stalls only that replica: never the proxy,
//! health checks or other deployments. With [`Isolation::Shared`] it runs on the server's
//! runtime: no hop between threads, for code that never blocks.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Isolation;
use crate::error::{Error, panic_message};

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
