//! The PNG bar chart of Sluice/peer ratios, drawn with `plotters` into an RGB
//! buffer (DejaVu Sans embedded, so no system fonts are needed) and encoded
//! with the `png` crate.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::peers::Peer;
use super::report::{Metric, ScenarioSummary};

const WIDTH: u32 = 1200;
const PANEL_HEIGHT: u32 = 330;
const FONT: &str = "sans-serif";

/// The panels: which ratio, and how to read it.
const PANELS: [(Metric, &str); 3] = [
    (Metric::Rate, "Throughput, Sluice / peer (higher is better)"),
    (
        Metric::Cpu,
        "CPU per request or per GB, Sluice / peer (lower is better)",
    ),
    (Metric::PeakRss, "Peak RSS, Sluice / peer (lower is better)"),
];

fn peer_colour(peer: Peer) -> RGBColor {
    match peer {
        Peer::Envoy => RGBColor(0xd9, 0x5f, 0x02),
        Peer::Nginx => RGBColor(0x1b, 0x9e, 0x77),
        Peer::Haproxy => RGBColor(0x75, 0x70, 0xb3),
        Peer::Direct => RGBColor(0x66, 0x66, 0x66),
        Peer::Sluice => RGBColor(0x00, 0x00, 0x00),
    }
}

/// Draws the chart to `path`; `title` names the run (date, machine).
pub fn draw(path: &Path, title: &str, summaries: &[ScenarioSummary]) -> Result<(), String> {
    // Registering twice (a second chart in one process) is harmless.
    plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| "embedded DejaVu Sans font is invalid".to_string())?;
    let height = PANEL_HEIGHT * PANELS.len() as u32 + 50;
    let mut buffer = vec![0u8; (WIDTH * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let root = root
            .titled(title, (FONT, 24).into_font())
            .map_err(|e| e.to_string())?;
        for (area, (metric, caption)) in root.split_evenly((PANELS.len(), 1)).iter().zip(PANELS) {
            draw_panel(area, metric, caption, summaries)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    write_png(path, &buffer, WIDTH, height)
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    metric: Metric,
    caption: &str,
    summaries: &[ScenarioSummary],
) -> Result<(), String> {
    // clusters-10k's throughput comes from a 1 s check load: only its
    // memory (and start-up, in the tables) is the figure.
    let groups: Vec<&ScenarioSummary> = summaries
        .iter()
        .filter(|s| metric == Metric::PeakRss || s.scenario != "clusters-10k")
        .filter(|s| s.ratios.values().any(|by| by.contains_key(&metric)))
        .collect();
    let peers = [Peer::Envoy, Peer::Nginx, Peer::Haproxy, Peer::Direct];
    let top = groups
        .iter()
        .flat_map(|s| s.ratios.values().filter_map(|by| by.get(&metric)))
        .fold(1.2f64, |acc, v| acc.max(*v * 1.2));
    let n = groups.len().max(1) as f64;
    let names: Vec<&str> = groups.iter().map(|s| s.scenario).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 18).into_font())
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..n - 0.5, 0f64..top)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(1)
        .x_labels(groups.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map_or(String::new(), |s| s.to_string())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.1}×"))
        .label_style((FONT, 14).into_font())
        .draw()
        .map_err(|e| e.to_string())?;
    let bar = 0.8 / peers.len() as f64;
    for (k, peer) in peers.into_iter().enumerate() {
        let colour = peer_colour(peer);
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let value = *s.ratios.get(&peer)?.get(&metric)?;
                Some((i as f64 - 0.4 + bar * k as f64, value))
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                Rectangle::new([(x + 0.01, 0.0), (x + bar - 0.01, v)], colour.filled())
            }))
            .map_err(|e| e.to_string())?
            .label(format!("vs {}", peer.name()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart
            .draw_series(bars.iter().map(|&(x, v)| {
                Text::new(
                    format!("{v:.2}"),
                    (x + 0.01, v + top * 0.02),
                    (FONT, 12).into_font(),
                )
            }))
            .map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(-0.5, 1.0), (n - 0.5, 1.0)],
            BLACK.stroke_width(1),
        )))
        .map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14).into_font())
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn write_png(path: &Path, rgb: &[u8], width: u32, height: u32) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{summarise, Run};
    use crate::bench::scenario::Scenario;

    #[test]
    fn chart_is_a_png() {
        let runs: Vec<Run> = [
            Peer::Sluice,
            Peer::Envoy,
            Peer::Nginx,
            Peer::Haproxy,
            Peer::Direct,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, peer)| Run {
            scenario: "http1",
            peer,
            round: 0,
            rate: 1000.0 + i as f64 * 100.0,
            p50_ms: Some(1.0),
            p99_ms: Some(2.0),
            cpu_per_unit: (peer != Peer::Direct).then_some(20.0 + i as f64),
            peak_rss_mib: (peer != Peer::Direct).then_some(10.0 + i as f64),
            idle_rss_mib: (peer != Peer::Direct).then_some(8.0 + i as f64),
            ready_ms: None,
            errors: 0,
        })
        .collect();
        let summaries = vec![summarise(Scenario::Http1, &runs)];
        let path =
            std::env::temp_dir().join(format!("sluice-bench-chart-{}.png", std::process::id()));
        draw(&path, "test chart", &summaries).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(bytes.len() > 5_000);
    }
}
