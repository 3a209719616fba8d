//! Clusters changing at runtime: CDS adds, replaces and removes clusters;
//! EDS clusters warm until their first assignment and follow updates.

use super::*;

fn parse(yaml: &str) -> Cluster {
    crate::config::parse_message(yaml).expect("test cluster parses")
}

fn assignment(yaml: &str) -> ClusterLoadAssignment {
    crate::config::parse_message(yaml).expect("test assignment parses")
}

const STATIC: &str = "name: boot\nload_assignment: {cluster_name: boot, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}";
const EDS: &str = "name: svc\ntype: EDS\neds_cluster_config: {service_name: svc-endpoints, eds_config: {ads: {}}}";

#[test]
fn cds_adds_replaces_and_removes_dynamic_clusters_only() {
    let store = Store::new();
    let manager = ClusterManager::compile(&[parse(STATIC)], &store).unwrap();
    let mut changes = manager.subscribe();
    assert_eq!(
        manager.add_or_update(&parse(EDS)).unwrap(),
        ClusterChange::Added
    );
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();
    let svc = manager.get("svc").unwrap();
    assert!(svc.added_via_api());
    assert_eq!(svc.eds_service_name(), Some("svc-endpoints"));
    assert_eq!(
        manager.add_or_update(&parse(EDS)).unwrap(),
        ClusterChange::Updated
    );
    assert!(!Arc::ptr_eq(&svc, &manager.get("svc").unwrap()));

    let error = manager
        .add_or_update(&parse(STATIC))
        .unwrap_err()
        .to_string();
    assert!(error.contains("'boot' is a static cluster"), "{error}");
    assert!(!manager.remove("boot"), "bootstrap clusters stay");
    assert!(manager.remove("svc"));
    assert!(manager.get("svc").is_none());
    assert!(changes.has_changed().unwrap());
    let names: Vec<String> = manager
        .snapshot()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    assert_eq!(names, ["boot"]);
}

#[test]
fn eds_cluster_warms_until_its_first_assignment() {
    let store = Store::new();
    let manager = ClusterManager::compile(&[], &store).unwrap();
    manager.add_or_update(&parse(EDS)).unwrap();
    let svc = manager.get("svc").unwrap();
    assert!(!svc.is_initialized());
    assert!(svc.choose_host(None).is_none());
    svc.apply_load_assignment(&assignment(
        "cluster_name: svc-endpoints\nendpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}}, {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8082}}}, load_balancing_weight: 3}]}]",
    ))
    .unwrap();
    assert!(svc.is_initialized());
    assert_eq!(
        svc.healthy_endpoints(),
        vec![
            ("127.0.0.1:8081".parse().unwrap(), 1),
            ("127.0.0.1:8082".parse().unwrap(), 3)
        ]
    );
    assert_eq!(store.gauge("cluster.svc.membership_total").value(), 2);

    // A CDS update of the cluster keeps the endpoints EDS gave it.
    manager.add_or_update(&parse(EDS)).unwrap();
    let replaced = manager.get("svc").unwrap();
    assert!(replaced.is_initialized());
    assert_eq!(replaced.healthy_endpoints().len(), 2);
}

#[test]
fn a_bad_assignment_changes_nothing() {
    let store = Store::new();
    let manager = ClusterManager::compile(&[], &store).unwrap();
    manager.add_or_update(&parse(EDS)).unwrap();
    let svc = manager.get("svc").unwrap();
    let error = svc
        .apply_load_assignment(&assignment(
            "cluster_name: svc-endpoints\nendpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: backend.local, port_value: 80}}}}]}]",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("endpoints[0].lb_endpoints[0].endpoint.address"),
        "{error}"
    );
    assert!(!svc.is_initialized());
}
