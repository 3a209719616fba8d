//! The xDS transport: one gRPC stream (HTTP/2 cleartext) to the control
//! plane, state-of-the-world or delta, driven by the state machines in
//! [`super::sotw`] / [`super::delta`]. The stream is opened on ADS or on a
//! per-type service (a config source with its own `api_config_source`);
//! [`StreamConfig::service`] chooses, everything else is shared. When the stream fails or ends, the
//! client waits a jittered exponential backoff and reconnects, resuming with
//! what it holds (SotW: last accepted versions; delta:
//! `initial_resource_versions`). Nothing already applied is withdrawn while
//! disconnected: the proxy keeps serving the last good config. Requests go
//! out through the stream's [`RequestPacer`] (`rate_limit_settings`), and
//! when the sink says subscriptions changed elsewhere (a CDS update on
//! another stream names new EDS clusters) the stream re-subscribes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::node::UserAgentVersionType;
use envoy_types::pb::envoy::config::core::v3::Node;
use tokio::sync::mpsc;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::config::{ApiType, StreamConfig};
use super::delta::DeltaClient;
use super::rate_limit::RequestPacer;
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
/// backoff. `sink` receives every update. `stats` is this stream's
/// ([`XdsStats::for_service`]: its `control_plane.*` scope).
pub async fn run_xds_stream(
    config: StreamConfig,
    node: Node,
    sink: Arc<dyn ResourceSink>,
    stats: XdsStats,
    shutdown: impl Future<Output = ()>,
) {
    let node = with_user_agent(node);
    let mut protocol = match config.api_type {
        ApiType::Grpc => Protocol::Sotw(
            SotwClient::new(&config.types, node, config.set_node_on_first_message_only)
                .with_source(config.source.clone()),
        ),
        ApiType::DeltaGrpc => Protocol::Delta(
            DeltaClient::new(&config.types, node, config.set_node_on_first_message_only)
                .with_source(config.source.clone()),
        ),
    };
    stats.set_connected(false);
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
            let step = |event: Event<_>| match event {
                Event::Response(response) => client.handle_response(response, sink, stats),
                Event::SubscriptionsChanged => client.resubscribe(sink, stats),
            };
            let exchange = Exchange {
                config,
                protocol: "state of the world",
                sink,
                stats,
            };
            exchange.run(initial, open, step, &mut received).await
        }
        Protocol::Delta(client) => {
            let initial = client.start_stream(sink, stats);
            let open = |channel, requests| config.service.open_delta(channel, requests);
            let step = |event: Event<_>| match event {
                Event::Response(response) => client.handle_response(response, sink, stats),
                Event::SubscriptionsChanged => client.resubscribe(sink, stats),
            };
            let exchange = Exchange {
                config,
                protocol: "delta",
                sink,
                stats,
            };
            exchange.run(initial, open, step, &mut received).await
        }
    };
    StreamEnd { received, reason }
}

/// What the protocol state machine answers.
enum Event<Response> {
    Response(Response),
    /// Subscriptions may have changed (something applied on another stream).
    SubscriptionsChanged,
}

/// One stream of either protocol.
struct Exchange<'a> {
    config: &'a StreamConfig,
    protocol: &'static str,
    sink: &'a dyn ResourceSink,
    stats: &'a XdsStats,
}

impl Exchange<'_> {
    /// Connects, sends the initial requests, then hands every response (and
    /// every subscription change) to the state machine and sends what it
    /// answers, paced by the rate limit. Returns why the stream ended.
    async fn run<Request, Response, Open, Opened>(
        &self,
        initial: Vec<Request>,
        open: Open,
        mut step: impl FnMut(Event<Response>) -> Vec<Request>,
        received: &mut bool,
    ) -> String
    where
        Open: FnOnce(Channel, ReceiverStream<Request>) -> Opened,
        Opened: Future<Output = Result<tonic::Response<tonic::Streaming<Response>>, tonic::Status>>,
    {
        let config = self.config;
        let channel = match connect(config).await {
            Ok(channel) => channel,
            Err(reason) => return reason,
        };
        let mut pacer = RequestPacer::new(config.rate_limit, self.stats, Instant::now());
        let (sender, requests) = mpsc::channel(REQUEST_QUEUE);
        for request in initial {
            for ready in pacer.push(request, Instant::now()) {
                let _ = sender.try_send(ready);
            }
        }
        let mut responses = match open(channel, ReceiverStream::new(requests)).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                pacer.clear();
                return format!("stream refused: {status}");
            }
        };
        self.stats.set_connected(true);
        tracing::info!(
            server = %config.uri,
            "xDS: {} stream ({}) established",
            config.service.short_name(),
            self.protocol
        );
        let mut changes = self
            .sink
            .subscription_changes()
            .unwrap_or_else(|| watch::channel(0).1);
        // What changed while connecting (the receiver only sees later ticks).
        let mut ready = Vec::new();
        for request in step(Event::SubscriptionsChanged) {
            ready.extend(pacer.push(request, Instant::now()));
        }
        if !send_all(&sender, ready).await {
            pacer.clear();
            return "request stream closed".into();
        }
        let reason = loop {
            let wake = pacer.wake_in(Instant::now());
            let event = tokio::select! {
                message = responses.message() => match message {
                    Ok(Some(response)) => {
                        *received = true;
                        Event::Response(response)
                    }
                    Ok(None) => break "server ended the stream".to_string(),
                    Err(status) => break format!("stream error: {status}"),
                },
                Ok(()) = changes.changed() => Event::SubscriptionsChanged,
                _ = tokio::time::sleep(wake.unwrap_or_default()), if wake.is_some() => {
                    if !send_all(&sender, pacer.ready(Instant::now())).await {
                        break "request stream closed".into();
                    }
                    continue;
                }
            };
            let started = Instant::now();
            let is_response = matches!(event, Event::Response(_));
            let requests = step(event);
            if is_response {
                tracing::debug!(target: "sluice::config", elapsed = ?started.elapsed(), "xDS: response decoded, validated and applied");
            }
            let mut ready = Vec::new();
            for request in requests {
                ready.extend(pacer.push(request, Instant::now()));
            }
            if !send_all(&sender, ready).await {
                break "request stream closed".into();
            }
        };
        pacer.clear();
        reason
    }
}

/// Sends requests in order; false when the stream is gone.
async fn send_all<Request>(sender: &mpsc::Sender<Request>, requests: Vec<Request>) -> bool {
    for request in requests {
        if sender.send(request).await.is_err() {
            return false;
        }
    }
    true
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
