//! Connections the kernel redirected to Sluice (transparent L7 redirect):
//! accepted on the daemon's redirect addresses (`--datapath-redirect-to`,
//! `--datapath-redirect6-to`; one `SO_REUSEPORT` socket per worker per
//! address), each is matched by its original
//! destination — recovered from the kernel by the client's address — to
//! the `bind_to_port: false` listener on that address and served by it
//! exactly as if it had been accepted there (filter chain, stats, access
//! logs, drain), as Envoy hands over `use_original_dst` connections.
//!
//! The same loop serves the IPv4 and the IPv6 redirect address: a client
//! with an IPv4 (or v4-mapped) address was redirected from an IPv4 service,
//! one with a native IPv6 address from an IPv6 service.
//!
//! A connection with no recorded original destination, or whose original
//! destination has no listener (removed since the kernel redirected it),
//! is closed and counted under `datapath.redirect.`.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::Weak;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::accept::serve_accepted;
use super::manager::ListenerManager;
use crate::stats::{Counter, Store};

/// Where redirected connections were going, by client address: the
/// kernel's map, or a fake in tests. One per accepting worker.
pub trait OriginalDestinations: Send {
    /// The original destination of the connection from `client` (IPv4, or
    /// a native IPv6 address), forgotten once read; `None` if none was
    /// recorded.
    fn take(&mut self, client: SocketAddr) -> Option<SocketAddr>;
}

/// `datapath.redirect.*` counters.
#[derive(Debug, Clone)]
pub struct RedirectStats {
    /// Connections accepted on the redirect address.
    pub downstream_cx_total: Counter,
    /// Closed: the kernel recorded no original destination for the client.
    pub no_original_destination: Counter,
    /// Closed: no `bind_to_port: false` listener on the original destination.
    pub no_listener: Counter,
}

impl RedirectStats {
    pub fn new(store: &Store) -> Self {
        let name = |stat: &str| format!("datapath.redirect.{stat}");
        RedirectStats {
            downstream_cx_total: store.counter(&name("downstream_cx_total")),
            no_original_destination: store.counter(&name("no_original_destination")),
            no_listener: store.counter(&name("no_listener")),
        }
    }
}

/// What one worker's redirect accept loop needs.
pub struct RedirectAcceptor {
    pub destinations: Box<dyn OriginalDestinations>,
    pub listeners: Weak<ListenerManager>,
    pub stats: RedirectStats,
    pub stopped: watch::Receiver<bool>,
}

