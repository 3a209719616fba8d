//! Load balancers: given the host set of a cluster, pick one host per
//! request. Each balancer is built once per host-set change (ring, table,
//! schedule) and then picks lock-free: only atomics and reads of
//! immutable data on the request path.
//!
//! Every balancer returns an index into the host slice it was built over.

pub(crate) mod config;
mod least_request;
mod maglev;
mod ring_hash;
mod round_robin;

use std::sync::Arc;

use rand::Rng;

use super::host::Host;

pub use maglev::DEFAULT_TABLE_SIZE as MAGLEV_DEFAULT_TABLE_SIZE;
pub use ring_hash::{
    DEFAULT_MAXIMUM_RING_SIZE as RING_DEFAULT_MAXIMUM_SIZE,
    DEFAULT_MINIMUM_RING_SIZE as RING_DEFAULT_MINIMUM_SIZE,
};

/// The configured policy and its parameters (from `lb_policy` and `lb_config`).
#[derive(Debug, Clone, PartialEq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest {
        choice_count: u32,
        active_request_bias: f64,
    },
    Random,
    RingHash {
        minimum_ring_size: u64,
        maximum_ring_size: u64,
    },
    Maglev {
        table_size: u64,
    },
}

impl LbPolicy {
    /// Envoy's name for the policy (`ROUND_ROBIN`, …).
    pub fn name(&self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "ROUND_ROBIN",
            LbPolicy::LeastRequest { .. } => "LEAST_REQUEST",
            LbPolicy::Random => "RANDOM",
            LbPolicy::RingHash { .. } => "RING_HASH",
            LbPolicy::Maglev { .. } => "MAGLEV",
        }
    }
}

/// A balancer built for one host set.
#[derive(Debug)]
pub(crate) enum LoadBalancer {
    RoundRobin(round_robin::RoundRobin),
    LeastRequest(least_request::LeastRequest),
    Random,
    RingHash(ring_hash::Ring),
    Maglev(maglev::MaglevTable),
}

impl LoadBalancer {
    pub(crate) fn build(policy: &LbPolicy, hosts: &[Arc<Host>]) -> LoadBalancer {
        match policy {
            LbPolicy::RoundRobin => LoadBalancer::RoundRobin(round_robin::RoundRobin::new(
                &weights(hosts),
                rand::rng().random(),
            )),
            LbPolicy::LeastRequest {
                choice_count,
                active_request_bias,
            } => LoadBalancer::LeastRequest(least_request::LeastRequest::new(
                &weights(hosts),
                *choice_count,
                *active_request_bias,
            )),
            LbPolicy::Random => LoadBalancer::Random,
            LbPolicy::RingHash {
                minimum_ring_size,
                maximum_ring_size,
            } => LoadBalancer::RingHash(ring_hash::Ring::new(
                &keys_and_weights(hosts),
                *minimum_ring_size,
                *maximum_ring_size,
            )),
            LbPolicy::Maglev { table_size } => LoadBalancer::Maglev(maglev::MaglevTable::new(
                &keys_and_weights(hosts),
                *table_size,
            )),
        }
    }

    /// Picks the index of a host in `hosts` (the slice this balancer was
    /// built over); `None` only when `hosts` is empty. Hash-based balancers
    /// use `hash`, or a random value when the request has none (as Envoy).
    pub(crate) fn choose(&self, hosts: &[Arc<Host>], hash: Option<u64>) -> Option<usize> {
        if hosts.is_empty() {
            return None;
        }
        let index = match self {
            LoadBalancer::RoundRobin(rr) => rr.next(),
            LoadBalancer::LeastRequest(lr) => {
                lr.choose(|i| hosts[i].active_requests(), &mut rand::rng())
            }
            // Envoy's RANDOM ignores endpoint weights.
            LoadBalancer::Random => rand::rng().random_range(0..hosts.len()),
            LoadBalancer::RingHash(ring) => {
                ring.lookup(hash.unwrap_or_else(|| rand::rng().random()))
            }
            LoadBalancer::Maglev(table) => {
                table.lookup(hash.unwrap_or_else(|| rand::rng().random()))
            }
        };
        Some(index)
    }
}

fn weights(hosts: &[Arc<Host>]) -> Vec<u32> {
    hosts.iter().map(|host| host.weight().max(1)).collect()
}

fn keys_and_weights(hosts: &[Arc<Host>]) -> Vec<(String, u32)> {
    hosts
        .iter()
        .map(|host| (host.hash_key(), host.weight().max(1)))
        .collect()
}

