//! Small conversions from Envoy's protobuf types to Rust values, shared by
//! every compile step: durations, wrappers, and `Any` unpacking by type URL.

use envoy_types::pb::google::protobuf::{Any, Duration as ProtoDuration};
use std::time::Duration;

use super::ConfigError;

/// The message type named by a type URL: what follows the last `/`
/// (`type.googleapis.com/envoy.config.cluster.v3.Cluster` →
/// `envoy.config.cluster.v3.Cluster`; other prefixes are legal).
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// A protobuf duration as a `std::time::Duration`; negative values are
/// clamped to zero (validation rejects them earlier).
pub fn duration(value: &ProtoDuration) -> Duration {
    if value.seconds < 0 || value.nanos < 0 {
        return Duration::ZERO;
    }
    Duration::new(value.seconds as u64, value.nanos as u32)
}

/// An optional protobuf duration; `None` when unset.
pub fn opt_duration(value: &Option<ProtoDuration>) -> Option<Duration> {
    value.as_ref().map(duration)
}

/// Envoy's convention for timeouts: unset → `default`, zero → disabled
/// (`None`), otherwise the value.
pub fn timeout_or(value: &Option<ProtoDuration>, default: Option<Duration>) -> Option<Duration> {
    match value {
        None => default,
        Some(d) => {
            let d = duration(d);
            (!d.is_zero()).then_some(d)
        }
    }
}

/// Decodes an `Any` as `T`, checking its type URL names `T`.
/// The error's path is relative to the `Any` field itself.
pub fn unpack<T>(any: &Any) -> Result<T, ConfigError>
where
    T: prost::Message + prost::Name + Default,
{
    let got = type_name(&any.type_url);
    let want = T::full_name();
    if got != want {
        return Err(ConfigError::new(
            "",
            format!("expected type {want}, got {got}"),
        ));
    }
    T::decode(any.value.as_slice())
        .map_err(|error| ConfigError::new("", format!("cannot decode {want}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use prost::{Message, Name};

    #[test]
    fn type_name_takes_what_follows_the_last_slash() {
        assert_eq!(type_name("type.googleapis.com/a.b.C"), "a.b.C");
        assert_eq!(type_name("example.com/foo/a.b.C"), "a.b.C");
        assert_eq!(type_name("a.b.C"), "a.b.C");
    }

    #[test]
    fn timeouts_follow_envoy_zero_means_disabled() {
        let default = Some(Duration::from_secs(15));
        assert_eq!(timeout_or(&None, default), default);
        let zero = ProtoDuration {
            seconds: 0,
            nanos: 0,
        };
        assert_eq!(timeout_or(&Some(zero), default), None);
        let half = ProtoDuration {
            seconds: 0,
            nanos: 500_000_000,
        };
        assert_eq!(
            timeout_or(&Some(half), default),
            Some(Duration::from_millis(500))
        );
    }

    #[test]
    fn unpack_checks_the_type_url() {
        let cluster = Cluster {
            name: "backend".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: Cluster::type_url(),
            value: cluster.encode_to_vec(),
        };
        assert_eq!(unpack::<Cluster>(&any).unwrap().name, "backend");
        let wrong = Any {
            type_url: "type.googleapis.com/envoy.config.listener.v3.Listener".into(),
            value: vec![],
        };
        let error = unpack::<Cluster>(&wrong).unwrap_err();
        assert!(error
            .message
            .contains("expected type envoy.config.cluster.v3.Cluster"));
    }
}
