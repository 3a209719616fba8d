//! A live upstream cluster: its current host set (an immutable snapshot,
//! swapped atomically, with a version channel for subscribers such as the
//! kernel datapath), host selection through the load balancer, and sending
//! requests / opening TCP connections through the hosts' pools.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use http::{Request, Response};
use tokio::sync::watch;

use super::body::{ActiveRequest, ResponseSource, UpstreamBody};
use super::config::{
    compile_assignment, ClusterConfig, Discovery, EndpointAddress, EndpointConfig,
};
use super::connect::{connect, UpstreamTcpStream};
use super::dns;
use super::host::{Host, HostStats};
use super::lb::{LbPolicy, LoadBalancer};
use super::pool::{self, PoolContext, PooledResponse, UpstreamProtocol};
use super::stats::ClusterStats;
use super::UpstreamError;
use crate::http::body::Body;
use crate::stats::Store;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

/// One immutable snapshot of a cluster's hosts and the balancer built
/// over them.
#[derive(Debug)]
pub struct Membership {
    hosts: Vec<Arc<Host>>,
    /// The hosts the balancer picks from: the healthy ones, or all of them
    /// in panic mode (fewer healthy than `healthy_panic_threshold` percent).
    lb_hosts: Vec<Arc<Host>>,
    panic: bool,
    lb: LoadBalancer,
}

impl Membership {
    /// Every host, healthy or not, in configuration/resolution order.
    pub fn hosts(&self) -> &[Arc<Host>] {
        &self.hosts
    }

    pub fn healthy_count(&self) -> usize {
        self.hosts.iter().filter(|host| host.is_healthy()).count()
    }
}

/// An upstream cluster. Cheap to share (`Arc`); every method takes `&self`.
#[derive(Debug)]
pub struct UpstreamCluster {
    config: ClusterConfig,
    stats: Arc<ClusterStats>,
    pool_context: Arc<PoolContext>,
    membership: ArcSwap<Membership>,
    version: watch::Sender<u64>,
    initialized: watch::Sender<bool>,
    /// `initialized`, readable without a lock on the request path: until
    /// it is true the cluster is warming and routes treat it as absent
    /// (503 with NC, as Envoy does for a cluster that is still warming).
    warm: std::sync::atomic::AtomicBool,
    /// Per configured endpoint, the addresses of its last good resolution.
    last_resolved: Mutex<Vec<Vec<SocketAddr>>>,
    /// Added by CDS rather than the bootstrap (`added_via_api` in /clusters).
    added_via_api: bool,
}

