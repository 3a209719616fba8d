//! Requests and connections against loopback servers: HTTP/1.1 pooling and
//! reuse, idle timeout, HTTP/2 multiplexing and resets, connect failures
//! and timeouts, TCP connections, and the stats they leave.

use super::*;

#[tokio::test]
async fn http1_pool_reuses_one_connection_for_sequential_requests() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &store);
    for _ in 0..3 {
        let host = backend.choose_host(None).expect("a host");
        let response = backend.send(&host, get("/x")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-seen-authority"], "backend.test");
        assert_eq!(read_body(response).await, "hello");
        eventually(|| host.pool().idle_count() == 1).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let counter = |name: &str| store.counter(&format!("cluster.backend.{name}")).value();
    assert_eq!(counter("upstream_cx_total"), 1);
    assert_eq!(counter("upstream_cx_http1_total"), 1);
    assert_eq!(counter("upstream_rq_total"), 3);
    assert_eq!(counter("upstream_rq_2xx"), 3);
    assert_eq!(counter("upstream_rq_200"), 3);
    assert_eq!(counter("upstream_rq_completed"), 3);
    assert_eq!(store.gauge("cluster.backend.upstream_rq_active").value(), 0);
    assert_eq!(store.gauge("cluster.backend.upstream_cx_active").value(), 1);
    assert_eq!(
        store.histogram("cluster.backend.upstream_rq_time").count(),
        3
    );
    let host = backend.choose_host(None).unwrap();
    assert_eq!(HostStats::get(&host.stats().rq_success), 3);
    assert_eq!(HostStats::get(&host.stats().rq_total), 3);
}

#[tokio::test]
async fn http1_connection_is_lent_until_its_response_is_read() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &store);
    let host = backend.choose_host(None).expect("a host");
    let response = backend.send(&host, get("/x")).await.unwrap();
    // The body is not read yet: the connection is still lent to it.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(host.pool().idle_count(), 0);
    assert_eq!(read_body(response).await, "hello");
    eventually(|| host.pool().idle_count() == 1).await;

    // A body dropped unread takes its connection with it: the next request
    // opens a new one.
    let abandoned = backend.send(&host, get("/x")).await.unwrap();
    drop(abandoned);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(host.pool().idle_count(), 0);
    let response = backend.send(&host, get("/x")).await.unwrap();
    assert_eq!(read_body(response).await, "hello");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    eventually(|| host.pool().idle_count() == 1).await;
}

