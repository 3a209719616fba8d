//! The benchmark scenarios, selectable by name: what each measures, which
//! peers take part, and the names reserved for features that do not exist yet
//! (rejected with the feature they wait for).

use super::peers::Peer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// HTTP/1.1 keep-alive, small fixed response, `wrk`.
    Http1,
    /// HTTP/1.1 keep-alive over one connection: latency with no queueing.
    Http1OneConn,
    /// HTTP/1.1 with a new connection per request (`Connection: close`).
    Http1NewConn,
    /// h2c (prior knowledge): many streams on few connections, `h2load`.
    H2c,
    /// gRPC unary calls over h2c through an HTTP/2 upstream.
    Grpc,
    /// `tcp_proxy` bulk throughput with `iperf3`.
    Tcp,
    /// 1,000 routes with regex and header matches; the match near the end.
    Routes1k,
    /// A config with 10,000 clusters: peak RSS and start-to-ready.
    Clusters10k,
    /// Instructions per request on `http1` under callgrind (deterministic).
    Instructions,
    /// Instructions per request on `h2c` under callgrind (deterministic).
    InstructionsH2c,
    /// An L4 service through the kernel socket-LB beside direct and the
    /// userspace proxies (root and cgroup v2; `kernel` module).
    TcpKernel,
    /// A local pair with and without sockmap acceleration (root and cgroup v2).
    Sockmap,
    /// Start-to-ready on the demo config with the kernel datapath attached
    /// and without it (root and cgroup v2).
    DemoReady,
}

/// Names reserved by the benchmark issue for features still to come.
const NOT_YET: &[(&str, &str)] = &[("tls", "TLS termination in Sluice (DownstreamTlsContext)")];

