//! Configuration: Envoy v3 bootstrap (YAML/JSON) and, later, xDS resources,
//! parsed into Envoy's own protobuf types, validated, and compiled into the
//! immutable snapshot the proxy serves from.

pub mod error;

pub use error::{join_path, ConfigError, ConfigErrors};
pub mod descriptors;
mod pgv;
mod pgv_rules;
pub mod proto;
pub mod yaml;

pub use yaml::parse_message;
