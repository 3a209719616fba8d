//! The state-of-the-world protocol, per type URL, without I/O: what to send
//! when a stream starts, how to answer a `DiscoveryResponse` (ACK or NACK),
//! and when subscriptions change.
//!
//! Per type it keeps the names last requested on this stream, the last
//! accepted `version_info` (sent again after a reconnect, so the server can
//! skip an unchanged push), the last nonce, and for LDS/CDS the names
//! currently applied (a name absent from a response is removed).
//!
//! Per-resource acceptance (gRPC A46): valid resources apply, rejected ones
//! keep their previous version, and the NACK names them. A response with an
//! entry whose name cannot be read is rejected whole: for LDS/CDS, guessing
//! would remove a resource that is only unreadable.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use super::decode::{decode_sotw, Decoded};
use super::nack::error_detail;
use super::resource::{type_urls, Resource, ResourceSink, Subscription};
use super::source::SourceId;
use super::stats::{record_started_subscriptions, record_stream_failure, UpdateEvent, XdsStats};

/// One type's protocol state.
#[derive(Debug, Clone)]
pub struct SotwType {
    pub type_url: String,
    /// Names last requested on the current stream; `None` before the first request.
    pub sent: Option<Subscription>,
    /// The last accepted `version_info` (kept across streams).
    pub acked_version: String,
    /// The nonce of the last response on the current stream.
    pub nonce: String,
    /// LDS/CDS: names currently applied.
    pub known: BTreeSet<String>,
    /// EDS/RDS: names whose per-resource subscription has started.
    pub started: BTreeSet<String>,
    /// Whether the type was ever requested (its subscription started).
    pub requested: bool,
}

/// The state-of-the-world client state for every type on one ADS stream.
pub struct SotwClient {
    node: Node,
    node_on_every_request: bool,
    node_sent_on_stream: bool,
    /// The source whose EDS/RDS subscriptions this stream carries.
    source: SourceId,
    types: Vec<SotwType>,
}

impl SotwClient {
    /// `types` in subscription order. Envoy sends `node` on every request
    /// unless `set_node_on_first_message_only`.
    pub fn new(types: &[&str], node: Node, set_node_on_first_message_only: bool) -> SotwClient {
        SotwClient {
            node,
            node_on_every_request: !set_node_on_first_message_only,
            node_sent_on_stream: false,
            source: SourceId::Ads,
            types: types
                .iter()
                .map(|type_url| SotwType {
                    type_url: type_url.to_string(),
                    sent: None,
                    acked_version: String::new(),
                    nonce: String::new(),
                    known: BTreeSet::new(),
                    started: BTreeSet::new(),
                    requested: false,
                })
                .collect(),
        }
    }

    /// The stream carries the EDS/RDS subscriptions of `source` (ADS by default).
    pub fn with_source(mut self, source: SourceId) -> SotwClient {
        self.source = source;
        self
    }

