//! File-based xDS (`path_config_source`), as Envoy's dynamic-config-fs
//! example: the file holds a `DiscoveryResponse` in YAML or JSON
//! (`resources:` with `"@type"` entries, optional `version_info`). It is read
//! at start and polled for changes; each change is one state-of-the-world
//! update through the same state machine as ADS (so removal and
//! per-resource rejection behave the same), without anyone to ACK to.
//! An EDS/RDS file (a cluster's or connection manager's
//! `path_config_source`) applies only the names that use that file, and is
//! read again when those change (a new cluster may want what the file
//! already held).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse;

use crate::config::parse_message;
use crate::stats::Store;

use super::config::FileSource;
use super::resource::{type_urls, ResourceSink};
use super::sotw::SotwClient;
use super::source::SourceId;
use super::stats::{UpdateEvent, XdsStats};

/// How often the file is checked for a change.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// One file source: the last content seen and the protocol state.
pub struct FileWatch {
    source: FileSource,
    client: SotwClient,
    stats: XdsStats,
    last: Option<Vec<u8>>,
}

impl FileWatch {
    pub fn new(source: FileSource, stats: &Store) -> FileWatch {
        FileWatch {
            client: SotwClient::new(&[source.type_url], Node::default(), true)
                .with_source(SourceId::File(source.path.clone())),
            source,
            stats: XdsStats::new(stats),
            last: None,
        }
    }

    /// Subscriptions changed: an EDS/RDS file is applied again at the next
    /// poll even if unchanged (LDS/CDS files take everything anyway).
    pub fn subscriptions_changed(&mut self) {
        if !type_urls::is_full_state(self.source.type_url) {
            self.last = None;
        }
    }

    /// Reads the file; if it changed, applies it. Returns the errors of this
    /// update (empty when unchanged or all accepted).
    pub fn poll(&mut self, sink: &dyn ResourceSink) -> Vec<String> {
        let bytes = match std::fs::read(&self.source.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                if self.last.is_some() {
                    // A file being replaced may be briefly absent; keep the last good config.
                    tracing::debug!(path = %self.source.path.display(), "xDS file: {error}");
                }
                return vec![format!(
                    "cannot read {}: {error}",
                    self.source.path.display()
                )];
            }
        };
        if self.last.as_deref() == Some(bytes.as_slice()) {
            return Vec::new();
        }
        self.last = Some(bytes.clone());
        self.apply(&bytes, sink)
    }

    fn apply(&mut self, bytes: &[u8], sink: &dyn ResourceSink) -> Vec<String> {
        let type_url = self.source.type_url;
        let shown = self.source.path.display().to_string();
        let response = match std::str::from_utf8(bytes)
            .map_err(|_| format!("{shown} is not UTF-8 text"))
            .and_then(|text| parse_response(text).map_err(|e| format!("{shown}: {e}")))
        {
            Ok(mut response) => {
                response.type_url = type_url.to_string();
                response
            }
            Err(error) => {
                self.stats.record_type(type_url, UpdateEvent::Attempt, None);
                self.stats
                    .record_type(type_url, UpdateEvent::Rejected, None);
                tracing::warn!("xDS file rejected: {error}");
                return vec![error];
            }
        };
        let requests = self.client.handle_response(response, sink, &self.stats);
        let errors: Vec<String> = requests
            .into_iter()
            .filter(|r| r.type_url == type_url)
            .filter_map(|r| r.error_detail.map(|status| status.message))
            .flat_map(|message| {
                message
                    .lines()
                    .map(|l| format!("{shown}: {l}"))
                    .collect::<Vec<_>>()
            })
            .collect();
        errors
    }
}

/// Parses a file's text as a DiscoveryResponse.
pub fn parse_response(text: &str) -> Result<DiscoveryResponse, String> {
    parse_message::<DiscoveryResponse>(text).map_err(|errors| errors.to_string())
}

/// Polls every file source until `shutdown` completes.
pub async fn run_file_sources(
    sources: Vec<FileSource>,
    sink: Arc<dyn ResourceSink>,
    stats: &Store,
    shutdown: impl Future<Output = ()>,
) {
    let mut watches: Vec<FileWatch> = sources
        .into_iter()
        .map(|s| FileWatch::new(s, stats))
        .collect();
    tokio::pin!(shutdown);
    let mut interval = tokio::time::interval(POLL_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut changes = sink
        .subscription_changes()
        .unwrap_or_else(|| tokio::sync::watch::channel(0).1);
    loop {
        tokio::select! {
            _ = interval.tick() => {
                for watch in &mut watches {
                    watch.poll(sink.as_ref());
                }
            }
            Ok(()) = changes.changed() => {
                for watch in &mut watches {
                    watch.subscriptions_changed();
                }
            }
            _ = &mut shutdown => return,
        }
    }
}

#[cfg(test)]
#[path = "file_source_tests.rs"]
mod tests;
