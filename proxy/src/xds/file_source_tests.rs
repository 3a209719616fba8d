//! File-based LDS/CDS: initial read, change, removal, bad file keeps state.

use super::super::resource::type_urls;
use super::super::test_sink::FakeSink;
use super::*;

const TWO_CLUSTERS: &str = r#"
version_info: "1"
resources:
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: a
  connect_timeout: 1s
- "@type": type.googleapis.com/envoy.config.cluster.v3.Cluster
  name: b
"#;

#[test]
fn reads_applies_changes_and_keeps_state_on_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cds.yaml");
    std::fs::write(&path, TWO_CLUSTERS).unwrap();
    let store = Store::new();
    let sink = FakeSink::default();
    let mut watch = FileWatch::new(
        FileSource {
            type_url: type_urls::CLUSTER,
            path: path.clone(),
        },
        &store,
    );
    assert!(watch.poll(&sink).is_empty());
    assert_eq!(sink.names(type_urls::CLUSTER), ["a", "b"]);
    assert_eq!(
        sink.version_of(type_urls::CLUSTER, "a").as_deref(),
        Some("1")
    );
    // Unchanged: nothing applied again.
    watch.poll(&sink);
    assert_eq!(sink.calls.lock().unwrap().len(), 1);

    std::fs::write(&path, "resources:\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: b\n  conect_timeout: 1s\n").unwrap();
    let errors = watch.poll(&sink);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("unrecognized field name 'conect_timeout'"),
        "{errors:?}"
    );
    assert_eq!(
        sink.names(type_urls::CLUSTER),
        ["a", "b"],
        "a bad file changes nothing"
    );
    assert_eq!(
        store.counter("cluster_manager.cds.update_rejected").value(),
        1
    );

    sink.reject("c", "lb_policy: not supported");
    std::fs::write(&path, "version_info: \"2\"\nresources:\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: b\n- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: c\n").unwrap();
    let errors = watch.poll(&sink);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].ends_with("c: lb_policy: not supported"),
        "{errors:?}"
    );
    assert_eq!(
        sink.names(type_urls::CLUSTER),
        ["b"],
        "a removed, b updated, c rejected"
    );
    assert_eq!(
        store.counter("cluster_manager.cds.update_success").value(),
        1
    );
}

#[test]
fn a_missing_file_is_reported() {
    let sink = FakeSink::default();
    let mut watch = FileWatch::new(
        FileSource {
            type_url: type_urls::LISTENER,
            path: "/nonexistent/lds.yaml".into(),
        },
        &Store::new(),
    );
    let errors = watch.poll(&sink);
    assert!(
        errors[0].starts_with("cannot read /nonexistent/lds.yaml"),
        "{errors:?}"
    );
}
