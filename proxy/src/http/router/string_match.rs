//! Envoy's `StringMatcher` (exact / prefix / suffix / contains / safe_regex,
//! with `ignore_case`) and `RegexMatcher`, compiled once. Regexes use the
//! `regex` crate, whose syntax and linear-time guarantee follow RE2's; a
//! `safe_regex` matches the whole value, as RE2's `FullMatch` does.

use envoy_types::pb::envoy::r#type::matcher::v3::{
    string_matcher::MatchPattern, RegexMatchAndSubstitute, RegexMatcher, StringMatcher,
};
use regex::Regex;

use crate::config::ConfigError;

/// A compiled `StringMatcher`.
#[derive(Debug, Clone)]
pub struct StringMatch {
    kind: StringMatchKind,
    /// ASCII case-insensitive; never set for regexes (Envoy ignores it there).
    ignore_case: bool,
}

#[derive(Debug, Clone)]
enum StringMatchKind {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
    Regex(Regex),
}

impl StringMatch {
    /// Compiles a `StringMatcher`; error paths are relative to it.
    pub fn compile(config: &StringMatcher) -> Result<Self, ConfigError> {
        let kind = match &config.match_pattern {
            None => {
                return Err(ConfigError::new(
                    "match_pattern",
                    "one of exact, prefix, suffix, contains or safe_regex is required",
                ))
            }
            Some(MatchPattern::Exact(value)) => StringMatchKind::Exact(value.clone()),
            Some(MatchPattern::Prefix(value)) => {
                StringMatchKind::Prefix(non_empty(value, "prefix")?)
            }
            Some(MatchPattern::Suffix(value)) => {
                StringMatchKind::Suffix(non_empty(value, "suffix")?)
            }
            Some(MatchPattern::Contains(value)) => {
                StringMatchKind::Contains(non_empty(value, "contains")?)
            }
            Some(MatchPattern::SafeRegex(regex)) => StringMatchKind::Regex(
                compile_full_match(regex).map_err(|e| e.under("safe_regex"))?,
            ),
            Some(MatchPattern::Custom(_)) => {
                return Err(ConfigError::new(
                    "custom",
                    "field 'custom' is not supported by Sluice",
                ))
            }
        };
        Ok(Self::new(kind, config.ignore_case))
    }

    fn new(kind: StringMatchKind, ignore_case: bool) -> Self {
        let ignore_case = ignore_case && !matches!(kind, StringMatchKind::Regex(_));
        StringMatch { kind, ignore_case }
    }

    pub fn exact(value: &str) -> Self {
        Self::new(StringMatchKind::Exact(value.to_string()), false)
    }

    pub fn prefix(value: &str) -> Self {
        Self::new(StringMatchKind::Prefix(value.to_string()), false)
    }

    pub fn suffix(value: &str) -> Self {
        Self::new(StringMatchKind::Suffix(value.to_string()), false)
    }

    pub fn contains(value: &str) -> Self {
        Self::new(StringMatchKind::Contains(value.to_string()), false)
    }

    pub fn regex(regex: Regex) -> Self {
        Self::new(StringMatchKind::Regex(regex), false)
    }

    pub fn matches(&self, value: &str) -> bool {
        let ic = self.ignore_case;
        match &self.kind {
            StringMatchKind::Exact(want) => {
                if ic {
                    value.eq_ignore_ascii_case(want)
                } else {
                    value == want
                }
            }
            StringMatchKind::Prefix(want) => starts_with(value, want, ic),
            StringMatchKind::Suffix(want) => {
                value.len() >= want.len()
                    && bytes_equal(&value.as_bytes()[value.len() - want.len()..], want, ic)
            }
            StringMatchKind::Contains(want) => {
                if ic {
                    value
                        .as_bytes()
                        .windows(want.len())
                        .any(|window| window.eq_ignore_ascii_case(want.as_bytes()))
                } else {
                    value.contains(want.as_str())
                }
            }
            StringMatchKind::Regex(regex) => regex.is_match(value),
        }
    }
}

