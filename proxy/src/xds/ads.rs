//! The xDS transport: one gRPC stream (HTTP/2 cleartext) to the control
//! plane, state-of-the-world or delta, driven by the state machines in
//! [`super::sotw`] / [`super::delta`]. The stream is opened on ADS or on a
//! per-type service (a config source with its own `api_config_source`);
//! [`StreamConfig::service`] chooses, everything else is shared. When the stream fails or ends, the
//! client waits a jittered exponential backoff and reconnects, resuming with
//! what it holds (SotW: last accepted versions; delta:
//! `initial_resource_versions`). Nothing already applied is withdrawn while
//! disconnected: the proxy keeps serving the last good config.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use crate::stats::Store;

use super::config::{ApiType, StreamConfig};
use super::delta::DeltaClient;
use super::resource::ResourceSink;
use super::sotw::SotwClient;
use super::stats::XdsStats;

/// Requests queued towards the server; the state machines produce a handful per response.
const REQUEST_QUEUE: usize = 64;

/// How one stream ended.
#[derive(Debug)]
struct StreamEnd {
    /// At least one response arrived (the backoff resets).
    received: bool,
    reason: String,
}

/// Runs one xDS stream client (ADS or a per-type service) until `shutdown`
/// completes: connect, stream, and on any failure reconnect after a
/// backoff. `sink` receives every update.
pub async fn run_xds_stream(
    config: StreamConfig,
    node: Node,
    sink: Arc<dyn ResourceSink>,
    stats: &Store,
    shutdown: impl Future<Output = ()>,
) {
    let stats = XdsStats::new(stats);
    let node = with_user_agent(node);
    let mut protocol = match config.api_type {
        ApiType::Grpc => Protocol::Sotw(SotwClient::new(
            &config.types,
            node,
            config.set_node_on_first_message_only,
        )),
        ApiType::DeltaGrpc => Protocol::Delta(DeltaClient::new(
            &config.types,
            node,
            config.set_node_on_first_message_only,
        )),
    };
    let mut backoff = config.backoff.clone();
    tokio::pin!(shutdown);
    loop {
        let end = tokio::select! {
            end = run_stream(&config, &mut protocol, sink.as_ref(), &stats) => end,
            _ = &mut shutdown => break,
        };
        stats.set_connected(false);
        match &protocol {
            Protocol::Sotw(client) => client.stream_failed(sink.as_ref(), &stats),
            Protocol::Delta(client) => client.stream_failed(sink.as_ref(), &stats),
        }
        if end.received {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::warn!(
            server = %config.uri,
            cluster = %config.cluster_name,
            "xDS: {} stream closed ({}); reconnecting in {delay:?}",
            config.service.short_name(),
            end.reason
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => break,
        }
    }
    stats.set_connected(false);
}

enum Protocol {
    Sotw(SotwClient),
    Delta(DeltaClient),
}

async fn connect(config: &StreamConfig) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(config.uri.clone())
        .map_err(|e| format!("bad xDS server address {}: {e}", config.uri))?
        .connect_timeout(config.connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {}: {}", config.uri, error_chain(&e)))
}

async fn run_stream(
    config: &StreamConfig,
    protocol: &mut Protocol,
    sink: &dyn ResourceSink,
    stats: &XdsStats,
) -> StreamEnd {
    let mut received = false;
    // Subscriptions start before the connection exists (as Envoy's do), so
    // a control plane that is never reached still shows attempts and failures.
    let reason = match protocol {
        Protocol::Sotw(client) => {
            let initial = client.start_stream(sink, stats);
            let open = |channel, requests| config.service.open_sotw(channel, requests);
            let handle = |response| client.handle_response(response, sink, stats);
            exchange(
                config,
                "state of the world",
                initial,
                open,
                handle,
                stats,
                &mut received,
            )
            .await
        }
        Protocol::Delta(client) => {
            let initial = client.start_stream(sink, stats);
            let open = |channel, requests| config.service.open_delta(channel, requests);
            let handle = |response| client.handle_response(response, sink, stats);
            exchange(config, "delta", initial, open, handle, stats, &mut received).await
        }
    };
    StreamEnd { received, reason }
}

/// One stream of either protocol: connect, send the initial requests, then
/// hand every response to the state machine and send what it answers.
/// Returns why the stream ended.
async fn exchange<Request, Response, Open, Opened>(
    config: &StreamConfig,
    protocol: &str,
    initial: Vec<Request>,
    open: Open,
    mut handle: impl FnMut(Response) -> Vec<Request>,
    stats: &XdsStats,
    received: &mut bool,
) -> String
where
    Open: FnOnce(Channel, ReceiverStream<Request>) -> Opened,
    Opened: Future<Output = Result<tonic::Response<tonic::Streaming<Response>>, tonic::Status>>,
{
    let channel = match connect(config).await {
        Ok(channel) => channel,
        Err(reason) => return reason,
    };
    let (sender, requests) = mpsc::channel(REQUEST_QUEUE);
    for request in initial {
        let _ = sender.try_send(request);
    }
    let mut responses = match open(channel, ReceiverStream::new(requests)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return format!("stream refused: {status}"),
    };
    stats.set_connected(true);
    tracing::info!(
        server = %config.uri,
        "xDS: {} stream ({protocol}) established",
        config.service.short_name()
    );
    loop {
        match responses.message().await {
            Ok(Some(response)) => {
                *received = true;
                let started = std::time::Instant::now();
                let requests = handle(response);
                tracing::debug!(target: "sluice::config", elapsed = ?started.elapsed(), "xDS: response decoded, validated and applied");
                for request in requests {
                    if sender.send(request).await.is_err() {
                        return "request stream closed".into();
                    }
                }
            }
            Ok(None) => return "server ended the stream".into(),
            Err(status) => return format!("stream error: {status}"),
        }
    }
}

/// The node as sent: Envoy fills in `user_agent_name` and its version
/// itself; Sluice does the same with its own name and version.
pub fn with_user_agent(mut node: Node) -> Node {
    if node.user_agent_name.is_empty() {
        node.user_agent_name = "sluice".into();
        node.user_agent_version_type = Some(UserAgentVersionType::UserAgentVersion(
            env!("CARGO_PKG_VERSION").into(),
        ));
    }
    node
}

/// An error and its sources, `a: b: c`, so "transport error" says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
