//! One delta (incremental) ADS stream on the demo server: per type, the
//! subscription (wildcard or names, changed by `resource_names_subscribe`
//! / `_unsubscribe`) and the version the client holds of each resource
//! (seeded from `initial_resource_versions`). It sends only what differs
//! and names what is gone in `removed_resources`. ACK/NACK are logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as WireResource,
};
use tokio::sync::{mpsc, watch};
use tonic::{Status, Streaming};

use crate::xds::type_urls;

use super::snapshot::Snapshot;

#[derive(Default)]
struct TypeStream {
    wildcard: bool,
    names: BTreeSet<String>,
    /// What the client holds: name → version.
    client_has: BTreeMap<String, String>,
}

impl TypeStream {
    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

/// Serves one stream until either side ends it. `served` lists the type
/// URLs this stream answers (every type on ADS, one on a per-type service);
/// requests for others are logged and ignored.
pub async fn serve(
    peer: String,
    served: &'static [&'static str],
    mut requests: Streaming<DeltaDiscoveryRequest>,
    responses: mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>,
    mut snapshots: watch::Receiver<Arc<Snapshot>>,
) {
    let mut types: BTreeMap<String, TypeStream> = BTreeMap::new();
    let mut nonce = 0_u64;
    loop {
        let mut to_send = Vec::new();
        tokio::select! {
            request = requests.message() => {
                let request = match request {
                    Ok(Some(request)) => request,
                    Ok(None) => { xds_log!("xds: {peer}: delta stream closed by the client"); return; }
                    Err(status) => { xds_log!("xds: {peer}: delta stream error: {status}"); return; }
                };
                if !served.contains(&request.type_url.as_str()) {
                    xds_log!("xds: {peer}: ignoring a delta request for unserved type {}", request.type_url);
                    continue;
                }
                on_request(&peer, &request, &mut types);
                let snapshot = snapshots.borrow().clone();
                let state = types.get_mut(&request.type_url).expect("inserted by on_request");
                to_send.extend(diff(&request.type_url, state, &snapshot, &mut nonce));
            }
            changed = snapshots.changed() => {
                if changed.is_err() { return; }
                let snapshot = snapshots.borrow_and_update().clone();
                for (type_url, state) in &mut types {
                    to_send.extend(diff(type_url, state, &snapshot, &mut nonce));
                }
            }
        }
        for response in to_send {
            xds_log!(
                "xds: {peer}: sent delta {} nonce {} ({} updated, {} removed)",
                type_urls::short(&response.type_url),
                response.nonce,
                response.resources.len(),
                response.removed_resources.len()
            );
            if responses.send(Ok(response)).await.is_err() {
                return;
            }
        }
    }
}

fn on_request(
    peer: &str,
    request: &DeltaDiscoveryRequest,
    types: &mut BTreeMap<String, TypeStream>,
) {
    let short = type_urls::short(&request.type_url);
    let first = !types.contains_key(&request.type_url);
    let state = types.entry(request.type_url.clone()).or_default();
    if !request.response_nonce.is_empty() {
        match &request.error_detail {
            Some(status) => xds_log!(
                "xds: {peer}: NACK delta {short} nonce {}: {}",
                request.response_nonce,
                status.message.replace('\n', " | ")
            ),
            None => xds_log!(
                "xds: {peer}: ACK delta {short} nonce {}",
                request.response_nonce
            ),
        }
    }
    if first {
        xds_log!(
            "xds: {peer}: delta subscribe {short} [{}] holding {} resources{}",
            request.resource_names_subscribe.join(", "),
            request.initial_resource_versions.len(),
            if request.node.is_some() {
                " (with node)"
            } else {
                ""
            }
        );
        state.wildcard = request.resource_names_subscribe.is_empty();
        state.client_has = request
            .initial_resource_versions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    for name in &request.resource_names_subscribe {
        if name == "*" {
            state.wildcard = true;
        } else {
            state.names.insert(name.clone());
        }
    }
    for name in &request.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(name);
        }
        state.client_has.remove(name);
    }
    if !request.resource_names_unsubscribe.is_empty() {
        let TypeStream {
            wildcard,
            names,
            client_has,
        } = state;
        client_has.retain(|name, _| *wildcard || names.contains(name));
    }
}

/// What the client lacks or holds stale, and what it holds that is gone.
fn diff(
    type_url: &str,
    state: &mut TypeStream,
    snapshot: &Snapshot,
    nonce: &mut u64,
) -> Option<DeltaDiscoveryResponse> {
    let mut resources = Vec::new();
    for (name, served) in snapshot.of_type(type_url) {
        if state.wants(name) && state.client_has.get(name) != Some(&served.version) {
            resources.push(WireResource {
                name: name.clone(),
                version: served.version.clone(),
                resource: Some(served.body.clone()),
                ..Default::default()
            });
            state
                .client_has
                .insert(name.clone(), served.version.clone());
        }
    }
    let removed: Vec<String> = state
        .client_has
        .keys()
        .filter(|name| snapshot.get(type_url, name).is_none())
        .cloned()
        .collect();
    for name in &removed {
        state.client_has.remove(name);
    }
    if resources.is_empty() && removed.is_empty() {
        return None;
    }
    *nonce += 1;
    Some(DeltaDiscoveryResponse {
        system_version_info: snapshot.type_version(type_url),
        resources,
        type_url: type_url.to_string(),
        removed_resources: removed,
        nonce: nonce.to_string(),
        ..Default::default()
    })
}
