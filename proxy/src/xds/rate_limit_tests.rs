//! Unit tests of the xDS request token bucket, with a made-up clock.

use super::*;
use crate::config::parse_message;
use crate::stats::Store;

fn limit(max_tokens: u32, fill_rate: f64) -> RateLimit {
    RateLimit {
        max_tokens,
        fill_rate,
    }
}

#[test]
fn defaults_are_envoys() {
    let settings = parse_message::<RateLimitSettings>("{}").unwrap();
    assert_eq!(
        RateLimit::from_proto(&settings, "x").unwrap(),
        limit(100, 10.0)
    );
    let settings = parse_message::<RateLimitSettings>("{max_tokens: 3, fill_rate: 0.5}").unwrap();
    assert_eq!(
        RateLimit::from_proto(&settings, "x").unwrap(),
        limit(3, 0.5)
    );
}

#[test]
fn bad_settings_are_rejected_by_path() {
    for (yaml, expected) in [
        ("{fill_rate: 0}", "r.fill_rate: must be a positive number"),
        ("{fill_rate: -1}", "r.fill_rate: must be a positive number"),
        ("{max_tokens: 0}", "r.max_tokens: must be at least 1"),
    ] {
        let settings = parse_message::<RateLimitSettings>(yaml).unwrap();
        let error = RateLimit::from_proto(&settings, "r")
            .unwrap_err()
            .to_string();
        assert!(error.starts_with(expected), "{yaml}: {error}");
    }
}

#[test]
fn the_bucket_starts_full_and_refills_at_the_fill_rate() {
    let start = Instant::now();
    let mut bucket = TokenBucket::new(limit(2, 4.0), start);
    assert!(bucket.try_take(start));
    assert!(bucket.try_take(start));
    assert!(!bucket.try_take(start));
    assert_eq!(bucket.next_token_in(start), Duration::from_millis(250));
    let later = start + Duration::from_millis(250);
    assert_eq!(bucket.next_token_in(later), Duration::ZERO);
    assert!(bucket.try_take(later));
    assert!(!bucket.try_take(later));
    // A long pause refills to max_tokens, never beyond.
    let much_later = later + Duration::from_secs(60);
    assert!(bucket.try_take(much_later));
    assert!(bucket.try_take(much_later));
    assert!(!bucket.try_take(much_later));
}

#[test]
fn the_pacer_queues_in_order_and_counts_under_envoy_names() {
    let store = Store::new();
    let start = Instant::now();
    let mut pacer = RequestPacer::new(Some(limit(1, 10.0)), &XdsStats::new(&store), start);
    assert_eq!(pacer.push("a", start), vec!["a"]);
    assert_eq!(pacer.wake_in(start), None);
    assert!(pacer.push("b", start).is_empty());
    assert!(pacer.push("c", start).is_empty());
    assert_eq!(
        store.counter("control_plane.rate_limit_enforced").value(),
        2
    );
    assert_eq!(store.gauge("control_plane.pending_requests").value(), 2);
    assert_eq!(pacer.wake_in(start), Some(Duration::from_millis(100)));
    let later = start + Duration::from_millis(100);
    assert_eq!(pacer.ready(later), vec!["b"]);
    assert_eq!(store.gauge("control_plane.pending_requests").value(), 1);
    pacer.clear();
    assert_eq!(pacer.queued(), 0);
    assert_eq!(store.gauge("control_plane.pending_requests").value(), 0);
}

#[test]
fn without_a_limit_everything_goes_at_once() {
    let store = Store::new();
    let now = Instant::now();
    let mut pacer = RequestPacer::new(None, &XdsStats::new(&store), now);
    for i in 0..1000 {
        assert_eq!(pacer.push(i, now), vec![i]);
    }
    assert_eq!(
        store.counter("control_plane.rate_limit_enforced").value(),
        0
    );
    assert!(!store.gauge("control_plane.pending_requests").used());
}
