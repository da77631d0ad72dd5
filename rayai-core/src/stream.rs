//! The items of a stream running on a replica, as handles and the HTTP front receive them.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use crate::error::Error;
use crate::serving::executor::AbortOnDrop;

/// What a replica's stream task sends: an item, the items that were ready together, the end, or
/// the error that ends it.
pub(crate) enum Msg<T> {
    Item(T),
    Items(Vec<T>),
    End,
    Fail(Error),
}

/// The items of a stream running on a replica. It ends after the agent's stream ends, or after
/// one error (the agent's error, its panic, or its replica stopping). Dropping it cancels the
/// agent's stream and frees the replica's slot.
pub struct ReplicaStream<T> {
    rx: mpsc::Receiver<Msg<T>>,
    /// The rest of the last batch received.
    ready: std::vec::IntoIter<T>,
    done: bool,
    _task: AbortOnDrop<()>,
}

impl<T> ReplicaStream<T> {
    /// The stream whose items arrive on `rx`, from `task` (cancelled when this is dropped).
    pub(crate) fn new(rx: mpsc::Receiver<Msg<T>>, task: AbortOnDrop<()>) -> Self {
        ReplicaStream {
            rx,
            ready: Vec::new().into_iter(),
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

// Nothing in it is pinned structurally: the items are moved out, never polled in place.
impl<T> Unpin for ReplicaStream<T> {}

impl<T> futures::Stream for ReplicaStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(item) = self.ready.next() {
                return Poll::Ready(Some(Ok(item)));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(Msg::Item(item)) => return Poll::Ready(Some(Ok(item))),
                Some(Msg::Items(items)) => self.ready = items.into_iter(),
                Some(Msg::End) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Some(Msg::Fail(e)) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                None => {
                    self.done = true;
                    return Poll::Ready(Some(Err(Error::ReplicaStopped)));
                }
            }
        }
    }
}
