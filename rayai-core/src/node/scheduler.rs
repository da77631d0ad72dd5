//! Placement: which replicas fit on the node, and which GPU ids each one gets.
//!
//! A [`Scheduler`] reserves CPUs, memory and GPUs for one replica at a time and hands back a
//! [`Reservation`], or a [`Shortfall`] that says what is missing. A [`crate::Plan`] (in
//! `plan.rs`) simulates a whole application before anything starts.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::resources::{NodeResources, Resources};
use crate::memory::format_memory;

/// Slack for comparing fractional amounts, so that 8 x 0.25 CPUs fit in 2.0.
pub(crate) const EPSILON: f64 = 1e-9;

/// Tells schedulers apart, so that one ignores another's reservations.
static NEXT_SCHEDULER: AtomicU64 = AtomicU64::new(0);

/// Places replicas on one node: tracks the CPUs, memory and GPU fractions reserved, and hands out
/// GPU ids.
///
/// CPUs and memory are reserved against the node's totals. A GPU request below 1 packs onto the
/// most used device that still has that fraction free (two 0.5 replicas share GPU 0; a third goes
/// to GPU 1). A request of 1 or more must be a whole number and takes that many fully free
/// devices, lowest ids first.
///
#[derive(Debug, Clone)]
pub(crate) struct Scheduler {
    node: NodeResources,
    /// This scheduler's identity, stamped on its reservations.
    instance: u64,
    next_id: u64,
    /// What each live reservation took, by id: the source of truth for releasing.
    held: BTreeMap<u64, Held>,
    cpus: f64,
    memory_bytes: u64,
    /// The fraction of each device in use, by position in `node.gpus`.
    gpu_used: Vec<f64>,
    /// Positions in `node.gpus`, by ascending id.
    by_id: Vec<usize>,
}

/// What one reservation took, as the scheduler recorded it.
#[derive(Debug, Clone)]
struct Held {
    cpus: f64,
    memory_bytes: u64,
    /// (position in `node.gpus`, fraction of that device).
    gpus: Vec<(usize, f64)>,
}

/// Resources reserved for one replica; give it back with [`Scheduler::release`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reservation {
    /// The deployment the replica belongs to.
    pub deployment: String,
    /// What the replica asked for.
    pub resources: Resources,
    /// The GPUs it may use (CUDA indices): one device for a fraction, `n` distinct ones for `n`
    /// whole GPUs, none without GPUs.
    pub gpu_ids: Vec<u32>,
    id: u64,
    scheduler: u64,
}

impl Scheduler {
    /// A scheduler for this node, with nothing reserved.
    pub fn new(node: NodeResources) -> Self {
        let mut by_id: Vec<usize> = (0..node.gpus.len()).collect();
        by_id.sort_by_key(|&i| node.gpus[i].id);
        Scheduler {
            gpu_used: vec![0.0; node.gpus.len()],
            by_id,
            node,
            instance: NEXT_SCHEDULER.fetch_add(1, Ordering::Relaxed),
            next_id: 0,
            held: BTreeMap::new(),
            cpus: 0.0,
            memory_bytes: 0,
        }
    }

    /// The node this scheduler places replicas on.
    pub fn node(&self) -> &NodeResources {
        &self.node
    }

    /// Reserves what one replica of `deployment` needs.
    ///
    /// # Errors
    ///
    /// A [`Shortfall`] naming the first resource that does not fit (checked in the order CPUs,
    /// memory, GPUs), or [`Shortfall::Invalid`] for a request no node could satisfy (a negative
    /// or non-finite amount, or a GPU count above 1 that is not whole). Nothing is reserved then.
    pub fn reserve(
        &mut self,
        deployment: &str,
        per_replica: &Resources,
    ) -> Result<Reservation, Shortfall> {
        check_request(per_replica)?;

        let free_cpus = self.node.num_cpus - self.cpus;
        if per_replica.num_cpus > free_cpus + EPSILON {
            return Err(Shortfall::Cpus {
                needed: per_replica.num_cpus,
                free: free_cpus.max(0.0),
                total: self.node.num_cpus,
            });
        }
        let free_memory = self.node.memory_bytes.saturating_sub(self.memory_bytes);
        if per_replica.memory_bytes > free_memory {
            return Err(Shortfall::Memory {
                needed: per_replica.memory_bytes,
                free: free_memory,
                total: self.node.memory_bytes,
            });
        }
        let gpus = self.place_gpus(per_replica.num_gpus)?;

        self.cpus += per_replica.num_cpus;
        self.memory_bytes += per_replica.memory_bytes;
        for &(device, fraction) in &gpus {
            self.gpu_used[device] += fraction;
        }
        let id = self.next_id;
        self.next_id += 1;
        let gpu_ids = gpus.iter().map(|&(i, _)| self.node.gpus[i].id).collect();
        self.held.insert(
            id,
            Held {
                cpus: per_replica.num_cpus,
                memory_bytes: per_replica.memory_bytes,
                gpus,
            },
        );
        Ok(Reservation {
            deployment: deployment.to_owned(),
            resources: *per_replica,
            gpu_ids,
            id,
            scheduler: self.instance,
        })
    }

