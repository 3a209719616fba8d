//! Virtual-host selection by `domains`, as Envoy's `RouteMatcher`:
//! exact names first (one hash lookup), then suffix wildcards (`*.foo.com`,
//! `*-bar.foo.com`) longest first, then prefix wildcards (`foo.*`, `foo-*`)
//! longest first, then the single `*`. A wildcard never matches an empty
//! part: `*.foo.com` does not match `.foo.com`. Hosts and domains compare
//! case-insensitively; ports are part of the host unless the route
//! configuration sets `ignore_port_in_host_matching`. Like Envoy, an empty
//! domain is accepted and matches only an empty Host.

use crate::config::ConfigError;
use crate::fast_hash::FastHashMap;

/// Index of virtual hosts by domain; values are positions in the table's
/// virtual host list.
#[derive(Debug, Clone, Default)]
pub struct DomainIndex {
    exact: FastHashMap<String, usize>,
    /// `(length of the suffix, suffix → vhost)`, longest suffix first.
    suffixes: Vec<(usize, FastHashMap<String, usize>)>,
    /// `(length of the prefix, prefix → vhost)`, longest prefix first.
    prefixes: Vec<(usize, FastHashMap<String, usize>)>,
    default: Option<usize>,
}

impl DomainIndex {
    /// Adds `domain` for virtual host `vhost`; error paths are relative to
    /// the domain itself. `owner` names virtual hosts for duplicate errors.
    pub fn insert(
        &mut self,
        domain: &str,
        vhost: usize,
        owner: impl Fn(usize) -> String,
    ) -> Result<(), ConfigError> {
        if domain.chars().any(|c| c.is_control()) {
            return Err(ConfigError::new(
                "",
                format!(
                    "domain \"{}\" contains a control character",
                    domain.escape_debug()
                ),
            ));
        }
        let domain = domain.to_ascii_lowercase();
        let previous = if domain == "*" {
            self.default.replace(vhost)
        } else if let Some(suffix) = domain.strip_prefix('*') {
            insert_by_length(&mut self.suffixes, suffix, vhost)
        } else if let Some(prefix) = domain.strip_suffix('*') {
            insert_by_length(&mut self.prefixes, prefix, vhost)
        } else {
            self.exact.insert(domain.clone(), vhost)
        };
        match previous {
            None => Ok(()),
            Some(other) => Err(ConfigError::new(
                "",
                format!(
                    "duplicate domain \"{domain}\": already used by virtual host {}; \
                     domains must be unique across virtual hosts",
                    owner(other)
                ),
            )),
        }
    }

    /// For a request without a Host: only a table whose sole entry is `*`
    /// answers (Envoy's fast path), any other finds nothing.
    pub fn find_default_only(&self) -> Option<usize> {
        if self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty() {
            self.default
        } else {
            None
        }
    }

    /// The virtual host for `host` (already port-stripped when configured).
    pub fn find(&self, host: &str) -> Option<usize> {
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        if let Some(vhost) = self.exact.get(host) {
            return Some(*vhost);
        }
        for (len, suffixes) in &self.suffixes {
            // Strictly longer: the wildcard must match at least one character.
            if host.len() > *len {
                if let Some(tail) = host.get(host.len() - len..) {
                    if let Some(vhost) = suffixes.get(tail) {
                        return Some(*vhost);
                    }
                }
            }
        }
        for (len, prefixes) in &self.prefixes {
            if host.len() > *len {
                if let Some(head) = host.get(..*len) {
                    if let Some(vhost) = prefixes.get(head) {
                        return Some(*vhost);
                    }
                }
            }
        }
        self.default
    }
}

fn insert_by_length(
    buckets: &mut Vec<(usize, FastHashMap<String, usize>)>,
    part: &str,
    vhost: usize,
) -> Option<usize> {
    let len = part.len();
    let position = match buckets.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(found) => found,
        Err(insert_at) => {
            buckets.insert(insert_at, (len, FastHashMap::default()));
            insert_at
        }
    };
    buckets[position].1.insert(part.to_string(), vhost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(vhosts: &[&[&str]]) -> DomainIndex {
        let mut index = DomainIndex::default();
        for (i, domains) in vhosts.iter().enumerate() {
            for domain in *domains {
                index.insert(domain, i, |v| v.to_string()).unwrap();
            }
        }
        index
    }

    #[test]
    fn precedence_is_exact_then_suffix_then_prefix_then_any() {
        let idx = index(&[
            &["www.foo.com"],               // 0
            &["*.foo.com"],                 // 1
            &["*.bar.foo.com"],             // 2
            &["www.*"],                     // 3
            &["www.foo.*"],                 // 4
            &["*"],                         // 5
            &["*-bar.baz.com", "api-*"],    // 6
            &["foo.com:8080", "foo.com:*"], // 7
        ]);
        let cases: &[(&str, Option<usize>)] = &[
            ("www.foo.com", Some(0)),
            ("WWW.Foo.COM", Some(0)),
            ("api.foo.com", Some(1)),
            ("x.bar.foo.com", Some(2)), // longest suffix wins
            ("bar.foo.com", Some(1)),
            (".foo.com", Some(5)),    // a wildcard never matches nothing
            ("www.foo.org", Some(4)), // longest prefix wins
            ("www.example.com", Some(3)),
            ("www.", Some(5)),
            ("baz-bar.baz.com", Some(6)),
            ("-bar.baz.com", Some(5)),
            ("api-gw", Some(6)),
            ("api.foo.com.evil", Some(5)),
            ("foo.com:8080", Some(7)),
            ("foo.com:9", Some(7)),
            ("other", Some(5)),
        ];
        for (host, want) in cases {
            assert_eq!(idx.find(host), *want, "{host}");
        }
        // Exact beats a suffix wildcard even when the wildcard is longer.
        let idx = index(&[&["a.b.c.d"], &["*.b.c.d"]]);
        assert_eq!(idx.find("a.b.c.d"), Some(0));
    }

    #[test]
    fn without_a_catch_all_unknown_hosts_find_nothing() {
        let idx = index(&[&["a.com"]]);
        assert_eq!(idx.find("b.com"), None);
        assert_eq!(index(&[&["*"]]).find("anything"), Some(0));
    }

    #[test]
    fn duplicate_domains_are_errors_and_an_empty_domain_is_exact() {
        let mut idx = DomainIndex::default();
        idx.insert("A.com", 0, |v| format!("#{v}")).unwrap();
        let error = idx.insert("a.COM", 1, |v| format!("#{v}")).unwrap_err();
        assert!(
            error.message.contains("duplicate domain \"a.com\""),
            "{}",
            error.message
        );
        assert!(error.message.contains("#0"));
        idx.insert("*", 0, |v| v.to_string()).unwrap();
        assert!(idx.insert("*", 1, |v| v.to_string()).is_err());
        idx.insert("*.x", 0, |v| v.to_string()).unwrap();
        assert!(idx.insert("*.x", 1, |v| v.to_string()).is_err());
        idx.insert("y.*", 0, |v| v.to_string()).unwrap();
        assert!(idx.insert("y.*", 1, |v| v.to_string()).is_err());
        idx.insert("", 0, |v| v.to_string()).unwrap();
        assert_eq!(idx.find(""), Some(0));
        assert!(idx.insert("", 1, |v| v.to_string()).is_err());
        assert!(idx.insert("a\nb", 1, |v| v.to_string()).is_err());
    }
}