impl UpstreamCluster {
    pub(crate) fn new(
        config: ClusterConfig,
        store: &Store,
        added_via_api: bool,
    ) -> UpstreamCluster {
        let stats = Arc::new(ClusterStats::new(store, &config.stat_name));
        let pool_context = Arc::new(PoolContext {
            protocol: config.protocol.protocol,
            connect_timeout: config.connect_timeout,
            idle_timeout: config.protocol.idle_timeout,
            max_requests_per_connection: config.protocol.max_requests_per_connection,
            stats: stats.clone(),
        });
        let empty = Membership {
            hosts: Vec::new(),
            lb_hosts: Vec::new(),
            panic: false,
            lb: LoadBalancer::build(&config.lb_policy, &[]),
        };
        let endpoint_count = config.endpoints.len();
        let cluster = UpstreamCluster {
            config,
            stats,
            pool_context,
            membership: ArcSwap::from_pointee(empty),
            version: watch::Sender::new(0),
            initialized: watch::Sender::new(false),
            warm: std::sync::atomic::AtomicBool::new(false),
            last_resolved: Mutex::new(vec![Vec::new(); endpoint_count]),
            added_via_api,
        };
        if cluster.config.discovery == Discovery::Static {
            let endpoints = cluster
                .config
                .endpoints
                .iter()
                .filter_map(|endpoint| match endpoint.address {
                    EndpointAddress::Ip(address) => Some((address, endpoint)),
                    EndpointAddress::Name(..) => None,
                })
                .map(|(address, endpoint)| resolved(address, endpoint))
                .collect();
            cluster.update_hosts(endpoints);
            cluster.mark_initialized();
        }
        cluster
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Envoy's `observability_name`: `alt_stat_name` when set, else the name.
    pub fn observability_name(&self) -> &str {
        &self.config.stat_name
    }

    pub fn discovery(&self) -> Discovery {
        self.config.discovery
    }

    /// For an EDS cluster, the `ClusterLoadAssignment` name it follows.
    pub fn eds_service_name(&self) -> Option<&str> {
        self.config.eds_service_name.as_deref()
    }

    /// EDS: where the assignment comes from (ADS or a stream of its own).
    pub fn eds_source(&self) -> Option<&crate::xds::SourceId> {
        self.config.eds_source.as_ref()
    }

    /// EDS: how long it warms without an assignment (`None`: until one comes).
    pub fn eds_initial_fetch_timeout(&self) -> Option<std::time::Duration> {
        self.config.eds_initial_fetch_timeout
    }

    /// Whether CDS added it (as opposed to the bootstrap).
    pub fn added_via_api(&self) -> bool {
        self.added_via_api
    }

    /// Installs the hosts of a `ClusterLoadAssignment` (EDS). Endpoints must
    /// be IP addresses; on any error nothing changes. The first assignment
    /// ends the cluster's warming.
    pub fn apply_load_assignment(
        &self,
        assignment: &ClusterLoadAssignment,
    ) -> Result<(), crate::config::ConfigErrors> {
        let mut errors = crate::config::ConfigErrors::default();
        let endpoints = compile_assignment(assignment, Discovery::Static, "", &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        // `update_attempt`/`update_success` of an EDS cluster are the xDS
        // subscription's, counted by the xDS client (counting here too
        // doubled them).
        let endpoints = endpoints
            .iter()
            .filter_map(|endpoint| match endpoint.address {
                EndpointAddress::Ip(address) => Some(resolved(address, endpoint)),
                EndpointAddress::Name(..) => None,
            })
            .collect();
        self.update_hosts(endpoints);
        self.mark_initialized();
        Ok(())
    }

    /// Takes over the host set of the cluster this one replaces (a CDS
    /// update of an EDS cluster keeps its endpoints until EDS says otherwise).
    /// Hosts are rebuilt (not shared) so they use this cluster's pool
    /// settings.
    pub(crate) fn inherit_hosts(&self, previous: &UpstreamCluster) {
        if !previous.is_initialized() {
            return;
        }
        let endpoints = previous
            .membership
            .load()
            .hosts
            .iter()
            .map(|host| ResolvedEndpoint {
                address: host.address(),
                hostname: host.hostname().to_string(),
                weight: host.weight(),
                locality: host.locality().clone(),
                healthy: host.is_healthy(),
            })
            .collect();
        self.update_hosts(endpoints);
        self.mark_initialized();
    }

    pub fn lb_policy(&self) -> &LbPolicy {
        &self.config.lb_policy
    }

    pub fn protocol(&self) -> UpstreamProtocol {
        self.config.protocol.protocol
    }

    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// The current host set (a snapshot; it does not change under you).
    pub fn membership(&self) -> Arc<Membership> {
        self.membership.load_full()
    }

    /// A receiver whose value (a version number) changes whenever the host
    /// set or host health changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Whether the first resolution of a DNS cluster has finished (always
    /// true for STATIC clusters).
    /// Ends warming: the first assignment or resolution arrived, or the
    /// initial fetch timed out.
    pub(crate) fn mark_initialized(&self) {
        self.warm.store(true, std::sync::atomic::Ordering::Release);
        self.initialized.send_replace(true);
    }

    /// Whether the cluster has finished warming (request-path check).
    pub fn is_warm(&self) -> bool {
        self.warm.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn is_initialized(&self) -> bool {
        *self.initialized.borrow()
    }

    pub(crate) fn initialized(&self) -> watch::Receiver<bool> {
        self.initialized.subscribe()
    }

    /// Picks a host for a request; `hash` is the request's hash for
    /// RING_HASH/MAGLEV (ignored by the others). `None` means no healthy
    /// upstream (Envoy's `UH`); `upstream_cx_none_healthy` counts it.
    pub fn choose_host(&self, hash: Option<u64>) -> Option<Arc<Host>> {
        let membership = self.membership.load();
        match membership.lb.choose(&membership.lb_hosts, hash) {
            Some(index) => {
                if membership.panic {
                    self.stats.lb_healthy_panic.inc();
                }
                Some(membership.lb_hosts[index].clone())
            }
            None => {
                self.stats.upstream_cx_none_healthy.inc();
                None
            }
        }
    }

    /// Sends `request` to `host` over the host's connection pool. Counts
    /// `upstream_rq_active`, `upstream_rq_total` once a connection carries
    /// it, and, when headers arrive,
    /// the response code (`upstream_rq_2xx`, `upstream_rq_200`, host
    /// `rq_success`/`rq_error`); the request stays active until the
    /// returned body ends or is dropped.
    pub async fn send(
        &self,
        host: &Arc<Host>,
        request: Request<Body>,
    ) -> Result<Response<UpstreamBody>, UpstreamError> {
        let mut active = ActiveRequest::start(self.stats.clone(), host.clone());
        match pool::send(host, request, &mut || active.pool_ready()).await {
            Ok(pooled) => {
                let response = match pooled {
                    PooledResponse::Http1(response) => response.map(ResponseSource::Http1),
                    PooledResponse::Http2(response, connection) => {
                        active.on_connection(connection);
                        response.map(ResponseSource::Http2)
                    }
                };
                self.record_host_response(host, response.status().as_u16());
                self.stats.record_response(response.status().as_u16());
                Ok(response.map(|body| UpstreamBody::new(body, active)))
            }
            // The caller answers with a local reply and charges it to the
            // cluster and host through `record_response`, as Envoy does.
            Err(error) => Err(error),
        }
    }

    /// Counts a response Sluice produced in place of the upstream's (e.g.
    /// the 504 of an upstream timeout), as Envoy charges it to the cluster.
    /// Responses received by [`send`](Self::send) are already counted.
    pub fn record_response(&self, host: Option<&Arc<Host>>, status: u16) {
        if let Some(host) = host {
            self.record_host_response(host, status);
        }
        self.stats.record_response(status);
    }

    /// Counts an upstream request timeout (`upstream_rq_timeout`, host `rq_timeout`).
    pub fn record_timeout(&self, host: &Arc<Host>) {
        self.stats.upstream_rq_timeout.inc();
        HostStats::inc(&host.stats().rq_timeout);
    }

    fn record_host_response(&self, host: &Host, status: u16) {
        let counter = if status >= 500 {
            &host.stats().rq_error
        } else {
            &host.stats().rq_success
        };
        HostStats::inc(counter);
    }

    /// Opens a TCP connection to `host` (for `tcp_proxy`), within the
    /// cluster's `connect_timeout`. As in Envoy's TCP pool, a connection
    /// handed to `tcp_proxy` counts as one upstream request.
    pub async fn connect_tcp(&self, host: &Arc<Host>) -> Result<UpstreamTcpStream, UpstreamError> {
        let (stream, guard) = connect(host, &self.pool_context).await?;
        self.stats.upstream_rq_total.inc();
        HostStats::inc(&host.stats().rq_total);
        Ok(UpstreamTcpStream::new(stream, guard))
    }

    /// The healthy hosts and their weights, for the kernel datapath.
    pub fn healthy_endpoints(&self) -> Vec<(SocketAddr, u32)> {
        self.membership
            .load()
            .hosts
            .iter()
            .filter(|host| host.is_healthy())
            .map(|host| (host.address(), host.weight()))
            .collect()
    }

    /// Replaces the host set (DNS refresh now, EDS later). Hosts equal to
    /// current ones keep their identity, counters and pooled connections.
    pub fn update_hosts(&self, endpoints: Vec<ResolvedEndpoint>) {
        let current = self.membership.load_full();
        // Current hosts by address, in order (a 10,000-endpoint assignment
        // must not compare every endpoint with every host).
        let mut by_address: HashMap<SocketAddr, Vec<&Arc<Host>>> =
            HashMap::with_capacity(current.hosts.len());
        for host in &current.hosts {
            by_address.entry(host.address()).or_default().push(host);
        }
        let hosts: Vec<Arc<Host>> = endpoints
            .into_iter()
            .map(|endpoint| {
                by_address
                    .get(&endpoint.address)
                    .into_iter()
                    .flatten()
                    .find(|host| {
                        host.same_endpoint(
                            endpoint.address,
                            &endpoint.hostname,
                            endpoint.weight,
                            &endpoint.locality,
                            endpoint.healthy,
                        )
                    })
                    .map(|host| Arc::clone(host))
                    .unwrap_or_else(|| {
                        Arc::new(Host::new(
                            endpoint.address,
                            endpoint.hostname,
                            endpoint.weight,
                            endpoint.locality,
                            endpoint.healthy,
                            self.pool_context.clone(),
                        ))
                    })
            })
            .collect();
        let changed = hosts.len() != current.hosts.len()
            || hosts
                .iter()
                .zip(&current.hosts)
                .any(|(new, old)| !Arc::ptr_eq(new, old));
        if changed {
            self.stats.membership_change.inc();
            self.install(hosts);
        }
    }

    /// Rebuilds the balancer after host health flags changed.
    pub fn refresh_health(&self) {
        self.install(self.membership.load().hosts.clone());
    }

    fn install(&self, hosts: Vec<Arc<Host>>) {
        let healthy: Vec<Arc<Host>> = hosts.iter().filter(|h| h.is_healthy()).cloned().collect();
        let healthy_percent = if hosts.is_empty() {
            100.0
        } else {
            healthy.len() as f64 * 100.0 / hosts.len() as f64
        };
        let panic = healthy_percent < self.config.healthy_panic_threshold;
        self.stats.membership_total.set(hosts.len() as i64);
        self.stats.membership_healthy.set(healthy.len() as i64);
        let lb_hosts = if panic { hosts.clone() } else { healthy };
        let lb = LoadBalancer::build(&self.config.lb_policy, &lb_hosts);
        self.membership.store(Arc::new(Membership {
            hosts,
            lb_hosts,
            panic,
            lb,
        }));
        self.version.send_modify(|version| *version += 1);
    }

    /// Resolves every named endpoint once and installs the result; an
    /// endpoint whose resolution fails keeps its last good addresses.
    pub(crate) async fn resolve_once(&self) {
        self.stats.update_attempt.inc();
        let mut endpoints = Vec::new();
        let mut failed = false;
        for (index, endpoint) in self.config.endpoints.iter().enumerate() {
            let addresses = match &endpoint.address {
                EndpointAddress::Ip(address) => vec![*address],
                EndpointAddress::Name(name, port) => {
                    match dns::resolve(name, *port, self.config.dns_lookup_family).await {
                        Ok(mut addresses) => {
                            if self.config.discovery == Discovery::LogicalDns {
                                addresses.truncate(1);
                            }
                            self.last_resolved.lock().unwrap()[index] = addresses.clone();
                            addresses
                        }
                        Err(error) => {
                            failed = true;
                            tracing::warn!(cluster = %self.config.name, %name, %error,
                                "DNS resolution failed; keeping the previous hosts");
                            self.last_resolved.lock().unwrap()[index].clone()
                        }
                    }
                }
            };
            endpoints.extend(addresses.into_iter().map(|a| resolved(a, endpoint)));
        }
        if failed {
            self.stats.update_failure.inc();
        } else {
            self.stats.update_success.inc();
        }
        self.update_hosts(endpoints);
        self.mark_initialized();
    }
}

/// Re-resolves a DNS cluster every `dns_refresh_rate` until the cluster is
/// dropped.
pub(crate) async fn refresh_dns(cluster: Weak<UpstreamCluster>) {
    loop {
        let Some(live) = cluster.upgrade() else {
            return;
        };
        live.resolve_once().await;
        let rate = live.config.dns_refresh_rate;
        drop(live);
        tokio::time::sleep(rate).await;
    }
}

/// One host to install: an address with its endpoint's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedEndpoint {
    pub address: SocketAddr,
    pub hostname: String,
    pub weight: u32,
    pub locality: super::host::Locality,
    pub healthy: bool,
}

fn resolved(address: SocketAddr, endpoint: &EndpointConfig) -> ResolvedEndpoint {
    ResolvedEndpoint {
        address,
        hostname: endpoint.hostname.clone(),
        weight: endpoint.weight,
        locality: endpoint.locality.clone(),
        healthy: endpoint.healthy,
    }
}