    /// Chooses devices for a GPU request (already checked): `(position, fraction)` pairs.
    fn place_gpus(&self, num_gpus: f64) -> Result<Vec<(usize, f64)>, Shortfall> {
        if num_gpus == 0.0 {
            return Ok(Vec::new());
        }
        let total = self.node.gpus.len();
        if let Some(count) = whole_gpus(num_gpus) {
            let free: Vec<usize> = self
                .by_id
                .iter()
                .copied()
                .filter(|&i| self.gpu_used[i] <= EPSILON)
                .collect();
            if free.len() < count {
                return Err(Shortfall::Gpus {
                    needed: count as f64,
                    free: free.len() as f64,
                    total,
                });
            }
            return Ok(free[..count].iter().map(|&i| (i, 1.0)).collect());
        }
        // A fraction: best fit, the most used device that still has room; ties go to the lower id.
        let mut best: Option<usize> = None;
        for &i in &self.by_id {
            let fits = self.gpu_used[i] + num_gpus <= 1.0 + EPSILON;
            if fits && best.is_none_or(|b| self.gpu_used[i] > self.gpu_used[b]) {
                best = Some(i);
            }
        }
        match best {
            Some(i) => Ok(vec![(i, num_gpus)]),
            None => Err(Shortfall::Gpus {
                needed: num_gpus,
                free: self
                    .gpu_used
                    .iter()
                    .map(|used| (1.0 - used).max(0.0))
                    .fold(0.0, f64::max),
                total,
            }),
        }
    }

    /// Gives back exactly what `reservation` took.
    ///
    /// Releasing the same reservation again, or one made by another scheduler, does nothing.
    pub fn release(&mut self, reservation: &Reservation) {
        if reservation.scheduler != self.instance {
            tracing::debug!(
                deployment = %reservation.deployment,
                "ignoring a reservation made by another scheduler"
            );
            return;
        }
        if self.held.remove(&reservation.id).is_some() {
            // Recount from what is still held, so that rounding never accumulates.
            self.cpus = 0.0;
            self.memory_bytes = 0;
            self.gpu_used.iter_mut().for_each(|used| *used = 0.0);
            for held in self.held.values() {
                self.cpus += held.cpus;
                self.memory_bytes += held.memory_bytes;
                for &(device, fraction) in &held.gpus {
                    self.gpu_used[device] += fraction;
                }
            }
        }
    }

    /// How many more replicas of `per_replica` fit now, at most `cap`: computed from what is
    /// free, the same answer as reserving until it fails, without reserving anything.
    pub(crate) fn room(&self, per_replica: &Resources, cap: u32) -> u32 {
        if check_request(per_replica).is_err() {
            return 0;
        }
        let cap = f64::from(cap);
        let by_cpus = if per_replica.num_cpus > EPSILON {
            ((self.node.num_cpus - self.cpus + EPSILON) / per_replica.num_cpus).floor()
        } else {
            cap
        };
        let free_memory = self.node.memory_bytes.saturating_sub(self.memory_bytes);
        let by_memory = match free_memory.checked_div(per_replica.memory_bytes) {
            Some(n) => n as f64,
            None => cap,
        };
        let by_gpus = match (per_replica.num_gpus, whole_gpus(per_replica.num_gpus)) {
            (0.0, _) => cap,
            (_, Some(count)) => {
                let free = self
                    .gpu_used
                    .iter()
                    .filter(|&&used| used <= EPSILON)
                    .count();
                (free / count) as f64
            }
            (fraction, None) => self
                .gpu_used
                .iter()
                .map(|used| ((1.0 - used + EPSILON) / fraction).floor().max(0.0))
                .sum(),
        };
        by_cpus.min(by_memory).min(by_gpus).clamp(0.0, cap) as u32
    }

