//! ROUND_ROBIN: plain rotation when all weights are equal; otherwise
//! Envoy's earliest-deadline-first order (each host's n-th pick is due at
//! n / weight, ties in insertion order), precomputed for one period (the
//! weights divided by their gcd) so a pick is one atomic increment and an
//! array read.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest precomputed schedule; larger weight sums are scaled down
/// proportionally (each host keeps at least one slot).
const MAX_SCHEDULE_LEN: u64 = 1 << 16;

#[derive(Debug)]
pub(crate) struct RoundRobin {
    /// Host index per slot; empty when weights are equal (rotate over `len`).
    schedule: Vec<u32>,
    len: usize,
    next: AtomicU64,
}

impl RoundRobin {
    /// `start` offsets the first pick, so that many proxies with the same
    /// config do not all send their first request to the same host.
    pub(crate) fn new(weights: &[u32], start: u64) -> RoundRobin {
        let equal = weights.windows(2).all(|pair| pair[0] == pair[1]);
        let schedule = if equal {
            Vec::new()
        } else {
            edf_schedule(&scaled_weights(weights))
        };
        RoundRobin {
            schedule,
            len: weights.len(),
            next: AtomicU64::new(start),
        }
    }

    pub(crate) fn next(&self) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if self.schedule.is_empty() {
            (n % self.len.max(1) as u64) as usize
        } else {
            self.schedule[(n % self.schedule.len() as u64) as usize] as usize
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights reduced by their gcd and, if their sum is still above
/// `MAX_SCHEDULE_LEN`, scaled to fit.
fn scaled_weights(weights: &[u32]) -> Vec<u64> {
    let divisor = weights.iter().fold(0u64, |g, &w| gcd(g, w as u64)).max(1);
    let reduced: Vec<u64> = weights.iter().map(|&w| w as u64 / divisor).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SCHEDULE_LEN {
        return reduced;
    }
    reduced
        .iter()
        .map(|&w| ((w as u128 * MAX_SCHEDULE_LEN as u128) / total as u128).max(1) as u64)
        .collect()
}

/// One host's next deadline `picks / weight`, compared exactly; equal
/// deadlines pop in insertion order (`seq`), as in Envoy's EDF scheduler.
#[derive(Debug, PartialEq, Eq)]
struct Deadline {
    picks: u64,
    weight: u64,
    seq: u64,
    index: u32,
}

impl Ord for Deadline {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest deadline,
        // ties going to the entry inserted first.
        let lhs = self.picks as u128 * other.weight as u128;
        let rhs = other.picks as u128 * self.weight as u128;
        rhs.cmp(&lhs).then(other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Deadline {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

fn edf_schedule(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let mut heap: BinaryHeap<Deadline> = weights
        .iter()
        .enumerate()
        .map(|(index, &weight)| Deadline {
            picks: 1,
            weight,
            seq: index as u64,
            index: index as u32,
        })
        .collect();
    let mut schedule = Vec::with_capacity(total as usize);
    for seq in weights.len() as u64..weights.len() as u64 + total {
        let mut due = heap.pop().expect("schedule has hosts");
        schedule.push(due.index);
        due.picks += 1;
        due.seq = seq;
        heap.push(due);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::super::histogram;
    use super::*;

    #[test]
    fn equal_weights_rotate() {
        let rr = RoundRobin::new(&[1, 1, 1], 0);
        let picks: Vec<usize> = (0..6).map(|_| rr.next()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weights_split_picks_exactly_per_period() {
        let rr = RoundRobin::new(&[1, 2, 3], 7);
        assert_eq!(histogram(3, 600, || rr.next()), vec![100, 200, 300]);
    }

    #[test]
    fn weighted_order_follows_envoy_edf() {
        // Deadlines 0.2, 0.4, 0.6, 0.8 for the heavy host, then three ties at
        // 1.0 popped in insertion order.
        assert_eq!(edf_schedule(&[5, 1, 1]), vec![0, 0, 0, 0, 1, 2, 0]);
        assert_eq!(edf_schedule(&[1, 2]), vec![1, 0, 1]);
    }

    #[test]
    fn huge_weights_are_scaled_into_a_bounded_schedule() {
        let rr = RoundRobin::new(&[1_000_000, 3_000_001], 0);
        assert!(rr.schedule.len() as u64 <= MAX_SCHEDULE_LEN);
        let counts = histogram(2, 40_000, || rr.next());
        let share = counts[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.01, "{counts:?}");
    }

    #[test]
    fn single_host() {
        let rr = RoundRobin::new(&[4], 3);
        assert_eq!(rr.next(), 0);
        assert_eq!(rr.next(), 0);
    }
}
