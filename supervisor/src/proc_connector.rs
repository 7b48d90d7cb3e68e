//! The kernel's proc connector (a NETLINK_CONNECTOR socket): opening and
//! subscribing, reading datagrams that really come from the kernel, and
//! decoding the fork and exit events in them. Used by the netlink exit
//! backend and by fork tracking; knows nothing of either.
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

use anyhow::{bail, Context as _, Result};

const NETLINK_CONNECTOR: i32 = 11;
pub const CN_IDX_PROC: u32 = 1;
pub const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
pub const PROC_EVENT_FORK: u32 = 0x0000_0001;
pub const PROC_EVENT_EXIT: u32 = 0x8000_0000;
pub const NLMSG_HDRLEN: usize = 16;
pub const CN_MSG_LEN: usize = 20;
const NLMSG_DONE: u16 = 3;

/// One event, as the kernel sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A thread or process was created (`child_pid == child_tgid` for a
    /// process).
    Fork {
        parent_tgid: u32,
        child_pid: u32,
        child_tgid: u32,
    },
    /// A thread exited.
    Exit {
        /// CLOCK_MONOTONIC ns at which the kernel sent it.
        timestamp_ns: u64,
        pid: u32,
        tgid: u32,
        exit_code: u32,
        parent_tgid: u32,
    },
}

/// A non-blocking socket subscribed to the events in `events` (a mask of
/// `PROC_EVENT_*`; kernels before 6.6 send every kind regardless).
pub fn open(events: u32, rcvbuf: usize) -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            NETLINK_CONNECTOR,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .context("opening a NETLINK_CONNECTOR socket (kernel without CONFIG_CONNECTOR?)");
    }
    // SAFETY: fd was just returned by socket(2) and is ours alone.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid sockaddr_nl.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = CN_IDX_PROC;
    // SAFETY: addr is a valid sockaddr_nl of the size given.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .context("binding to the proc connector group (needs CAP_NET_ADMIN)");
    }
    set_rcvbuf(&fd, rcvbuf);
    subscribe(&fd, events).context("subscribing to proc connector events")?;
    Ok(fd)
}

pub fn set_rcvbuf(fd: &OwnedFd, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    // FORCE passes net.core.rmem_max for a privileged caller.
    if setsockopt(fd, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(fd, sockopt::RcvBuf, &bytes);
    }
}

/// Since 6.6 the connector takes an event-type filter with the listen
/// request (`struct proc_input`), so other events stay in the kernel;
/// older kernels ignore a request of that size, so they get the bare op
/// and send everything.
fn kernel_filters_events() -> bool {
    crate::kernel::at_least(6, 6)
}

fn subscribe(fd: &OwnedFd, events: u32) -> Result<()> {
    let mut op = PROC_CN_MCAST_LISTEN.to_ne_bytes().to_vec();
    if kernel_filters_events() {
        op.extend_from_slice(&events.to_ne_bytes());
    }
    let total = NLMSG_HDRLEN + CN_MSG_LEN + op.len();
    let mut msg = Vec::with_capacity(total);
    msg.extend_from_slice(&(total as u32).to_ne_bytes());
    msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&std::process::id().to_ne_bytes());
    msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
    msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
    msg.extend_from_slice(&(op.len() as u16).to_ne_bytes());
    msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
    msg.extend_from_slice(&op);
    // SAFETY: msg is a valid buffer of the length given.
    let sent = unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if sent as usize != msg.len() {
        bail!("short send to the proc connector");
    }
    Ok(())
}

/// Appends every event waiting on the socket to `into`; returns whether
/// the kernel reported lost messages (ENOBUFS).
pub fn drain(fd: &OwnedFd, buf: &mut [u8], into: &mut impl Extend<Event>) -> std::io::Result<bool> {
    let mut overflowed = false;
    loop {
        match recv_from_kernel(fd, buf) {
            Ok(Some(len)) => into.extend(parse(&buf[..len])),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflowed = true,
            Err(e) => return Err(e),
        }
    }
    Ok(overflowed)
}

/// One datagram, or `None` when it did not come from the kernel (another
/// process cannot feed us forged events).
fn recv_from_kernel(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    // SAFETY: all-zero is a valid sockaddr_nl.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut addr_len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: buf and addr are valid for the lengths given.
    let n = unsafe {
        libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut addr as *mut libc::sockaddr_nl).cast(),
            &mut addr_len,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((addr.nl_pid == 0).then_some(n as usize))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The fork and exit events in one datagram; anything else is skipped.
pub fn parse(mut data: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    while data.len() >= NLMSG_HDRLEN {
        let Some(len) = u32_at(data, 0).map(|l| l as usize) else {
            break;
        };
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        let payload = &data[NLMSG_HDRLEN..len];
        let is_proc =
            u32_at(payload, 0) == Some(CN_IDX_PROC) && u32_at(payload, 4) == Some(CN_VAL_PROC);
        if is_proc {
            events.extend(event(&payload[CN_MSG_LEN.min(payload.len())..]));
        }
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    events
}

/// `struct proc_event`: what, cpu, timestamp_ns, then the union at 16.
fn event(ev: &[u8]) -> Option<Event> {
    match u32_at(ev, 0)? {
        PROC_EVENT_FORK => Some(Event::Fork {
            parent_tgid: u32_at(ev, 20)?,
            child_pid: u32_at(ev, 24)?,
            child_tgid: u32_at(ev, 28)?,
        }),
        PROC_EVENT_EXIT => Some(Event::Exit {
            timestamp_ns: u64::from_ne_bytes(ev.get(8..16)?.try_into().ok()?),
            pid: u32_at(ev, 16)?,
            tgid: u32_at(ev, 20)?,
            exit_code: u32_at(ev, 24)?,
            parent_tgid: u32_at(ev, 36)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn datagram(what: u32, fields: &[(usize, u32)]) -> Vec<u8> {
        let mut msg = vec![0u8; NLMSG_HDRLEN + CN_MSG_LEN + 40];
        let total = msg.len() as u32;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        let p = NLMSG_HDRLEN;
        msg[p..p + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[p + 4..p + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        let e = p + CN_MSG_LEN;
        msg[e..e + 4].copy_from_slice(&what.to_ne_bytes());
        for &(off, v) in fields {
            msg[e + off..e + off + 4].copy_from_slice(&v.to_ne_bytes());
        }
        msg
    }

    #[test]
    fn parses_exit_and_fork_datagrams() {
        let exit = datagram(
            PROC_EVENT_EXIT,
            &[(16, 42), (20, 40), (24, 9), (28, 17), (32, 1), (36, 1)],
        );
        assert_eq!(
            parse(&exit),
            [Event::Exit {
                timestamp_ns: 0,
                pid: 42,
                tgid: 40,
                exit_code: 9,
                parent_tgid: 1
            }]
        );
        assert!(parse(&exit[..10]).is_empty());
        let fork = datagram(PROC_EVENT_FORK, &[(16, 7), (20, 7), (24, 8), (28, 8)]);
        assert_eq!(
            parse(&fork),
            [Event::Fork {
                parent_tgid: 7,
                child_pid: 8,
                child_tgid: 8
            }]
        );
    }
}
