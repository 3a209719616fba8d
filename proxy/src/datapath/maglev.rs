//! Maglev lookup tables for the kernel's consistent and weighted backend
//! choice (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, section 3.4), written out here so the table
//! the kernel reads is exactly what this file computes.
//!
//! Each backend gets a permutation of the [`MAGLEV_TABLE_SIZE`] entries
//! from two hashes of its address (`offset`, `skip`); backends take turns
//! claiming their next preferred free entry until the table is full. A
//! backend's turns are in proportion to its `load_balancing_weight`
//! (weighted Maglev: each round adds `weight` to a backend's credit and it
//! claims one entry per `max_weight` of credit), so its share of entries is
//! its weight share. Because a backend's permutation depends only on its own
//! address, removing one backend moves little more than that backend's own
//! entries.

use std::net::SocketAddr;

use sluice_ebpf::common::{MaglevTable, MAGLEV_TABLE_SIZE};

const SIZE: usize = MAGLEV_TABLE_SIZE as usize;

/// The table for `backends` (address, weight), in slot order: entry `i` is
/// the index in `backends` of the backend owning hash bucket `i`. Weight 0
/// counts as 1 (Envoy requires weights ≥ 1). `None` without backends.
pub fn build(backends: &[(SocketAddr, u32)]) -> Option<MaglevTable> {
    if backends.is_empty() {
        return None;
    }
    assert!(
        backends.len() <= usize::from(u16::MAX),
        "backend index must fit a u16"
    );
    let weights: Vec<u64> = backends
        .iter()
        .map(|(_, w)| u64::from((*w).max(1)))
        .collect();
    let max_weight = *weights.iter().max().expect("not empty");
    let permutations: Vec<(usize, usize)> = backends
        .iter()
        .map(|(address, _)| {
            let offset = hash(address, 0x5eed_0ff5) as usize % SIZE;
            let skip = hash(address, 0x5eed_5c1f) as usize % (SIZE - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0usize; backends.len()];
    let mut credit = vec![0u64; backends.len()];
    let mut owner: Vec<Option<u16>> = vec![None; SIZE];
    let mut filled = 0;
    loop {
        for (index, &(offset, skip)) in permutations.iter().enumerate() {
            credit[index] += weights[index];
            while credit[index] >= max_weight {
                credit[index] -= max_weight;
                // `next` never exceeds SIZE: the permutation visits every
                // entry once (SIZE is prime, 1 ≤ skip < SIZE), and the
                // table is not full, so a free entry is found.
                let entry = loop {
                    let candidate = (offset + next[index] * skip) % SIZE;
                    next[index] += 1;
                    if owner[candidate].is_none() {
                        break candidate;
                    }
                };
                owner[entry] = Some(index as u16);
                filled += 1;
                if filled == SIZE {
                    let mut table = MaglevTable {
                        backend_index: [0; SIZE],
                        pad: 0,
                    };
                    for (slot, owner) in table.backend_index.iter_mut().zip(owner) {
                        *slot = owner.expect("table is full");
                    }
                    return Some(table);
                }
            }
        }
    }
}

/// FNV-1a over the address bytes and port, then splitmix64's finalizer:
/// stable across builds and platforms (unlike `std`'s hasher).
fn hash(address: &SocketAddr, seed: u64) -> u64 {
    let mut bytes = Vec::with_capacity(18);
    match address.ip() {
        std::net::IpAddr::V4(ip) => bytes.extend_from_slice(&ip.octets()),
        std::net::IpAddr::V6(ip) => bytes.extend_from_slice(&ip.octets()),
    }
    bytes.extend_from_slice(&address.port().to_be_bytes());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for byte in bytes {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(count: usize, weight: impl Fn(usize) -> u32) -> Vec<(SocketAddr, u32)> {
        (0..count)
            .map(|i| {
                let address = format!("10.1.{}.{}:8080", i / 200, i % 200 + 1);
                (address.parse().unwrap(), weight(i))
            })
            .collect()
    }

    fn shares(table: &MaglevTable, count: usize) -> Vec<usize> {
        let mut shares = vec![0; count];
        for index in table.backend_index {
            shares[usize::from(index)] += 1;
        }
        shares
    }

    /// |entries − weight share × SIZE| for each backend.
    fn worst_deviation(backends: &[(SocketAddr, u32)]) -> f64 {
        let table = build(backends).unwrap();
        let total: u32 = backends.iter().map(|(_, w)| w).sum();
        shares(&table, backends.len())
            .iter()
            .zip(backends)
            .map(|(&got, (_, w))| {
                (got as f64 - SIZE as f64 * f64::from(*w) / f64::from(total)).abs()
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn equal_weights_split_the_table_evenly() {
        for count in [1, 2, 3, 7, 16, 100, 256] {
            let deviation = worst_deviation(&backends(count, |_| 1));
            // Every round gives each backend one entry: counts differ by ≤ 1.
            assert!(deviation <= 1.0, "{count} backends: off by {deviation}");
        }
    }

    #[test]
    fn weighted_backends_get_their_weight_share() {
        for weights in [vec![3, 1], vec![1, 2, 5], vec![100, 1], vec![10, 10, 1, 7]] {
            let list = backends(weights.len(), |i| weights[i]);
            let deviation = worst_deviation(&list);
            // Within one round's claims (≤ len entries) of the exact share.
            assert!(
                deviation <= weights.len() as f64,
                "{weights:?}: off by {deviation} entries"
            );
        }
    }

    #[test]
    fn weight_zero_counts_as_one() {
        let table = build(&backends(2, |i| i as u32)).unwrap();
        let shares = shares(&table, 2);
        assert!(shares[0].abs_diff(shares[1]) <= 1, "{shares:?}");
    }

    #[test]
    fn no_backends_no_table() {
        assert!(build(&[]).is_none());
    }

    #[test]
    fn the_table_depends_only_on_the_input() {
        let list = backends(5, |i| i as u32 + 1);
        assert_eq!(build(&list), build(&list));
    }

    #[test]
    fn removing_one_backend_moves_little_more_than_its_entries() {
        let before_list = backends(10, |_| 1);
        let before = build(&before_list).unwrap();
        let removed = 4;
        let after_list: Vec<_> = before_list
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, b)| *b)
            .collect();
        let after = build(&after_list).unwrap();
        let owner_before = |entry: usize| before_list[usize::from(before.backend_index[entry])].0;
        let owner_after = |entry: usize| after_list[usize::from(after.backend_index[entry])].0;
        let own = (0..SIZE)
            .filter(|&e| usize::from(before.backend_index[e]) == removed)
            .count();
        let moved_others = (0..SIZE)
            .filter(|&e| usize::from(before.backend_index[e]) != removed)
            .filter(|&e| owner_before(e) != owner_after(e))
            .count();
        // The removed backend's ~1/10 must move; of the other 9/10 only a
        // few percent may (the paper reports the same order).
        assert!((90..=115).contains(&own), "removed backend owned {own}");
        assert!(
            moved_others * 100 <= SIZE * 5,
            "{moved_others} of {SIZE} entries moved between surviving backends"
        );
    }

    #[test]
    fn ipv6_backends_get_tables_too() {
        let list: Vec<(SocketAddr, u32)> = vec![
            ("[::1]:8080".parse().unwrap(), 1),
            ("[::1]:8081".parse().unwrap(), 1),
        ];
        let shares = shares(&build(&list).unwrap(), 2);
        assert!(shares[0].abs_diff(shares[1]) <= 1, "{shares:?}");
    }
}
