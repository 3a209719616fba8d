//! RING_HASH (ketama-style consistent hashing) as Envoy builds it: each host
//! gets ring entries in proportion to its normalized weight, scaled so the
//! lightest host has at least its share of `minimum_ring_size` and the ring
//! stays within `maximum_ring_size`. Entry i of a host hashes
//! `"<address>_<i>"` with xxHash64 (seed 0); a request hash maps to the
//! first entry at or after it, wrapping around.

use xxhash_rust::xxh64::xxh64;

pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
pub const DEFAULT_MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
pub(crate) struct Ring {
    /// (hash, host index), sorted by hash.
    entries: Vec<(u64, u32)>,
}

impl Ring {
    pub(crate) fn new(hosts: &[(String, u32)], minimum_size: u64, maximum_size: u64) -> Ring {
        let total: f64 = hosts.iter().map(|(_, w)| *w as f64).sum();
        if hosts.is_empty() || total == 0.0 {
            return Ring {
                entries: Vec::new(),
            };
        }
        let min_normalized = hosts
            .iter()
            .map(|(_, w)| *w as f64 / total)
            .fold(f64::INFINITY, f64::min);
        let scale = ((min_normalized * minimum_size as f64).ceil() / min_normalized)
            .min(maximum_size as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        let mut current = 0.0f64;
        let mut target = 0.0f64;
        let mut key = String::new();
        for (index, (address, weight)) in hosts.iter().enumerate() {
            target += scale * (*weight as f64 / total);
            let mut i = 0u64;
            while current < target {
                key.clear();
                key.push_str(address);
                key.push('_');
                key.push_str(&i.to_string());
                entries.push((xxh64(key.as_bytes(), 0), index as u32));
                i += 1;
                current += 1.0;
            }
        }
        entries.sort_unstable();
        Ring { entries }
    }

    pub(crate) fn lookup(&self, hash: u64) -> usize {
        let at = self.entries.partition_point(|(h, _)| *h < hash);
        let entry = self.entries.get(at).or(self.entries.first());
        entry.map(|(_, index)| *index as usize).unwrap_or(0)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    #[test]
    fn ring_size_follows_minimum_and_weights() {
        assert_eq!(
            Ring::new(&hosts(4), 1024, DEFAULT_MAXIMUM_RING_SIZE).len(),
            1024
        );
        let weighted = vec![("a:1".to_string(), 1), ("b:1".to_string(), 3)];
        let ring = Ring::new(&weighted, 1024, DEFAULT_MAXIMUM_RING_SIZE);
        assert_eq!(ring.len(), 1024);
        let heavy = ring.entries.iter().filter(|(_, i)| *i == 1).count();
        assert_eq!(heavy, 768);
        // 3 hosts: 1024 / 3 rounds up to 342 entries each.
        assert_eq!(
            Ring::new(&hosts(3), 1024, DEFAULT_MAXIMUM_RING_SIZE).len(),
            1026
        );
        assert_eq!(Ring::new(&hosts(3), 1024, 100).len(), 100);
    }

    #[test]
    fn entries_hash_address_underscore_index() {
        let ring = Ring::new(&[("127.0.0.1:80".to_string(), 1)], 2, 8);
        let mut expected = vec![xxh64(b"127.0.0.1:80_0", 0), xxh64(b"127.0.0.1:80_1", 0)];
        expected.sort_unstable();
        let got: Vec<u64> = ring.entries.iter().map(|(h, _)| *h).collect();
        assert_eq!(got, expected);
        // A hash just above the last entry wraps to the first.
        assert_eq!(ring.lookup(u64::MAX), 0);
    }

    #[test]
    fn same_hash_same_host_and_removal_moves_few_keys() {
        let before = Ring::new(&hosts(5), 1024, DEFAULT_MAXIMUM_RING_SIZE);
        let mut four = hosts(5);
        four.remove(2);
        let after = Ring::new(&four, 1024, DEFAULT_MAXIMUM_RING_SIZE);
        let name = |set: &[(String, u32)], i: usize| set[i].0.clone();
        let all = hosts(5);
        let mut moved = 0;
        let keys = 10_000u64;
        for k in 0..keys {
            let hash = xxh64(&k.to_le_bytes(), 0);
            assert_eq!(before.lookup(hash), before.lookup(hash));
            let old = name(&all, before.lookup(hash));
            let new = name(&four, after.lookup(hash));
            if old != new {
                moved += 1;
            }
        }
        // The removed host's fifth must move; survivors also gain entries
        // (205 → 256 each), which moves a few more.
        let share = moved as f64 / keys as f64;
        assert!((0.15..0.35).contains(&share), "moved {share}");
    }

    #[test]
    fn distribution_is_roughly_even() {
        let ring = Ring::new(&hosts(4), 1024, DEFAULT_MAXIMUM_RING_SIZE);
        let mut counts = [0usize; 4];
        for k in 0..40_000u64 {
            counts[ring.lookup(xxh64(&k.to_le_bytes(), 7))] += 1;
        }
        for count in counts {
            assert!((7_000..13_000).contains(&count), "{counts:?}");
        }
    }
}
