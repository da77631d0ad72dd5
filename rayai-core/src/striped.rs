//! Counters that many threads add to without sharing a cache line.
//!
//! A request is counted in several places (the proxy's metrics, the router, the replica), and
//! with one `AtomicU64` each, every addition on one core takes the line from the core that
//! added last: on a busy server that costs more than the addition. [`Striped`] keeps one copy
//! of its counters per stripe, each stripe on cache lines of its own; a thread always adds to
//! the same stripe (given out in turn to the threads that count), and a read sums the stripes.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// `N` counters, striped so that threads adding to them at once do not contend.
///
/// # Examples
///
/// ```
/// use rayai_core::striped::Striped;
///
/// let counts = Striped::<2>::new();
/// counts.add(0, 3);
/// std::thread::scope(|s| {
///     s.spawn(|| counts.add(1, 1));
/// });
/// assert_eq!(counts.get(0), 3);
/// assert_eq!(counts.get(1), 1);
/// assert_eq!(counts.all(), [3, 1]);
/// ```
pub struct Striped<const N: usize> {
    stripes: Box<[Stripe<N>]>,
}

/// One copy of the counters, on cache lines no other stripe uses (128 bytes: the line and
/// the neighbour the prefetcher pairs with it).
#[repr(align(128))]
struct Stripe<const N: usize>([AtomicU64; N]);

impl<const N: usize> Striped<N> {
    /// `N` counters at zero.
    pub fn new() -> Self {
        Striped {
            stripes: (0..stripes())
                .map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
        }
    }

    /// This thread's stripe.
    fn mine(&self) -> &[AtomicU64; N] {
        &self.stripes[thread_stripe() & (self.stripes.len() - 1)].0
    }

    /// Adds `n` to counter `i` (wrapping).
    ///
    /// # Panics
    ///
    /// When `i >= N`.
    pub fn add(&self, i: usize, n: u64) {
        self.mine()[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts `n` from counter `i` (wrapping: a gauge read with [`Striped::get_signed`]).
    ///
    /// # Panics
    ///
    /// When `i >= N`.
    pub fn sub(&self, i: usize, n: u64) {
        self.mine()[i].fetch_sub(n, Ordering::Relaxed);
    }

    /// Counter `i` now: the sum over the stripes (wrapping).
    ///
    /// # Panics
    ///
    /// When `i >= N`.
    pub fn get(&self, i: usize) -> u64 {
        self.stripes.iter().fold(0u64, |sum, s| {
            sum.wrapping_add(s.0[i].load(Ordering::Relaxed))
        })
    }

    /// Counter `i` as a gauge that [`Striped::sub`] takes below zero.
    pub fn get_signed(&self, i: usize) -> i64 {
        self.get(i) as i64
    }

    /// Every counter now.
    pub fn all(&self) -> [u64; N] {
        let mut all = [0u64; N];
        for stripe in self.stripes.iter() {
            for (sum, c) in all.iter_mut().zip(&stripe.0) {
                *sum = sum.wrapping_add(c.load(Ordering::Relaxed));
            }
        }
        all
    }
}

impl<const N: usize> Default for Striped<N> {
    fn default() -> Self {
        Striped::new()
    }
}

impl<const N: usize> std::fmt::Debug for Striped<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.all()).finish()
    }
}

/// How many stripes a counter has: twice the cores, a power of two from 2 to 16 (the
/// threads that count are the server's workers and the replicas' threads).
fn stripes() -> usize {
    static STRIPES: OnceLock<usize> = OnceLock::new();
    *STRIPES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores * 2).next_power_of_two().clamp(2, 16)
    })
}

/// The stripe of the calling thread, given out in turn at its first count.
fn thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|stripe| match stripe.get() {
        usize::MAX => {
            let mine = NEXT.fetch_add(1, Ordering::Relaxed) % 16;
            stripe.set(mine);
            mine
        }
        mine => mine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_what_every_thread_added() {
        let counts = Striped::<3>::new();
        std::thread::scope(|s| {
            for t in 0..20u64 {
                let counts = &counts;
                s.spawn(move || {
                    for _ in 0..1000 {
                        counts.add(0, 1);
                        counts.add(2, t);
                    }
                });
            }
        });
        assert_eq!(counts.all(), [20_000, 0, 1000 * (0..20).sum::<u64>()]);
        assert_eq!(counts.get(0), 20_000);
    }

    #[test]
    fn a_gauge_taken_down_on_another_thread_reads_signed() {
        let gauge = Striped::<1>::new();
        gauge.add(0, 2);
        std::thread::scope(|s| {
            s.spawn(|| gauge.sub(0, 5));
        });
        assert_eq!(gauge.get_signed(0), -3);
        gauge.add(0, 3);
        assert_eq!(gauge.get_signed(0), 0);
    }

    #[test]
    fn stripes_are_a_power_of_two_on_their_own_lines() {
        let n = stripes();
        assert!(n.is_power_of_two() && (2..=16).contains(&n), "{n}");
        assert_eq!(std::mem::align_of::<Stripe<1>>(), 128);
    }
}
