//! `api_config_source.rate_limit_settings`: a token bucket on the discovery
//! requests one stream sends, as Envoy's gRPC mux has. With the settings
//! present, each request takes a token (`max_tokens`, default 100, refilled
//! at `fill_rate` per second, default 10); a request without a token waits
//! in a queue (`control_plane.pending_requests`) and counts
//! `control_plane.rate_limit_enforced`. Without the settings nothing is
//! limited. Time is passed in, so the bucket is tested with a made-up clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::RateLimitSettings;

use super::stats::XdsStats;
use crate::config::ConfigError;

/// Envoy's default bucket size.
pub const DEFAULT_MAX_TOKENS: u32 = 100;
/// Envoy's default refill rate, tokens per second.
pub const DEFAULT_FILL_RATE: f64 = 10.0;

/// The bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub max_tokens: u32,
    pub fill_rate: f64,
}

impl RateLimit {
    /// Reads `rate_limit_settings` at `path` (Envoy's defaults for unset
    /// fields; the fill rate must be positive and finite, as Envoy's
    /// validation requires `fill_rate > 0`).
    pub fn from_proto(settings: &RateLimitSettings, path: &str) -> Result<RateLimit, ConfigError> {
        let max_tokens = settings.max_tokens.map_or(DEFAULT_MAX_TOKENS, |v| v.value);
        let fill_rate = settings.fill_rate.map_or(DEFAULT_FILL_RATE, |v| v.value);
        if !(fill_rate > 0.0 && fill_rate.is_finite()) {
            return Err(ConfigError::new(
                format!("{path}.fill_rate"),
                format!("must be a positive number, not {fill_rate}"),
            ));
        }
        if max_tokens == 0 {
            return Err(ConfigError::new(
                format!("{path}.max_tokens"),
                "must be at least 1 (no request could ever be sent)",
            ));
        }
        Ok(RateLimit {
            max_tokens,
            fill_rate,
        })
    }
}

/// A token bucket; starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub fn new(limit: RateLimit, now: Instant) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.max_tokens),
            refilled_at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.fill_rate).min(f64::from(self.limit.max_tokens));
        self.refilled_at = now;
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long until the next token (zero when one is there).
    pub fn next_token_in(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.limit.fill_rate)
        }
    }
}

/// The requests of one stream on their way out: sent at once while the
/// bucket allows (or always, without a limit), queued in order otherwise.
pub struct RequestPacer<R> {
    bucket: Option<TokenBucket>,
    queue: VecDeque<R>,
    stats: XdsStats,
}

impl<R> RequestPacer<R> {
    /// `stats` is the stream's (its `control_plane.*` scope).
    pub fn new(limit: Option<RateLimit>, stats: &XdsStats, now: Instant) -> RequestPacer<R> {
        RequestPacer {
            bucket: limit.map(|limit| TokenBucket::new(limit, now)),
            queue: VecDeque::new(),
            stats: stats.clone(),
        }
    }

    /// Sends `request` now if the bucket allows and nothing waits before
    /// it; otherwise queues it (counting `rate_limit_enforced`). Returns
    /// every request that may go now, oldest first.
    pub fn push(&mut self, request: R, now: Instant) -> Vec<R> {
        if self.queue.is_empty() && self.bucket.as_mut().is_none_or(|b| b.try_take(now)) {
            return vec![request];
        }
        self.queue.push_back(request);
        self.stats.pending_requests(1);
        self.stats.rate_limit_enforced();
        self.ready(now)
    }

    /// The queued requests that may go now, oldest first.
    pub fn ready(&mut self, now: Instant) -> Vec<R> {
        let mut ready = Vec::new();
        while !self.queue.is_empty() {
            if let Some(bucket) = &mut self.bucket {
                if !bucket.try_take(now) {
                    break;
                }
            }
            ready.extend(self.queue.pop_front());
        }
        if !ready.is_empty() {
            self.stats.pending_requests(-(ready.len() as i64));
        }
        ready
    }

    /// When to look again: `None` while nothing waits.
    pub fn wake_in(&mut self, now: Instant) -> Option<Duration> {
        if self.queue.is_empty() {
            return None;
        }
        Some(
            self.bucket
                .as_mut()
                .map_or(Duration::ZERO, |b| b.next_token_in(now)),
        )
    }

    /// Drops what is queued (the stream ended; a new one starts afresh).
    pub fn clear(&mut self) {
        if !self.queue.is_empty() {
            self.stats.pending_requests(-(self.queue.len() as i64));
        }
        self.queue.clear();
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
#[path = "rate_limit_tests.rs"]
mod tests;
