//! Upstream hosts: one resolved address of a cluster with its weight,
//! locality, health flag, per-host counters (the ones `/clusters` prints)
//! and its connection pool.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use super::pool::{HostPool, PoolContext};

/// Where an endpoint is, from `locality` in the load assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Locality {
    pub region: String,
    pub zone: String,
    pub sub_zone: String,
}

/// Counters of one host, as Envoy keeps them per host.
#[derive(Debug, Default)]
pub struct HostStats {
    pub cx_total: AtomicU64,
    pub cx_active: AtomicI64,
    pub cx_connect_fail: AtomicU64,
    pub rq_total: AtomicU64,
    pub rq_active: AtomicI64,
    pub rq_success: AtomicU64,
    pub rq_error: AtomicU64,
    pub rq_timeout: AtomicU64,
}

impl HostStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn get_gauge(gauge: &AtomicI64) -> i64 {
        gauge.load(Ordering::Relaxed)
    }
}

/// One upstream host. Shared (`Arc`) between the host set, in-flight
/// requests and the pool's connections; a host that survives a DNS refresh
/// keeps its identity, counters and pooled connections.
#[derive(Debug)]
pub struct Host {
    address: SocketAddr,
    /// The configured `hostname`, or the DNS name the address came from.
    hostname: String,
    weight: u32,
    locality: Locality,
    /// The load assignment's `health_status` (UNHEALTHY/DRAINING/TIMEOUT → false).
    eds_healthy: bool,
    /// Active health checking / outlier detection verdict.
    healthy: AtomicBool,
    stats: Arc<HostStats>,
    pool: HostPool,
}

impl Host {
    pub(crate) fn new(
        address: SocketAddr,
        hostname: String,
        weight: u32,
        locality: Locality,
        eds_healthy: bool,
        pool: Arc<PoolContext>,
    ) -> Host {
        Host {
            address,
            hostname,
            weight,
            locality,
            eds_healthy,
            healthy: AtomicBool::new(true),
            stats: Arc::default(),
            pool: HostPool::new(pool),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The endpoint's `load_balancing_weight` (1 when unset).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    pub fn locality(&self) -> &Locality {
        &self.locality
    }

    /// Whether load balancing may pick this host. Every host is healthy
    /// until health checking or outlier detection says otherwise; after
    /// changing it, call [`super::UpstreamCluster::refresh_health`].
    pub fn is_healthy(&self) -> bool {
        self.eds_healthy && self.healthy.load(Ordering::Acquire)
    }

    /// Whether the load assignment marked this host healthy.
    pub fn eds_healthy(&self) -> bool {
        self.eds_healthy
    }

    /// Envoy's `health_flags` for `/clusters`: `healthy`, or the failures
    /// joined by `/` (`/failed_eds_health`).
    pub fn health_flags(&self) -> String {
        let mut flags = String::new();
        if !self.healthy.load(Ordering::Acquire) {
            flags.push_str("/failed_active_hc");
        }
        if !self.eds_healthy {
            flags.push_str("/failed_eds_health");
        }
        if flags.is_empty() {
            flags.push_str("healthy");
        }
        flags
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    pub(crate) fn stats_handle(&self) -> Arc<HostStats> {
        self.stats.clone()
    }

    /// The key consistent-hash balancers hash: Envoy's `address()->asString()`.
    pub(crate) fn hash_key(&self) -> String {
        self.address.to_string()
    }

    /// Active requests, for least-request balancing.
    pub(crate) fn active_requests(&self) -> i64 {
        self.stats.rq_active.load(Ordering::Relaxed)
    }

    pub(crate) fn pool(&self) -> &HostPool {
        &self.pool
    }

    /// Whether `other` describes the same endpoint (so it can be reused).
    pub(crate) fn same_endpoint(
        &self,
        address: SocketAddr,
        hostname: &str,
        weight: u32,
        locality: &Locality,
        eds_healthy: bool,
    ) -> bool {
        self.address == address
            && self.hostname == hostname
            && self.weight == weight
            && &self.locality == locality
            && self.eds_healthy == eds_healthy
    }
}
