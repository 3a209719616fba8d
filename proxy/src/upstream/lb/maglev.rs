//! MAGLEV consistent hashing as Envoy builds it: each host walks its own
//! permutation of the table (offset = xxHash64(address) mod size,
//! skip = xxHash64(address, seed 1) mod (size − 1) + 1) and claims the next
//! free slot in turn; a host of lower normalized weight takes a turn less
//! often. The table size must be prime so every permutation covers the
//! table. Hosts are ordered by address first, so the table does not depend
//! on the order DNS returned them in.

use xxhash_rust::xxh64::xxh64;

pub const DEFAULT_TABLE_SIZE: u64 = 65537;
/// Envoy's upper bound for `maglev_lb_config.table_size`.
pub(crate) const MAX_TABLE_SIZE: u64 = 5_000_011;

#[derive(Debug)]
pub(crate) struct MaglevTable {
    /// Host index per slot; empty when there are no hosts.
    slots: Vec<u32>,
}

struct BuildEntry {
    index: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target_weight: f64,
    next: u64,
}

pub(crate) fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

impl MaglevTable {
    /// `table_size` must be prime (validated at config compile time).
    pub(crate) fn new(hosts: &[(String, u32)], table_size: u64) -> MaglevTable {
        if hosts.is_empty() {
            return MaglevTable { slots: Vec::new() };
        }
        let max_weight = hosts.iter().map(|(_, w)| *w).max().unwrap_or(1) as f64;
        let mut order: Vec<usize> = (0..hosts.len()).collect();
        order.sort_by(|a, b| hosts[*a].0.cmp(&hosts[*b].0));
        let mut entries: Vec<BuildEntry> = order
            .into_iter()
            .map(|index| {
                let key = hosts[index].0.as_bytes();
                BuildEntry {
                    index: index as u32,
                    offset: xxh64(key, 0) % table_size,
                    skip: xxh64(key, 1) % (table_size - 1) + 1,
                    weight: hosts[index].1 as f64 / max_weight,
                    target_weight: 0.0,
                    next: 0,
                }
            })
            .collect();
        let mut slots = vec![u32::MAX; table_size as usize];
        let mut filled = 0u64;
        let mut iteration = 0u64;
        while filled < table_size {
            for entry in entries.iter_mut() {
                if (iteration as f64) * entry.weight < entry.target_weight {
                    continue;
                }
                entry.target_weight += 1.0;
                let mut slot = permutation(entry, table_size);
                while slots[slot] != u32::MAX {
                    entry.next += 1;
                    slot = permutation(entry, table_size);
                }
                slots[slot] = entry.index;
                entry.next += 1;
                filled += 1;
                if filled == table_size {
                    break;
                }
            }
            iteration += 1;
        }
        MaglevTable { slots }
    }

    pub(crate) fn lookup(&self, hash: u64) -> usize {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[(hash % self.slots.len() as u64) as usize] as usize
    }
}

fn permutation(entry: &BuildEntry, table_size: u64) -> usize {
    ((entry.offset as u128 + entry.skip as u128 * entry.next as u128) % table_size as u128) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: usize) -> Vec<(String, u32)> {
        (0..n).map(|i| (format!("10.0.0.{i}:80"), 1)).collect()
    }

    fn counts(table: &MaglevTable, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for slot in &table.slots {
            counts[*slot as usize] += 1;
        }
        counts
    }

    #[test]
    fn primes() {
        assert!(is_prime(65537));
        assert!(is_prime(5_000_011));
        assert!(!is_prime(65536));
        assert!(!is_prime(1));
    }

    #[test]
    fn equal_hosts_split_the_table_evenly() {
        let table = MaglevTable::new(&hosts(3), DEFAULT_TABLE_SIZE);
        for count in counts(&table, 3) {
            assert!((21845..=21846).contains(&count), "{count}");
        }
    }

    #[test]
    fn weights_split_the_table_proportionally() {
        let weighted = vec![("a:1".to_string(), 1), ("b:1".to_string(), 3)];
        let table = MaglevTable::new(&weighted, 1009);
        let c = counts(&table, 2);
        assert!((c[1] as f64 / 1009.0 - 0.75).abs() < 0.01, "{c:?}");
    }

    #[test]
    fn host_order_does_not_matter() {
        let forward = hosts(4);
        let mut backward = forward.clone();
        backward.reverse();
        let a = MaglevTable::new(&forward, 1009);
        let b = MaglevTable::new(&backward, 1009);
        for hash in 0..1009u64 {
            assert_eq!(forward[a.lookup(hash)].0, backward[b.lookup(hash)].0);
        }
    }

    #[test]
    fn removing_a_host_remaps_about_its_share() {
        let all = hosts(5);
        let mut four = all.clone();
        four.remove(1);
        let before = MaglevTable::new(&all, DEFAULT_TABLE_SIZE);
        let after = MaglevTable::new(&four, DEFAULT_TABLE_SIZE);
        let mut moved = 0;
        for k in 0..10_000u64 {
            let hash = xxh64(&k.to_le_bytes(), 0);
            assert_eq!(before.lookup(hash), before.lookup(hash));
            if all[before.lookup(hash)].0 != four[after.lookup(hash)].0 {
                moved += 1;
            }
        }
        // The removed host's 20% must move; Maglev moves a little more.
        let share = moved as f64 / 10_000.0;
        assert!((0.18..0.30).contains(&share), "moved {share}");
    }
}
