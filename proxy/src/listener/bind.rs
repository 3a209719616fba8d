//! Listening sockets: one per worker on the same address with
//! `SO_REUSEPORT`, so the kernel spreads connections across workers
//! without a shared accept queue.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Envoy's default `tcp_backlog_size`.
const BACKLOG: i32 = 1024;

/// Binds `count` listening sockets to `address`. With port 0 the first
/// socket picks the port and the others join it.
pub fn bind_listener_sockets(
    address: SocketAddr,
    count: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut sockets = Vec::with_capacity(count);
    let mut address = address;
    for _ in 0..count.max(1) {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if address.is_ipv6() {
            // `::` accepts IPv4 too unless ipv4_compat is off; Envoy's default is v6-only off.
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&address.into()).map_err(|error| {
            io::Error::new(error.kind(), format!("cannot bind '{address}': {error}"))
        })?;
        socket.listen(BACKLOG)?;
        if address.port() == 0 {
            if let Some(bound) = socket.local_addr()?.as_socket() {
                address = bound;
            }
        }
        sockets.push(socket.into());
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_share_one_port() {
        let sockets = bind_listener_sockets("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| *p == ports[0] && *p != 0));
    }

    #[test]
    fn a_taken_port_is_a_clear_error() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_listener_sockets(address, 1).unwrap_err();
        assert!(error.to_string().contains("cannot bind"), "{error}");
    }
}
