//! Results: the record of each run, the summaries (median, min–max) and the
//! median of per-round ratios Sluice/peer, rendered as the stdout table, the
//! JSON file and the BENCHMARKS.md section.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::peers::Peer;
use super::scenario::Scenario;

/// One measured run of one peer in one round of one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    pub scenario: &'static str,
    pub peer: Peer,
    pub round: usize,
    /// Requests per second, or Gbit/s for bulk TCP.
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// CPU ms per 1,000 requests (= CPU µs per request), or CPU s per GB for
    /// bulk TCP; `None` for `direct` (no proxy process).
    pub cpu_per_unit: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    /// Resident set (`VmRSS`) once ready, before any load: what the peer
    /// holds idle (peak RSS also counts what start-up used and freed).
    pub idle_rss_mib: Option<f64>,
    pub ready_ms: Option<f64>,
    pub errors: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Rate,
    P50,
    P99,
    Cpu,
    PeakRss,
    IdleRss,
    Ready,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Rate,
        Metric::P50,
        Metric::P99,
        Metric::Cpu,
        Metric::PeakRss,
        Metric::IdleRss,
        Metric::Ready,
    ];

    pub fn of(self, run: &Run) -> Option<f64> {
        match self {
            Metric::Rate => Some(run.rate),
            Metric::P50 => run.p50_ms,
            Metric::P99 => run.p99_ms,
            Metric::Cpu => run.cpu_per_unit,
            Metric::PeakRss => run.peak_rss_mib,
            Metric::IdleRss => run.idle_rss_mib,
            Metric::Ready => run.ready_ms,
        }
    }

    pub fn label(self, scenario: Scenario) -> &'static str {
        match (self, scenario.is_bulk()) {
            (Metric::Rate, true) => "Gbit/s",
            (Metric::Rate, false) => "req/s",
            (Metric::P50, _) => "p50 ms",
            (Metric::P99, _) => "p99 ms",
            (Metric::Cpu, true) => "CPU s/GB",
            (Metric::Cpu, false) => "CPU ms/1k req",
            (Metric::PeakRss, _) => "peak RSS MiB",
            (Metric::IdleRss, _) => "idle RSS MiB",
            (Metric::Ready, _) => "ready ms",
        }
    }
}

/// Median and range of one metric over a peer's runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

