//! Loading a folder of resources.

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const CLUSTER_A: &str = "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconnect_timeout: 1s\n";

#[test]
fn loads_single_resources_and_lists_with_content_versions() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", CLUSTER_A);
    write(
        dir.path(),
        "more.yml",
        "resources:\n- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: a\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: b\n",
    );
    write(dir.path(), "notes.txt", "not a resource");
    let snapshot = load(dir.path()).unwrap();
    assert_eq!(snapshot.len(), 3);
    let clusters: Vec<&String> = snapshot
        .of_type(type_urls::CLUSTER)
        .map(|(n, _)| n)
        .collect();
    assert_eq!(clusters, ["a", "b"]);
    let version = snapshot.type_version(type_urls::CLUSTER);
    let again = load(dir.path()).unwrap();
    assert_eq!(
        again.type_version(type_urls::CLUSTER),
        version,
        "content-addressed"
    );
    write(dir.path(), "a.yaml", &CLUSTER_A.replace("1s", "2s"));
    let changed = load(dir.path()).unwrap();
    assert_ne!(changed.type_version(type_urls::CLUSTER), version);
    assert_eq!(
        changed.get(type_urls::CLUSTER, "b").unwrap().version,
        snapshot.get(type_urls::CLUSTER, "b").unwrap().version
    );
    assert_eq!(
        changed.type_version(type_urls::ENDPOINT),
        snapshot.type_version(type_urls::ENDPOINT)
    );
}

#[test]
fn every_bad_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", CLUSTER_A);
    write(dir.path(), "dup.yaml", CLUSTER_A);
    write(dir.path(), "typo.yaml", "\"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: c\nconect_timeout: 1s\n");
    write(dir.path(), "notype.yaml", "name: d\n");
    write(
        dir.path(),
        "other.yaml",
        "\"@type\": type.googleapis.com/envoy.config.core.v3.Node\nid: x\n",
    );
    let errors = load(dir.path()).unwrap_err();
    let text = errors.join("\n");
    assert_eq!(errors.len(), 4, "{text}");
    assert!(
        text.contains("dup.yaml: Cluster 'a' is also defined in"),
        "{text}"
    );
    assert!(
        text.contains("typo.yaml: unrecognized field name 'conect_timeout'"),
        "{text}"
    );
    assert!(text.contains("notype.yaml"), "{text}");
    assert!(text.contains("other.yaml: resources[0]: \"@type\" type.googleapis.com/envoy.config.core.v3.Node is not an xDS resource type"), "{text}");
}
