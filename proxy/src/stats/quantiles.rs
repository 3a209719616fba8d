//! Histogram quantiles as Envoy reports them (`P0`, `P25`, … `P100`), and
//! Envoy's way of printing doubles (fmt's `{}`: shortest round-trip digits,
//! `nan`, exponent form only for very small or very large magnitudes).
//!
//! Sluice keeps fixed buckets rather than Envoy's log-linear histogram, so a
//! quantile is interpolated linearly inside the bucket that holds its rank,
//! with the bucket clamped to the recorded minimum and maximum (which makes
//! `P0` and `P100` exact).

use super::{Histogram, DEFAULT_BUCKETS};

/// The quantiles Envoy computes for every histogram, as fractions.
pub const SUPPORTED_QUANTILES: [f64; 10] =
    [0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0];

/// Cumulative (since start) values of [`SUPPORTED_QUANTILES`]; all `NaN` when
/// nothing was recorded.
pub fn cumulative_quantiles(histogram: &Histogram) -> Vec<f64> {
    let counts = histogram.bucket_counts();
    let Some((min, max)) = histogram.min_max() else {
        return vec![f64::NAN; SUPPORTED_QUANTILES.len()];
    };
    SUPPORTED_QUANTILES
        .iter()
        .map(|q| quantile(&counts, min, max, *q))
        .collect()
}

fn quantile(counts: &[u64], min: f64, max: f64, q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (index, count) in counts.iter().enumerate() {
        if *count == 0 {
            continue;
        }
        let lower = if index == 0 {
            0.0
        } else {
            DEFAULT_BUCKETS[index - 1]
        };
        let upper = DEFAULT_BUCKETS.get(index).copied().unwrap_or(max);
        let (lower, upper) = (lower.max(min), upper.min(max));
        if (below + count) as f64 >= rank {
            let fraction = (rank - below as f64) / *count as f64;
            return lower + (upper - lower).max(0.0) * fraction.clamp(0.0, 1.0);
        }
        below += count;
    }
    max
}

/// Formats a double the way Envoy's `fmt::format("{}", v)` does.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return "0".to_string();
    }
    let exponent = value.abs().log10().floor() as i32;
    if !(-4..16).contains(&exponent) {
        // Rust's `{:e}` gives `1e16`; fmt prints `1e+16` / `1e-05`.
        let formatted = format!("{value:e}");
        let (mantissa, exp) = formatted.split_once('e').unwrap_or((&formatted, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_histogram_has_nan_quantiles() {
        let h = Histogram::default();
        assert!(cumulative_quantiles(&h).iter().all(|v| v.is_nan()));
    }

    #[test]
    fn single_value_gives_that_value_everywhere() {
        let h = Histogram::default();
        h.record(7.0);
        assert_eq!(cumulative_quantiles(&h), vec![7.0; 10]);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram::default();
        // Ten values spread through the (5, 10] bucket, ten through (10, 25].
        for v in [6.0, 6.0, 7.0, 7.0, 8.0, 8.0, 9.0, 9.0, 10.0, 10.0] {
            h.record(v);
        }
        for v in [11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0, 20.0] {
            h.record(v);
        }
        let q = cumulative_quantiles(&h);
        assert_eq!(q[0], 6.0, "P0 is the minimum");
        assert_eq!(q[9], 20.0, "P100 is the maximum");
        assert_eq!(q[2], 10.0, "P50 sits at the bucket edge");
        // P25: rank 5 of 10 inside (6, 10] → 6 + 4 * 0.5.
        assert_eq!(q[1], 8.0);
        // P75: rank 5 of 10 inside (10, 20] → 15.
        assert_eq!(q[3], 15.0);
        assert!(q.windows(2).all(|w| w[0] <= w[1]), "monotonic: {q:?}");
    }

    #[test]
    fn overflow_bucket_uses_the_maximum() {
        let h = Histogram::default();
        h.record(5_000_000.0);
        assert_eq!(cumulative_quantiles(&h)[9], 5_000_000.0);
    }

    #[test]
    fn doubles_print_like_fmt() {
        assert_eq!(format_double(f64::NAN), "nan");
        assert_eq!(format_double(1.0), "1");
        assert_eq!(format_double(0.5), "0.5");
        assert_eq!(format_double(1.025), "1.025");
        assert_eq!(format_double(3_600_000.0), "3600000");
        assert_eq!(format_double(0.0), "0");
        assert_eq!(format_double(1e16), "1e+16");
        assert_eq!(format_double(0.00001), "1e-05");
        assert_eq!(format_double(99.5), "99.5");
    }
}
