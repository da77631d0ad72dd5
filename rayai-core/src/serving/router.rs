//! The per-deployment router: picks a replica (power of two choices on ongoing requests, the
//! session's replica by rendezvous hashing, or for a multiplexed model a replica that holds it),
//! reserves one of its slots, or queues the request up to `max_queued_requests`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{BuildHasher, BuildHasherDefault};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

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
use crate::striped::Striped;

/// How long a request for a multiplexed model waits for a replica that holds the model before it
/// goes to any replica (which loads it): Ray Serve's
/// `RAY_SERVE_MULTIPLEXED_MODEL_ID_MATCHING_TIMEOUT_S`.
const MODEL_MATCHING_TIMEOUT: Duration = Duration::from_secs(1);

/// Routes a deployment's requests to its replicas.
pub(crate) struct Router<R = Replica> {
    name: String,
    replicas: ArcSwap<Vec<Arc<R>>>,
    /// `max_queued_requests` (`u64::MAX`: unbounded), changed in place by a lightweight update.
    max_queued: AtomicU64,
    waiter: Arc<Waiter>,
    closed: AtomicBool,
    /// Requests routed (assigned a replica or queued), for the metrics.
    requests: Striped<1>,
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
            requests: Striped::new(),
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
        self.requests.get(0)
    }

    /// Refuses new requests from now on and wakes the waiting ones so they fail.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.waiter.wake_all();
    }

    fn try_slot(
        &self,
        session: Option<&str>,
        model: Option<&str>,
        matching: bool,
    ) -> Option<Slot<R>> {
        let replicas = self.replicas.load();
        let mut rng = fastrand::Rng::new();
        let i = match model {
            Some(model) => reserve_for_model(&replicas, model, matching, &mut rng)?,
            None => {
                let sticky = session
                    .and_then(|key| rendezvous(&replicas, key))
                    .filter(|&i| replicas[i].load().try_reserve());
                match sticky {
                    Some(i) => i,
                    None => reserve_p2c(&replicas[..], &mut rng)?,
                }
            }
        };
        Some(Slot::new(replicas[i].clone(), self.waiter.clone()))
    }

    /// Reserves a slot on a replica: at once if one is free, else after waiting in the queue.
    /// With a `session` key, the session's replica is tried first (sticky sessions); when it is
    /// full or gone, power of two choices picks another. With a multiplexed `model`, a replica
    /// that holds the model (see [`reserve_for_model`]); the session is not looked at.
    ///
    /// # Errors
    ///
    /// [`Error::Backpressure`] when the queue is full, [`Error::ShuttingDown`] once closed.
    pub(crate) async fn acquire(
        &self,
        session: Option<&str>,
        model: Option<&str>,
    ) -> Result<Slot<R>, Error> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::ShuttingDown(self.name.clone()));
        }
        self.requests.add(0, 1);
        // First come, first served: while requests wait, a new one queues behind them instead
        // of taking the place freed for the one woken (which would then wait another round).
        let behind = self.waiter.queued() > 0;
        if !behind && let Some(slot) = self.try_slot(session, model, true) {
            return Ok(slot);
        }
        let matching_until = model.map(|_| tokio::time::Instant::now() + MODEL_MATCHING_TIMEOUT);
        // A request that waits for particular replicas is woken by every freed slot, not one
        // in turn: one it declines must not stall the others.
        let (queued, mut in_queue) = self.waiter.enqueue(model.is_some());
        if let Ok(max) = u32::try_from(self.max_queued.load(Ordering::Relaxed))
            && queued >= max
        {
            in_queue.served();
            return Err(Error::Backpressure { queued, max });
        }
        let mut wait_first = behind;
        loop {
            let mut notified = pin!(self.waiter.notified());
            notified.as_mut().enable();
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::ShuttingDown(self.name.clone()));
            }
            let matching = matching_until.filter(|&until| tokio::time::Instant::now() < until);
            if !std::mem::take(&mut wait_first)
                && let Some(slot) = self.try_slot(session, model, matching.is_some())
            {
                in_queue.served();
                return Ok(slot);
            }
            if self.replicas.load().is_empty() {
                self.kick.notify_one();
            }
            match matching {
                Some(until) => {
                    let _ = tokio::time::timeout_at(until, notified).await;
                }
                None => notified.await,
            }
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
    p2c_by(replicas.len(), |k| replicas[k].as_ref(), rng)
}

