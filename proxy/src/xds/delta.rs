//! The incremental (delta) protocol, per type URL, without I/O.
//!
//! Per type it keeps the names subscribed on this stream and the version of
//! every resource held (sent as `initial_resource_versions` when a stream
//! starts, so the server resends only what changed). Subscription changes go
//! out as `resource_names_subscribe` / `resource_names_unsubscribe` diffs.
//! `node` goes on every request, as Envoy 1.40 sends it (measured against
//! it in tests/xds_envoy.rs), or only on the stream's first request with
//! `set_node_on_first_message_only`. Removal is explicit (`removed_resources`).

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};

use super::decode::decode_wrapped;
use super::nack::error_detail;
use super::resource::{Resource, ResourceSink, Subscription};
use super::source::SourceId;
use super::stats::{record_started_subscriptions, record_stream_failure, UpdateEvent, XdsStats};

/// One type's delta state.
#[derive(Debug, Clone)]
pub struct DeltaType {
    pub type_url: String,
    /// What this stream was last told; `None` before the type's first request.
    pub sent: Option<Subscription>,
    /// Version of every resource held (kept across streams).
    pub versions: BTreeMap<String, String>,
    /// EDS/RDS: names whose per-resource subscription has started.
    pub started: BTreeSet<String>,
    /// Whether the type was ever requested (its subscription started).
    pub requested: bool,
}

/// The delta client state for every type on one ADS stream.
pub struct DeltaClient {
    node: Node,
    node_on_every_request: bool,
    node_sent_on_stream: bool,
    /// The source whose EDS/RDS subscriptions this stream carries.
    source: SourceId,
    types: Vec<DeltaType>,
}

impl DeltaClient {
    pub fn new(types: &[&str], node: Node, set_node_on_first_message_only: bool) -> DeltaClient {
        DeltaClient {
            node,
            node_on_every_request: !set_node_on_first_message_only,
            node_sent_on_stream: false,
            source: SourceId::Ads,
            types: types
                .iter()
                .map(|type_url| DeltaType {
                    type_url: type_url.to_string(),
                    sent: None,
                    versions: BTreeMap::new(),
                    started: BTreeSet::new(),
                    requested: false,
                })
                .collect(),
        }
    }

    /// The stream carries the EDS/RDS subscriptions of `source` (ADS by default).
    pub fn with_source(mut self, source: SourceId) -> DeltaClient {
        self.source = source;
        self
    }