impl Scenario {
    pub const ALL: [Scenario; 13] = [
        Scenario::Http1,
        Scenario::Http1OneConn,
        Scenario::Http1NewConn,
        Scenario::H2c,
        Scenario::Grpc,
        Scenario::Tcp,
        Scenario::Routes1k,
        Scenario::Clusters10k,
        Scenario::Instructions,
        Scenario::InstructionsH2c,
        Scenario::TcpKernel,
        Scenario::Sockmap,
        Scenario::DemoReady,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Http1 => "http1",
            Scenario::Http1OneConn => "http1-1conn",
            Scenario::Http1NewConn => "http1-newconn",
            Scenario::H2c => "h2c",
            Scenario::Grpc => "grpc",
            Scenario::Tcp => "tcp",
            Scenario::Routes1k => "routes-1k",
            Scenario::Clusters10k => "clusters-10k",
            Scenario::Instructions => "instructions",
            Scenario::InstructionsH2c => "instructions-h2c",
            Scenario::TcpKernel => "tcp-kernel",
            Scenario::Sockmap => "sockmap",
            Scenario::DemoReady => "demo-ready",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scenario::Http1 => "HTTP/1.1 keep-alive, wrk, 32 connections",
            Scenario::Http1OneConn => "HTTP/1.1 keep-alive, wrk, 1 connection (p50 latency)",
            Scenario::Http1NewConn => {
                "HTTP/1.1, new connection per request (wrk, Connection: close, 8 connections)"
            }
            Scenario::H2c => "h2c prior knowledge, h2load, 4 connections x 32 streams",
            Scenario::Grpc => {
                "gRPC unary over h2c to an HTTP/2 upstream, h2load with gRPC framing, 4 connections x 32 streams"
            }
            Scenario::Tcp => "tcp_proxy bulk throughput, iperf3, 1 stream",
            Scenario::Routes1k => "1,000 regex/header routes, match near the end, wrk keep-alive",
            Scenario::Clusters10k => "10,000 clusters: peak RSS and start-to-ready",
            Scenario::Instructions => {
                "instructions per http1 request under callgrind, fixed request count"
            }
            Scenario::InstructionsH2c => {
                "instructions per h2c request under callgrind, fixed request count (h2load -n, 4 connections x 32 streams)"
            }
            Scenario::TcpKernel => {
                "L4 service via the kernel socket-LB vs direct vs userspace tcp_proxy (Sluice, Envoy): iperf3, new connection per request"
            }
            Scenario::Sockmap => {
                "local client/server pair with and without sockmap acceleration: iperf3, request/response over one connection"
            }
            Scenario::DemoReady => {
                "start-to-ready on config/envoy-demo.yaml with the kernel datapath attached vs --datapath off"
            }
        }
    }

    /// Parses a scenario name; names of features not built yet get an error
    /// saying what they need.
    pub fn parse(name: &str) -> Result<Scenario, String> {
        if let Some(scenario) = Scenario::ALL.into_iter().find(|s| s.name() == name) {
            return Ok(scenario);
        }
        if let Some((_, needs)) = NOT_YET.iter().find(|(n, _)| *n == name) {
            return Err(format!(
                "scenario '{name}' is not available yet: needs {needs}"
            ));
        }
        let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
        Err(format!(
            "unknown scenario '{name}' (known: {})",
            known.join(", ")
        ))
    }

    /// The peers this scenario compares, Sluice first.
    pub fn peers(self) -> Vec<Peer> {
        match self {
            Scenario::Http1
            | Scenario::Http1OneConn
            | Scenario::Http1NewConn
            | Scenario::H2c
            | Scenario::Grpc
            | Scenario::Tcp => {
                vec![
                    Peer::Sluice,
                    Peer::Envoy,
                    Peer::Nginx,
                    Peer::Haproxy,
                    Peer::Direct,
                ]
            }
            Scenario::Routes1k
            | Scenario::Clusters10k
            | Scenario::Instructions
            | Scenario::InstructionsH2c => {
                vec![Peer::Sluice, Peer::Envoy]
            }
            // Their own variants (kernel/sockmap on, …): see bench::kernel.
            Scenario::TcpKernel | Scenario::Sockmap | Scenario::DemoReady => Vec::new(),
        }
    }

    /// Whether the scenario's throughput is bytes (tcp) rather than requests.
    pub fn is_bulk(self) -> bool {
        self == Scenario::Tcp
    }

    /// A callgrind instruction count (`bench::instructions`), not a timed run.
    pub fn is_instructions(self) -> bool {
        matches!(self, Scenario::Instructions | Scenario::InstructionsH2c)
    }

    /// Run by `bench::kernel` (needs root and cgroup v2; own variants and table).
    pub fn is_kernel(self) -> bool {
        matches!(
            self,
            Scenario::TcpKernel | Scenario::Sockmap | Scenario::DemoReady
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Ok(scenario));
        }
    }

    #[test]
    fn future_scenarios_say_what_they_need() {
        let error = Scenario::parse("tls").unwrap_err();
        assert!(error.contains("not available yet: needs"), "{error}");
    }

    #[test]
    fn unknown_scenario_lists_the_known_ones() {
        let error = Scenario::parse("http3").unwrap_err();
        assert!(error.contains("unknown scenario 'http3'") && error.contains("routes-1k"));
    }

    #[test]
    fn instruction_counts_are_not_timed_runs() {
        assert_eq!(
            Scenario::parse("instructions-h2c"),
            Ok(Scenario::InstructionsH2c)
        );
        assert!(Scenario::InstructionsH2c.is_instructions());
        assert!(Scenario::Instructions.is_instructions());
        assert!(!Scenario::H2c.is_instructions());
        assert_eq!(
            Scenario::InstructionsH2c.peers(),
            vec![Peer::Sluice, Peer::Envoy]
        );
    }

    #[test]
    fn routes_and_clusters_compare_sluice_with_envoy_only() {
        assert_eq!(Scenario::Routes1k.peers(), vec![Peer::Sluice, Peer::Envoy]);
        assert_eq!(
            Scenario::Clusters10k.peers(),
            vec![Peer::Sluice, Peer::Envoy]
        );
        assert_eq!(Scenario::Http1.peers().len(), 5);
    }
}