    /// What is reserved now: `(cpus, gpus, memory_bytes)`.
    pub fn reserved(&self) -> (f64, f64, u64) {
        (self.cpus, self.gpu_used.iter().sum(), self.memory_bytes)
    }
}

/// The number of whole GPUs a request of 1 or more stands for; `None` for a fraction below 1.
pub(crate) fn whole_gpus(num_gpus: f64) -> Option<usize> {
    let rounded = num_gpus.round();
    ((num_gpus - rounded).abs() <= EPSILON && rounded >= 1.0).then_some(rounded as usize)
}

/// Refuses requests that no node could satisfy.
pub(crate) fn check_request(per_replica: &Resources) -> Result<(), Shortfall> {
    let invalid = |field, value, reason| {
        Err(Shortfall::Invalid {
            field,
            value,
            reason,
        })
    };
    let Resources {
        num_cpus, num_gpus, ..
    } = *per_replica;
    if !(num_cpus.is_finite() && num_cpus >= 0.0) {
        return invalid(
            "num_cpus",
            num_cpus,
            "it must be a finite number, 0 or more",
        );
    }
    if !(num_gpus.is_finite() && num_gpus >= 0.0) {
        return invalid(
            "num_gpus",
            num_gpus,
            "it must be a finite number, 0 or more",
        );
    }
    if num_gpus > 1.0 + EPSILON && whole_gpus(num_gpus).is_none() {
        return invalid(
            "num_gpus",
            num_gpus,
            "above 1, GPUs are taken whole (1, 2, 3, ...)",
        );
    }
    Ok(())
}

/// Why a replica could not be placed: what it needs against what is free.
///
/// Its `Display` is one sentence, e.g. `needs 1.0 CPU but 0.5 of 2.0 are free`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Shortfall {
    /// Too few CPUs are free.
    Cpus {
        /// CPUs the replica asked for.
        needed: f64,
        /// CPUs not reserved yet.
        free: f64,
        /// The node's CPUs.
        total: f64,
    },
    /// Too little memory is free.
    Memory {
        /// Bytes the replica asked for.
        needed: u64,
        /// Bytes not reserved yet.
        free: u64,
        /// The node's memory.
        total: u64,
    },
    /// No GPU placement: for a fraction, no single device has that much free; for whole GPUs,
    /// too few devices are entirely free.
    Gpus {
        /// GPUs the replica asked for.
        needed: f64,
        /// For a fraction: the largest fraction free on any one device. For whole GPUs: the
        /// number of entirely free devices.
        free: f64,
        /// The node's GPU count.
        total: usize,
    },
    /// The request itself is not valid, whatever the node.
    Invalid {
        /// The offending field: `num_cpus` or `num_gpus`.
        field: &'static str,
        /// Its value.
        value: f64,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shortfall::Cpus {
                needed,
                free,
                total,
            } => write!(
                f,
                "needs {} CPU{} but {} of {} are free",
                amount(needed),
                if needed > 1.0 { "s" } else { "" },
                amount(free),
                amount(total)
            ),
            Shortfall::Memory {
                needed,
                free,
                total,
            } => write!(
                f,
                "needs {} of memory but {} of {} are free",
                format_memory(needed),
                format_memory(free),
                format_memory(total)
            ),
            Shortfall::Gpus {
                needed,
                free,
                total,
            } => {
                let plural = if needed > 1.0 { "s" } else { "" };
                match whole_gpus(needed) {
                    _ if total == 0 => {
                        write!(
                            f,
                            "needs {} GPU{plural} but the node has none",
                            short(needed)
                        )
                    }
                    Some(count) => write!(
                        f,
                        "needs {count} GPU{plural} but {} of {total} are free",
                        short(free)
                    ),
                    None => write!(
                        f,
                        "needs {} of one GPU but the freest of the {total} GPUs has {} free",
                        amount(needed),
                        amount(free)
                    ),
                }
            }
            Shortfall::Invalid {
                field,
                value,
                reason,
            } => write!(f, "{field} = {value} is not valid: {reason}"),
        }
    }
}

impl std::error::Error for Shortfall {}

/// A number for a sentence, at least one decimal: `1.0`, `0.25`, `0.3` (not `0.30000000000000004`).
pub(crate) fn amount(x: f64) -> String {
    let rounded = (x * 1000.0).round() / 1000.0 + 0.0; // `+ 0.0` turns -0.0 into 0.0
    format!("{rounded:?}")
}