pub async fn redirect_accept_loop(listener: TcpListener, mut acceptor: RedirectAcceptor) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = acceptor.stopped.wait_for(|stop| *stop) => break,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(target: "sluice::listener", %error, "accept on the redirect address failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        acceptor.stats.downstream_cx_total.inc();
        let client = match remote {
            SocketAddr::V6(client) => match client.ip().to_ipv4_mapped() {
                Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, client.port())),
                None => SocketAddr::V6(client),
            },
            v4 => v4,
        };
        let Some(original) = acceptor.destinations.take(client) else {
            acceptor.stats.no_original_destination.inc();
            tracing::debug!(target: "sluice::listener", %remote, "redirected connection without an original destination: closed");
            continue;
        };
        let Some(listeners) = acceptor.listeners.upgrade() else {
            break;
        };
        let Some(generation) = listeners.virtual_listener_for(original) else {
            acceptor.stats.no_listener.inc();
            tracing::debug!(target: "sluice::listener", %remote, %original, "no listener for the original destination of a redirected connection: closed");
            continue;
        };
        serve_accepted(&generation, stream, remote, original);
    }
    tracing::debug!(target: "sluice::listener", "redirect address closed");
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::config::context::CompileContext;
    use crate::listener::{DrainSettings, ListenerConfig};

    /// Original destinations the test decides, shared with the loop.
    #[derive(Clone, Default)]
    struct FakeDestinations(Arc<Mutex<HashMap<SocketAddr, SocketAddr>>>);

    impl OriginalDestinations for FakeDestinations {
        fn take(&mut self, client: SocketAddr) -> Option<SocketAddr> {
            self.0.lock().unwrap().remove(&client)
        }
    }

    /// A client socket bound before it connects, so its address is known.
    fn client_socket() -> (tokio::net::TcpSocket, SocketAddr) {
        client_socket_on("127.0.0.1:0".parse().unwrap())
    }

    fn client_socket_on(address: SocketAddr) -> (tokio::net::TcpSocket, SocketAddr) {
        let socket = match address {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .unwrap();
        socket.bind(address).unwrap();
        let address = socket.local_addr().unwrap();
        (socket, address)
    }

    async fn closed_by_peer(stream: &mut tokio::net::TcpStream) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    #[tokio::test]
    async fn connections_are_dispatched_by_original_destination_or_closed_and_counted() {
        let context = CompileContext::with_backend_cluster();
        let manager = Arc::new(ListenerManager::new(
            Vec::new(),
            DrainSettings {
                period: Duration::from_secs(1),
                immediate: true,
            },
        ));
        let proto = crate::config::parse_message(
            "name: vip\nbind_to_port: false\naddress: {socket_address: {address: 10.96.0.10, port_value: 80}}\nfilter_chains:\n- filters: [{name: tcp, typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}]",
        )
        .unwrap();
        let vip = ListenerConfig::compile(&proto, &context).unwrap();
        let vip_connections = vip.stats.downstream_cx_total.clone();
        manager.add_or_update(vip).unwrap();

        let destinations = FakeDestinations::default();
        let stats = RedirectStats::new(&context.store);
        let (stop, stopped) = watch::channel(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let redirect_address = listener.local_addr().unwrap();
        let acceptor = RedirectAcceptor {
            destinations: Box::new(destinations.clone()),
            listeners: Arc::downgrade(&manager),
            stats: stats.clone(),
            stopped,
        };
        let accept_loop = tokio::spawn(redirect_accept_loop(listener, acceptor));

        // No original destination recorded: closed.
        let (socket, _) = client_socket();
        let mut stream = socket.connect(redirect_address).await.unwrap();
        assert!(closed_by_peer(&mut stream).await);
        assert_eq!(stats.no_original_destination.value(), 1);

        // An original destination without a listener: closed.
        let (socket, client) = client_socket();
        destinations
            .0
            .lock()
            .unwrap()
            .insert(client, "10.96.0.11:80".parse().unwrap());
        let mut stream = socket.connect(redirect_address).await.unwrap();
        assert!(closed_by_peer(&mut stream).await);
        assert_eq!(stats.no_listener.value(), 1);

        // The VIP listener's original destination: served by that listener.
        let (socket, client) = client_socket();
        destinations
            .0
            .lock()
            .unwrap()
            .insert(client, "10.96.0.10:80".parse().unwrap());
        let _stream = socket.connect(redirect_address).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while vip_connections.value() == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(vip_connections.value(), 1);
        assert_eq!(stats.downstream_cx_total.value(), 3);
        assert!(
            destinations.0.lock().unwrap().is_empty(),
            "entries are taken"
        );

        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), accept_loop)
            .await
            .expect("the loop stops")
            .unwrap();
    }

    #[tokio::test]
    async fn ipv6_clients_are_dispatched_to_the_ipv6_listener_of_their_original_destination() {
        let context = CompileContext::with_backend_cluster();
        let manager = Arc::new(ListenerManager::new(
            Vec::new(),
            DrainSettings {
                period: Duration::from_secs(1),
                immediate: true,
            },
        ));
        let listener_on = |name: &str, address: &str| {
            let proto = crate::config::parse_message(&format!(
                "name: {name}\nbind_to_port: false\naddress: {{socket_address: {{address: '{address}', port_value: 80}}}}\nfilter_chains:\n- filters: [{{name: tcp, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}}}]"
            ))
            .unwrap();
            ListenerConfig::compile(&proto, &context).unwrap()
        };
        let exact = listener_on("exact", "fd96::20");
        let exact_connections = exact.stats.downstream_cx_total.clone();
        manager.add_or_update(exact).unwrap();
        let wildcard = listener_on("wildcard", "::");
        let wildcard_connections = wildcard.stats.downstream_cx_total.clone();
        manager.add_or_update(wildcard).unwrap();

        let destinations = FakeDestinations::default();
        let (stop, stopped) = watch::channel(false);
        let listener = TcpListener::bind("[::1]:0").await.unwrap();
        let redirect_address = listener.local_addr().unwrap();
        let acceptor = RedirectAcceptor {
            destinations: Box::new(destinations.clone()),
            listeners: Arc::downgrade(&manager),
            stats: RedirectStats::new(&context.store),
            stopped,
        };
        let accept_loop = tokio::spawn(redirect_accept_loop(listener, acceptor));

        // [VIP]:port exact first, then [::]:port.
        let mut streams = Vec::new();
        for original in ["[fd96::20]:80", "[fd96::21]:80"] {
            let (socket, client) = client_socket_on("[::1]:0".parse().unwrap());
            destinations
                .0
                .lock()
                .unwrap()
                .insert(client, original.parse().unwrap());
            streams.push(socket.connect(redirect_address).await.unwrap());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (exact_connections.value(), wildcard_connections.value()) != (1, 1)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            (exact_connections.value(), wildcard_connections.value()),
            (1, 1)
        );
        assert!(destinations.0.lock().unwrap().is_empty());

        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), accept_loop)
            .await
            .expect("the loop stops")
            .unwrap();
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[tokio::test]
    async fn the_redirect_address_and_bound_listeners_never_share_a_port() {
        let context = CompileContext::with_backend_cluster();
        let (worker, _commands) = tokio::sync::mpsc::unbounded_channel();
        let manager = Arc::new(ListenerManager::new(
            vec![worker],
            DrainSettings {
                period: Duration::from_secs(1),
                immediate: true,
            },
        ));
        let bound = |port: u16| {
            let proto = crate::config::parse_message(&format!(
                "name: l{port}\naddress: {{socket_address: {{address: 0.0.0.0, port_value: {port}}}}}\nfilter_chains:\n- filters: [{{name: tcp, typed_config: {{'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: t, cluster: backend}}}}]"
            ))
            .unwrap();
            ListenerConfig::compile(&proto, &context).unwrap()
        };
        let no_map = || -> Result<Box<dyn OriginalDestinations>, String> {
            Ok(Box::new(FakeDestinations::default()))
        };
        let stats = RedirectStats::new(&context.store);

        let taken = free_port();
        manager.add_or_update(bound(taken)).unwrap();
        let error = manager
            .serve_redirect(
                SocketAddr::from(([127, 0, 0, 1], taken)),
                no_map,
                stats.clone(),
            )
            .unwrap_err();
        assert!(
            error.contains(&format!("overlaps listener 'l{taken}'")),
            "{error}"
        );

        let redirect_port = free_port();
        manager
            .serve_redirect(
                SocketAddr::from(([127, 0, 0, 1], redirect_port)),
                no_map,
                stats,
            )
            .unwrap();
        let error = manager.add_or_update(bound(redirect_port)).unwrap_err();
        assert!(
            error.contains("overlaps the datapath redirect address"),
            "{error}"
        );
    }
}
