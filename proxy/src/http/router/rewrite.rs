//! Path rewrites shared by `route` and `redirect` actions: `prefix_rewrite`
//! replaces the part of the path the route matched (its prefix, its exact
//! path, or — for a regex route — the whole path), `regex_rewrite` replaces
//! every regex match in the path. The query string is always kept.

use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;

use super::route_match::PathMatch;
use super::string_match::RegexSubstitution;
use crate::config::ConfigError;

#[derive(Debug, Clone)]
pub enum PathRewrite {
    Prefix {
        /// Bytes of the path the route matched; `None`: the whole path.
        matched_len: Option<usize>,
        replacement: String,
    },
    Regex(RegexSubstitution),
}

impl PathRewrite {
    /// `prefix_rewrite` (empty = unset) or `regex_rewrite`, for a route
    /// matching with `path`. Error paths are relative to the action.
    pub fn compile(
        prefix_rewrite: &str,
        regex_rewrite: Option<&RegexMatchAndSubstitute>,
        path: &PathMatch,
    ) -> Result<Option<Self>, ConfigError> {
        if !prefix_rewrite.is_empty() {
            if prefix_rewrite.contains(['\0', '\r', '\n']) {
                return Err(ConfigError::new(
                    "prefix_rewrite",
                    "must not contain NUL, CR or LF",
                ));
            }
            return Ok(Some(PathRewrite::Prefix {
                matched_len: path.matched_len(),
                replacement: prefix_rewrite.to_string(),
            }));
        }
        match regex_rewrite {
            Some(config) => Ok(Some(PathRewrite::Regex(
                RegexSubstitution::compile(config).map_err(|e| e.under("regex_rewrite"))?,
            ))),
            None => Ok(None),
        }
    }

    /// The rewritten path and query, or `None` when nothing changes (Envoy
    /// also keeps the path when a regex rewrite produces an empty path).
    pub fn apply(&self, path_and_query: &str) -> Option<String> {
        let path_len = path_and_query.find('?').unwrap_or(path_and_query.len());
        match self {
            PathRewrite::Prefix {
                matched_len,
                replacement,
            } => {
                let matched = matched_len.unwrap_or(path_len).min(path_len);
                let rest = &path_and_query[matched..];
                let mut out = String::with_capacity(replacement.len() + rest.len());
                out.push_str(replacement);
                out.push_str(rest);
                Some(out)
            }
            PathRewrite::Regex(substitution) => {
                let new_path = substitution.replace_all(&path_and_query[..path_len]);
                if new_path.is_empty() {
                    return None;
                }
                Some(new_path + &path_and_query[path_len..])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
    use regex::Regex;

    fn prefix(path: PathMatch, rewrite: &str) -> PathRewrite {
        PathRewrite::compile(rewrite, None, &path).unwrap().unwrap()
    }

    fn regex(pattern: &str, substitution: &str) -> PathRewrite {
        let config = RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: pattern.into(),
                ..Default::default()
            }),
            substitution: substitution.into(),
        };
        let path = PathMatch::Prefix {
            prefix: "/".into(),
            case_sensitive: true,
        };
        PathRewrite::compile("", Some(&config), &path)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn prefix_rewrite_replaces_what_the_route_matched() {
        let p = |prefix: &str| PathMatch::Prefix {
            prefix: prefix.into(),
            case_sensitive: true,
        };
        let cases: &[(PathRewrite, &str, &str)] = &[
            (prefix(p("/api/"), "/"), "/api/users?x=1", "/users?x=1"),
            (prefix(p("/api"), "/v2"), "/api/users", "/v2/users"),
            (prefix(p("/"), "/base/"), "/x", "/base/x"),
            (
                prefix(
                    PathMatch::Prefix {
                        prefix: "/API".into(),
                        case_sensitive: false,
                    },
                    "/v1",
                ),
                "/api/x",
                "/v1/x",
            ),
            (
                prefix(
                    PathMatch::SeparatedPrefix {
                        prefix: "/old".into(),
                        case_sensitive: true,
                    },
                    "/new",
                ),
                "/old/x?q",
                "/new/x?q",
            ),
            (
                prefix(
                    PathMatch::Exact {
                        path: "/exact".into(),
                        case_sensitive: true,
                    },
                    "/other",
                ),
                "/exact?a=b",
                "/other?a=b",
            ),
            (
                prefix(PathMatch::Regex(Regex::new("^/r/.*$").unwrap()), "/whole"),
                "/r/anything?k=v",
                "/whole?k=v",
            ),
        ];
        for (rewrite, input, want) in cases {
            assert_eq!(rewrite.apply(input).as_deref(), Some(*want), "{input}");
        }
    }

    #[test]
    fn regex_rewrite_keeps_the_query_and_skips_empty_results() {
        let r = regex("^/service/([^/]+)(/.*)$", "\\2/instance/\\1");
        assert_eq!(
            r.apply("/service/foo/v1/api?x=/service/a/b").as_deref(),
            Some("/v1/api/instance/foo?x=/service/a/b")
        );
        let r = regex("one", "two");
        assert_eq!(r.apply("/one/one").as_deref(), Some("/two/two"));
        let r = regex("^.*$", "");
        assert_eq!(r.apply("/gone?q"), None);
    }

    #[test]
    fn bad_rewrites_are_rejected() {
        let path = PathMatch::Prefix {
            prefix: "/".into(),
            case_sensitive: true,
        };
        let error = PathRewrite::compile("/a\nb", None, &path).unwrap_err();
        assert_eq!(error.path, "prefix_rewrite");
        let config = RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: "[".into(),
                ..Default::default()
            }),
            substitution: String::new(),
        };
        let error = PathRewrite::compile("", Some(&config), &path).unwrap_err();
        assert_eq!(error.path, "regex_rewrite.pattern.regex");
    }
}
