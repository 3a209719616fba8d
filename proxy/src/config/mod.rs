//! Configuration: Envoy v3 bootstrap (YAML/JSON) and, later, xDS resources,
//! parsed into Envoy's own protobuf types, validated, and compiled into the
//! immutable snapshot the proxy serves from.

pub mod bootstrap;
pub mod context;
mod descriptor_index;
pub mod descriptors;
pub mod eds_validate;
pub mod error;
pub mod json;
mod pgv;
mod pgv_rules;
pub mod proto;
pub mod supported;
pub mod yaml;

pub use bootstrap::{load_bootstrap, validate_message};
pub use error::{join_path, ConfigError, ConfigErrors};
pub use json::{any_to_json, to_json};
pub use yaml::parse_message;