fn non_empty(value: &str, field: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(ConfigError::new(field, "must not be empty"));
    }
    Ok(value.to_string())
}

fn bytes_equal(a: &[u8], b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b.as_bytes())
    } else {
        a == b.as_bytes()
    }
}

/// `value.starts_with(prefix)`, optionally ASCII case-insensitive.
pub fn starts_with(value: &str, prefix: &str, ignore_case: bool) -> bool {
    value.len() >= prefix.len()
        && bytes_equal(&value.as_bytes()[..prefix.len()], prefix, ignore_case)
}

/// Compiles a `RegexMatcher` that must match the whole input (RE2
/// `FullMatch`). The error path is relative to the `RegexMatcher`.
pub fn compile_full_match(config: &RegexMatcher) -> Result<Regex, ConfigError> {
    compile(&config.regex, true)
}

/// Compiles a `RegexMatcher` used to search (substitutions).
pub fn compile_search(config: &RegexMatcher) -> Result<Regex, ConfigError> {
    compile(&config.regex, false)
}

fn compile(pattern: &str, anchored: bool) -> Result<Regex, ConfigError> {
    if pattern.is_empty() {
        return Err(ConfigError::new("regex", "must not be empty"));
    }
    let source = if anchored {
        format!("^(?:{pattern})$")
    } else {
        pattern.to_string()
    };
    Regex::new(&source).map_err(|error| {
        ConfigError::new(
            "regex",
            format!("invalid regex \"{pattern}\": {}", first_line(&error)),
        )
    })
}

fn first_line(error: &regex::Error) -> String {
    // The regex crate's messages are multi-line drawings of the pattern; the
    // last line carries the reason.
    let text = error.to_string();
    text.lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or(&text)
        .trim()
        .trim_start_matches("error: ")
        .to_string()
}

/// A compiled `RegexMatchAndSubstitute`: every match of `pattern` is
/// replaced by `substitution`, whose `\N` group references (RE2 rewrite
/// syntax) are translated to the regex crate's `${N}` at compile time.
#[derive(Debug, Clone)]
pub struct RegexSubstitution {
    regex: Regex,
    replacement: String,
}

impl RegexSubstitution {
    /// Error paths are relative to the `RegexMatchAndSubstitute`.
    pub fn compile(config: &RegexMatchAndSubstitute) -> Result<Self, ConfigError> {
        let Some(pattern) = &config.pattern else {
            return Err(ConfigError::new("pattern", "is required"));
        };
        let regex = compile_search(pattern).map_err(|e| e.under("pattern"))?;
        let replacement = translate_rewrite(&config.substitution, regex.captures_len() - 1)
            .map_err(|message| ConfigError::new("substitution", message))?;
        Ok(RegexSubstitution { regex, replacement })
    }

    /// Replaces every match in `input`.
    pub fn replace_all(&self, input: &str) -> String {
        self.regex
            .replace_all(input, self.replacement.as_str())
            .into_owned()
    }
}

