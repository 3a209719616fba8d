//! End-to-end tests of clusters against real loopback servers (127.0.0.1
//! only), and the helpers they share: building `Cluster` messages and
//! running small HTTP servers.

mod clusters;
mod connections;
mod dynamic;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbConfig, LbPolicy as ProtoLbPolicy,
    MaglevLbConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, Http2ProtocolOptions,
    HttpProtocolOptions as CommonHttpProtocolOptions, SocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::google::protobuf::{Duration as ProtoDuration, UInt32Value, UInt64Value};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::http::body;
use crate::stats::Store;

pub(super) fn endpoint(address: &str, port: u32, weight: Option<u32>) -> LbEndpoint {
    LbEndpoint {
        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
            address: Some(Address {
                address: Some(address::Address::SocketAddress(SocketAddress {
                    address: address.to_string(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })),
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        ..Default::default()
    }
}

pub(super) fn cluster(name: &str, kind: DiscoveryType, endpoints: Vec<LbEndpoint>) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(kind as i32)),
        connect_timeout: Some(ProtoDuration {
            seconds: 1,
            nanos: 0,
        }),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: endpoints,
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(super) fn static_cluster(name: &str, addresses: &[SocketAddr]) -> Cluster {
    let endpoints = addresses
        .iter()
        .map(|a| endpoint(&a.ip().to_string(), a.port() as u32, None))
        .collect();
    cluster(name, DiscoveryType::Static, endpoints)
}

pub(super) fn compile_one(
    cluster: Cluster,
    store: &Store,
) -> (ClusterManager, Arc<UpstreamCluster>) {
    let name = cluster.name.clone();
    let manager = ClusterManager::compile(&[cluster], store).expect("valid cluster");
    let upstream = manager.get(&name).unwrap().clone();
    (manager, upstream)
}

pub(super) fn compile_errors(clusters: &[Cluster]) -> String {
    ClusterManager::compile(clusters, &Store::new())
        .expect_err("invalid config")
        .to_string()
}

/// An HTTP server on 127.0.0.1 answering "hello" after `delay`, counting
/// accepted connections.
pub(super) async fn http_server(http2: bool, delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let authority = request
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .or_else(|| {
                        request
                            .headers()
                            .get("host")
                            .map(|h| h.to_str().unwrap().to_string())
                    })
                    .unwrap_or_default();
                async move {
                    tokio::time::sleep(delay).await;
                    let response = http::Response::builder()
                        .header("x-seen-authority", authority)
                        .body(Full::new(Bytes::from_static(b"hello")))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                }
            });
            let io = TokioIo::new(stream);
            tokio::spawn(async move {
                if http2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    (address, accepted)
}

pub(super) fn get(path: &str) -> http::Request<body::Body> {
    http::Request::builder()
        .uri(path)
        .header("host", "backend.test")
        .body(body::empty())
        .unwrap()
}

pub(super) async fn read_body(response: http::Response<UpstreamBody>) -> Bytes {
    response.into_body().collect().await.unwrap().to_bytes()
}

/// Waits (bounded) until `condition` holds.
pub(super) async fn eventually(mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 1s");
}
