//! LEAST_REQUEST. Equal weights: Envoy's power of `choice_count` random
//! choices, keeping the candidate with the fewest active requests. Unequal
//! weights: Envoy weighs each host by `weight / (active + 1)^bias`
//! (`active_request_bias`, default 1.0); Envoy walks an EDF schedule of
//! those weights, here each pick draws from the same proportions directly
//! (weighted random over the current effective weights, O(hosts)).

use rand::Rng;

#[derive(Debug)]
pub(crate) struct LeastRequest {
    weights: Vec<u32>,
    equal_weights: bool,
    choice_count: u32,
    active_request_bias: f64,
}

impl LeastRequest {
    pub(crate) fn new(weights: &[u32], choice_count: u32, active_request_bias: f64) -> Self {
        LeastRequest {
            weights: weights.to_vec(),
            equal_weights: weights.windows(2).all(|pair| pair[0] == pair[1]),
            choice_count: choice_count.max(1),
            active_request_bias,
        }
    }

    /// `active(i)` reads host i's active request count.
    pub(crate) fn choose(&self, active: impl Fn(usize) -> i64, rng: &mut impl Rng) -> usize {
        let n = self.weights.len();
        if self.equal_weights {
            let mut best = rng.random_range(0..n);
            let mut best_active = active(best);
            for _ in 1..self.choice_count {
                let candidate = rng.random_range(0..n);
                let candidate_active = active(candidate);
                if candidate_active < best_active {
                    best = candidate;
                    best_active = candidate_active;
                }
            }
            return best;
        }
        // Two passes instead of a buffer: counts may move in between, which
        // only shifts the draw slightly (the last host absorbs any rest).
        let effective = |i: usize| {
            let load = (active(i).max(0) as f64 + 1.0).powf(self.active_request_bias);
            self.weights[i] as f64 / load
        };
        let total: f64 = (0..n).map(effective).sum();
        if !(total.is_finite() && total > 0.0) {
            return rng.random_range(0..n);
        }
        let mut point = rng.random_range(0.0..total);
        for i in 0..n {
            let weight = effective(i);
            if point < weight {
                return i;
            }
            point -= weight;
        }
        n - 1
    }
}

#[cfg(test)]
mod tests {
    use super::super::histogram;
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn prefers_idle_hosts() {
        let lr = LeastRequest::new(&[1, 1, 1, 1], 2, 1.0);
        let active = [10, 10, 0, 10];
        let mut rng = StdRng::seed_from_u64(1);
        let counts = histogram(4, 4000, || lr.choose(|i| active[i], &mut rng));
        // Host 2 wins whenever it is one of the two candidates: 1 - (3/4)^2.
        let share = counts[2] as f64 / 4000.0;
        assert!((share - 0.4375).abs() < 0.04, "{counts:?}");
    }

    #[test]
    fn more_choices_find_the_idle_host_more_often() {
        let lr = LeastRequest::new(&[1; 8], 8, 1.0);
        let active = [5, 5, 5, 5, 5, 5, 5, 0];
        let mut rng = StdRng::seed_from_u64(2);
        let counts = histogram(8, 2000, || lr.choose(|i| active[i], &mut rng));
        assert!(counts[7] > 1300, "{counts:?}");
    }

    #[test]
    fn idle_weighted_hosts_share_by_weight() {
        let lr = LeastRequest::new(&[1, 3], 2, 1.0);
        let mut rng = StdRng::seed_from_u64(3);
        let counts = histogram(2, 8000, || lr.choose(|_| 0, &mut rng));
        let share = counts[1] as f64 / 8000.0;
        assert!((share - 0.75).abs() < 0.03, "{counts:?}");
    }

    #[test]
    fn weighted_hosts_are_discounted_by_load() {
        // weight 3 with 2 active → 3/3 = 1, same as weight 1 idle → 50/50.
        let lr = LeastRequest::new(&[1, 3], 2, 1.0);
        let active = [0, 2];
        let mut rng = StdRng::seed_from_u64(4);
        let counts = histogram(2, 8000, || lr.choose(|i| active[i], &mut rng));
        let share = counts[1] as f64 / 8000.0;
        assert!((share - 0.5).abs() < 0.03, "{counts:?}");
    }
}
