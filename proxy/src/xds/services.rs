//! Which gRPC service an xDS stream is opened on: the aggregated one (ADS,
//! every type multiplexed) or a per-type service (`ListenerDiscoveryService`
//! `StreamListeners`/`DeltaListeners`, `ClusterDiscoveryService`, …) for a
//! config source with its own `api_config_source`. The transport in
//! [`super::ads`] is the same for all of them; only the call that opens the
//! stream differs, and that is what this module provides.

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_client::ClusterDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_client::EndpointDiscoveryServiceClient;
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_client::ListenerDiscoveryServiceClient;
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_client::RouteDiscoveryServiceClient;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Response, Status, Streaming};

use super::resource::type_urls;

/// The gRPC service a stream is opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryService {
    /// ADS: every type on one stream.
    Aggregated,
    /// LDS on its own stream.
    Listeners,
    /// CDS on its own stream.
    Clusters,
    /// EDS on its own stream.
    Endpoints,
    /// RDS on its own stream.
    Routes,
}

impl DiscoveryService {
    /// The per-type service that carries `type_url`.
    pub fn for_type(type_url: &str) -> Option<DiscoveryService> {
        match type_url {
            type_urls::LISTENER => Some(DiscoveryService::Listeners),
            type_urls::CLUSTER => Some(DiscoveryService::Clusters),
            type_urls::ENDPOINT => Some(DiscoveryService::Endpoints),
            type_urls::ROUTE => Some(DiscoveryService::Routes),
            _ => None,
        }
    }

    /// The name logs use: `ADS`, `LDS`, `CDS`, `EDS`, `RDS`.
    pub fn short_name(self) -> &'static str {
        match self {
            DiscoveryService::Aggregated => "ADS",
            DiscoveryService::Listeners => "LDS",
            DiscoveryService::Clusters => "CDS",
            DiscoveryService::Endpoints => "EDS",
            DiscoveryService::Routes => "RDS",
        }
    }

    /// Opens a state-of-the-world stream (`Stream…`) on this service.
    pub async fn open_sotw(
        self,
        channel: Channel,
        requests: ReceiverStream<DiscoveryRequest>,
    ) -> Result<Response<Streaming<DiscoveryResponse>>, Status> {
        match self {
            DiscoveryService::Aggregated => {
                AggregatedDiscoveryServiceClient::new(channel)
                    .stream_aggregated_resources(requests)
                    .await
            }
            DiscoveryService::Listeners => {
                ListenerDiscoveryServiceClient::new(channel)
                    .stream_listeners(requests)
                    .await
            }
            DiscoveryService::Clusters => {
                ClusterDiscoveryServiceClient::new(channel)
                    .stream_clusters(requests)
                    .await
            }
            DiscoveryService::Endpoints => {
                EndpointDiscoveryServiceClient::new(channel)
                    .stream_endpoints(requests)
                    .await
            }
            DiscoveryService::Routes => {
                RouteDiscoveryServiceClient::new(channel)
                    .stream_routes(requests)
                    .await
            }
        }
    }

    /// Opens an incremental stream (`Delta…`) on this service.
    pub async fn open_delta(
        self,
        channel: Channel,
        requests: ReceiverStream<DeltaDiscoveryRequest>,
    ) -> Result<Response<Streaming<DeltaDiscoveryResponse>>, Status> {
        match self {
            DiscoveryService::Aggregated => {
                AggregatedDiscoveryServiceClient::new(channel)
                    .delta_aggregated_resources(requests)
                    .await
            }
            DiscoveryService::Listeners => {
                ListenerDiscoveryServiceClient::new(channel)
                    .delta_listeners(requests)
                    .await
            }
            DiscoveryService::Clusters => {
                ClusterDiscoveryServiceClient::new(channel)
                    .delta_clusters(requests)
                    .await
            }
            DiscoveryService::Endpoints => {
                EndpointDiscoveryServiceClient::new(channel)
                    .delta_endpoints(requests)
                    .await
            }
            DiscoveryService::Routes => {
                RouteDiscoveryServiceClient::new(channel)
                    .delta_routes(requests)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_its_own_service() {
        for type_url in type_urls::ALL {
            let service = DiscoveryService::for_type(type_url).unwrap();
            assert_ne!(service, DiscoveryService::Aggregated);
        }
        assert_eq!(
            DiscoveryService::for_type(type_urls::LISTENER).map(DiscoveryService::short_name),
            Some("LDS")
        );
        assert_eq!(DiscoveryService::for_type("type.googleapis.com/x.Y"), None);
    }
}
