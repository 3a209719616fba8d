//! The loopback ports of one bench run: a block of [`BLOCK_SIZE`] ports,
//! chosen at start among blocks where every port is free, and held by a
//! reservation socket on the block's last port for the whole run, so two
//! runs at once (two developers, or CI beside a developer) take different
//! blocks. Blocks lie below the kernel's ephemeral range, where no client
//! socket's automatic source port can take a port between two rounds.

use std::net::TcpListener;
use std::sync::OnceLock;

/// Ports per block; the last one is the reservation.
pub const BLOCK_SIZE: u16 = 20;
/// The first block tried (the ports the bench always used, 28080…).
const PREFERRED_BASE: u16 = 28080;
/// The lowest block considered.
const LOWEST_BASE: u16 = 20000;
/// Blocks tried before giving up.
const MAX_BLOCKS_TRIED: usize = 200;

/// What each port of the block is for (offset from the block's base).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Slot {
    /// The backend nginx (HTTP/1.1).
    Backend = 0,
    /// The backend nginx (h2c).
    BackendH2 = 1,
    /// The backend iperf3 server (tcp).
    Iperf = 2,
    /// The backend nginx answering gRPC calls (h2c).
    BackendGrpc = 7,
    /// tcp-kernel: the iperf3 server behind the service.
    KernelIperfBackend = 3,
    /// sockmap: the local nginx.
    SockmapNginx = 4,
    /// sockmap: the local iperf3 server.
    SockmapIperf = 5,
    /// sockmap: the local nginx (h2c).
    SockmapNginxH2 = 6,
    /// sockmap: the local nginx (gRPC).
    SockmapNginxGrpc = 8,
    /// The proxy under test.
    Proxy = 10,
    /// Sluice's and Envoy's admin.
    Admin = 11,
    /// tcp-kernel: the userspace proxies' second (HTTP) listener.
    ProxyHttp = 13,
    /// tcp-kernel: service ports where nothing listens (connect4 rewrites them).
    VipBulk = 15,
    VipHttp = 16,
}

const ALL_SLOTS: [Slot; 14] = [
    Slot::Backend,
    Slot::BackendH2,
    Slot::Iperf,
    Slot::BackendGrpc,
    Slot::KernelIperfBackend,
    Slot::SockmapNginx,
    Slot::SockmapIperf,
    Slot::SockmapNginxH2,
    Slot::SockmapNginxGrpc,
    Slot::Proxy,
    Slot::Admin,
    Slot::ProxyHttp,
    Slot::VipBulk,
    Slot::VipHttp,
];

struct Block {
    base: u16,
    _reservation: TcpListener,
}

static BLOCK: OnceLock<Block> = OnceLock::new();

/// Chooses and reserves this run's block (once); returns its base.
pub fn reserve() -> Result<u16, String> {
    if let Some(block) = BLOCK.get() {
        return Ok(block.base);
    }
    let ceiling = ephemeral_range_start().saturating_sub(BLOCK_SIZE);
    let block = find_block(PREFERRED_BASE, LOWEST_BASE, ceiling)?;
    Ok(BLOCK.get_or_init(|| block).base)
}

/// The port of `slot` in this run's block.
pub fn port(slot: Slot) -> u16 {
    let base = BLOCK
        .get()
        .expect("ports::reserve() runs before any port is used")
        .base;
    base + slot as u16
}

fn find_block(preferred: u16, lowest: u16, ceiling: u16) -> Result<Block, String> {
    if ceiling < lowest {
        return Err(format!(
            "no room for bench ports below the ephemeral range (ends at {ceiling})"
        ));
    }
    let blocks = (ceiling - lowest) / BLOCK_SIZE + 1;
    let first = (preferred.clamp(lowest, ceiling) - lowest) / BLOCK_SIZE;
    for step in 0..blocks.min(MAX_BLOCKS_TRIED as u16) {
        let base = lowest + ((first + step) % blocks) * BLOCK_SIZE;
        if let Some(block) = try_block(base) {
            return Ok(block);
        }
    }
    Err(format!(
        "no block of {BLOCK_SIZE} free loopback ports between {lowest} and {ceiling}"
    ))
}

/// The block at `base` when its reservation port can be held and every
/// other port could be bound right now.
fn try_block(base: u16) -> Option<Block> {
    let reservation = TcpListener::bind(("127.0.0.1", base + BLOCK_SIZE - 1)).ok()?;
    let all_free = ALL_SLOTS
        .iter()
        .all(|&slot| TcpListener::bind(("127.0.0.1", base + slot as u16)).is_ok());
    all_free.then_some(Block {
        base,
        _reservation: reservation,
    })
}

/// The first port of the kernel's ephemeral (automatic source port) range.
fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fit_below_the_reservation_and_are_distinct() {
        let mut offsets: Vec<u16> = ALL_SLOTS.iter().map(|&s| s as u16).collect();
        offsets.sort_unstable();
        offsets.dedup();
        assert_eq!(offsets.len(), ALL_SLOTS.len());
        assert!(offsets.iter().all(|&o| o < BLOCK_SIZE - 1));
    }

    // The tests' blocks lie below the ephemeral range, as the bench's do:
    // above it, client sockets of other tests in TIME_WAIT can hold a port
    // of every block (seen in CI).

    #[test]
    fn a_held_block_is_skipped_by_the_next_run() {
        // Two "runs" in one process: the second finds the first's
        // reservation and takes another block.
        let first = find_block(21000, 21000, 21400).unwrap();
        let second = find_block(21000, 21000, 21400).unwrap();
        assert_ne!(first.base, second.base);
        assert_eq!((second.base - 21000) % BLOCK_SIZE, 0);
        drop(first);
    }

    #[test]
    fn a_busy_port_inside_a_block_moves_to_the_next() {
        let busy = TcpListener::bind(("127.0.0.1", 21500 + Slot::Proxy as u16)).unwrap();
        let block = find_block(21500, 21500, 21900).unwrap();
        assert_ne!(block.base, 21500);
        drop(busy);
    }

    #[test]
    fn no_room_is_an_error() {
        assert!(find_block(30000, 30000, 29000).is_err());
    }
}
