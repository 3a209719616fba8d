//! Tests of UDP listener compilation: the shapes Sluice serves and a named
//! error for every shape it cannot.

use super::*;
use crate::config::context::CompileContext;
use crate::listener::ListenerConfig;

const ROUTE: &str = "{'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: backend}";

fn udp_proxy_filter(config: &str) -> String {
    format!("listener_filters:\n- name: envoy.filters.udp_listener.udp_proxy\n  typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.UdpProxyConfig, stat_prefix: dns, {config}}}\n")
}

fn matcher_filter() -> String {
    udp_proxy_filter(&format!(
        "matcher: {{on_no_match: {{action: {{name: route, typed_config: {ROUTE}}}}}}}"
    ))
}

fn udp_listener(extra: &str) -> String {
    format!(
        "name: dns\nbind_to_port: false\naddress: {{socket_address: {{address: 10.96.0.10, port_value: 53, protocol: UDP}}}}\n{extra}"
    )
}

fn compile(yaml: &str) -> Result<ListenerConfig, ConfigErrors> {
    let proto: Listener = crate::config::parse_message(yaml).expect("test YAML parses");
    ListenerConfig::compile(&proto, &CompileContext::with_backend_cluster())
}

fn error_text(yaml: &str) -> String {
    compile(yaml).unwrap_err().to_string()
}

#[test]
fn a_virtual_udp_listener_with_a_matcher_route_compiles() {
    let listener = compile(&udp_listener(&matcher_filter())).unwrap();
    assert_eq!(
        listener.udp_proxy,
        Some(UdpProxy {
            stat_prefix: "dns".into(),
            cluster: "backend".into()
        })
    );
    assert!(listener.filter_chains.is_empty());
    assert!(!listener.bind_to_port);
    assert_eq!(listener.address, "10.96.0.10:53".parse().unwrap());
}

#[test]
fn the_deprecated_cluster_field_is_accepted_too() {
    let listener = compile(&udp_listener(&udp_proxy_filter("cluster: backend"))).unwrap();
    assert_eq!(listener.udp_proxy.unwrap().cluster, "backend");
}

#[test]
fn tcp_listeners_have_no_udp_proxy() {
    let listener = compile(
        "name: t\nbind_to_port: false\naddress: {socket_address: {address: 10.96.0.10, port_value: 53}}\nfilter_chains:\n- filters: [{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}]",
    )
    .unwrap();
    assert_eq!(listener.udp_proxy, None);
}

#[test]
fn a_bound_udp_listener_is_rejected() {
    let yaml = udp_listener(&matcher_filter()).replace("bind_to_port: false\n", "");
    let text = error_text(&yaml);
    assert!(
        text.contains("bind_to_port: a bound UDP listener needs userspace UDP proxying, which Sluice does not implement"),
        "{text}"
    );
}

#[test]
fn a_udp_listener_needs_exactly_one_udp_proxy_filter() {
    let text = error_text(&udp_listener(""));
    assert!(
        text.contains("listener_filters: a UDP listener needs the envoy.filters.udp_listener.udp_proxy listener filter"),
        "{text}"
    );
    let filter = matcher_filter();
    let two = format!("{filter}{}", filter.replace("listener_filters:\n", ""));
    let text = error_text(&udp_listener(&two));
    assert!(
        text.contains("listener_filters: Sluice supports exactly one listener filter"),
        "{text}"
    );
    let other = "listener_filters:\n- name: other\n  typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig, stat_prefix: d}\n";
    let text = error_text(&udp_listener(other));
    assert!(
        text.contains("listener_filters[0].typed_config: UDP listener filter type 'envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig' is not supported by Sluice (only udp_proxy)"),
        "{text}"
    );
}

