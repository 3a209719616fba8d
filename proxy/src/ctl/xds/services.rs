//! The gRPC services `sluicectl xds serve` answers, all from the same
//! snapshot: ADS (`AggregatedDiscoveryService`, every type on one stream)
//! and the per-type services a client with separate streams uses
//! (`ListenerDiscoveryService`, `ClusterDiscoveryService`,
//! `EndpointDiscoveryService`, `RouteDiscoveryService`), each in both
//! protocols. A stream of either kind runs the same code
//! ([`sotw_stream::serve`], [`delta_stream::serve`]); a per-type stream
//! only answers its own type. The unary `Fetch…` calls (REST-style
//! polling) are not served.

use std::sync::Arc;

use envoy_types::pb::envoy::service::cluster::v3::cluster_discovery_service_server::{
    ClusterDiscoveryService, ClusterDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::endpoint::v3::endpoint_discovery_service_server::{
    EndpointDiscoveryService, EndpointDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::listener::v3::listener_discovery_service_server::{
    ListenerDiscoveryService, ListenerDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::route::v3::route_discovery_service_server::{
    RouteDiscoveryService, RouteDiscoveryServiceServer,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};

use crate::xds::type_urls;

use super::snapshot::Snapshot;
use super::{delta_stream, sotw_stream};

/// Responses queued per stream before the sender waits for the client.
const RESPONSE_QUEUE: usize = 16;

type SotwResponses = ReceiverStream<Result<DiscoveryResponse, Status>>;
type DeltaResponses = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

/// Answers every discovery service from the published snapshots.
#[derive(Clone)]
pub struct DiscoveryServer {
    snapshots: watch::Receiver<Arc<Snapshot>>,
}

impl DiscoveryServer {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> DiscoveryServer {
        DiscoveryServer { snapshots }
    }

    /// One gRPC service answering ADS and the four per-type services.
    pub fn into_service(self) -> DiscoveryRouter {
        DiscoveryRouter {
            aggregated: AggregatedDiscoveryServiceServer::new(self.clone()),
            listeners: ListenerDiscoveryServiceServer::new(self.clone()),
            clusters: ClusterDiscoveryServiceServer::new(self.clone()),
            endpoints: EndpointDiscoveryServiceServer::new(self.clone()),
            routes: RouteDiscoveryServiceServer::new(self),
        }
    }

    /// Starts a state-of-the-world stream answering `served` types.
    fn open_sotw(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
        service: &str,
        served: &'static [&'static str],
    ) -> Response<SotwResponses> {
        let peer = peer_of(&request);
        xds_log!("xds: {peer}: state-of-the-world stream opened ({service})");
        let (sender, receiver) = mpsc::channel(RESPONSE_QUEUE);
        tokio::spawn(sotw_stream::serve(
            peer,
            served,
            request.into_inner(),
            sender,
            self.snapshots.clone(),
        ));
        Response::new(ReceiverStream::new(receiver))
    }

    /// Starts a delta stream answering `served` types.
    fn open_delta(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
        service: &str,
        served: &'static [&'static str],
    ) -> Response<DeltaResponses> {
        let peer = peer_of(&request);
        xds_log!("xds: {peer}: delta stream opened ({service})");
        let (sender, receiver) = mpsc::channel(RESPONSE_QUEUE);
        tokio::spawn(delta_stream::serve(
            peer,
            served,
            request.into_inner(),
            sender,
            self.snapshots.clone(),
        ));
        Response::new(ReceiverStream::new(receiver))
    }
}

fn peer_of<T>(request: &Request<T>) -> String {
    request
        .remote_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| "client".into())
}

