//! Configuration errors: one type for every problem found while parsing,
//! validating or compiling configuration, from a bootstrap file or from xDS.
//!
//! Each error names the exact path of the offending field in proto3 JSON
//! terms (`static_resources.clusters[1].connect_timeout`) so an operator can
//! find it, and the line/column when the source was YAML.

use std::fmt;

/// One problem in a configuration, located by its field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted field path, e.g. `static_resources.clusters[1].connect_timeout`.
    /// Empty for the document root.
    pub path: String,
    /// What is wrong, e.g. `invalid duration "5x"`.
    pub message: String,
    /// 1-based (line, column) in the YAML source, when known.
    pub location: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }

    /// The same error, located under `prefix` (`prefix.path`).
    pub fn under(mut self, prefix: &str) -> Self {
        self.path = join_path(prefix, &self.path);
        self
    }
}

/// Joins two path fragments: `join_path("a.b", "c[0]") == "a.b.c[0]"`,
/// `join_path("a", "[2].x") == "a[2].x"`.
pub fn join_path(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else if rest.is_empty() {
        prefix.to_string()
    } else if rest.starts_with('[') {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}.{rest}")
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some((line, column)) = self.location {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in one configuration; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds every error of `other`, each located under `prefix`.
    pub fn extend_under(&mut self, prefix: &str, other: ConfigErrors) {
        self.0
            .extend(other.0.into_iter().map(|error| error.under(prefix)));
    }

    /// `Ok(value)` when no error was collected.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_with_dots_and_brackets() {
        assert_eq!(join_path("a.b", "c[0]"), "a.b.c[0]");
        assert_eq!(join_path("a", "[2].x"), "a[2].x");
        assert_eq!(join_path("", "x"), "x");
        assert_eq!(join_path("x", ""), "x");
    }

    #[test]
    fn display_names_path_message_and_location() {
        let mut error = ConfigError::new("connect_timeout", "invalid duration \"5x\"")
            .under("static_resources.clusters[1]");
        assert_eq!(
            error.to_string(),
            "static_resources.clusters[1].connect_timeout: invalid duration \"5x\""
        );
        error.location = Some((22, 5));
        assert!(error.to_string().ends_with("at line 22 column 5"));
    }
}
