//! Decoding resources out of discovery responses: unwrapping the
//! `envoy.service.discovery.v3.Resource` wrapper, checking the type URL, and
//! finding each resource's name by reflection (`name`, or `cluster_name` for
//! a ClusterLoadAssignment), so the protocol code needs no per-type code.

use envoy_types::pb::envoy::service::discovery::v3::Resource as WireResource;
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use prost_reflect::DynamicMessage;

use crate::config::descriptors::message_descriptor;
use crate::config::proto::type_name;

use super::resource::type_urls;

/// A resource as found in a response: its name and version if the wire
/// said, and the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub name: String,
    /// Set when the resource came wrapped in a `Resource` (always in delta).
    pub version: Option<String>,
    pub body: Any,
}

/// Decodes one state-of-the-world response entry. `Err` is why it cannot be
/// used, for the NACK; the entry then has no name to attribute it to.
pub fn decode_sotw(any: &Any, expected_type: &str) -> Result<Decoded, String> {
    if any.type_url == type_urls::RESOURCE_WRAPPER {
        let wrapper = WireResource::decode(any.value.as_slice())
            .map_err(|error| format!("cannot decode the Resource wrapper: {error}"))?;
        return decode_wrapped(wrapper, expected_type);
    }
    decode_body(any.clone(), None, expected_type)
}

/// Decodes one delta `Resource`.
pub fn decode_wrapped(wrapper: WireResource, expected_type: &str) -> Result<Decoded, String> {
    let body = wrapper.resource.ok_or_else(|| {
        format!(
            "resource '{}' has no body (a delta Resource must carry its resource)",
            wrapper.name
        )
    })?;
    let decoded = decode_body(body, Some(wrapper.version), expected_type)?;
    if !wrapper.name.is_empty() && wrapper.name != decoded.name {
        return Err(format!(
            "resource wrapper name '{}' differs from the resource's own name '{}'",
            wrapper.name, decoded.name
        ));
    }
    Ok(decoded)
}

fn decode_body(body: Any, version: Option<String>, expected_type: &str) -> Result<Decoded, String> {
    if body.type_url != expected_type {
        return Err(format!(
            "resource of type '{}' in a response for '{expected_type}'",
            body.type_url
        ));
    }
    let name = resource_name(&body)?;
    Ok(Decoded {
        name,
        version,
        body,
    })
}

/// The name of a resource: its `name` field, or `cluster_name` for
/// ClusterLoadAssignment.
pub fn resource_name(body: &Any) -> Result<String, String> {
    let full_name = type_name(&body.type_url);
    if type_urls::ALL.contains(&body.type_url.as_str()) {
        // Field 1 is the name in all four: read it off the wire instead of
        // decoding the whole resource by reflection (a 100-endpoint
        // assignment costs a full decode otherwise; the sink decodes it
        // once anyway).
        let name = name_field(&body.value)
            .map_err(|error| format!("cannot decode {full_name}: {error}"))?;
        if name.is_empty() {
            return Err(format!("{full_name} without a name"));
        }
        return Ok(name);
    }
    let descriptor = message_descriptor(full_name)
        .ok_or_else(|| format!("unknown resource type '{full_name}'"))?;
    let message = DynamicMessage::decode(descriptor, body.value.as_slice())
        .map_err(|error| format!("cannot decode {full_name}: {error}"))?;
    let field = ["name", "cluster_name"]
        .into_iter()
        .find_map(|field| message.get_field_by_name(field))
        .ok_or_else(|| format!("{full_name} has no name field"))?;
    let name = field.as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        return Err(format!("{full_name} without a name"));
    }
    Ok(name)
}

/// The last value of field 1 (a string) in an encoded message, skipping
/// every other field without decoding it; empty when absent.
fn name_field(mut bytes: &[u8]) -> Result<String, String> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut name = String::new();
    while !bytes.is_empty() {
        let (number, wire_type) = decode_key(&mut bytes).map_err(|e| e.to_string())?;
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut bytes).map_err(|e| e.to_string())?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                decode_varint(&mut bytes).map_err(|e| e.to_string())? as usize
            }
            WireType::StartGroup | WireType::EndGroup => return Err("unexpected group".into()),
        };
        let Some(field) = bytes.get(..skip) else {
            return Err("truncated field".into());
        };
        if number == 1 {
            if wire_type != WireType::LengthDelimited {
                return Err("field 1 (the name) is not a string".into());
            }
            name = String::from_utf8(field.to_vec())
                .map_err(|_| "the name is not UTF-8".to_string())?;
        }
        bytes = &bytes[skip..];
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use prost::Name;

    fn cluster_any(name: &str) -> Any {
        Any {
            type_url: Cluster::type_url(),
            value: Cluster {
                name: name.into(),
                ..Default::default()
            }
            .encode_to_vec(),
        }
    }

    #[test]
    fn names_come_from_name_or_cluster_name() {
        assert_eq!(resource_name(&cluster_any("web")).unwrap(), "web");
        let cla = Any {
            type_url: ClusterLoadAssignment::type_url(),
            value: ClusterLoadAssignment {
                cluster_name: "web".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        };
        assert_eq!(resource_name(&cla).unwrap(), "web");
        assert_eq!(
            resource_name(&cluster_any("")).unwrap_err(),
            "envoy.config.cluster.v3.Cluster without a name"
        );
    }

    #[test]
    fn names_are_read_off_the_wire_past_other_fields() {
        use envoy_types::pb::envoy::config::endpoint::v3::{LbEndpoint, LocalityLbEndpoints};
        let cla = ClusterLoadAssignment {
            cluster_name: "web".into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint::default(); 3],
                priority: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut bytes = cla.encode_to_vec();
        assert_eq!(name_field(&bytes).unwrap(), "web");
        bytes.truncate(bytes.len() - 1);
        assert_eq!(name_field(&bytes).unwrap_err(), "truncated field");
        // A varint where the name should be.
        assert!(name_field(&[0x08, 0x01])
            .unwrap_err()
            .contains("not a string"));
    }

    #[test]
    fn wrong_type_and_garbage_are_errors() {
        let error = decode_sotw(&cluster_any("a"), type_urls::LISTENER).unwrap_err();
        assert!(error.contains("in a response for"), "{error}");
        let garbage = Any {
            type_url: type_urls::CLUSTER.into(),
            value: vec![0xff, 0xff],
        };
        let error = decode_sotw(&garbage, type_urls::CLUSTER).unwrap_err();
        assert!(
            error.starts_with("cannot decode envoy.config.cluster.v3.Cluster"),
            "{error}"
        );
    }

    #[test]
    fn unwraps_resource_wrappers() {
        let wrapper = WireResource {
            name: "a".into(),
            version: "3".into(),
            resource: Some(cluster_any("a")),
            ..Default::default()
        };
        let any = Any {
            type_url: type_urls::RESOURCE_WRAPPER.into(),
            value: wrapper.encode_to_vec(),
        };
        let decoded = decode_sotw(&any, type_urls::CLUSTER).unwrap();
        assert_eq!(
            (decoded.name.as_str(), decoded.version.as_deref()),
            ("a", Some("3"))
        );
        let mismatched = WireResource {
            name: "b".into(),
            resource: Some(cluster_any("a")),
            ..Default::default()
        };
        assert!(decode_wrapped(mismatched, type_urls::CLUSTER)
            .unwrap_err()
            .contains("differs"));
    }
}
