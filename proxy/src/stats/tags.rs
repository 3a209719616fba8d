//! Envoy's default tag extraction: turns a flat stat name such as
//! `cluster.backend.upstream_rq_200` into a tag-extracted name
//! (`cluster.upstream_rq`) plus tags (`envoy.response_code=200`,
//! `envoy.cluster_name=backend`), which `/stats/prometheus` renders as a
//! metric name with labels.
//!
//! Each extractor is a regex whose first capture group is the text to cut
//! out of the name and whose second group (if any) is the tag value. Every
//! extractor runs against the original name; the cuts are applied together
//! at the end. Extractors without a fixed leading token (the response-code
//! ones) run first, as in Envoy, which fixes the label order. Envoy's
//! regexes use look-aheads that the `regex` crate lacks; the patterns below
//! are rewritten to match the same names.
//!
//! This runs when the admin renders, never on the request path.

use std::sync::LazyLock;

use regex::Regex;

/// One default extractor: the Envoy tag name and its regex.
struct Extractor {
    tag: &'static str,
    regex: Regex,
}

/// (tag name, regex) in Envoy's application order.
const DEFAULT_EXTRACTORS: &[(&str, &str)] = &[
    // *_rq(_<response_code>)
    ("envoy.response_code", r"_rq(_(\d{3}))$"),
    // *_rq_(<response_code_class>)xx
    ("envoy.response_code_class", r"_rq_(\d)xx$"),
    // http.[<stat_prefix>.]user_agent.(<user_agent>.)<base_stat>
    (
        "envoy.http_user_agent",
        r"^http\..*?\.user_agent\.((.*?)\.)\w+?$",
    ),
    // vhost.[<virtual host name>.]vcluster.(<virtual_cluster_name>.)<base_stat>
    (
        "envoy.virtual_cluster",
        r"^vhost\..*?\.vcluster\.((.*?)\.)\w+?$",
    ),
    // http.[<stat_prefix>.]fault.(<downstream_cluster>.)<base_stat>
    (
        "envoy.fault_downstream_cluster",
        r"^http\..*?\.fault\.((.*?)\.)\w+?$",
    ),
    // listener.[<address>.]ssl.cipher.(<cipher>)
    ("cipher", r"^listener\..*?\.ssl\.cipher(\.(.*?))$"),
    // cluster.[<cluster_name>.]ssl.ciphers.(<cipher>)
    ("cipher_suite", r"^cluster\..*?\.ssl\.ciphers(\.(.*?))$"),
    // tcp.(<stat_prefix>.)<base_stat>
    ("envoy.tcp_prefix", r"^tcp\.((.*?)\.)\w+?$"),
    // udp.(<stat_prefix>.)<base_stat>
    ("envoy.udp_prefix", r"^udp\.((.*?)\.)\w+?$"),
    // cluster.(<cluster_name>.)*
    ("envoy.cluster_name", r"^cluster\.((.*?)\.)"),
    // http.(<stat_prefix>.)* or listener.[<address>.]http.(<stat_prefix>.)*
    (
        "envoy.http_conn_manager_prefix",
        r"^(?:listener\.(?:.*?\.)?)?http\.((.*?)\.)",
    ),
    // listener.(<address>.)* — IPv4 `1.2.3.4_80` or bracketed IPv6 `[::1]_80`.
    (
        "envoy.listener_address",
        r"^listener\.((\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}_\d+|\[[_aAbBcCdDeEfF[:digit:]]+\]_\d+)\.)",
    ),
    // vhost.(<virtual host name>.)*
    ("envoy.virtual_host", r"^vhost\.((.*?)\.)"),
    // http.[<stat_prefix>.]rds.(<route_config_name>.)<base_stat>
    ("envoy.rds_route_config", r"^http\..*?\.rds\.((.*?)\.)\w+?$"),
    // listener_manager.(worker_<id>.)*
    ("envoy.worker_id", r"^listener_manager\.((worker_\d+)\.)"),
    // Sluice's kernel counters: datapath.xdp.interface.(<iface>.)<stat>
    // and datapath.xdp.service.(<listener>.)<stat>.
    (
        "sluice.xdp_interface",
        r"^datapath\.xdp\.interface\.((.*)\.)\w+$",
    ),
    ("sluice.service", r"^datapath\.xdp\.service\.((.*)\.)\w+$"),
];

static EXTRACTORS: LazyLock<Vec<Extractor>> = LazyLock::new(|| {
    DEFAULT_EXTRACTORS
        .iter()
        .map(|(tag, pattern)| Extractor {
            tag,
            regex: Regex::new(pattern).expect("default tag regexes are valid"),
        })
        .collect()
});

/// A stat name split into its tag-extracted name and tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagExtraction {
    /// The name with every tag's text cut out (`cluster.upstream_rq_total`).
    pub name: String,
    /// `(tag name, value)` in extraction order.
    pub tags: Vec<(&'static str, String)>,
}