    /// Requests for subscriptions that changed because of something applied
    /// elsewhere (another stream's CDS/LDS update).
    pub fn resubscribe(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DeltaDiscoveryRequest> {
        let requests = self.subscription_requests(sink, stats);
        self.with_node(requests)
    }

    pub fn type_state(&self, type_url: &str) -> Option<&DeltaType> {
        self.types.iter().find(|t| t.type_url == type_url)
    }

    /// A new stream: every type with something wanted is subscribed afresh,
    /// telling the server which versions are already held.
    pub fn start_stream(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DeltaDiscoveryRequest> {
        self.node_sent_on_stream = false;
        for state in &mut self.types {
            state.sent = None;
        }
        let requests = self.subscription_requests(sink, stats);
        self.with_node(requests)
    }

    /// Puts `node` on the requests that carry it, in sending order.
    fn with_node(
        &mut self,
        mut requests: Vec<DeltaDiscoveryRequest>,
    ) -> Vec<DeltaDiscoveryRequest> {
        for request in &mut requests {
            if self.node_on_every_request || !self.node_sent_on_stream {
                request.node = Some(self.node.clone());
                self.node_sent_on_stream = true;
            }
        }
        requests
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

    /// Answers one response (ACK or NACK), then sends subscription changes.
    pub fn handle_response(
        &mut self,
        response: DeltaDiscoveryResponse,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DeltaDiscoveryRequest> {
        let Some(index) = self
            .types
            .iter()
            .position(|t| t.type_url == response.type_url)
        else {
            tracing::warn!(type_url = %response.type_url, "xDS delta: ignoring a response for a type not subscribed to");
            return Vec::new();
        };
        let type_url = response.type_url.clone();
        stats.record_type(&type_url, UpdateEvent::Attempt, None);
        let mut errors = Vec::new();
        let mut updated = Vec::new();
        let mut seen = BTreeSet::new();
        for (position, wrapper) in response.resources.into_iter().enumerate() {
            let wire_name = wrapper.name.clone();
            match decode_wrapped(wrapper, &type_url) {
                Ok(decoded) if !seen.insert(decoded.name.clone()) => {
                    errors.push((
                        decoded.name,
                        "duplicate resource name in the response".into(),
                    ));
                }
                Ok(decoded) => updated.push(Resource {
                    name: decoded.name,
                    version: decoded.version.unwrap_or_default(),
                    body: decoded.body,
                }),
                Err(error) if wire_name.is_empty() => {
                    errors.push((format!("resources[{position}]"), error))
                }
                Err(error) => errors.push((wire_name, error)),
            }
        }
        // In delta every resource is named by its wrapper, so readable ones
        // apply even when others are not.
        let accepted: Vec<(String, String)> = updated
            .iter()
            .map(|r| (r.name.clone(), r.version.clone()))
            .collect();
        let removed = response.removed_resources.clone();
        let sink_errors = sink.apply(&type_url, updated, removed.clone(), false);
        let rejected: BTreeSet<String> = sink_errors.iter().map(|(n, _)| n.clone()).collect();
        errors.extend(sink_errors);
        let state = &mut self.types[index];
        for (name, version) in accepted {
            if let Some(prefix) = sink.resource_stats_prefix(&type_url, &name) {
                stats.resource_subscribed(&prefix);
                stats.record(&prefix, UpdateEvent::Attempt, None);
                let event = if rejected.contains(&name) {
                    UpdateEvent::Rejected
                } else {
                    UpdateEvent::Success
                };
                // Envoy sets the version gauge from system_version_info in delta.
                stats.record(&prefix, event, Some(&response.system_version_info));
            }
            if !rejected.contains(&name) {
                state.versions.insert(name, version);
            }
        }
        for name in &removed {
            state.versions.remove(name);
        }
        let ack = DeltaDiscoveryRequest {
            type_url: type_url.clone(),
            response_nonce: response.nonce,
            error_detail: (!errors.is_empty()).then(|| error_detail(&errors)),
            ..Default::default()
        };
        if errors.is_empty() {
            stats.record_type(
                &type_url,
                UpdateEvent::Success,
                Some(&response.system_version_info),
            );
        } else {
            tracing::warn!(type_url = %type_url, "xDS delta: rejecting resources: {}", error_detail(&errors).message);
            stats.record_type(&type_url, UpdateEvent::Rejected, None);
        }
        let mut requests = vec![ack];
        requests.extend(self.subscription_requests(sink, stats));
        self.with_node(requests)
    }

    fn subscription_requests(
        &mut self,
        sink: &dyn ResourceSink,
        stats: &XdsStats,
    ) -> Vec<DeltaDiscoveryRequest> {
        let mut requests = Vec::new();
        let source = self.source.clone();
        for state in &mut self.types {
            let wanted = sink.source_subscriptions(&state.type_url, &source);
            record_started_subscriptions(stats, sink, &state.type_url, &mut state.started, &wanted);
            let request = match &state.sent {
                None if wanted.is_empty() => continue,
                None => {
                    if !state.requested {
                        state.requested = true;
                        stats.record_type(&state.type_url, UpdateEvent::Attempt, None);
                    }
                    DeltaDiscoveryRequest {
                        node: None,
                        type_url: state.type_url.clone(),
                        resource_names_subscribe: wanted.name_set().into_iter().collect(),
                        initial_resource_versions: state
                            .versions
                            .iter()
                            .filter(|(name, _)| wanted.wants(name))
                            .map(|(n, v)| (n.clone(), v.clone()))
                            .collect(),
                        ..Default::default()
                    }
                }
                Some(sent) if *sent == wanted => continue,
                Some(sent) => {
                    let (subscribe, unsubscribe) = diff(sent, &wanted);
                    DeltaDiscoveryRequest {
                        type_url: state.type_url.clone(),
                        resource_names_subscribe: subscribe,
                        resource_names_unsubscribe: unsubscribe,
                        ..Default::default()
                    }
                }
            };
            state.versions.retain(|name, _| wanted.wants(name));
            state.sent = Some(wanted);
            requests.push(request);
        }
        requests
    }
}

/// Names to subscribe and to unsubscribe to get from `sent` to `wanted`;
/// `*` stands for the wildcard, as the xDS spec writes it.
fn diff(sent: &Subscription, wanted: &Subscription) -> (Vec<String>, Vec<String>) {
    let names = |s: &Subscription| match s {
        Subscription::Wildcard => BTreeSet::from(["*".to_string()]),
        Subscription::Names(names) => names.clone(),
    };
    let (sent, wanted) = (names(sent), names(wanted));
    (
        wanted.difference(&sent).cloned().collect(),
        sent.difference(&wanted).cloned().collect(),
    )
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
