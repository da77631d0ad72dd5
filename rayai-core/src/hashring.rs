//! Consistent hashing for sticky sessions: a session id maps to the same replica while the set of
//! replicas stays the same, and only about its share of sessions move when a replica comes or goes.
//!
//! The hash is written here (FNV-1a 64 with a final bit mix) so that it never changes with the
//! Rust release or a dependency: the same id lands on the same ring point in every build.

/// A hash ring over a set of members (replica ids), each placed at many points ("virtual nodes").
///
/// Lookups return indices into the members the ring was built from.
///
/// # Examples
///
/// ```
/// use rayai_core::hashring::HashRing;
///
/// let replicas = ["echo#a1", "echo#b2", "echo#c3"];
/// let ring = HashRing::new(&replicas, HashRing::DEFAULT_VNODES);
/// let first = ring.lookup("session-42").unwrap();
/// assert_eq!(ring.lookup("session-42"), Some(first));
///
/// // When the first choice is full: the others, each once, in ring order.
/// let order: Vec<usize> = ring.lookup_n("session-42").collect();
/// assert_eq!(order.len(), 3);
/// assert_eq!(order[0], first);
/// ```
#[derive(Debug, Clone)]
pub struct HashRing {
    /// `(hash, member index)`, sorted.
    points: Vec<(u64, usize)>,
    members: usize,
}

impl HashRing {
    /// The virtual nodes per member that spread keys evenly enough for a handful of replicas.
    pub const DEFAULT_VNODES: usize = 64;

    /// A ring over `members`, each at `vnodes_per_member` points (0 counts as 1).
    ///
    /// A member's points depend only on its id, so a key moves only when the member that owned
    /// it goes, or a new member's point comes before it. Equal ids share their points, and the
    /// first of them answers.
    pub fn new<I: AsRef<str>>(members: &[I], vnodes_per_member: usize) -> Self {
        let vnodes = vnodes_per_member.max(1);
        let mut points = Vec::with_capacity(members.len() * vnodes);
        for (index, member) in members.iter().enumerate() {
            let mut base = Hasher::new();
            base.write(member.as_ref().as_bytes());
            base.write(b"#");
            for vnode in 0..vnodes {
                let mut h = base;
                h.write(&(vnode as u64).to_le_bytes());
                points.push((h.finish(), index));
            }
        }
        points.sort_unstable();
        HashRing {
            points,
            members: members.len(),
        }
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members
    }

    /// Whether the ring has no members.
    pub fn is_empty(&self) -> bool {
        self.members == 0
    }

    /// The member that owns `key`: the first point at or after the key's hash, going round.
    /// `None` when the ring is empty.
    pub fn lookup(&self, key: &str) -> Option<usize> {
        let start = self.start(key)?;
        Some(self.points[start].1)
    }

    /// Every member once, in ring order from `key`: the owner first, then where its keys would
    /// go if it were gone, and so on. The order to try when the first choice is full.
    pub fn lookup_n<'a>(&'a self, key: &str) -> impl Iterator<Item = usize> + use<'a> {
        LookupN {
            ring: self,
            next: self.start(key).unwrap_or(0),
            steps: 0,
            found: 0,
            seen: Seen::new(self.members),
        }
    }

    /// The index of the first point at or after the key's hash, going round.
    fn start(&self, key: &str) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let mut h = Hasher::new();
        h.write(key.as_bytes());
        let hash = h.finish();
        let i = self.points.partition_point(|&(point, _)| point < hash);
        Some(if i == self.points.len() { 0 } else { i })
    }
}

/// Walks the ring from a key's point, yielding members not yet yielded.
struct LookupN<'a> {
    ring: &'a HashRing,
    next: usize,
    steps: usize,
    found: usize,
    seen: Seen,
}

impl Iterator for LookupN<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let points = &self.ring.points;
        while self.found < self.ring.members && self.steps < points.len() {
            let member = points[self.next].1;
            self.next = (self.next + 1) % points.len();
            self.steps += 1;
            if self.seen.insert(member) {
                self.found += 1;
                return Some(member);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Every member has a point, so the walk finds them all.
        let left = self.ring.members - self.found;
        (left, Some(left))
    }
}

/// The members a walk has yielded: a bit set, on the stack for up to 128 members.
struct Seen {
    small: u128,
    large: Vec<bool>,
}

impl Seen {
    fn new(members: usize) -> Self {
        Seen {
            small: 0,
            large: if members > 128 {
                vec![false; members]
            } else {
                Vec::new()
            },
        }
    }

    /// Marks `member` seen; whether it was new.
    fn insert(&mut self, member: usize) -> bool {
        if let Some(slot) = self.large.get_mut(member) {
            !std::mem::replace(slot, true)
        } else {
            let bit = 1u128 << member;
            let new = self.small & bit == 0;
            self.small |= bit;
            new
        }
    }
}