    /// Requests for subscriptions that changed because of something applied
    /// elsewhere (another stream's CDS/LDS update).
    pub fn resubscribe(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DiscoveryRequest> {
        self.subscription_requests(sink, stats)
    }

    /// The state of one type, for inspection.
    pub fn type_state(&self, type_url: &str) -> Option<&SotwType> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// A new stream: nonces are per stream, so they reset; every type with
    /// something to subscribe to is requested again, with its last accepted
    /// version.
    pub fn start_stream(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DiscoveryRequest> {
        self.node_sent_on_stream = false;
        for state in &mut self.types {
            state.sent = None;
            state.nonce.clear();
        }
        self.subscription_requests(sink, stats)
    }

    /// The stream failed: stats as Envoy counts a connection failure.
    pub fn stream_failed(&self, sink: &dyn ResourceSink, stats: &XdsStats) {
        for state in &self.types {
            record_stream_failure(
                stats,
                sink,
                &state.type_url,
                state.requested,
                &state.started,
            );
        }
    }

    /// Answers one response: the ACK or NACK for its type, then requests for
    /// any type whose subscription changed because of what was applied.
    pub fn handle_response(
        &mut self,
        response: DiscoveryResponse,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DiscoveryRequest> {
        let Some(index) = self
            .types
            .iter()
            .position(|t| t.type_url == response.type_url)
        else {
            tracing::warn!(
                type_url = %response.type_url,
                "xDS: ignoring a response for a type Sluice did not subscribe to"
            );
            return Vec::new();
        };
        stats.record_type(&response.type_url, UpdateEvent::Attempt, None);
        let errors = self.apply_response(index, &response, sink, stats);
        let state = &mut self.types[index];
        state.nonce = response.nonce.clone();
        let mut requests = Vec::new();
        if errors.is_empty() {
            state.acked_version = response.version_info.clone();
            stats.record_type(
                &response.type_url,
                UpdateEvent::Success,
                Some(&response.version_info),
            );
            requests.push(self.request(index, None));
        } else {
            tracing::warn!(
                type_url = %response.type_url,
                version = %response.version_info,
                rejected = errors.len(),
                "xDS: rejecting resources: {}",
                error_detail(&errors).message
            );
            stats.record_type(&response.type_url, UpdateEvent::Rejected, None);
            requests.push(self.request(index, Some(&errors)));
        }
        requests.extend(self.subscription_requests(sink, stats));
        requests
    }

    /// Decodes and applies one response; the per-resource errors to NACK.
    fn apply_response(
        &mut self,
        index: usize,
        response: &DiscoveryResponse,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<(String, String)> {
        let type_url = response.type_url.as_str();
        let wanted = sink.source_subscriptions(type_url, &self.source);
        let mut errors = Vec::new();
        let mut decoded: Vec<Decoded> = Vec::new();
        let mut seen = BTreeSet::new();
        for (position, any) in response.resources.iter().enumerate() {
            match decode_sotw(any, type_url) {
                Ok(resource) if !seen.insert(resource.name.clone()) => {
                    errors.push((
                        resource.name,
                        "duplicate resource name in the response".into(),
                    ));
                }
                Ok(resource) => decoded.push(resource),
                Err(error) => errors.push((format!("resources[{position}]"), error)),
            }
        }
        if !errors.is_empty() {
            // Unreadable or ambiguous entries: nothing applies.
            return errors;
        }
        decoded.retain(|resource| {
            let wanted = wanted.wants(&resource.name);
            if !wanted {
                tracing::debug!(name = %resource.name, "xDS: ignoring a resource not subscribed to");
            }
            wanted
        });
        let present: BTreeSet<String> = decoded.iter().map(|r| r.name.clone()).collect();
        let state = &self.types[index];
        let removed: Vec<String> = if type_urls::is_full_state(type_url) {
            state.known.difference(&present).cloned().collect()
        } else {
            Vec::new()
        };
        let updated: Vec<Resource> = decoded
            .into_iter()
            .map(|d| Resource {
                name: d.name,
                version: d.version.unwrap_or_else(|| response.version_info.clone()),
                body: d.body,
            })
            .collect();
        let errors = sink.apply(type_url, updated, removed, true);
        let rejected: BTreeSet<&str> = errors.iter().map(|(name, _)| name.as_str()).collect();
        let state = &mut self.types[index];
        if type_urls::is_full_state(type_url) {
            let previously = std::mem::take(&mut state.known);
            state.known = present
                .iter()
                .filter(|name| !rejected.contains(name.as_str()) || previously.contains(*name))
                .cloned()
                .collect();
        }
        for name in &present {
            if let Some(prefix) = sink.resource_stats_prefix(type_url, name) {
                stats.resource_subscribed(&prefix);
                stats.record(&prefix, UpdateEvent::Attempt, None);
                if rejected.contains(name.as_str()) {
                    stats.record(&prefix, UpdateEvent::Rejected, None);
                } else {
                    stats.record(&prefix, UpdateEvent::Success, Some(&response.version_info));
                }
            }
        }
        errors
    }

    /// Requests for every type whose wanted names differ from what this
    /// stream was last told (including types not yet requested).
    fn subscription_requests(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DiscoveryRequest> {
        let mut requests = Vec::new();
        for index in 0..self.types.len() {
            let wanted = sink.source_subscriptions(&self.types[index].type_url, &self.source);
            let state = &mut self.types[index];
            record_started_subscriptions(stats, sink, &state.type_url, &mut state.started, &wanted);
            let changed = match &state.sent {
                None => !wanted.is_empty(),
                Some(sent) => *sent != wanted,
            };
            if !changed {
                continue;
            }
            if !state.requested {
                state.requested = true;
                stats.record_type(&state.type_url, UpdateEvent::Attempt, None);
            }
            self.types[index].sent = Some(wanted);
            requests.push(self.request(index, None));
        }
        requests
    }

    /// A request for one type with its current state; `errors` makes it a NACK.
    fn request(&mut self, index: usize, errors: Option<&[(String, String)]>) -> DiscoveryRequest {
        let with_node = self.node_on_every_request || !self.node_sent_on_stream;
        self.node_sent_on_stream = true;
        let state = &self.types[index];
        DiscoveryRequest {
            version_info: state.acked_version.clone(),
            node: with_node.then(|| self.node.clone()),
            resource_names: state
                .sent
                .as_ref()
                .map(Subscription::name_set)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            type_url: state.type_url.clone(),
            response_nonce: state.nonce.clone(),
            error_detail: errors.map(error_detail),
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[path = "sotw_tests.rs"]
mod tests;