#[tokio::test]
async fn http1_max_requests_per_connection_opens_new_connections() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let mut config = static_cluster("backend", &[address]);
    #[allow(deprecated)]
    {
        config.max_requests_per_connection = Some(UInt32Value { value: 2 });
    }
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    let host = backend.choose_host(None).unwrap();
    for _ in 0..3 {
        let response = backend.send(&host, get("/")).await.unwrap();
        read_body(response).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert_eq!(
        store
            .counter("cluster.backend.upstream_cx_max_requests")
            .value(),
        1
    );
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let (address, accepted) = http_server(false, Duration::ZERO).await;
    let mut config = static_cluster("idle", &[address]);
    #[allow(deprecated)]
    {
        config.common_http_protocol_options = Some(CommonHttpProtocolOptions {
            idle_timeout: Some(ProtoDuration {
                seconds: 0,
                nanos: 100_000_000,
            }),
            ..Default::default()
        });
    }
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    let host = backend.choose_host(None).unwrap();
    let response = backend.send(&host, get("/")).await.unwrap();
    read_body(response).await;
    assert_eq!(store.gauge("cluster.idle.upstream_cx_active").value(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store
            .counter("cluster.idle.upstream_cx_idle_timeout")
            .value(),
        1
    );
    assert_eq!(store.gauge("cluster.idle.upstream_cx_active").value(), 0);
    let response = backend.send(&host, get("/")).await.unwrap();
    read_body(response).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_on_a_connection_the_server_closed_goes_to_a_fresh_one() {
    // Answers one request per connection, then closes without saying so.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 1024];
            let _ = stream.read(&mut buffer).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &Store::new());
    let host = backend.choose_host(None).unwrap();
    for _ in 0..2 {
        let response = backend.send(&host, get("/")).await.expect("served");
        assert_eq!(read_body(response).await, "ok");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn http2_multiplexes_concurrent_requests_on_one_connection() {
    let (address, accepted) = http_server(true, Duration::from_millis(100)).await;
    let mut config = static_cluster("h2", &[address]);
    #[allow(deprecated)]
    {
        config.http2_protocol_options = Some(Http2ProtocolOptions::default());
    }
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    assert_eq!(backend.protocol(), UpstreamProtocol::Http2);
    let mut requests = Vec::new();
    for _ in 0..5 {
        let backend = backend.clone();
        requests.push(tokio::spawn(async move {
            let host = backend.choose_host(None).unwrap();
            let response = backend.send(&host, get("/")).await.unwrap();
            assert_eq!(response.version(), http::Version::HTTP_2);
            assert_eq!(response.headers()["x-seen-authority"], "backend.test");
            read_body(response).await
        }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), "hello");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.counter("cluster.h2.upstream_cx_http2_total").value(),
        1
    );
    assert_eq!(store.counter("cluster.h2.upstream_rq_200").value(), 5);
}

#[tokio::test]
async fn refused_connection_is_a_connect_failure() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = unused.local_addr().unwrap();
    drop(unused);
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("backend", &[address]), &store);
    let host = backend.choose_host(None).unwrap();
    let error = backend.send(&host, get("/")).await.unwrap_err();
    assert!(
        matches!(error, UpstreamError::ConnectFailed(_)),
        "{error:?}"
    );
    assert_eq!(error.response_flag().short_code(), "UF");
    assert_eq!(
        error.transport_failure_reason(),
        "delayed connect error: Connection refused"
    );
    assert_eq!(
        store
            .counter("cluster.backend.upstream_cx_connect_fail")
            .value(),
        1
    );
    assert_eq!(HostStats::get(&host.stats().cx_connect_fail), 1);
    // Not an upstream request until a connection carries it (as Envoy);
    // the router charges its local 503 through `record_response`.
    assert_eq!(HostStats::get(&host.stats().rq_error), 0);
    assert_eq!(HostStats::get(&host.stats().rq_total), 0);
    assert_eq!(
        store.counter("cluster.backend.upstream_rq_total").value(),
        0
    );
    assert_eq!(store.gauge("cluster.backend.upstream_rq_active").value(), 0);
    let tcp = backend.connect_tcp(&host).await.unwrap_err();
    assert!(matches!(tcp, UpstreamError::ConnectFailed(_)));
}

#[tokio::test]
async fn connect_timeout_against_a_full_backlog() {
    // A loopback listener with backlog 0 that never accepts: once its queue
    // is full the kernel drops further SYNs and connects hang.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..8 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        );
        match attempt.await {
            Ok(Ok(stream)) => held.push(stream),
            _ => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the backlog never filled up");
    let mut config = static_cluster("slow", &[address]);
    config.connect_timeout = Some(ProtoDuration {
        seconds: 0,
        nanos: 100_000_000,
    });
    let store = Store::new();
    let (_manager, backend) = compile_one(config, &store);
    let host = backend.choose_host(None).unwrap();
    let error = backend.send(&host, get("/")).await.unwrap_err();
    assert!(matches!(error, UpstreamError::ConnectTimeout), "{error:?}");
    assert_eq!(error.response_flag().short_code(), "UF");
    assert_eq!(
        store
            .counter("cluster.slow.upstream_cx_connect_timeout")
            .value(),
        1
    );
    assert_eq!(
        store
            .counter("cluster.slow.upstream_cx_connect_fail")
            .value(),
        1
    );
}

#[tokio::test]
async fn tcp_connections_count_while_open() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buffer = [0u8; 4];
        stream.read_exact(&mut buffer).await.unwrap();
        stream.write_all(&buffer).await.unwrap();
    });
    let store = Store::new();
    let (_manager, backend) = compile_one(static_cluster("tcp", &[address]), &store);
    let host = backend.choose_host(None).unwrap();
    let mut stream = backend.connect_tcp(&host).await.unwrap();
    assert_eq!(store.gauge("cluster.tcp.upstream_cx_active").value(), 1);
    stream.write_all(b"ping").await.unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"ping");
    drop(stream);
    assert_eq!(store.gauge("cluster.tcp.upstream_cx_active").value(), 0);
    assert_eq!(store.counter("cluster.tcp.upstream_cx_destroy").value(), 1);
    assert_eq!(HostStats::get(&host.stats().cx_total), 1);
}

#[tokio::test]
async fn http2_stream_reset_is_upstream_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut connection = h2::server::handshake(stream).await.unwrap();
        while let Some(Ok((_request, mut respond))) = connection.accept().await {
            respond.send_reset(h2::Reason::REFUSED_STREAM);
        }
    });
    let mut config = static_cluster("h2reset", &[address]);
    #[allow(deprecated)]
    {
        config.http2_protocol_options = Some(Http2ProtocolOptions::default());
    }
    let (_manager, backend) = compile_one(config, &Store::new());
    let host = backend.choose_host(None).unwrap();
    let error = backend.send(&host, get("/")).await.unwrap_err();
    assert_eq!(error.response_flag().short_code(), "UR", "{error:?}");
    assert_eq!(error.reset_reason(), "remote refused stream reset");
    assert!(error.is_before_request_sent());
}
