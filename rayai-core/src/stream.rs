//! The items of a stream running on a replica, as handles and the HTTP front receive them.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::error::Error;
use crate::serving::executor::AbortOnDrop;

/// What a replica's stream task sends: an item, the end, or the error that ends it.
pub(crate) enum Msg<T> {
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

impl<T> ReplicaStream<T> {
    /// The stream whose items arrive on `rx`, from `task` (cancelled when this is dropped).
    pub(crate) fn new(rx: mpsc::Receiver<Msg<T>>, task: AbortOnDrop<()>) -> Self {
        ReplicaStream {
            rx,
            done: false,
            _task: task,
        }
    }
}

impl<T> std::fmt::Debug for ReplicaStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaStream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
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