/// Applies Envoy's default tag extractors to `stat_name`.
pub fn extract_tags(stat_name: &str) -> TagExtraction {
    let mut removed = vec![false; stat_name.len()];
    let mut tags: Vec<(&'static str, String)> = Vec::new();
    for extractor in EXTRACTORS.iter() {
        if tags.iter().any(|(tag, _)| *tag == extractor.tag) {
            continue;
        }
        let Some(captures) = extractor.regex.captures(stat_name) else {
            continue;
        };
        let Some(remove) = captures.get(1) else {
            continue;
        };
        let value = captures.get(2).unwrap_or(remove);
        removed[remove.range()].iter_mut().for_each(|r| *r = true);
        tags.push((extractor.tag, value.as_str().to_string()));
    }
    let name = stat_name
        .char_indices()
        .filter(|(index, _)| !removed[*index])
        .map(|(_, c)| c)
        .collect();
    TagExtraction { name, tags }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(stat: &str, name: &str, tags: &[(&str, &str)]) {
        let extraction = extract_tags(stat);
        assert_eq!(extraction.name, name, "name of {stat}");
        let got: Vec<(&str, &str)> = extraction
            .tags
            .iter()
            .map(|(t, v)| (*t, v.as_str()))
            .collect();
        assert_eq!(got, tags, "tags of {stat}");
    }

    #[test]
    fn cluster_stats() {
        check(
            "cluster.backend.upstream_rq_total",
            "cluster.upstream_rq_total",
            &[("envoy.cluster_name", "backend")],
        );
        check(
            "cluster.backend.upstream_rq_200",
            "cluster.upstream_rq",
            &[
                ("envoy.response_code", "200"),
                ("envoy.cluster_name", "backend"),
            ],
        );
        check(
            "cluster.backend.upstream_rq_5xx",
            "cluster.upstream_rq_xx",
            &[
                ("envoy.response_code_class", "5"),
                ("envoy.cluster_name", "backend"),
            ],
        );
    }

    #[test]
    fn http_connection_manager_stats() {
        check(
            "http.ingress_http.downstream_rq_2xx",
            "http.downstream_rq_xx",
            &[
                ("envoy.response_code_class", "2"),
                ("envoy.http_conn_manager_prefix", "ingress_http"),
            ],
        );
        check(
            "http.ingress_http.downstream_cx_total",
            "http.downstream_cx_total",
            &[("envoy.http_conn_manager_prefix", "ingress_http")],
        );
        check(
            "http.ingress_http.rds.local_route.config_reload",
            "http.rds.config_reload",
            &[
                ("envoy.http_conn_manager_prefix", "ingress_http"),
                ("envoy.rds_route_config", "local_route"),
            ],
        );
    }

    #[test]
    fn listener_stats() {
        check(
            "listener.0.0.0.0_10000.downstream_cx_total",
            "listener.downstream_cx_total",
            &[("envoy.listener_address", "0.0.0.0_10000")],
        );
        check(
            "listener.[__1]_8080.downstream_cx_active",
            "listener.downstream_cx_active",
            &[("envoy.listener_address", "[__1]_8080")],
        );
        check(
            "listener.0.0.0.0_80.http.ingress.downstream_rq_2xx",
            "listener.http.downstream_rq_xx",
            &[
                ("envoy.response_code_class", "2"),
                ("envoy.http_conn_manager_prefix", "ingress"),
                ("envoy.listener_address", "0.0.0.0_80"),
            ],
        );
        check(
            "listener_manager.worker_3.downstream_cx_total",
            "listener_manager.downstream_cx_total",
            &[("envoy.worker_id", "worker_3")],
        );
    }

    #[test]
    fn tcp_and_untagged_stats() {
        check(
            "tcp.ingress_tcp.downstream_cx_total",
            "tcp.downstream_cx_total",
            &[("envoy.tcp_prefix", "ingress_tcp")],
        );
        check("server.live", "server.live", &[]);
        check(
            "cluster_manager.active_clusters",
            "cluster_manager.active_clusters",
            &[],
        );
        check(
            "vhost.api.vcluster.other.upstream_rq_retry",
            "vhost.vcluster.upstream_rq_retry",
            &[
                ("envoy.virtual_cluster", "other"),
                ("envoy.virtual_host", "api"),
            ],
        );
    }

    #[test]
    fn xdp_interface_and_service_become_tags() {
        check(
            "datapath.xdp.interface.eth0.100.packets",
            "datapath.xdp.interface.packets",
            &[("sluice.xdp_interface", "eth0.100")],
        );
        check(
            "datapath.xdp.service.kube_dns_vip.bytes",
            "datapath.xdp.service.bytes",
            &[("sluice.service", "kube_dns_vip")],
        );
    }
}
