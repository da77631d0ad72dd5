//! The per-deployment router: picks a replica (power of two choices on ongoing requests),
//! reserves one of its slots, or queues the request up to `max_queued_requests`.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::Error;
use crate::hashring::HashRing;
use crate::replica::{Load, Replica, Slot};

/// The replicas requests may go to, and the ring that keeps sessions on one of them.
pub(crate) struct ReplicaSet {
    pub(crate) replicas: Vec<Arc<Replica>>,
    ring: HashRing,
}

impl ReplicaSet {
    fn new(replicas: Vec<Arc<Replica>>) -> Self {
        let ids: Vec<&str> = replicas.iter().map(|r| r.id()).collect();
        let ring = HashRing::new(&ids, 64);
        ReplicaSet { replicas, ring }
    }
}

/// Routes a deployment's requests to its replicas.
pub(crate) struct Router {
    name: String,
    set: ArcSwap<ReplicaSet>,
    max_queued: Option<u32>,
    queued: AtomicU32,
    wake: Notify,
    closed: AtomicBool,
    /// Wakes the controller when a request finds no replica at all (scale from zero).
    kick: Arc<Notify>,
}

impl Router {
    pub(crate) fn new(name: String, max_queued: Option<u32>, kick: Arc<Notify>) -> Self {
        Router {
            name,
            set: ArcSwap::from_pointee(ReplicaSet::new(Vec::new())),
            max_queued,
            queued: AtomicU32::new(0),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            kick,
        }
    }

    /// Replaces the set of replicas, and wakes queued requests so they see the new ones.
    pub(crate) fn set_replicas(&self, replicas: Vec<Arc<Replica>>) {
        self.set.store(Arc::new(ReplicaSet::new(replicas)));
        self.wake.notify_waiters();
    }

    /// Requests waiting for a slot.
    pub(crate) fn queued(&self) -> u32 {
        self.queued.load(Ordering::SeqCst)
    }

    /// Refuses new requests from now on and wakes the waiting ones so they fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Called by a [`Slot`] when it gives its place back.
    pub(crate) fn slot_freed(&self) {
        if self.queued.load(Ordering::SeqCst) > 0 {
            self.wake.notify_one();
        }
    }

    fn try_slot(self: &Arc<Self>, session: Option<&str>) -> Option<Slot> {
        let set = self.set.load();
        let sticky = session
            .and_then(|key| set.ring.lookup(key))
            .filter(|&i| set.replicas[i].load().try_reserve());
        let i = match sticky {
            Some(i) => i,
            None => reserve_p2c(
                &set.replicas,
                &mut fastrand::Rng::with_seed(fastrand::u64(..)),
            )?,
        };
        Some(Slot::new(set.replicas[i].clone(), self.clone()))
    }

    /// Reserves a slot on a replica: at once if one is free, else after waiting in the queue.
    /// With a `session` key, the session's replica on the hash ring is tried first (sticky
    /// sessions); when it is full or gone, power of two choices picks another.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the queue is full, [`Error::ShuttingDown`] once closed.
    pub(crate) async fn acquire(self: &Arc<Self>, session: Option<&str>) -> Result<Slot, Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown(self.name.clone()));
        }
        if let Some(slot) = self.try_slot(session) {
            return Ok(slot);
        }
        let queued = self.queued.fetch_add(1, Ordering::SeqCst);
        let _in_queue = QueueGuard(&self.queued);
        if let Some(max) = self.max_queued
            && queued >= max
        {
            return Err(Error::Backpressure { queued, max });
        }
        loop {
            let mut notified = pin!(self.wake.notified());
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown(self.name.clone()));
            }
            if let Some(slot) = self.try_slot(session) {
                return Ok(slot);
            }
            if self.set.load().replicas.is_empty() {
                self.kick.notify_one();
            }
            notified.await;
        }
    }
}

/// Counts a request out of the queue however it leaves: with a slot, refused, or cancelled.
struct QueueGuard<'a>(&'a AtomicU32);

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Power of two choices: of two distinct replicas drawn at random, reserve a slot on the less
/// loaded; if both are full, on any other with a free slot. Returns the index reserved.
pub(crate) fn reserve_p2c<R: AsRef<Load>>(
    replicas: &[R],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let n = replicas.len();
    match n {
        0 => None,
        1 => replicas[0].as_ref().try_reserve().then_some(0),
        _ => {
            let a = rng.usize(..n);
            let mut b = rng.usize(..n - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) =
                if replicas[a].as_ref().ongoing() <= replicas[b].as_ref().ongoing() {
                    (a, b)
                } else {
                    (b, a)
                };
            if replicas[first].as_ref().try_reserve() {
                return Some(first);
            }
            if replicas[second].as_ref().try_reserve() {
                return Some(second);
            }
            let start = rng.usize(..n);
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| i != a && i != b)
                .find(|&i| replicas[i].as_ref().try_reserve())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(Load);
    impl AsRef<Load> for R {
        fn as_ref(&self) -> &Load {
            &self.0
        }
    }

    fn replicas(loads: &[u32], max: u32) -> Vec<R> {
        loads
            .iter()
            .map(|&n| {
                let l = Load::new(max);
                for _ in 0..n {
                    assert!(l.try_reserve());
                }
                R(l)
            })
            .collect()
    }

    #[test]
    fn picks_less_loaded_of_two() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..100 {
            let rs = replicas(&[3, 1], 10);
            assert_eq!(reserve_p2c(&rs, &mut rng), Some(1));
            assert_eq!(rs[1].0.ongoing(), 2);
        }
    }

    #[test]
    fn falls_back_to_any_free_replica_when_both_choices_are_full() {
        let mut rng = fastrand::Rng::with_seed(1);
        for _ in 0..100 {
            let rs = replicas(&[2, 2, 2, 0], 2);
            let i = reserve_p2c(&rs, &mut rng);
            assert_eq!(i, Some(3));
        }
    }

    #[test]
    fn none_when_every_replica_is_full_or_there_are_none() {
        let mut rng = fastrand::Rng::with_seed(3);
        assert_eq!(reserve_p2c(&replicas(&[1, 1], 1), &mut rng), None);
        assert_eq!(reserve_p2c::<R>(&[], &mut rng), None);
        assert_eq!(reserve_p2c(&replicas(&[1], 1), &mut rng), None);
    }

    #[test]
    fn spreads_load_evenly() {
        let mut rng = fastrand::Rng::with_seed(11);
        let rs = replicas(&[0, 0, 0, 0], 1000);
        for _ in 0..400 {
            reserve_p2c(&rs, &mut rng).unwrap();
        }
        for r in &rs {
            assert!((90..=110).contains(&r.0.ongoing()), "{}", r.0.ongoing());
        }
    }

    #[test]
    fn a_replica_that_stopped_accepting_gets_nothing() {
        let mut rng = fastrand::Rng::with_seed(5);
        let rs = replicas(&[0, 0], 100);
        rs[0].0.stop_accepting();
        for _ in 0..20 {
            assert_eq!(reserve_p2c(&rs, &mut rng), Some(1));
        }
    }
}