/// [`reserve_p2c`] among the replicas at `among`: returns the index (into `replicas`) reserved.
fn reserve_p2c_among<R: AsRef<Load>>(
    replicas: &[R],
    among: &[usize],
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    p2c_by(among.len(), |k| replicas[among[k]].as_ref(), rng).map(|k| among[k])
}

/// Power of two choices over `n` loads.
fn p2c_by<'a>(
    n: usize,
    load: impl Fn(usize) -> &'a Load,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    match n {
        0 => None,
        1 => load(0).try_reserve().then_some(0),
        _ => {
            let a = rng.usize(..n);
            let mut b = rng.usize(..n - 1);
            if b >= a {
                b += 1;
            }
            let (first, second) = if load(a).ongoing() <= load(b).ongoing() {
                (a, b)
            } else {
                (b, a)
            };
            if load(first).try_reserve() {
                return Some(first);
            }
            if load(second).try_reserve() {
                return Some(second);
            }
            let start = rng.usize(..n);
            (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| i != a && i != b)
                .find(|&i| load(i).try_reserve())
        }
    }
}

/// A replica for a request that names a multiplexed model, as Ray Serve's router picks one: the
/// less loaded of the replicas that hold the model; while `matching`, none if they are all
/// full (the request waits for one of them); else, or when no replica holds it, the less loaded
/// of the replicas with room for one more model, then of all (the one picked loads it, and
/// counts as holding it from now: a burst of requests for a new model follows the first).
fn reserve_for_model<R: Routed>(
    replicas: &[Arc<R>],
    model: &str,
    matching: bool,
    rng: &mut fastrand::Rng,
) -> Option<usize> {
    let holders: Vec<usize> = (0..replicas.len())
        .filter(|&i| replicas[i].models().is_some_and(|m| m.holds(model)))
        .collect();
    if !holders.is_empty() {
        if let Some(i) = reserve_p2c_among(replicas, &holders, rng) {
            return Some(i);
        }
        if matching {
            return None;
        }
    }
    let roomy: Vec<usize> = (0..replicas.len())
        .filter(|&i| replicas[i].models().is_some_and(|m| m.has_room()))
        .collect();
    let i = reserve_p2c_among(replicas, &roomy, rng).or_else(|| reserve_p2c(replicas, rng))?;
    if let Some(models) = replicas[i].models() {
        models.expect(model);
    }
    Some(i)
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

    /// A replica that holds models, for [`reserve_for_model`].
    struct Holder {
        id: String,
        load: Load,
        models: crate::serving::models::ModelSet,
    }

    impl Routed for Holder {
        fn id(&self) -> &str {
            &self.id
        }
        fn load(&self) -> &Load {
            &self.load
        }
        fn models(&self) -> Option<&crate::serving::models::ModelSet> {
            Some(&self.models)
        }
    }

    /// Replicas of `max` slots with `busy` requests each, holding these models (2 at most).
    fn holders(spec: &[(u32, &[&str])], max: u32) -> Vec<Arc<Holder>> {
        spec.iter()
            .enumerate()
            .map(|(i, (busy, ids))| {
                let load = Load::new(max);
                for _ in 0..*busy {
                    assert!(load.try_reserve());
                }
                let models = crate::serving::models::ModelSet::default();
                models.set_max(2);
                models.hold(ids.iter().map(|id| Arc::from(*id)).collect());
                Arc::new(Holder {
                    id: format!("lora#{i}"),
                    load,
                    models,
                })
            })
            .collect()
    }

    #[test]
    fn a_model_goes_to_a_replica_that_holds_it_even_a_busier_one() {
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..50 {
            let rs = holders(&[(0, &["a", "b"]), (3, &["c"]), (0, &[])], 10);
            assert_eq!(reserve_for_model(&rs, "c", true, &mut rng), Some(1));
        }
    }

    #[test]
    fn when_the_holders_are_full_a_model_waits_then_goes_where_there_is_room() {
        let mut rng = fastrand::Rng::with_seed(4);
        let rs = holders(&[(1, &["a"]), (0, &["b", "c"]), (0, &["d"])], 1);
        // While matching, the request waits for the replica that holds `a`.
        assert_eq!(reserve_for_model(&rs, "a", true, &mut rng), None);
        // Past the matching timeout: the replica with room for another model (#2), not #1
        // whose cache is full.
        assert_eq!(reserve_for_model(&rs, "a", false, &mut rng), Some(2));
    }

    #[test]
    fn a_model_nobody_holds_goes_to_a_replica_with_room_for_it() {
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..50 {
            let rs = holders(&[(0, &["a", "b"]), (5, &["c"]), (0, &["d", "e"])], 10);
            assert_eq!(reserve_for_model(&rs, "z", true, &mut rng), Some(1));
        }
        // Every cache full: the less loaded of two.
        let rs = holders(&[(4, &["a", "b"]), (0, &["c", "d"])], 10);
        assert_eq!(reserve_for_model(&rs, "z", true, &mut rng), Some(1));
    }

    #[tokio::test]
    async fn a_queued_model_request_takes_its_holder_when_it_frees() {
        let router: Router<Holder> = Router::new("lora".into(), None, Arc::new(Notify::new()));
        let rs = holders(&[(0, &["a"]), (0, &["b"])], 1);
        router.set_replicas(rs.clone());
        let first = router.acquire(None, Some("a")).await.unwrap();
        assert_eq!(first.replica().id(), "lora#0");
        // `lora#1` is free, but does not hold `a`: the second request waits for `lora#0`.
        let second = router.acquire(None, Some("a"));
        tokio::pin!(second);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut second)
                .await
                .is_err()
        );
        drop(first);
        let second = tokio::time::timeout(Duration::from_millis(500), second)
            .await
            .expect("woken when the holder frees")
            .unwrap();
        assert_eq!(second.replica().id(), "lora#0");
    }

    /// Polls `fut` once: whether it is ready now.
    fn poll_once<F: Future + Unpin>(fut: &mut F) -> Option<F::Output> {
        let waker = futures::task::noop_waker();
        match std::pin::Pin::new(fut).poll(&mut std::task::Context::from_waker(&waker)) {
            std::task::Poll::Ready(out) => Some(out),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn queued_requests_are_served_first_come_first_served() {
        let router: Router<Holder> = Router::new("echo".into(), None, Arc::new(Notify::new()));
        router.set_replicas(holders(&[(0, &[])], 1));
        let held = router.acquire(None, None).await.unwrap();
        let mut a = Box::pin(router.acquire(None, None));
        let mut b = Box::pin(router.acquire(None, None));
        assert!(poll_once(&mut a).is_none() && poll_once(&mut b).is_none());
        assert_eq!(router.waiter.queued(), 2);

        // The freed place is `a`'s: a request that comes now queues behind `b`.
        drop(held);
        let mut late = Box::pin(router.acquire(None, None));
        assert!(
            poll_once(&mut late).is_none(),
            "the late request took a's place"
        );
        let a = poll_once(&mut a).expect("a is served first").unwrap();
        assert!(poll_once(&mut b).is_none() && poll_once(&mut late).is_none());
        drop(a);
        let b = poll_once(&mut b).expect("then b").unwrap();
        assert!(poll_once(&mut late).is_none());
        drop(b);
        assert!(poll_once(&mut late).expect("then the late one").is_ok());
        assert_eq!(router.waiter.queued(), 0);
    }

    #[tokio::test]
    async fn a_request_that_gives_up_passes_its_turn_on() {
        let router: Router<Holder> = Router::new("echo".into(), None, Arc::new(Notify::new()));
        router.set_replicas(holders(&[(0, &[])], 1));
        let held = router.acquire(None, None).await.unwrap();
        let mut a = Box::pin(router.acquire(None, None));
        assert!(poll_once(&mut a).is_none());
        drop(held);
        // `b` comes while `a` waits, so it waits its turn without looking; `a` then gives up
        // (its client left) with the free place unclaimed.
        let mut b = Box::pin(router.acquire(None, None));
        assert!(poll_once(&mut b).is_none());
        drop(a);
        let b = tokio::time::timeout(Duration::from_millis(500), b)
            .await
            .expect("b is woken when a gives up");
        assert!(b.is_ok());
    }
}