fn spread(values: &[f64]) -> Option<Spread> {
    Some(Spread {
        median: median(values)?,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// Everything computed for one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct ScenarioSummary {
    pub scenario: &'static str,
    pub description: &'static str,
    pub rounds: usize,
    /// peer → metric → spread.
    pub spreads: BTreeMap<Peer, BTreeMap<Metric, Spread>>,
    /// peer → metric → median over rounds of Sluice/peer.
    pub ratios: BTreeMap<Peer, BTreeMap<Metric, f64>>,
}

pub fn summarise(scenario: Scenario, runs: &[Run]) -> ScenarioSummary {
    let runs: Vec<&Run> = runs
        .iter()
        .filter(|r| r.scenario == scenario.name())
        .collect();
    let rounds = runs.iter().map(|r| r.round + 1).max().unwrap_or(0);
    let mut spreads = BTreeMap::new();
    let mut ratios = BTreeMap::new();
    for peer in scenario.peers() {
        let mine: Vec<&&Run> = runs.iter().filter(|r| r.peer == peer).collect();
        let mut by_metric = BTreeMap::new();
        let mut ratio_by_metric = BTreeMap::new();
        for metric in Metric::ALL {
            let values: Vec<f64> = mine.iter().filter_map(|r| metric.of(r)).collect();
            if let Some(s) = spread(&values) {
                by_metric.insert(metric, s);
            }
            if peer == Peer::Sluice {
                continue;
            }
            let per_round: Vec<f64> = mine
                .iter()
                .filter_map(|other| {
                    let sluice = runs
                        .iter()
                        .find(|r| r.peer == Peer::Sluice && r.round == other.round)?;
                    let (a, b) = (metric.of(sluice)?, metric.of(other)?);
                    (b > 0.0).then_some(a / b)
                })
                .collect();
            if let Some(m) = median(&per_round) {
                ratio_by_metric.insert(metric, m);
            }
        }
        spreads.insert(peer, by_metric);
        if peer != Peer::Sluice {
            ratios.insert(peer, ratio_by_metric);
        }
    }
    ScenarioSummary {
        scenario: scenario.name(),
        description: scenario.describe(),
        rounds,
        spreads,
        ratios,
    }
}

fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1000.0 {
        let whole = format!("{:.0}", value);
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn cell(spread: Option<&Spread>) -> String {
    match spread {
        Some(s) if s.min == s.max => number(s.median),
        Some(s) => format!("{} ({}–{})", number(s.median), number(s.min), number(s.max)),
        None => "–".to_string(),
    }
}

/// Metrics worth a column in this scenario (some peers lack some metrics).
fn columns(summary: &ScenarioSummary) -> Vec<Metric> {
    Metric::ALL
        .into_iter()
        .filter(|m| summary.spreads.values().any(|by| by.contains_key(m)))
        .collect()
}

/// A Markdown table of one scenario: medians (min–max), then ratio rows.
pub fn markdown_table(scenario: Scenario, summary: &ScenarioSummary) -> String {
    let metrics = columns(summary);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "**{}** — {} ({} rounds)\n",
        summary.scenario, summary.description, summary.rounds
    );
    let header: Vec<&str> = metrics.iter().map(|m| m.label(scenario)).collect();
    let _ = writeln!(out, "| peer | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---:|".repeat(metrics.len()));
    for (peer, by_metric) in &summary.spreads {
        let cells: Vec<String> = metrics.iter().map(|m| cell(by_metric.get(m))).collect();
        let _ = writeln!(out, "| {} | {} |", peer.name(), cells.join(" | "));
    }
    for (peer, by_metric) in &summary.ratios {
        let cells: Vec<String> = metrics
            .iter()
            .map(|m| {
                by_metric
                    .get(m)
                    .map_or("–".to_string(), |r| format!("{r:.2}×"))
            })
            .collect();
        let _ = writeln!(
            out,
            "| *Sluice / {}* | {} |",
            peer.name(),
            cells.join(" | ")
        );
    }
    out
}

/// The instruction-count lines (per request), with the ratio.
pub fn instructions_text(counts: &BTreeMap<Peer, f64>) -> String {
    let mut out = String::new();
    for (peer, per_request) in counts {
        let _ = writeln!(
            out,
            "- {}: {} instructions per request",
            peer.name(),
            number(*per_request)
        );
    }
    if let (Some(s), Some(e)) = (counts.get(&Peer::Sluice), counts.get(&Peer::Envoy)) {
        let _ = writeln!(out, "- Sluice / Envoy: {:.2}×", s / e);
    }
    out
}

/// Replaces the text between `begin` and `end` markers in `document` (or
/// inserts the marked section before `before`, or at the end).
pub fn replace_section(document: &str, begin: &str, end: &str, body: &str, before: &str) -> String {
    let section = format!("{begin}\n{body}\n{end}");
    if let (Some(start), Some(stop)) = (document.find(begin), document.find(end)) {
        if start < stop {
            return format!(
                "{}{}{}",
                &document[..start],
                section,
                &document[stop + end.len()..]
            );
        }
    }
    match document.find(before) {
        Some(at) => format!("{}{}\n\n{}", &document[..at], section, &document[at..]),
        None => format!("{document}\n{section}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(peer: Peer, round: usize, rate: f64, cpu: Option<f64>) -> Run {
        Run {
            scenario: "http1",
            peer,
            round,
            rate,
            p50_ms: Some(1.0),
            p99_ms: None,
            cpu_per_unit: cpu,
            peak_rss_mib: None,
            idle_rss_mib: None,
            ready_ms: None,
            errors: 0,
        }
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn ratios_are_medians_of_per_round_ratios() {
        let runs = vec![
            run(Peer::Sluice, 0, 200.0, Some(10.0)),
            run(Peer::Envoy, 0, 100.0, Some(40.0)),
            run(Peer::Sluice, 1, 100.0, Some(10.0)),
            run(Peer::Envoy, 1, 100.0, Some(20.0)),
            run(Peer::Sluice, 2, 300.0, Some(10.0)),
            run(Peer::Envoy, 2, 100.0, Some(10.0)),
            run(Peer::Direct, 0, 400.0, None),
        ];
        let summary = summarise(Scenario::Http1, &runs);
        assert_eq!(summary.rounds, 3);
        assert_eq!(summary.ratios[&Peer::Envoy][&Metric::Rate], 2.0);
        assert_eq!(summary.ratios[&Peer::Envoy][&Metric::Cpu], 0.5);
        assert_eq!(summary.ratios[&Peer::Direct][&Metric::Rate], 0.5);
        assert!(!summary.ratios[&Peer::Direct].contains_key(&Metric::Cpu));
        let s = summary.spreads[&Peer::Sluice][&Metric::Rate];
        assert_eq!((s.median, s.min, s.max), (200.0, 100.0, 300.0));
        let table = markdown_table(Scenario::Http1, &summary);
        assert!(table.contains("| sluice | 200 (100–300) |"), "{table}");
        assert!(table.contains("| *Sluice / envoy* | 2.00× |"), "{table}");
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(number(36923.4), "36,923");
        assert_eq!(number(1234567.0), "1,234,567");
        assert_eq!(number(22.04), "22.0");
        assert_eq!(number(0.684), "0.68");
    }

    #[test]
    fn section_is_replaced_or_inserted() {
        let doc = "# T\n\nintro\n\n## old\n";
        let inserted = replace_section(doc, "<!-- b -->", "<!-- e -->", "one", "## old");
        assert_eq!(
            inserted,
            "# T\n\nintro\n\n<!-- b -->\none\n<!-- e -->\n\n## old\n"
        );
        let replaced = replace_section(&inserted, "<!-- b -->", "<!-- e -->", "two", "## old");
        assert_eq!(
            replaced,
            "# T\n\nintro\n\n<!-- b -->\ntwo\n<!-- e -->\n\n## old\n"
        );
        assert!(replace_section("x", "<b>", "<e>", "y", "nowhere").ends_with("<b>\ny\n<e>\n"));
    }
}
