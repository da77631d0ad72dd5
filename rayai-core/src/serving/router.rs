//! The per-deployment router: picks a replica (power of two choices on ongoing requests, or the
//! session's replica by rendezvous hashing), reserves one of its slots, or queues the request up
//! to `max_queued_requests`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use super::replica::{Load, Replica, Routed};
use super::slot::{Slot, Waiter};

impl<R: Routed> AsRef<Load> for Arc<R> {
    fn as_ref(&self) -> &Load {
        Routed::load(&**self)
    }
}
use crate::error::Error;

/// Routes a deployment's requests to its replicas.
pub(crate) struct Router<R = Replica> {
    name: String,
    replicas: ArcSwap<Vec<Arc<R>>>,
    /// `max_queued_requests` (`u64::MAX`: unbounded), changed in place by a lightweight update.
    max_queued: AtomicU64,
    waiter: Arc<Waiter>,
    closed: AtomicBool,
    /// Requests routed (assigned a replica or queued), for the metrics.
    requests: AtomicU64,
    /// Wakes the controller when a request finds no replica at all (scale from zero).
    kick: Arc<Notify>,
}

impl<R: Routed> Router<R> {
    pub(crate) fn new(name: String, max_queued: Option<u32>, kick: Arc<Notify>) -> Self {
        Router {
            name,
            replicas: ArcSwap::from_pointee(Vec::new()),
            max_queued: AtomicU64::new(max_queued.map_or(u64::MAX, u64::from)),
            waiter: Arc::new(Waiter::default()),
            closed: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            kick,
        }
    }

    /// Replaces the set of replicas, and wakes queued requests so they see the new ones.
    pub(crate) fn set_replicas(&self, replicas: Vec<Arc<R>>) {
        self.replicas.store(Arc::new(replicas));
        self.waiter.wake_all();
    }

    /// Changes how many requests may wait, for the requests that queue from now on.
    pub(crate) fn set_max_queued(&self, max: Option<u32>) {
        self.max_queued
            .store(max.map_or(u64::MAX, u64::from), Ordering::Relaxed);
    }

    /// Wakes the queued requests to try again (the replicas' limits changed).
    pub(crate) fn wake(&self) {
        self.waiter.wake_all();
    }

    /// Replicas in the set now.
    pub(crate) fn len(&self) -> usize {
        self.replicas.load().len()
    }

    /// Requests waiting for a slot.
    pub(crate) fn queued(&self) -> u32 {
        self.waiter.queued()
    }

    /// Requests this router was given (assigned at once, queued, or refused by backpressure).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Refuses new requests from now on and wakes the waiting ones so they fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiter.wake_all();
    }

    fn try_slot(&self, session: Option<&str>) -> Option<Slot<R>> {
        let replicas = self.replicas.load();
        let sticky = session
            .and_then(|key| rendezvous(&replicas, key))
            .filter(|&i| replicas[i].load().try_reserve());
        let i = match sticky {
            Some(i) => i,
            None => reserve_p2c(&replicas[..], &mut fastrand::Rng::new())?,
        };
        Some(Slot::new(replicas[i].clone(), self.waiter.clone()))
    }

    /// Reserves a slot on a replica: at once if one is free, else after waiting in the queue.
    /// With a `session` key, the session's replica is tried first (sticky sessions); when it is
    /// full or gone, power of two choices picks another.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the queue is full, [`Error::ShuttingDown`] once closed.
    pub(crate) async fn acquire(&self, session: Option<&str>) -> Result<Slot<R>, Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown(self.name.clone()));
        }
        self.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.try_slot(session) {
            return Ok(slot);
        }
        let (queued, _in_queue) = self.waiter.enqueue();
        if let Ok(max) = u32::try_from(self.max_queued.load(Ordering::Relaxed))
            && queued >= max
        {
            return Err(Error::Backpressure { queued, max });
        }
        loop {
            let mut notified = pin!(self.waiter.notified());
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown(self.name.clone()));
            }
            if let Some(slot) = self.try_slot(session) {
                return Ok(slot);
            }
            if self.replicas.load().is_empty() {
                self.kick.notify_one();
            }
            notified.await;
        }
    }
}

/// The replica a session key belongs to: the one whose id, hashed with the key, weighs most
/// (rendezvous, or highest-random-weight, hashing). A session moves only when its replica
/// leaves the set; the sessions of a replica that leaves spread evenly over the others.
fn rendezvous<R: Routed>(replicas: &[Arc<R>], key: &str) -> Option<usize> {
    highest_weight(replicas.iter().map(|r| r.id()), key)
}

/// The index of the id with the highest weight for `key`; see [`rendezvous`].
fn highest_weight<'a>(ids: impl Iterator<Item = &'a str>, key: &str) -> Option<usize> {
    // A fixed-key SipHash: the same weights in every process and on every run.
    let hasher = BuildHasherDefault::<DefaultHasher>::default();
    ids.map(|id| hasher.hash_one((key, id)))
        .enumerate()
        .max_by_key(|&(_, weight)| weight)
        .map(|(i, _)| i)
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

    fn owner(ids: &[&str], key: &str) -> Option<String> {
        highest_weight(ids.iter().copied(), key).map(|i| ids[i].to_owned())
    }

    #[test]
    fn a_session_keeps_its_replica_while_it_lives() {
        let ids = ["echo#0", "echo#1", "echo#2", "echo#3"];
        for k in 0..200 {
            let key = format!("session-{k}");
            assert_eq!(owner(&ids, &key), owner(&ids, &key));
            // Adding a replica moves a session only onto the new one.
            let grown = ["echo#0", "echo#1", "echo#2", "echo#3", "echo#4"];
            let after = owner(&grown, &key).unwrap();
            assert!(after == "echo#4" || Some(after) == owner(&ids, &key));
        }
    }

    #[test]
    fn only_the_sessions_of_a_replica_that_leaves_move() {
        let ids = ["a", "b", "c", "d"];
        let without_b = ["a", "c", "d"];
        let mut moved = 0;
        for k in 0..1000 {
            let key = format!("s{k}");
            let before = owner(&ids, &key).unwrap();
            let after = owner(&without_b, &key).unwrap();
            if before == "b" {
                moved += 1;
            } else {
                assert_eq!(before, after, "{key} moved although its replica stayed");
            }
        }
        assert!(
            (150..=350).contains(&moved),
            "{moved} of 1000 sessions were on b"
        );
    }

    #[test]
    fn sessions_spread_over_the_replicas() {
        let ids = ["a", "b", "c", "d"];
        let mut counts = [0; 4];
        for k in 0..4000 {
            counts[highest_weight(ids.iter().copied(), &format!("user-{k}")).unwrap()] += 1;
        }
        for c in counts {
            assert!((800..=1200).contains(&c), "{counts:?}");
        }
        assert_eq!(highest_weight(std::iter::empty(), "x"), None);
    }
}
