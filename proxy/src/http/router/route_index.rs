//! A prefilter over one virtual host's routes, built once at compile time,
//! so a request tries only the routes whose path could match instead of
//! every route's regex in turn.
//!
//! Every path matcher implies a literal the path must start with: the
//! prefix of `prefix` and `path_separated_prefix`, the whole `path`, and for
//! `safe_regex` the literal prefixes `regex-syntax` extracts (one per
//! alternative). Those literals, ASCII-lowercased and cut to
//! [`KEY_MAX_BYTES`], key a hash map of route indices; a request looks up
//! each key length on its own lowercased path. Cutting and lowercasing only
//! widen the candidate set, and every candidate then runs its full matcher
//! (path, gRPC, headers, query parameters, cookies, runtime fraction), so the
//! result is exactly the first matching route in configuration order —
//! Envoy's first-match semantics. Routes without a usable literal (a regex
//! such as `.*\.png`, an empty prefix) are tried for every request.

use crate::fast_hash::FastHashMap;

use regex_syntax::hir::literal::Extractor;

use super::route_match::PathMatch;

/// Literal prefixes longer than this are cut (still a valid prefilter).
pub const KEY_MAX_BYTES: usize = 64;

/// Virtual hosts with fewer routes than this scan them in order: hashing
/// the path costs more than a few cheap matchers.
pub const INDEX_MIN_ROUTES: usize = 8;

/// Candidate routes by literal path prefix.
#[derive(Debug, Clone, Default)]
pub struct RouteIndex {
    /// ASCII-lowercased literal prefix → route indices, ascending.
    by_prefix: FastHashMap<Box<[u8]>, Vec<u32>>,
    /// The distinct key lengths of `by_prefix`, ascending.
    key_lengths: Vec<usize>,
    /// Routes every request must try (no usable literal prefix), ascending.
    always: Vec<u32>,
}

impl RouteIndex {
    /// Indexes the path matchers of a virtual host's routes, in order.
    pub fn build<'a>(paths: impl IntoIterator<Item = &'a PathMatch>) -> Self {
        let mut index = RouteIndex::default();
        for (i, path) in paths.into_iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 routes");
            match literal_prefixes(path) {
                Some(prefixes) if prefixes.iter().all(|p| !p.is_empty()) => {
                    for prefix in prefixes {
                        let len = prefix.len().min(KEY_MAX_BYTES);
                        let key: Box<[u8]> = prefix[..len].to_ascii_lowercase().into();
                        let list = index.by_prefix.entry(key).or_default();
                        if list.last() != Some(&i) {
                            list.push(i);
                        }
                    }
                }
                _ => index.always.push(i),
            }
        }
        let mut lengths: Vec<usize> = index.by_prefix.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        index.key_lengths = lengths;
        index
    }

    /// The smallest route index for which `matches` holds, trying only the
    /// candidates for `path` (each at most once per key it is filed under,
    /// and never one past an already found match).
    pub fn first_match(&self, path: &str, mut matches: impl FnMut(usize) -> bool) -> Option<usize> {
        let bytes = path.as_bytes();
        let len = bytes.len().min(KEY_MAX_BYTES);
        let mut lowered = [0u8; KEY_MAX_BYTES];
        for (to, from) in lowered[..len].iter_mut().zip(bytes) {
            *to = from.to_ascii_lowercase();
        }
        let mut best = usize::MAX;
        try_in_order(&self.always, &mut best, &mut matches);
        for &key_len in &self.key_lengths {
            if key_len > len {
                break;
            }
            if let Some(list) = self.by_prefix.get(&lowered[..key_len]) {
                try_in_order(list, &mut best, &mut matches);
            }
        }
        (best != usize::MAX).then_some(best)
    }

    /// The number of routes tried for every request.
    #[cfg(test)]
    pub fn unindexed_routes(&self) -> usize {
        self.always.len()
    }
}

/// Tries `list` (ascending) up to `best`, lowering `best` to the first match.
fn try_in_order(list: &[u32], best: &mut usize, matches: &mut impl FnMut(usize) -> bool) {
    for &i in list {
        let i = i as usize;
        if i >= *best {
            return;
        }
        if matches(i) {
            *best = i;
            return;
        }
    }
}

/// The literals one of which starts every path `path` matches; `None` when
/// there is no such finite set. An empty set means the matcher never matches.
fn literal_prefixes(path: &PathMatch) -> Option<Vec<Vec<u8>>> {
    match path {
        PathMatch::Prefix { prefix, .. } | PathMatch::SeparatedPrefix { prefix, .. } => {
            Some(vec![prefix.as_bytes().to_vec()])
        }
        PathMatch::Exact { path, .. } => Some(vec![path.as_bytes().to_vec()]),
        PathMatch::Regex(regex) => {
            // The same syntax defaults as `regex::Regex::new`, which compiled it.
            let hir = regex_syntax::Parser::new().parse(regex.as_str()).ok()?;
            // Small classes only (ASCII case pairs, `[Kk]` with the Kelvin
            // sign): a digit class would file the route under ten keys.
            let seq = Extractor::new()
                .limit_class(3)
                .limit_total(64)
                .extract(&hir);
            let literals = seq.literals()?;
            Some(literals.iter().map(|l| l.as_bytes().to_vec()).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn regex(pattern: &str) -> PathMatch {
        PathMatch::Regex(Regex::new(&format!("^(?:{pattern})$")).unwrap())
    }

    fn prefixes(path: &PathMatch) -> Option<Vec<String>> {
        literal_prefixes(path).map(|all| {
            let mut all: Vec<String> = all
                .into_iter()
                .map(|p| String::from_utf8(p).unwrap())
                .collect();
            all.sort();
            all
        })
    }

    #[test]
    fn regexes_yield_their_literal_prefixes() {
        assert_eq!(
            prefixes(&regex("/api/v1/service7/[a-z]+/[0-9]+")).unwrap(),
            ["/api/v1/service7/"]
        );
        assert_eq!(
            prefixes(&regex("/(abc|xyz)/[0-9]+")).unwrap(),
            ["/abc/", "/xyz/"]
        );
        assert_eq!(
            prefixes(&regex("(?i)/ab[0-9]")).unwrap(),
            ["/AB", "/Ab", "/aB", "/ab"]
        );
        // Nothing literal to start with: tried for every request.
        let any = prefixes(&regex(".*\\.png"));
        assert!(any.is_none_or(|p| p.iter().any(String::is_empty)));
    }

    #[test]
    fn unindexable_routes_are_tried_for_every_path() {
        let routes = [
            regex(".*\\.png"),
            PathMatch::Prefix {
                prefix: String::new(),
                case_sensitive: true,
            },
            PathMatch::Exact {
                path: "/x".into(),
                case_sensitive: true,
            },
        ];
        let index = RouteIndex::build(&routes);
        assert_eq!(index.unindexed_routes(), 2);
        let mut tried = Vec::new();
        index.first_match("/y", |i| {
            tried.push(i);
            false
        });
        assert_eq!(tried, [0, 1]);
    }

    #[test]
    fn long_prefixes_are_cut_and_still_match() {
        let long = format!("/{}", "a".repeat(100));
        let routes = [PathMatch::Prefix {
            prefix: long.clone(),
            case_sensitive: true,
        }];
        let index = RouteIndex::build(&routes);
        let path = format!("{long}/more");
        assert_eq!(
            index.first_match(&path, |i| routes[i].matches(&path)),
            Some(0)
        );
        assert_eq!(
            index.first_match("/aaa", |i| routes[i].matches("/aaa")),
            None
        );
    }
}
