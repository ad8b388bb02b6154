//! A small rtnetlink client (uapi `linux/rtnetlink.h`, `linux/if_link.h`): which XDP
//! program an interface has (RTM_GETLINK's IFLA_XDP) and attaching or detaching one by
//! file descriptor (RTM_SETLINK), the way `ip link set ... xdp` does. aya attaches with
//! bpf_links; netlink is needed to find and remove what a crashed run left behind.

use std::os::fd::AsRawFd;

use super::Error;

/// uapi/linux/if_link.h and rtnetlink.h constants used below.
pub(super) mod rtnl {
    pub const IFLA_XDP: u16 = 43;
    pub const IFLA_XDP_FD: u16 = 1;
    pub const IFLA_XDP_ATTACHED: u16 = 2;
    pub const IFLA_XDP_FLAGS: u16 = 3;
    pub const IFLA_XDP_PROG_ID: u16 = 4;
    pub const NLA_F_NESTED: u16 = 1 << 15;
    pub const XDP_ATTACHED_NONE: u8 = 0;
    pub const XDP_ATTACHED_DRV: u8 = 1;
    pub const XDP_ATTACHED_SKB: u8 = 2;
    pub const XDP_ATTACHED_HW: u8 = 3;
    pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    pub const XDP_FLAGS_HW_MODE: u32 = 1 << 3;
    /// sizeof(struct nlmsghdr), sizeof(struct ifinfomsg).
    pub const NLMSG_HDR_LEN: usize = 16;
    pub const IFINFO_LEN: usize = 16;
}

/// An XDP program attached to an interface, as rtnetlink reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpAttachmentInfo {
    pub prog_id: u32,
    /// IFLA_XDP_ATTACHED: 1 driver, 2 generic, 3 hardware, 4 several.
    pub attached: u8,
}

/// Which XDP program (if any) `ifindex` has, from RTM_GETLINK's IFLA_XDP.
pub fn xdp_attachment(ifindex: u32) -> Result<Option<XdpAttachmentInfo>, Error> {
    let socket = NetlinkSocket::open()?;
    let mut request = netlink_header(libc::RTM_GETLINK, libc::NLM_F_REQUEST as u16);
    push_ifinfo(&mut request, ifindex);
    finish(&mut request);
    socket.send(&request)?;
    let mut buffer = vec![0u8; 65_536];
    let len = socket.recv(&mut buffer)?;
    let reply = buffer.get(..len).unwrap_or(&[]);
    let msg_type = u16_at(reply, 4);
    if msg_type == Some(libc::NLMSG_ERROR as u16) {
        let errno = i32_at(reply, rtnl::NLMSG_HDR_LEN).unwrap_or(0);
        return Err(Error::Netlink(std::io::Error::from_raw_os_error(-errno)));
    }
    let attrs = reply
        .get(rtnl::NLMSG_HDR_LEN + rtnl::IFINFO_LEN..)
        .unwrap_or(&[]);
    let Some(xdp) = find_attr(attrs, rtnl::IFLA_XDP) else {
        return Ok(None);
    };
    let attached = find_attr(xdp, rtnl::IFLA_XDP_ATTACHED)
        .and_then(|v| v.first().copied())
        .unwrap_or(rtnl::XDP_ATTACHED_NONE);
    if attached == rtnl::XDP_ATTACHED_NONE {
        return Ok(None);
    }
    let prog_id = find_attr(xdp, rtnl::IFLA_XDP_PROG_ID)
        .and_then(|v| u32_at(v, 0))
        .unwrap_or(0);
    Ok(Some(XdpAttachmentInfo { prog_id, attached }))
}

/// Detaches whatever XDP program `ifindex` has in `attached` mode (netlink, fd -1).
pub(super) fn detach(ifindex: u32, attached: u8) -> Result<(), Error> {
    let flags = match attached {
        rtnl::XDP_ATTACHED_DRV => rtnl::XDP_FLAGS_DRV_MODE,
        rtnl::XDP_ATTACHED_SKB => rtnl::XDP_FLAGS_SKB_MODE,
        rtnl::XDP_ATTACHED_HW => rtnl::XDP_FLAGS_HW_MODE,
        _ => 0,
    };
    set_xdp(ifindex, -1, flags)
}