/// A number for a table cell, no needless decimals: `1`, `0.25`.
pub(crate) fn short(x: f64) -> String {
    let rounded = (x * 1000.0).round() / 1000.0 + 0.0;
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::super::resources::Gpu;
    use super::*;

    const GIB: u64 = 1 << 30;

    fn req(num_cpus: f64, num_gpus: f64, memory_bytes: u64) -> Resources {
        Resources {
            num_cpus,
            num_gpus,
            memory_bytes,
        }
    }

    fn gpu(fraction: f64) -> Resources {
        req(0.0, fraction, 0)
    }

    fn node(cpus: f64, gpus: u32) -> NodeResources {
        NodeResources::new(cpus, 16 * GIB).with_gpus(gpus)
    }

    #[test]
    fn reserves_what_fits_and_counts_it() {
        let mut s = Scheduler::new(node(4.0, 0));
        let r = s.reserve("echo", &req(1.5, 0.0, 2 * GIB)).unwrap();
        assert_eq!(r.deployment, "echo");
        assert_eq!(r.resources, req(1.5, 0.0, 2 * GIB));
        assert!(r.gpu_ids.is_empty());
        assert_eq!(s.reserved(), (1.5, 0.0, 2 * GIB));
        assert_eq!(s.node().num_cpus, 4.0);
    }

    #[test]
    fn too_few_cpus_is_a_shortfall_that_says_so() {
        let mut s = Scheduler::new(node(2.0, 0));
        s.reserve("a", &req(1.5, 0.0, 0)).unwrap();
        let err = s.reserve("b", &req(1.0, 0.0, 0)).unwrap_err();
        assert_eq!(
            err,
            Shortfall::Cpus {
                needed: 1.0,
                free: 0.5,
                total: 2.0
            }
        );
        assert_eq!(err.to_string(), "needs 1.0 CPU but 0.5 of 2.0 are free");
        assert_eq!(s.reserved(), (1.5, 0.0, 0), "a refusal reserves nothing");
        let err = s.reserve("c", &req(3.0, 0.0, 0)).unwrap_err();
        assert_eq!(err.to_string(), "needs 3.0 CPUs but 0.5 of 2.0 are free");
    }

    #[test]
    fn too_little_memory_is_a_shortfall() {
        let mut s = Scheduler::new(NodeResources::new(8.0, 4 * GIB));
        s.reserve("a", &req(1.0, 0.0, 3 * GIB)).unwrap();
        let err = s.reserve("b", &req(1.0, 0.0, 2 * GIB)).unwrap_err();
        assert!(matches!(err, Shortfall::Memory { free, .. } if free == GIB));
        assert_eq!(
            err.to_string(),
            "needs 2.0GiB of memory but 1.0GiB of 4.0GiB are free"
        );
        s.reserve("c", &req(1.0, 0.0, GIB)).unwrap();
    }

    #[test]
    fn gpu_request_without_gpus_is_a_shortfall() {
        let mut s = Scheduler::new(node(8.0, 0));
        let err = s.reserve("llm", &gpu(1.0)).unwrap_err();
        assert_eq!(err.to_string(), "needs 1 GPU but the node has none");
        let err = s.reserve("llm", &gpu(0.5)).unwrap_err();
        assert_eq!(err.to_string(), "needs 0.5 GPU but the node has none");
    }

    #[test]
    fn no_gpu_request_gets_no_gpu_ids_on_a_gpu_node() {
        let mut s = Scheduler::new(node(8.0, 2));
        assert!(
            s.reserve("cpu", &req(1.0, 0.0, 0))
                .unwrap()
                .gpu_ids
                .is_empty()
        );
        assert_eq!(s.reserved().1, 0.0);
    }

    #[test]
    fn fractional_gpus_share_one_id_then_spill_to_the_next() {
        let mut s = Scheduler::new(node(8.0, 2));
        let ids: Vec<Vec<u32>> = (0..4)
            .map(|_| s.reserve("llm", &gpu(0.5)).unwrap().gpu_ids)
            .collect();
        assert_eq!(ids, [[0], [0], [1], [1]]);
        let err = s.reserve("llm", &gpu(0.5)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "needs 0.5 of one GPU but the freest of the 2 GPUs has 0.0 free"
        );
        assert_eq!(s.reserved().1, 2.0);
    }

    #[test]
    fn fractions_pack_onto_the_most_used_device_that_fits() {
        let mut s = Scheduler::new(node(8.0, 3));
        assert_eq!(s.reserve("a", &gpu(0.25)).unwrap().gpu_ids, [0]);
        assert_eq!(s.reserve("b", &gpu(0.5)).unwrap().gpu_ids, [0]);
        // GPU 0 has 0.25 left: too little for 0.5, which goes to the next device.
        assert_eq!(s.reserve("c", &gpu(0.5)).unwrap().gpu_ids, [1]);
        // 0.25 fits on both 0 (0.75 used) and 1 (0.5 used): the fuller one wins.
        assert_eq!(s.reserve("d", &gpu(0.25)).unwrap().gpu_ids, [0]);
        assert_eq!(s.reserve("e", &gpu(0.5)).unwrap().gpu_ids, [1]);
        // Whole GPUs only take entirely free devices.
        assert_eq!(s.reserve("f", &gpu(1.0)).unwrap().gpu_ids, [2]);
    }

    #[test]
    fn whole_gpus_get_distinct_ids_lowest_first() {
        let mut s = Scheduler::new(node(8.0, 4));
        assert_eq!(s.reserve("a", &gpu(2.0)).unwrap().gpu_ids, [0, 1]);
        assert_eq!(s.reserve("b", &gpu(1.0)).unwrap().gpu_ids, [2]);
        let err = s.reserve("c", &gpu(2.0)).unwrap_err();
        assert_eq!(err.to_string(), "needs 2 GPUs but 1 of 4 are free");
        assert_eq!(s.reserve("d", &gpu(1.0)).unwrap().gpu_ids, [3]);
    }

    #[test]
    fn a_partly_used_gpu_is_not_free_for_a_whole_request() {
        let mut s = Scheduler::new(node(8.0, 1));
        s.reserve("small", &gpu(0.1)).unwrap();
        assert!(matches!(
            s.reserve("big", &gpu(1.0)),
            Err(Shortfall::Gpus { free, .. }) if free == 0.0
        ));
    }

    #[test]
    fn gpu_ids_come_from_the_inventory_lowest_id_first() {
        let gpus = vec![Gpu::new(5, "b"), Gpu::new(3, "a")];
        let mut s = Scheduler::new(NodeResources::new(8.0, GIB).with_gpu_list(gpus));
        assert_eq!(s.reserve("x", &gpu(1.0)).unwrap().gpu_ids, [3]);
        assert_eq!(s.reserve("x", &gpu(1.0)).unwrap().gpu_ids, [5]);
    }

    #[test]
    fn one_and_a_half_gpus_is_refused_as_invalid() {
        let mut s = Scheduler::new(node(8.0, 4));
        let err = s.reserve("llm", &gpu(1.5)).unwrap_err();
        assert!(matches!(err, Shortfall::Invalid { field: "num_gpus", value, .. } if value == 1.5));
        assert!(
            err.to_string().starts_with("num_gpus = 1.5 is not valid"),
            "{err}"
        );
        assert_eq!(s.reserved(), (0.0, 0.0, 0));
        // Values a hair off a whole number still count as whole.
        assert_eq!(s.reserve("llm", &gpu(2.0 + 1e-12)).unwrap().gpu_ids, [0, 1]);
    }

    #[test]
    fn negative_or_nan_requests_are_invalid() {
        let mut s = Scheduler::new(node(8.0, 1));
        for bad in [req(-1.0, 0.0, 0), req(f64::NAN, 0.0, 0), req(1.0, -0.5, 0)] {
            assert!(
                matches!(s.reserve("x", &bad), Err(Shortfall::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            s.reserve("x", &gpu(f64::INFINITY)),
            Err(Shortfall::Invalid { .. })
        ));
    }

    #[test]
    fn release_then_reserve_gets_the_ids_back() {
        let mut s = Scheduler::new(node(2.0, 2));
        let a = s.reserve("a", &req(1.0, 1.0, GIB)).unwrap();
        let b = s.reserve("b", &req(1.0, 1.0, GIB)).unwrap();
        assert_eq!(
            (a.gpu_ids.as_slice(), b.gpu_ids.as_slice()),
            (&[0][..], &[1][..])
        );
        assert!(s.reserve("c", &req(1.0, 1.0, GIB)).is_err());
        s.release(&a);
        assert_eq!(s.reserved(), (1.0, 1.0, GIB));
        let c = s.reserve("c", &req(1.0, 1.0, GIB)).unwrap();
        assert_eq!(c.gpu_ids, [0]);
    }

    #[test]
    fn release_is_idempotent_and_returns_exactly_what_was_taken() {
        let mut s = Scheduler::new(node(1.0, 1));
        let a = s.reserve("a", &req(0.1, 0.1, 10)).unwrap();
        let b = s.reserve("b", &req(0.2, 0.2, 20)).unwrap();
        let mut tampered = b.clone();
        tampered.resources = req(0.9, 0.9, 90); // the scheduler's own record counts, not this
        s.release(&tampered);
        s.release(&b);
        assert_eq!(s.reserved(), (0.1, 0.1, 10));
        s.release(&a);
        s.release(&a);
        assert_eq!(
            s.reserved(),
            (0.0, 0.0, 0),
            "exactly zero, no rounding left over"
        );
    }

    #[test]
    fn another_schedulers_reservation_is_ignored() {
        let mut one = Scheduler::new(node(1.0, 0));
        let mut two = Scheduler::new(node(1.0, 0));
        let mine = one.reserve("a", &req(1.0, 0.0, 0)).unwrap();
        let theirs = two.reserve("a", &req(1.0, 0.0, 0)).unwrap();
        one.release(&theirs);
        assert_eq!(one.reserved().0, 1.0);
        one.release(&mine);
        assert_eq!(one.reserved().0, 0.0);
    }

    #[test]
    fn room_is_what_repeated_reservations_would_take() {
        let cases = [
            (node(2.0, 0), req(0.25, 0.0, 1 << 20)),
            (node(4.0, 0), req(1.0, 0.0, 3 << 30)),
            (node(8.0, 3), req(0.5, 0.3, 1 << 20)),
            (node(8.0, 4), req(0.5, 2.0, 1 << 20)),
            (node(8.0, 0), req(0.0, 0.0, 0)),
        ];
        for (node, per_replica) in cases {
            let mut scheduler = Scheduler::new(node);
            let _first = scheduler.reserve("a", &per_replica);
            let room = scheduler.room(&per_replica, 50);
            let mut taken = 0;
            while taken < 50 && scheduler.reserve("a", &per_replica).is_ok() {
                taken += 1;
            }
            assert_eq!(room, taken, "{per_replica:?}");
        }
    }

    #[test]
    fn eight_quarter_cpus_fit_in_two() {
        let mut s = Scheduler::new(node(2.0, 0));
        for _ in 0..8 {
            s.reserve("echo", &req(0.25, 0.0, 0)).unwrap();
        }
        assert!(s.reserve("echo", &req(0.25, 0.0, 0)).is_err());
        // 0.1 + 0.1 + 0.1 is 0.30000000000000004: the epsilon lets three fit in 0.3.
        let mut s = Scheduler::new(node(0.3, 0));
        for _ in 0..3 {
            s.reserve("tenth", &req(0.1, 0.0, 0)).unwrap();
        }
        // Ten 0.1 fractions fit on one GPU too.
        let mut s = Scheduler::new(node(8.0, 1));
        for _ in 0..10 {
            assert_eq!(s.reserve("tenth", &gpu(0.1)).unwrap().gpu_ids, [0]);
        }
    }

    #[test]
    fn many_deployments_share_a_node() {
        let mut s = Scheduler::new(NodeResources::new(8.0, 32 * GIB).with_gpus(2));
        let mut taken = Vec::new();
        for (name, count, per) in [
            ("echo", 4, req(0.25, 0.0, GIB / 4)),
            ("embed", 2, req(1.0, 0.5, 2 * GIB)),
            ("llm", 1, req(2.0, 1.0, 16 * GIB)),
            ("rerank", 2, req(0.5, 0.0, GIB)),
        ] {
            for _ in 0..count {
                taken.push(s.reserve(name, &per).unwrap());
            }
        }
        assert_eq!(s.reserved(), (6.0, 2.0, 23 * GIB));
        let ids: Vec<(&str, &[u32])> = taken
            .iter()
            .filter(|r| !r.gpu_ids.is_empty())
            .map(|r| (r.deployment.as_str(), r.gpu_ids.as_slice()))
            .collect();
        assert_eq!(
            ids,
            [("embed", &[0][..]), ("embed", &[0][..]), ("llm", &[1][..])]
        );
        assert!(s.reserve("more", &req(2.5, 0.0, 0)).is_err());
        for r in &taken {
            s.release(r);
        }
        assert_eq!(s.reserved(), (0.0, 0.0, 0));
    }
}