fn fetch_not_served() -> Status {
    Status::unimplemented(
        "sluicectl xds serve answers streams only (GRPC or DELTA_GRPC); REST-style fetch is not served",
    )
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for DiscoveryServer {
    type StreamAggregatedResourcesStream = SotwResponses;
    type DeltaAggregatedResourcesStream = DeltaResponses;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<SotwResponses>, Status> {
        Ok(self.open_sotw(request, "ADS", &type_urls::ALL))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaResponses>, Status> {
        Ok(self.open_delta(request, "ADS", &type_urls::ALL))
    }
}

/// Implements one per-type service: its `Stream…` and `Delta…` calls open
/// streams that answer only `$type_url`.
macro_rules! per_type_service {
    ($service:ident, $label:literal, $type_url:path,
     $sotw_stream:ident, $sotw:ident, $delta_stream:ident, $delta:ident, $fetch:ident) => {
        #[tonic::async_trait]
        impl $service for DiscoveryServer {
            type $sotw_stream = SotwResponses;
            type $delta_stream = DeltaResponses;

            async fn $sotw(
                &self,
                request: Request<Streaming<DiscoveryRequest>>,
            ) -> Result<Response<SotwResponses>, Status> {
                Ok(self.open_sotw(request, $label, &[$type_url]))
            }

            async fn $delta(
                &self,
                request: Request<Streaming<DeltaDiscoveryRequest>>,
            ) -> Result<Response<DeltaResponses>, Status> {
                Ok(self.open_delta(request, $label, &[$type_url]))
            }

            async fn $fetch(
                &self,
                _request: Request<DiscoveryRequest>,
            ) -> Result<Response<DiscoveryResponse>, Status> {
                Err(fetch_not_served())
            }
        }
    };
}

per_type_service!(
    ListenerDiscoveryService,
    "LDS",
    type_urls::LISTENER,
    StreamListenersStream,
    stream_listeners,
    DeltaListenersStream,
    delta_listeners,
    fetch_listeners
);
per_type_service!(
    ClusterDiscoveryService,
    "CDS",
    type_urls::CLUSTER,
    StreamClustersStream,
    stream_clusters,
    DeltaClustersStream,
    delta_clusters,
    fetch_clusters
);
per_type_service!(
    EndpointDiscoveryService,
    "EDS",
    type_urls::ENDPOINT,
    StreamEndpointsStream,
    stream_endpoints,
    DeltaEndpointsStream,
    delta_endpoints,
    fetch_endpoints
);
per_type_service!(
    RouteDiscoveryService,
    "RDS",
    type_urls::ROUTE,
    StreamRoutesStream,
    stream_routes,
    DeltaRoutesStream,
    delta_routes,
    fetch_routes
);

/// Routes each call to its service by the gRPC path (`/<service>/<method>`).
/// (tonic's own router needs its `router` feature, i.e. axum; five fixed
/// services do not.)
#[derive(Clone)]
pub struct DiscoveryRouter {
    aggregated: AggregatedDiscoveryServiceServer<DiscoveryServer>,
    listeners: ListenerDiscoveryServiceServer<DiscoveryServer>,
    clusters: ClusterDiscoveryServiceServer<DiscoveryServer>,
    endpoints: EndpointDiscoveryServiceServer<DiscoveryServer>,
    routes: RouteDiscoveryServiceServer<DiscoveryServer>,
}

/// The service part of a gRPC path: `/a.b.Service/Method` → `a.b.Service`.
fn service_of(path: &str) -> &str {
    path.trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
}

impl Service<http::Request<Body>> for DiscoveryRouter {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Every generated server is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let service = service_of(request.uri().path());
        if service == <AggregatedDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME {
            self.aggregated.call(request)
        } else if service == <ListenerDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME
        {
            self.listeners.call(request)
        } else if service == <ClusterDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME
        {
            self.clusters.call(request)
        } else if service == <EndpointDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME
        {
            self.endpoints.call(request)
        } else if service == <RouteDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME {
            self.routes.call(request)
        } else {
            let status = Status::unimplemented(format!("no service {service} here"));
            Box::pin(async move { Ok(status.into_http()) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_route_by_service_name() {
        assert_eq!(
            service_of("/envoy.service.listener.v3.ListenerDiscoveryService/StreamListeners"),
            <ListenerDiscoveryServiceServer<DiscoveryServer> as NamedService>::NAME
        );
        assert_eq!(service_of("/"), "");
        assert_eq!(service_of(""), "");
    }
}
