//! The query parameters of `/stats` and `/stats/prometheus` (`filter`,
//! `usedonly`, `type`, `format`, `histogram_buckets`), validated the way
//! Envoy's admin validates them, with Envoy's error texts.

use regex::Regex;

use super::Metric;

/// Which kinds of stat `/stats?type=` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsType {
    #[default]
    All,
    Counters,
    Gauges,
    Histograms,
    /// Envoy's text readouts; Sluice registers none, so this selects nothing.
    TextReadouts,
}

/// The output format `/stats?format=` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsFormat {
    #[default]
    Text,
    Json,
    Prometheus,
}

/// Parsed `/stats` parameters.
#[derive(Debug, Clone, Default)]
pub struct StatsParams {
    pub filter: Option<Regex>,
    pub used_only: bool,
    pub stats_type: StatsType,
    pub format: StatsFormat,
}

impl StatsParams {
    /// Parses decoded query pairs; an `Err` carries the body of the 400 reply.
    pub fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let mut params = StatsParams::default();
        for (key, value) in query {
            match key.as_str() {
                "usedonly" => params.used_only = true,
                "filter" => {
                    let regex = regex::RegexBuilder::new(value)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|_| "Invalid re2 regex".to_string())?;
                    params.filter = Some(regex);
                }
                "type" => {
                    params.stats_type = match value.as_str() {
                        "All" => StatsType::All,
                        "Counters" => StatsType::Counters,
                        "Gauges" => StatsType::Gauges,
                        "Histograms" => StatsType::Histograms,
                        "TextReadouts" => StatsType::TextReadouts,
                        _ => return Err("invalid &type= param".to_string()),
                    }
                }
                "format" => {
                    params.format =
                        match value.as_str() {
                            "text" => StatsFormat::Text,
                            "json" => StatsFormat::Json,
                            "prometheus" => StatsFormat::Prometheus,
                            "html" | "active-html" => {
                                return Err(format!("format={value} is not supported by Sluice"))
                            }
                            _ => return Err(
                                "usage: /stats?format=(html|active-html|json|prometheus|text)\n\n"
                                    .to_string(),
                            ),
                        }
                }
                "histogram_buckets" => match value.as_str() {
                    "summary" => {}
                    "cumulative" | "disjoint" | "detailed" => {
                        return Err(format!(
                            "histogram_buckets={value} is not supported by Sluice (only summary)"
                        ))
                    }
                    _ => return Err(
                        "usage: /stats?histogram_buckets=(cumulative|disjoint|detailed|summary)\n"
                            .to_string(),
                    ),
                },
                // Envoy ignores parameters it does not know (e.g. `pretty`).
                _ => {}
            }
        }
        Ok(params)
    }

    /// Whether `name`/`metric` passes `filter`, `usedonly` and `type`.
    pub fn selects(&self, name: &str, metric: &Metric) -> bool {
        let type_ok = matches!(
            (self.stats_type, metric),
            (StatsType::All, _)
                | (StatsType::Counters, Metric::Counter(_))
                | (StatsType::Gauges, Metric::Gauge(_))
                | (StatsType::Histograms, Metric::Histogram(_))
        );
        type_ok
            && (!self.used_only || metric.used())
            && self.filter.as_ref().is_none_or(|re| re.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_parameter() {
        let p = StatsParams::parse(&q(&[
            ("usedonly", ""),
            ("filter", "^cluster\\."),
            ("type", "Gauges"),
            ("format", "json"),
            ("histogram_buckets", "summary"),
            ("pretty", ""),
        ]))
        .unwrap();
        assert!(p.used_only);
        assert_eq!(p.stats_type, StatsType::Gauges);
        assert_eq!(p.format, StatsFormat::Json);
        assert!(p.filter.unwrap().is_match("cluster.a.x"));
    }

    #[test]
    fn rejects_bad_values_with_envoys_messages() {
        let err = |pairs: &[(&str, &str)]| StatsParams::parse(&q(pairs)).unwrap_err();
        assert_eq!(err(&[("filter", "(")]), "Invalid re2 regex");
        assert_eq!(err(&[("type", "counters")]), "invalid &type= param");
        assert!(err(&[("format", "xml")]).starts_with("usage: /stats?format="));
        assert!(err(&[("format", "html")]).contains("not supported by Sluice"));
        assert!(err(&[("histogram_buckets", "detailed")]).contains("not supported"));
        assert!(err(&[("histogram_buckets", "nope")]).starts_with("usage:"));
    }

    #[test]
    fn selection_applies_type_used_and_filter() {
        let store = super::super::Store::new();
        let unused = store.counter("cluster.a.upstream_rq_total");
        store.gauge("server.live").set(0);
        let metrics = store.snapshot();
        let p = StatsParams::parse(&q(&[("usedonly", "")])).unwrap();
        let selected: Vec<_> = metrics
            .iter()
            .filter(|(n, m)| p.selects(n, m))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(selected, vec!["server.live"], "a gauge set to 0 is used");
        unused.add(0);
        assert!(p.selects("cluster.a.upstream_rq_total", &Metric::Counter(unused)));
        let p = StatsParams::parse(&q(&[("type", "Counters"), ("filter", "live")])).unwrap();
        assert!(!metrics.iter().any(|(n, m)| p.selects(n, m)));
    }
}