/// Counts how often each index is chosen in `picks` calls (test helper).
#[cfg(test)]
pub(crate) fn histogram(n: usize, picks: usize, mut choose: impl FnMut() -> usize) -> Vec<usize> {
    let mut counts = vec![0; n];
    for _ in 0..picks {
        counts[choose()] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Store;
    use crate::upstream::host::Locality;
    use crate::upstream::pool::{PoolContext, UpstreamProtocol};
    use crate::upstream::stats::ClusterStats;
    use std::time::Duration;

    fn hosts(n: u16) -> Vec<Arc<Host>> {
        let ports: Vec<(u16, u32)> = (0..n).map(|i| (4000 + i, 1)).collect();
        hosts_at(&ports)
    }

    fn hosts_at(ports_and_weights: &[(u16, u32)]) -> Vec<Arc<Host>> {
        let context = Arc::new(PoolContext {
            protocol: UpstreamProtocol::Http1,
            connect_timeout: Duration::from_secs(1),
            idle_timeout: None,
            max_requests_per_connection: None,
            stats: Arc::new(ClusterStats::new(&Store::new(), "t")),
        });
        ports_and_weights
            .iter()
            .map(|(port, weight)| {
                let address = format!("127.0.0.1:{port}").parse().unwrap();
                Arc::new(Host::new(
                    address,
                    String::new(),
                    *weight,
                    Locality::default(),
                    true,
                    context.clone(),
                ))
            })
            .collect()
    }

    #[test]
    fn random_spreads_over_every_host() {
        let hosts = hosts(4);
        let lb = LoadBalancer::build(&LbPolicy::Random, &hosts);
        let counts = histogram(4, 4000, || lb.choose(&hosts, None).unwrap());
        for count in counts {
            assert!((700..1300).contains(&count), "{count}");
        }
    }

    #[test]
    fn hash_balancers_without_a_hash_pick_randomly() {
        let hosts = hosts(4);
        for policy in [
            LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: RING_DEFAULT_MAXIMUM_SIZE,
            },
            LbPolicy::Maglev { table_size: 1009 },
        ] {
            let lb = LoadBalancer::build(&policy, &hosts);
            let counts = histogram(4, 2000, || lb.choose(&hosts, None).unwrap());
            assert!(counts.iter().all(|c| *c > 200), "{policy:?}: {counts:?}");
            let pinned = lb.choose(&hosts, Some(42));
            assert!((0..10).all(|_| lb.choose(&hosts, Some(42)) == pinned));
        }
    }

    #[test]
    fn least_request_picks_the_idle_host_of_two() {
        let hosts = hosts(2);
        hosts[0]
            .stats()
            .rq_active
            .store(5, std::sync::atomic::Ordering::Relaxed);
        let policy = LbPolicy::LeastRequest {
            choice_count: 2,
            active_request_bias: 1.0,
        };
        let lb = LoadBalancer::build(&policy, &hosts);
        let counts = histogram(2, 1000, || lb.choose(&hosts, None).unwrap());
        // Host 1 wins unless both draws land on host 0 (1/4 of the time).
        assert!((650..850).contains(&counts[1]), "{counts:?}");
    }

    /// Which host Envoy 1.40 sent `x-key: kN` to (route `hash_policy` on the
    /// header, so the request hash is xxHash64 of the value), for a
    /// RING_HASH cluster of 127.0.0.1:18101, :18102 (weight 2), :18103 and a
    /// MAGLEV cluster of :18103, :18101 (weight 3), :18102, :18104.
    const ENVOY_PICKS: [(&str, u16, u16); 40] = [
        ("k1", 18102, 18102),
        ("k2", 18102, 18102),
        ("k3", 18103, 18101),
        ("k4", 18103, 18101),
        ("k5", 18101, 18101),
        ("k6", 18102, 18103),
        ("k7", 18102, 18101),
        ("k8", 18102, 18104),
        ("k9", 18102, 18102),
        ("k10", 18103, 18101),
        ("k11", 18102, 18103),
        ("k12", 18102, 18103),
        ("k13", 18102, 18101),
        ("k14", 18102, 18103),
        ("k15", 18102, 18101),
        ("k16", 18102, 18101),
        ("k17", 18102, 18102),
        ("k18", 18102, 18103),
        ("k19", 18102, 18101),
        ("k20", 18102, 18101),
        ("k21", 18102, 18104),
        ("k22", 18101, 18101),
        ("k23", 18101, 18101),
        ("k24", 18103, 18104),
        ("k25", 18102, 18104),
        ("k26", 18102, 18103),
        ("k27", 18102, 18102),
        ("k28", 18102, 18101),
        ("k29", 18102, 18101),
        ("k30", 18103, 18103),
        ("k31", 18102, 18103),
        ("k32", 18102, 18103),
        ("k33", 18102, 18101),
        ("k34", 18102, 18101),
        ("k35", 18101, 18101),
        ("k36", 18103, 18104),
        ("k37", 18102, 18101),
        ("k38", 18103, 18101),
        ("k39", 18102, 18101),
        ("k40", 18103, 18102),
    ];

    #[test]
    fn ring_hash_and_maglev_pick_the_hosts_envoy_picks() {
        let ring_hosts = hosts_at(&[(18101, 1), (18102, 2), (18103, 1)]);
        let ring = LoadBalancer::build(
            &LbPolicy::RingHash {
                minimum_ring_size: 1024,
                maximum_ring_size: RING_DEFAULT_MAXIMUM_SIZE,
            },
            &ring_hosts,
        );
        let maglev_hosts = hosts_at(&[(18103, 1), (18101, 3), (18102, 1), (18104, 1)]);
        let maglev = LoadBalancer::build(
            &LbPolicy::Maglev {
                table_size: MAGLEV_DEFAULT_TABLE_SIZE,
            },
            &maglev_hosts,
        );
        for (key, ring_port, maglev_port) in ENVOY_PICKS {
            let hash = xxhash_rust::xxh64::xxh64(key.as_bytes(), 0);
            let picked = ring.choose(&ring_hosts, Some(hash)).unwrap();
            assert_eq!(ring_hosts[picked].address().port(), ring_port, "ring {key}");
            let picked = maglev.choose(&maglev_hosts, Some(hash)).unwrap();
            assert_eq!(
                maglev_hosts[picked].address().port(),
                maglev_port,
                "maglev {key}"
            );
        }
    }

    #[test]
    fn no_hosts_no_pick() {
        let lb = LoadBalancer::build(&LbPolicy::RoundRobin, &[]);
        assert_eq!(lb.choose(&[], None), None);
    }
}