#[test]
fn a_udp_proxy_without_a_usable_route_is_rejected() {
    let cases = [
        ("", "listener_filters[0].typed_config.matcher: udp_proxy needs a route"),
        ("matcher: {}", "listener_filters[0].typed_config.matcher.on_no_match: needs a Route action"),
        (
            "matcher: {on_no_match: {action: {name: r}}}",
            "listener_filters[0].typed_config.matcher.on_no_match.action.typed_config: needs a Route",
        ),
        (
            "matcher: {on_no_match: {action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route}}}}",
            "listener_filters[0].typed_config.matcher.on_no_match.action.typed_config.cluster: must not be empty",
        ),
        (
            "matcher: {on_no_match: {matcher: {on_no_match: {action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: backend}}}}}}",
            "listener_filters[0].typed_config.matcher.on_no_match.matcher: nested matchers are not supported",
        ),
        (
            "matcher: {matcher_list: {matchers: []}, on_no_match: {action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.udp.udp_proxy.v3.Route, cluster: backend}}}}",
            "listener_filters[0].typed_config.matcher: matching datagrams (matcher_list, matcher_tree) is not supported",
        ),
        (
            "matcher: {on_no_match: {action: {name: r, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}}}",
            "listener_filters[0].typed_config.matcher.on_no_match.action.typed_config: expected type envoy.extensions.filters.udp.udp_proxy.v3.Route",
        ),
    ];
    for (config, expected) in cases {
        let text = error_text(&udp_listener(&udp_proxy_filter(config)));
        assert!(text.contains(expected), "{config}: {text}");
    }
}

#[test]
fn tcp_only_listener_settings_are_rejected_on_udp_listeners() {
    let chain = "filter_chains:\n- filters: [{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}]\n";
    let extras = [
        (chain.to_string(), "filter_chains: a UDP listener has no filter chains"),
        (
            "access_log: [{name: l, typed_config: {'@type': type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}}]\n".to_string(),
            "access_log: a UDP service is served by the kernel",
        ),
        ("use_original_dst: true\n".to_string(), "use_original_dst: applies to TCP listeners only"),
        (
            "per_connection_buffer_limit_bytes: 1024\n".to_string(),
            "per_connection_buffer_limit_bytes: a UDP service is served by the kernel",
        ),
    ];
    for (extra, expected) in extras {
        let text = error_text(&udp_listener(&format!("{}{extra}", matcher_filter())));
        assert!(text.contains(expected), "{extra}: {text}");
    }
}

#[test]
fn a_udp_service_needs_a_vip_and_a_port() {
    let listener = |address: &str, port: u16| {
        format!(
            "name: dns\nbind_to_port: false\naddress: {{socket_address: {{address: '{address}', port_value: {port}, protocol: UDP}}}}\n{}",
            matcher_filter()
        )
    };
    for (address, port, expected) in [
        ("0.0.0.0", 53, "needs a service address (VIP), not 0.0.0.0"),
        ("::", 53, "needs a service address (VIP), not ::"),
        ("::ffff:10.96.0.10", 53, "is v4-mapped"),
        ("10.96.0.10", 0, "needs a port_value"),
    ] {
        let text = error_text(&listener(address, port));
        assert!(
            text.contains("address.socket_address: ") && text.contains(expected),
            "{address}:{port}: {text}"
        );
    }
    assert!(compile(&listener("fd96::10", 53)).is_ok());
    // A bad IP is one error, not also "udp_proxy needs a UDP listener".
    let text = error_text(&listener("not-an-ip", 53));
    assert_eq!(text.matches(": ").count(), 1, "{text}");
    assert!(
        text.contains("'not-an-ip' is not a valid IP address"),
        "{text}"
    );
}

#[test]
fn listener_filters_on_tcp_listeners_are_rejected() {
    let tcp = |filter: &str| {
        format!(
            "name: t\naddress: {{socket_address: {{address: 127.0.0.1, port_value: 80}}}}\nfilter_chains:\n- filters: [{{name: tcp, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}}}]\n{filter}"
        )
    };
    let text = error_text(&tcp(&matcher_filter()));
    assert!(
        text.contains("listener_filters[0]: udp_proxy needs a UDP listener (address.socket_address.protocol: UDP)"),
        "{text}"
    );
    let tls = "listener_filters:\n- name: tls\n  typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\n";
    let text = error_text(&tcp(tls));
    assert!(
        text.contains("listener_filters[0]: listener filter type 'envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector' is not supported by Sluice on TCP listeners"),
        "{text}"
    );
}

#[test]
fn the_admin_address_cannot_be_udp() {
    let address: envoy_types::pb::envoy::config::core::v3::Address = crate::config::parse_message(
        "socket_address: {address: 127.0.0.1, port_value: 9901, protocol: UDP}",
    )
    .unwrap();
    let error = crate::listener::socket_address_of(&address).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("socket_address.protocol: only a listener can be UDP"),
        "{error}"
    );
}
