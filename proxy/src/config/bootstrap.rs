//! Loading the bootstrap as Envoy does from `-c <file>` and
//! `--config-yaml <yaml>`, and the validation every configuration message
//! goes through (bootstrap now, xDS resources later): the PGV rules in
//! Envoy's protos, then the check that Sluice implements everything set.

use std::path::Path;

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use prost::{Message, Name};
use prost_reflect::{DynamicMessage, MessageDescriptor};

use super::descriptors::{message_descriptor, to_dynamic};
use super::pgv::check_message;
use super::supported::check_supported;
use super::yaml::parse_dynamic;
use super::{ConfigError, ConfigErrors};

/// Envoy's `-c` plus `--config-yaml`: the file is read (YAML, JSON, or
/// binary proto for `.pb`), the YAML is merged over it with protobuf
/// MergeFrom semantics (set scalars override, repeated fields append,
/// messages merge), either alone is enough. The result is validated and
/// checked for unsupported fields; every problem found is returned.
pub fn load_bootstrap(
    path: Option<&Path>,
    config_yaml: Option<&str>,
) -> Result<Bootstrap, ConfigErrors> {
    let descriptor = bootstrap_descriptor()?;
    let mut bootstrap = match (path, config_yaml) {
        (None, None) => {
            return Err(ConfigError::new(
                "",
                "no configuration given: pass a bootstrap file (-c) or --config-yaml",
            )
            .into())
        }
        (Some(path), _) => read_file(path, &descriptor)?,
        (None, Some(_)) => DynamicMessage::new(descriptor.clone()),
    };
    if let Some(yaml) = config_yaml {
        let overlay = parse_dynamic(yaml, &descriptor).map_err(|mut error| {
            if path.is_some() {
                error.message.push_str(" (in --config-yaml)");
            }
            error
        })?;
        bootstrap
            .merge(overlay.encode_to_vec().as_slice())
            .map_err(|error| {
                ConfigError::new("", format!("cannot merge --config-yaml: {error}"))
            })?;
    }
    validate_dynamic(&bootstrap)?;
    bootstrap.transcode_to::<Bootstrap>().map_err(|error| {
        ConfigError::new("", format!("cannot convert the bootstrap: {error}")).into()
    })
}

fn bootstrap_descriptor() -> Result<MessageDescriptor, ConfigError> {
    message_descriptor(&Bootstrap::full_name())
        .ok_or_else(|| ConfigError::new("", "the descriptor pool lacks the Bootstrap message"))
}

fn read_file(path: &Path, descriptor: &MessageDescriptor) -> Result<DynamicMessage, ConfigError> {
    let shown = path.display();
    let bytes = std::fs::read(path)
        .map_err(|error| ConfigError::new("", format!("cannot read {shown}: {error}")))?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("pb") => {
            DynamicMessage::decode(descriptor.clone(), bytes.as_slice()).map_err(|error| {
                ConfigError::new("", format!("{shown} is not a binary Bootstrap: {error}"))
            })
        }
        Some("pb_text") => Err(ConfigError::new(
            "",
            format!("{shown}: protobuf text format is not supported by Sluice; use YAML or JSON"),
        )),
        _ => {
            let text = String::from_utf8(bytes)
                .map_err(|_| ConfigError::new("", format!("{shown} is not UTF-8 text")))?;
            parse_dynamic(&text, descriptor)
        }
    }
}

/// The PGV rules and the supported-field check on a typed message of any
/// Envoy type (a Bootstrap, a Cluster from xDS, …); every problem, with paths
/// relative to `message`.
pub fn validate_message<T: Message + Name>(message: &T) -> Result<(), ConfigErrors> {
    let full_name = T::full_name();
    let dynamic = to_dynamic(message).ok_or_else(|| {
        ConfigError::new("", format!("{full_name} is not an Envoy v3 message type"))
    })?;
    validate_dynamic(&dynamic)
}

/// [`validate_message`] on an already reflected message. Rule violations
/// inside something Sluice does not support are left out: "not supported"
/// is the one thing to fix there.
pub fn validate_dynamic(message: &DynamicMessage) -> Result<(), ConfigErrors> {
    let unsupported = check_supported(message);
    let mut errors = ConfigErrors::default();
    for violation in check_message(message).0 {
        if !unsupported
            .0
            .iter()
            .any(|u| is_within(&violation.path, &u.path))
        {
            errors.push(violation);
        }
    }
    errors.0.extend(unsupported.0);
    errors.into_result(())
}

/// `path` is `prefix` or lies below it (`prefix.x`, `prefix[0]`).
fn is_within(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with(['.', '[']),
        None => false,
    }
}

#[cfg(test)]
#[path = "bootstrap_tests.rs"]
mod tests;