/// RE2 rewrite string → regex crate replacement: `\0`..`\9` are groups,
/// `\\` is a backslash, any other escape is an error; `$` is literal.
fn translate_rewrite(rewrite: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(rewrite.len() + 8);
    let mut chars = rewrite.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(digit @ '0'..='9') => {
                    let group = digit as usize - '0' as usize;
                    if group > groups {
                        return Err(format!(
                            "invalid substitution \"{rewrite}\": group \\{group} does not exist \
                             (the pattern has {groups} capture groups)"
                        ));
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                _ => {
                    return Err(format!(
                        "invalid substitution \"{rewrite}\": a backslash must be followed by \
                         a digit or another backslash"
                    ))
                }
            },
            '$' => out.push_str("$$"),
            other => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: MatchPattern, ignore_case: bool) -> StringMatch {
        StringMatch::compile(&StringMatcher {
            ignore_case,
            match_pattern: Some(pattern),
        })
        .unwrap()
    }

    fn regex(pattern: &str) -> RegexMatcher {
        RegexMatcher {
            regex: pattern.into(),
            ..Default::default()
        }
    }

    #[test]
    fn each_kind_matches_with_and_without_case() {
        let cases: &[(MatchPattern, bool, &str, bool)] = &[
            (MatchPattern::Exact("Abc".into()), false, "Abc", true),
            (MatchPattern::Exact("Abc".into()), false, "abc", false),
            (MatchPattern::Exact("Abc".into()), true, "aBC", true),
            (MatchPattern::Exact("".into()), false, "", true),
            (MatchPattern::Prefix("/Api".into()), false, "/Api/x", true),
            (MatchPattern::Prefix("/Api".into()), false, "/api/x", false),
            (MatchPattern::Prefix("/Api".into()), true, "/aPI/x", true),
            (MatchPattern::Prefix("/Api".into()), true, "/A", false),
            (MatchPattern::Suffix(".JSON".into()), false, "a.json", false),
            (MatchPattern::Suffix(".JSON".into()), true, "a.json", true),
            (MatchPattern::Contains("Mid".into()), false, "aMidb", true),
            (MatchPattern::Contains("Mid".into()), false, "amidb", false),
            (MatchPattern::Contains("Mid".into()), true, "amidb", true),
            (MatchPattern::SafeRegex(regex("a+b")), false, "aab", true),
            (MatchPattern::SafeRegex(regex("a+b")), false, "xaab", false),
            (MatchPattern::SafeRegex(regex("a+b")), false, "aabx", false),
            // ignore_case does not apply to regexes, as in Envoy.
            (MatchPattern::SafeRegex(regex("a+b")), true, "AAB", false),
            (MatchPattern::SafeRegex(regex("x|y")), false, "y", true),
        ];
        for (pattern, ignore_case, value, want) in cases {
            let m = matcher(pattern.clone(), *ignore_case);
            assert_eq!(
                m.matches(value),
                *want,
                "{pattern:?} ic={ignore_case} on {value:?}"
            );
        }
    }

    #[test]
    fn bad_matchers_are_rejected_with_paths() {
        let bad = |pattern: Option<MatchPattern>| {
            StringMatch::compile(&StringMatcher {
                ignore_case: false,
                match_pattern: pattern,
            })
            .unwrap_err()
        };
        let error = bad(Some(MatchPattern::SafeRegex(regex("a("))));
        assert_eq!(error.path, "safe_regex.regex");
        assert!(
            error.message.starts_with("invalid regex \"a(\""),
            "{}",
            error.message
        );
        assert_eq!(
            bad(Some(MatchPattern::Prefix(String::new()))).path,
            "prefix"
        );
        assert_eq!(bad(None).path, "match_pattern");
        assert!(bad(Some(MatchPattern::Custom(Default::default())))
            .message
            .contains("not supported by Sluice"));
    }

    #[test]
    fn substitutions_use_re2_group_syntax() {
        let sub = |pattern: &str, substitution: &str| {
            RegexSubstitution::compile(&RegexMatchAndSubstitute {
                pattern: Some(regex(pattern)),
                substitution: substitution.into(),
            })
        };
        let s = sub("^/service/([^/]+)(/.*)$", "\\2/instance/\\1").unwrap();
        assert_eq!(s.replace_all("/service/foo/v1/api"), "/v1/api/instance/foo");
        let s = sub("one", "two").unwrap();
        assert_eq!(
            s.replace_all("/xxx/one/yyy/one/zzz"),
            "/xxx/two/yyy/two/zzz"
        );
        let s = sub("a", "$1\\\\").unwrap();
        assert_eq!(s.replace_all("a"), "$1\\");
        let s = sub("(b)", "[\\0\\1]").unwrap();
        assert_eq!(s.replace_all("abc"), "a[bb]c");
        assert_eq!(sub("a", "\\1").unwrap_err().path, "substitution");
        assert_eq!(sub("a", "\\x").unwrap_err().path, "substitution");
        assert_eq!(sub("(", "").unwrap_err().path, "pattern.regex");
    }
}
