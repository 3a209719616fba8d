//! Configuration back out as proto3 JSON, the way Envoy's `/config_dump`
//! prints it: proto field names, `Any` expanded inline with its `"@type"`.

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::SerializeOptions;
use serde_json::{json, Value as Json};

use super::descriptors::{complete_pool, to_dynamic};

fn options() -> SerializeOptions {
    SerializeOptions::new().use_proto_field_name(true)
}

/// `message` as proto3 JSON. A message the pool cannot describe (or an `Any`
/// inside it of an unknown type) is rendered as an object carrying `"error"`
/// rather than failing the whole dump.
pub fn to_json<T: prost::Message + prost::Name>(message: &T) -> Json {
    let render = || {
        let Some(dynamic) = to_dynamic(message) else {
            return Err(format!(
                "{} is not an Envoy v3 message type",
                T::full_name()
            ));
        };
        dynamic
            .serialize_with_options(serde_json::value::Serializer, &options())
            .map_err(|error| error.to_string())
    };
    // An `Any` of a type outside the working-set pool fails to expand: try
    // again with every Envoy type before reporting it.
    render()
        .or_else(
            |error| match complete_pool("rendering an Any outside the working set") {
                true => render(),
                false => Err(error),
            },
        )
        .unwrap_or_else(|error| json!({ "error": error }))
}

/// An `Any` as proto3 JSON: its payload's fields with `"@type"` first.
/// A type unknown to the pool gives `{"@type": ..., "error": ...}`.
pub fn any_to_json(any: &Any) -> Json {
    match to_json(any) {
        Json::Object(fields) if !fields.contains_key("error") => Json::Object(fields),
        other => json!({
            "@type": any.type_url,
            "error": other.get("error").cloned().unwrap_or_else(|| json!("cannot render")),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse_message;
    use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::Message;
    use prost::Name;

    #[test]
    fn bootstrap_renders_with_proto_field_names_and_expanded_any() {
        let yaml = r#"
static_resources:
  listeners:
  - name: tcp
    address: {socket_address: {address: 0.0.0.0, port_value: 9000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: backend
          idle_timeout: 90s
  clusters:
  - name: backend
    connect_timeout: 0.25s
    per_connection_buffer_limit_bytes: 32768
"#;
        let bootstrap: Bootstrap = parse_message(yaml).unwrap();
        let rendered = to_json(&bootstrap);
        let resources = &rendered["static_resources"];
        let tcp = &resources["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"];
        assert_eq!(
            tcp["@type"],
            "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
        );
        assert_eq!(tcp["stat_prefix"], "tcp");
        assert_eq!(tcp["idle_timeout"], "90s");
        assert_eq!(resources["clusters"][0]["connect_timeout"], "0.250s");
        assert_eq!(
            resources["clusters"][0]["per_connection_buffer_limit_bytes"],
            32768
        );
        assert_eq!(
            resources["listeners"][0]["address"]["socket_address"]["port_value"],
            9000
        );
    }

    #[test]
    fn any_renders_its_payload_inline() {
        let cluster = Cluster {
            name: "backend".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: Cluster::type_url(),
            value: cluster.encode_to_vec(),
        };
        let rendered = any_to_json(&any);
        assert_eq!(
            rendered["@type"],
            "type.googleapis.com/envoy.config.cluster.v3.Cluster"
        );
        assert_eq!(rendered["name"], "backend");
    }

    #[test]
    fn unknown_any_type_is_named_not_fatal() {
        let any = Any {
            type_url: "type.googleapis.com/example.Unknown".into(),
            value: vec![1, 2, 3],
        };
        let rendered = any_to_json(&any);
        assert_eq!(rendered["@type"], "type.googleapis.com/example.Unknown");
        assert!(
            rendered["error"]
                .as_str()
                .unwrap()
                .contains("example.Unknown"),
            "{rendered}"
        );
    }
}
