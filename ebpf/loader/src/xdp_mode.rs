//! Which XDP mode the kernel runs on an interface (native/driver, generic/skb,
//! offloaded), read with one `RTM_GETLINK` netlink request (`IFLA_XDP` →
//! `IFLA_XDP_ATTACHED`), so logs, `/server_info` and `sluicectl bpf status`
//! report what is attached, including a link adopted from a previous daemon.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// How an XDP program is attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (`XDP_ATTACHED_DRV`), before an skb exists.
    Native,
    /// Generic (`XDP_ATTACHED_SKB`): after the skb is built, any driver.
    Generic,
    /// Offloaded to the NIC (`XDP_ATTACHED_HW`).
    Offloaded,
    /// More than one mode at once (`XDP_ATTACHED_MULTI`).
    Multiple,
}

impl XdpAttachMode {
    /// The name used in logs, `/server_info` and `sluicectl`.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
            XdpAttachMode::Offloaded => "offloaded",
            XdpAttachMode::Multiple => "multiple",
        }
    }

    fn from_attached(value: u8) -> Option<Self> {
        match value {
            1 => Some(XdpAttachMode::Native),
            2 => Some(XdpAttachMode::Generic),
            3 => Some(XdpAttachMode::Offloaded),
            4 => Some(XdpAttachMode::Multiple),
            _ => None, // 0: XDP_ATTACHED_NONE
        }
    }
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_ATTACHED: u16 = 2;
/// The nested-attribute flag, masked off attribute types.
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSG_HEADER_LEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// The XDP mode attached to interface `ifindex` (`None`: no XDP program).
pub fn attached_mode(ifindex: u32) -> io::Result<Option<XdpAttachMode>> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    let request = link_request(ifindex);
    // SAFETY: sends `request.len()` bytes from a live buffer to the kernel
    // (a zeroed sockaddr_nl addresses the kernel).
    let sent = unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as u16;
        libc::sendto(
            socket.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut reply = vec![0u8; 64 * 1024];
    // SAFETY: receives into a live buffer of the given length.
    let received = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            reply.as_mut_ptr().cast(),
            reply.len(),
            0,
        )
    };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    reply.truncate(received as usize);
    parse_link_reply(&reply)
}

fn link_request(ifindex: u32) -> Vec<u8> {
    let len = NLMSG_HEADER_LEN + IFINFOMSG_LEN;
    let mut message = Vec::with_capacity(len);
    message.extend_from_slice(&(len as u32).to_ne_bytes());
    message.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    message.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
                                                    // ifinfomsg: family AF_UNSPEC, pad, type, index, flags, change.
    message.extend_from_slice(&[0, 0, 0, 0]);
    message.extend_from_slice(&ifindex.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes());
    message
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// The `(type, payload)` attributes in `bytes` (4-byte aligned rtattrs).
fn attributes(mut bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = usize::from(u16_at(bytes, 0)?);
        let kind = u16_at(bytes, 2)? & NLA_TYPE_MASK;
        if len < 4 || len > bytes.len() {
            return None;
        }
        let payload = &bytes[4..len];
        bytes = bytes.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("netlink reply: {what}"))
}

fn parse_link_reply(reply: &[u8]) -> io::Result<Option<XdpAttachMode>> {
    let len = u32_at(reply, 0).ok_or_else(|| malformed("short header"))? as usize;
    let kind = u16_at(reply, 4).ok_or_else(|| malformed("short header"))?;
    let message = reply
        .get(..len)
        .ok_or_else(|| malformed("truncated message"))?;
    if kind == NLMSG_ERROR {
        let errno = u32_at(message, NLMSG_HEADER_LEN).ok_or_else(|| malformed("short error"))?;
        return Err(io::Error::from_raw_os_error(-(errno as i32)));
    }
    if kind != RTM_NEWLINK {
        return Err(malformed(&format!("unexpected message type {kind}")));
    }
    let attrs = message
        .get(NLMSG_HEADER_LEN + IFINFOMSG_LEN..)
        .ok_or_else(|| malformed("short ifinfomsg"))?;
    for (kind, payload) in attributes(attrs) {
        if kind != IFLA_XDP {
            continue;
        }
        for (inner, value) in attributes(payload) {
            if inner == IFLA_XDP_ATTACHED {
                return Ok(value
                    .first()
                    .copied()
                    .and_then(XdpAttachMode::from_attached));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(payload);
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        bytes
    }

    fn reply(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&((NLMSG_HEADER_LEN + body.len()) as u32).to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.extend_from_slice(body);
        bytes
    }

    fn link(attrs: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body.extend_from_slice(attrs);
        reply(RTM_NEWLINK, &body)
    }

    #[test]
    fn reads_the_attached_mode_from_nested_ifla_xdp() {
        let mut attrs = attribute(3, b"veth0\0"); // IFLA_IFNAME first
        let mut xdp = attribute(4, &7u32.to_ne_bytes()); // IFLA_XDP_PROG_ID
        xdp.extend(attribute(IFLA_XDP_ATTACHED, &[1]));
        attrs.extend(attribute(IFLA_XDP | 0x8000, &xdp)); // NLA_F_NESTED
        assert_eq!(
            parse_link_reply(&link(&attrs)).unwrap(),
            Some(XdpAttachMode::Native)
        );
        let generic = attribute(IFLA_XDP, &attribute(IFLA_XDP_ATTACHED, &[2]));
        assert_eq!(
            parse_link_reply(&link(&generic)).unwrap(),
            Some(XdpAttachMode::Generic)
        );
        let none = attribute(IFLA_XDP, &attribute(IFLA_XDP_ATTACHED, &[0]));
        assert_eq!(parse_link_reply(&link(&none)).unwrap(), None);
        assert_eq!(parse_link_reply(&link(&[])).unwrap(), None);
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        let error = reply(NLMSG_ERROR, &(-libc::ENODEV).to_ne_bytes());
        assert_eq!(
            parse_link_reply(&error).unwrap_err().raw_os_error(),
            Some(libc::ENODEV)
        );
        assert!(parse_link_reply(&[1, 2, 3]).is_err());
        let mut bad_attr = link(&[]);
        bad_attr.extend_from_slice(&[200, 0, 43, 0]); // length past the end
        let len = bad_attr.len() as u32;
        bad_attr[..4].copy_from_slice(&len.to_ne_bytes());
        assert_eq!(parse_link_reply(&bad_attr).unwrap(), None);
    }

    #[test]
    fn loopback_has_no_xdp() {
        // ifindex 1 is `lo` in every network namespace.
        assert_eq!(attached_mode(1).unwrap(), None);
    }
}