/// FNV-1a 64, finished with a 64-bit mix (MurmurHash3's `fmix64`) so that nearby inputs such as
/// `"replica#1"` and `"replica#2"` land far apart. Stable by construction.
#[derive(Clone, Copy)]
struct Hasher(u64);

impl Hasher {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    fn new() -> Self {
        Hasher(Self::OFFSET_BASIS)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    #[cfg(test)]
    fn fnv(&self) -> u64 {
        self.0
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: usize = 10_000;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("agent#replica-{i}")).collect()
    }

    fn keys() -> impl Iterator<Item = String> {
        (0..KEYS).map(|i| format!("session-{i}"))
    }

    /// The member id owning each key.
    fn owners(members: &[String]) -> Vec<String> {
        let ring = HashRing::new(members, HashRing::DEFAULT_VNODES);
        keys()
            .map(|k| members[ring.lookup(&k).unwrap()].clone())
            .collect()
    }

    #[test]
    fn the_hash_is_fnv1a_64_and_stable() {
        let fnv = |s: &str| {
            let mut h = Hasher::new();
            h.write(s.as_bytes());
            h.fnv()
        };
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv("foobar"), 0x8594_4171_f739_67e8);
        // Writing in pieces is writing the whole.
        let mut h = Hasher::new();
        h.write(b"foo");
        h.write(b"bar");
        assert_eq!(h.fnv(), fnv("foobar"));
        // The mix is a fixed function too: pin one value.
        assert_eq!(Hasher(0).finish(), 0);
        assert_ne!(h.finish(), h.fnv());
    }

    #[test]
    fn the_same_key_goes_to_the_same_member() {
        let members = ids(5);
        let a = HashRing::new(&members, HashRing::DEFAULT_VNODES);
        let b = HashRing::new(&members, HashRing::DEFAULT_VNODES);
        for k in keys().take(1000) {
            let m = a.lookup(&k).unwrap();
            assert_eq!(a.lookup(&k), Some(m));
            assert_eq!(b.lookup(&k), Some(m));
        }
    }

    #[test]
    fn adding_a_member_moves_about_its_share_of_keys_to_it() {
        let before = owners(&ids(4));
        let after = owners(&ids(5));
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                moved += 1;
                assert_eq!(a, "agent#replica-4", "a key moved between old members");
            }
        }
        let expected = KEYS / 5;
        assert!(moved > 0 && moved < 2 * expected, "moved {moved}");
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let all = ids(5);
        let mut rest = all.clone();
        let gone = rest.remove(2);
        let before = owners(&all);
        let after = owners(&rest);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if *b == gone {
                moved += 1;
            } else {
                assert_eq!(a, b, "a key of a remaining member moved");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn spreads_keys_evenly_over_four_members() {
        let members = ids(4);
        let ring = HashRing::new(&members, HashRing::DEFAULT_VNODES);
        let mut counts = [0usize; 4];
        for k in keys() {
            counts[ring.lookup(&k).unwrap()] += 1;
        }
        let even = KEYS / 4;
        for c in counts {
            assert!(
                c * 10 >= even * 7 && c * 10 <= even * 13,
                "{counts:?} is not within 30 % of {even} each"
            );
        }
    }

    #[test]
    fn an_empty_ring_has_no_owner() {
        let ring = HashRing::new::<&str>(&[], HashRing::DEFAULT_VNODES);
        assert!(ring.is_empty());
        assert_eq!(ring.lookup("k"), None);
        assert_eq!(ring.lookup_n("k").count(), 0);
    }

    #[test]
    fn lookup_n_yields_every_member_once_owner_first() {
        for n in [1, 2, 7, 130] {
            let members = ids(n);
            let ring = HashRing::new(&members, 8);
            assert_eq!(ring.len(), n);
            for k in keys().take(50) {
                let order: Vec<usize> = ring.lookup_n(&k).collect();
                assert_eq!(order.first().copied(), ring.lookup(&k));
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{k}");
            }
        }
    }

    #[test]
    fn lookup_n_falls_back_where_the_owners_keys_go_without_it() {
        let all = ids(5);
        let ring = HashRing::new(&all, HashRing::DEFAULT_VNODES);
        for k in keys().take(500) {
            let order: Vec<usize> = ring.lookup_n(&k).collect();
            let mut rest = all.clone();
            rest.remove(order[0]);
            let without = HashRing::new(&rest, HashRing::DEFAULT_VNODES);
            assert_eq!(rest[without.lookup(&k).unwrap()], all[order[1]]);
        }
    }

    #[test]
    fn zero_vnodes_counts_as_one() {
        let ring = HashRing::new(&["a", "b"], 0);
        assert!(ring.lookup("k").is_some());
        assert_eq!(ring.lookup_n("k").count(), 2);
    }
}
