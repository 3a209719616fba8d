//! A fake [`ResourceSink`] for the protocol unit tests: it keeps what was
//! applied per type, rejects the names it is told to, and subscribes to
//! endpoints for every cluster it holds (as the proxy does for EDS clusters)
//! and to the route configs it is told to.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::resource::{type_urls, Resource, ResourceSink, Subscription};
use super::source::SourceId;

/// One `apply` call: (type, updated names, removed names, state of the world).
pub type ApplyCall = (String, Vec<String>, Vec<String>, bool);

#[derive(Default)]
pub struct FakeSink {
    /// type URL → name → version applied.
    pub applied: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Every apply call: (type, updated names, removed names, sotw).
    pub calls: Mutex<Vec<ApplyCall>>,
    /// Names to reject, with the message.
    pub reject: Mutex<BTreeMap<String, String>>,
    /// The route configs wanted.
    pub routes: Mutex<BTreeSet<String>>,
    /// The route configs wanted from sources of their own.
    pub own_routes: Mutex<BTreeMap<SourceId, BTreeSet<String>>>,
}

impl FakeSink {
    pub fn names(&self, type_url: &str) -> Vec<String> {
        let applied = self.applied.lock().unwrap();
        applied
            .get(type_url)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn version_of(&self, type_url: &str, name: &str) -> Option<String> {
        let applied = self.applied.lock().unwrap();
        applied.get(type_url)?.get(name).cloned()
    }

    pub fn reject(&self, name: &str, message: &str) {
        self.reject
            .lock()
            .unwrap()
            .insert(name.into(), message.into());
    }
}

impl ResourceSink for FakeSink {
    fn apply(
        &self,
        type_url: &str,
        updated: Vec<Resource>,
        removed: Vec<String>,
        state_of_the_world: bool,
    ) -> Vec<(String, String)> {
        self.calls.lock().unwrap().push((
            type_url.into(),
            updated.iter().map(|r| r.name.clone()).collect(),
            removed.clone(),
            state_of_the_world,
        ));
        let reject = self.reject.lock().unwrap();
        let mut applied = self.applied.lock().unwrap();
        let entry = applied.entry(type_url.to_string()).or_default();
        let mut errors = Vec::new();
        for resource in updated {
            match reject.get(&resource.name) {
                Some(message) => errors.push((resource.name, message.clone())),
                None => {
                    entry.insert(resource.name, resource.version);
                }
            }
        }
        for name in removed {
            entry.remove(&name);
        }
        errors
    }

    fn subscriptions(&self, type_url: &str) -> Subscription {
        match type_url {
            type_urls::CLUSTER | type_urls::LISTENER => Subscription::Wildcard,
            type_urls::ENDPOINT => Subscription::names(self.names(type_urls::CLUSTER)),
            _ => Subscription::Names(self.routes.lock().unwrap().clone()),
        }
    }

    fn source_subscriptions(&self, type_url: &str, source: &SourceId) -> Subscription {
        match (source, type_url) {
            (SourceId::Ads, _) => self.subscriptions(type_url),
            (_, _) if type_urls::is_full_state(type_url) => self.subscriptions(type_url),
            (_, type_urls::ROUTE) => Subscription::Names(
                self.own_routes
                    .lock()
                    .unwrap()
                    .get(source)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => Subscription::Names(BTreeSet::new()),
        }
    }
}

pub fn cluster(name: &str) -> Any {
    Any {
        type_url: Cluster::type_url(),
        value: Cluster {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

pub fn listener(name: &str) -> Any {
    Any {
        type_url: Listener::type_url(),
        value: Listener {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

pub fn endpoints(name: &str) -> Any {
    Any {
        type_url: ClusterLoadAssignment::type_url(),
        value: ClusterLoadAssignment {
            cluster_name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    }
}
