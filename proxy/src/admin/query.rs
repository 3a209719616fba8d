//! Query-string and form-body parsing for admin requests: `a=1&b&c=%2F`
//! becomes `[("a","1"),("b",""),("c","/")]`, in order. `+` stays a plus
//! (stat filters are regexes).

/// Splits and percent-decodes `key=value` pairs; a key without `=` has an
/// empty value. Empty segments are skipped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// Decodes `%XX` escapes; malformed escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(byte) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &str) -> Vec<(String, String)> {
        parse_query(query)
    }

    #[test]
    fn splits_and_decodes() {
        assert_eq!(
            pairs("filter=%5Ecluster%5C.&usedonly&&format=json"),
            vec![
                ("filter".into(), "^cluster\\.".into()),
                ("usedonly".into(), String::new()),
                ("format".into(), "json".into()),
            ]
        );
        assert_eq!(pairs("a=x+y"), vec![("a".into(), "x+y".into())]);
        assert_eq!(pairs("a=%zz%4"), vec![("a".into(), "%zz%4".into())]);
        assert_eq!(pairs("a=%41"), vec![("a".into(), "A".into())]);
        assert!(pairs("").is_empty());
    }
}