/// RTM_SETLINK with IFLA_XDP { FD = `prog_fd` (-1 detaches), FLAGS = `flags` }.
pub(super) fn set_xdp(ifindex: u32, prog_fd: i32, flags: u32) -> Result<(), Error> {
    let socket = NetlinkSocket::open()?;
    let mut request = netlink_header(
        libc::RTM_SETLINK,
        (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16,
    );
    push_ifinfo(&mut request, ifindex);
    let mut nested = Vec::new();
    push_attr(&mut nested, rtnl::IFLA_XDP_FD, &prog_fd.to_ne_bytes());
    push_attr(&mut nested, rtnl::IFLA_XDP_FLAGS, &flags.to_ne_bytes());
    push_attr(&mut request, rtnl::IFLA_XDP | rtnl::NLA_F_NESTED, &nested);
    finish(&mut request);
    socket.send(&request)?;
    let mut buffer = vec![0u8; 4096];
    let len = socket.recv(&mut buffer)?;
    let reply = buffer.get(..len).unwrap_or(&[]);
    match i32_at(reply, rtnl::NLMSG_HDR_LEN) {
        Some(0) => Ok(()),
        Some(errno) => Err(Error::Netlink(std::io::Error::from_raw_os_error(-errno))),
        None => Err(Error::Netlink(std::io::Error::other("short netlink reply"))),
    }
}

struct NetlinkSocket(std::os::fd::OwnedFd);

impl NetlinkSocket {
    fn open() -> Result<NetlinkSocket, Error> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(Error::Netlink(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by socket(2), is valid and owned by nobody else.
        let owned = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(NetlinkSocket(owned))
    }

    fn send(&self, message: &[u8]) -> Result<(), Error> {
        // SAFETY: `message` is a valid buffer of the given length for the whole call;
        // the kernel (pid 0) is the default destination of an unbound netlink socket.
        let sent = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(Error::Netlink(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn recv(&self, buffer: &mut [u8]) -> Result<usize, Error> {
        // SAFETY: `buffer` is valid for writes of its length for the whole call.
        let received = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if received < 0 {
            return Err(Error::Netlink(std::io::Error::last_os_error()));
        }
        Ok(received as usize)
    }
}

fn netlink_header(msg_type: u16, flags: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(64);
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish()
    message.extend_from_slice(&msg_type.to_ne_bytes());
    message.extend_from_slice(&flags.to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    message.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: the kernel assigns
    message
}

fn push_ifinfo(message: &mut Vec<u8>, ifindex: u32) {
    message.push(libc::AF_UNSPEC as u8); // ifi_family
    message.push(0); // padding
    message.extend_from_slice(&0u16.to_ne_bytes()); // ifi_type
    message.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    message.extend_from_slice(&0u32.to_ne_bytes()); // ifi_flags
    message.extend_from_slice(&0u32.to_ne_bytes()); // ifi_change
}

fn push_attr(message: &mut Vec<u8>, attr_type: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    message.extend_from_slice(&(len as u16).to_ne_bytes());
    message.extend_from_slice(&attr_type.to_ne_bytes());
    message.extend_from_slice(payload);
    while !message.len().is_multiple_of(4) {
        message.push(0);
    }
}

fn finish(message: &mut [u8]) {
    let len = (message.len() as u32).to_ne_bytes();
    if let Some(slot) = message.get_mut(..4) {
        slot.copy_from_slice(&len);
    }
}

fn u16_at(bytes: &[u8], offset: usize) -> Option<u16> {
    let b: [u8; 2] = bytes.get(offset..offset.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_ne_bytes(b))
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    let b: [u8; 4] = bytes.get(offset..offset.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_ne_bytes(b))
}

fn i32_at(bytes: &[u8], offset: usize) -> Option<i32> {
    u32_at(bytes, offset).map(|v| v as i32)
}

/// Walks a run of netlink attributes and returns the payload of the first `wanted`.
fn find_attr(mut attrs: &[u8], wanted: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0)?);
        let attr_type = u16_at(attrs, 2)? & !rtnl::NLA_F_NESTED;
        if len < 4 {
            return None;
        }
        let payload = attrs.get(4..len)?;
        if attr_type == wanted {
            return Some(payload);
        }
        let advance = (len + 3) & !3;
        attrs = attrs.get(advance..).unwrap_or(&[]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_attr_walks_padded_attributes() {
        let mut attrs = Vec::new();
        push_attr(&mut attrs, 7, &[1, 2, 3]);
        push_attr(&mut attrs, rtnl::IFLA_XDP_PROG_ID, &42u32.to_ne_bytes());
        assert_eq!(find_attr(&attrs, 7), Some(&[1u8, 2, 3][..]));
        assert_eq!(
            find_attr(&attrs, rtnl::IFLA_XDP_PROG_ID).and_then(|v| u32_at(v, 0)),
            Some(42)
        );
        assert_eq!(find_attr(&attrs, 9), None);
        assert_eq!(find_attr(&[5, 0, 1], 1), None);
    }
}
