//! The netlink backend: the kernel's proc connector (`PROC_EVENT_EXIT`).
//!
//! The connector reports every thread's exit in the system, so the filter
//! runs here. A process is dead when its last thread has gone; the leader's
//! exit alone is not enough, so a group whose leader left first is kept
//! pending until its remaining threads are seen to exit. When the socket
//! overflows (`ENOBUFS`) the buffer grows and every watched process is
//! re-checked.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::SystemTime,
};

use anyhow::{bail, Context as _, Result};
use tokio::io::{unix::AsyncFd, Interest};

use super::{Counters, Options, Scope, Tracked};
use crate::{
    exit::{ExitEvent, ExitStatus},
    process::{self, Pid, ProcessId},
};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const NLMSG_DONE: u16 = 3;
/// How many recent thread exits to remember: enough to cover threads that
/// exit around the same time as their leader.
const RECENT_THREAD_EXITS: usize = 4096;
const DEFAULT_RCVBUF: usize = 4 << 20;

pub struct NetlinkBackend {
    socket: AsyncFd<OwnedFd>,
    scope: Scope,
    tracked: Tracked,
    counters: Counters,
    rcvbuf: usize,
    /// (tgid, tid) of recent non-leader thread exits.
    recent: VecDeque<(u32, u32)>,
    /// Groups whose leader exited while other threads still ran, with the
    /// leader's exit code.
    pending: HashMap<u32, PendingGroup>,
    /// Exits read from the socket and not yet looked at, in kernel order.
    queue: VecDeque<ThreadExit>,
    buf: Vec<u8>,
}

struct PendingGroup {
    leader_code: u32,
    ppid: u32,
}

/// One `PROC_EVENT_EXIT`.
#[derive(Clone, Copy, Debug)]
struct ThreadExit {
    /// CLOCK_MONOTONIC ns at which the kernel sent it.
    timestamp_ns: u64,
    pid: u32,
    tgid: u32,
    exit_code: u32,
    parent_tgid: u32,
}

impl NetlinkBackend {
    pub fn open(options: &Options) -> Result<Self> {
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
        let rcvbuf = options.netlink_rcvbuf.unwrap_or(DEFAULT_RCVBUF);
        set_rcvbuf(&fd, rcvbuf);
        subscribe(&fd).context("subscribing to proc connector events")?;
        // SAFETY: the OwnedFd stays open as long as the AsyncFd holds it.
        let socket = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the netlink socket with tokio")?;
        Ok(Self {
            socket,
            scope: options.scope,
            tracked: Tracked::default(),
            counters: Counters::default(),
            rcvbuf,
            recent: VecDeque::with_capacity(RECENT_THREAD_EXITS),
            pending: HashMap::new(),
            queue: VecDeque::new(),
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn watch(&mut self, process: ProcessId) -> Result<()> {
        self.tracked.insert(process);
        self.tracked.confirm_alive(process);
        Ok(())
    }

    pub fn unwatch(&mut self, pid: Pid) -> Result<()> {
        self.tracked.remove(pid);
        self.pending.remove(&pid.get());
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub async fn next_exit(&mut self) -> Result<ExitEvent> {
        loop {
            if let Some(event) = self.tracked.pop() {
                return Ok(event);
            }
            if let Some(exit) = self.queue.pop_front() {
                self.on_thread_exit(exit)?;
                continue;
            }
            let mut guard = self
                .socket
                .readable()
                .await
                .context("waiting on the netlink socket")?;
            let (queued, overflowed) =
                drain_socket(guard.get_inner(), &mut self.buf, &mut self.queue)
                    .context("reading the netlink socket")?;
            if queued == 0 && !overflowed {
                guard.clear_ready();
            }
            drop(guard);
            self.counters.delivered += queued as u64;
            if overflowed {
                self.overflowed();
            }
        }
    }

    /// Queues whatever the socket holds now, without blocking.
    fn drain(&mut self) -> Result<()> {
        let (queued, overflowed) =
            drain_socket(self.socket.get_ref(), &mut self.buf, &mut self.queue)
                .context("reading the netlink socket")?;
        self.counters.delivered += queued as u64;
        if overflowed {
            self.overflowed();
        }
        Ok(())
    }

    fn overflowed(&mut self) {
        self.counters.dropped += 1;
        self.counters.resyncs += 1;
        self.rcvbuf = self.rcvbuf.saturating_mul(2).min(256 << 20);
        set_rcvbuf(self.socket.get_ref(), self.rcvbuf);
        log::warn!(
            "netlink socket overflowed (ENOBUFS): exit events lost; receive buffer now {} bytes, re-checking every watched process",
            self.rcvbuf
        );
        for gone in self.tracked.resync() {
            self.pending.remove(&gone.pid.get());
        }
    }

    fn on_thread_exit(&mut self, exit: ThreadExit) -> Result<()> {
        let interesting = self.scope == Scope::All
            || Pid::new(exit.tgid).is_some_and(|p| self.tracked.get(p).is_some());
        if !interesting {
            return Ok(());
        }
        let leader = exit.pid == exit.tgid;
        if !leader {
            if self.recent.len() == RECENT_THREAD_EXITS {
                self.recent.pop_front();
            }
            self.recent.push_back((exit.tgid, exit.pid));
        }
        let (leader_code, ppid) = match (leader, self.pending.get(&exit.tgid)) {
            (true, _) => (exit.exit_code, exit.parent_tgid),
            (false, Some(p)) => (p.leader_code, p.ppid),
            // A thread of a group whose leader still runs.
            (false, None) => return Ok(()),
        };
        if !self.group_dead(exit.tgid) {
            self.pending
                .insert(exit.tgid, PendingGroup { leader_code, ppid });
            return Ok(());
        }
        self.pending.remove(&exit.tgid);
        // Take whatever else the group left in the socket, so the status
        // is the one its last thread left.
        self.drain()?;
        let mut last = exit;
        self.queue.retain(|e| {
            if e.tgid == exit.tgid {
                last = *e;
                false
            } else {
                true
            }
        });
        // A plain exit of the last thread leaves the leader's code as the
        // process's; in a group exit every thread carries the same code.
        let code = if last.exit_code != 0 {
            last.exit_code
        } else {
            leader_code
        };
        self.deliver(last, code, ppid);
        Ok(())
    }

    /// Whether every thread of `tgid` has exited, counting threads whose
    /// exit event arrived as gone even while the kernel still lists them.
    fn group_dead(&self, tgid: u32) -> bool {
        let Some(pid) = Pid::new(tgid) else {
            return true;
        };
        let exited: HashSet<u32> = self
            .recent
            .iter()
            .filter(|(g, _)| *g == tgid)
            .map(|&(_, tid)| tid)
            .chain([tgid])
            .collect();
        let Ok(Some(stat)) = process::stat(pid) else {
            return true;
        };
        !process::is_alive(stat.id, &exited)
    }

    fn deliver(&mut self, exit: ThreadExit, code: u32, ppid: u32) {
        let Some(pid) = Pid::new(exit.tgid) else {
            return;
        };
        let comm = match self.scope {
            Scope::All => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .ok()
                .map(|s| s.trim_end().to_owned()),
            Scope::Watched => None,
        };
        let reported = ExitStatus::from_wait_status(code);
        let exact = exact_status(pid);
        // If the kernel's status disagrees, `exit` was not the last thread
        // (see `exact_status`), and which thread was is unknown.
        let tid = match exact {
            Some(status) if status != reported => None,
            _ => Pid::new(exit.pid),
        };
        let event = ExitEvent {
            pid,
            process: None,
            tid,
            ppid: Pid::new(ppid),
            comm,
            status: exact.unwrap_or(reported),
            seen_at: SystemTime::now(),
            discovered: false,
            kernel_ns: Some(exit.timestamp_ns),
        };
        match self.scope {
            Scope::All => self.tracked.ready.push_back(event),
            Scope::Watched => {
                self.tracked.report(event);
            }
        }
    }
}

/// The wait status of an exited child of ours, straight from the kernel.
/// The connector sends a thread's event only after the thread is released,
/// so a leader's own exit that is read after its last thread has gone
/// cannot tell which code the group left; for our children the kernel can.
fn exact_status(pid: Pid) -> Option<ExitStatus> {
    match process::peek_child_status(pid) {
        ExitStatus::Unknown => None,
        known => Some(known),
    }
}

fn set_rcvbuf(fd: &OwnedFd, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    // FORCE passes net.core.rmem_max for a privileged caller.
    if setsockopt(fd, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(fd, sockopt::RcvBuf, &bytes);
    }
}

/// Since 6.6 the connector takes an event-type filter with the listen
/// request (`struct proc_input`), so fork and exec events stay in the
/// kernel; older kernels ignore a request of that size, so they get the
/// bare op and send everything.
fn kernel_filters_events() -> bool {
    crate::kernel::at_least(6, 6)
}

fn subscribe(fd: &OwnedFd) -> Result<()> {
    let mut op = PROC_CN_MCAST_LISTEN.to_ne_bytes().to_vec();
    if kernel_filters_events() {
        op.extend_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
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

/// Moves every datagram waiting on the socket into `queue`; returns how
/// many exits it queued and whether the kernel reported lost messages.
fn drain_socket(
    fd: &OwnedFd,
    buf: &mut [u8],
    queue: &mut VecDeque<ThreadExit>,
) -> std::io::Result<(usize, bool)> {
    let before = queue.len();
    let mut overflowed = false;
    loop {
        match recv_from_kernel(fd, buf) {
            Ok(Some(len)) => queue.extend(parse(&buf[..len])),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflowed = true,
            Err(e) => return Err(e),
        }
    }
    Ok((queue.len() - before, overflowed))
}

/// One datagram, or `None` when it did not come from the kernel (another
/// process cannot feed us forged deaths).
fn recv_from_kernel(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
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

/// The exit events in one datagram; anything else is skipped.
fn parse(mut data: &[u8]) -> Vec<ThreadExit> {
    let mut exits = Vec::new();
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
            let ev = &payload[CN_MSG_LEN.min(payload.len())..];
            if u32_at(ev, 0) == Some(PROC_EVENT_EXIT) {
                if let (Some(pid), Some(tgid), Some(exit_code), Some(parent_tgid)) = (
                    u32_at(ev, 16),
                    u32_at(ev, 20),
                    u32_at(ev, 24),
                    u32_at(ev, 36),
                ) {
                    let timestamp_ns = ev
                        .get(8..16)
                        .and_then(|b| b.try_into().ok())
                        .map_or(0, u64::from_ne_bytes);
                    exits.push(ThreadExit {
                        timestamp_ns,
                        pid,
                        tgid,
                        exit_code,
                        parent_tgid,
                    });
                }
            }
        }
        let aligned = (len + 3) & !3;
        data = &data[aligned.min(data.len())..];
    }
    exits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_exit_datagram() {
        let mut msg = vec![0u8; NLMSG_HDRLEN + CN_MSG_LEN + 40];
        let total = msg.len() as u32;
        msg[0..4].copy_from_slice(&total.to_ne_bytes());
        let p = NLMSG_HDRLEN;
        msg[p..p + 4].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[p + 4..p + 8].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        let e = p + CN_MSG_LEN;
        msg[e..e + 4].copy_from_slice(&PROC_EVENT_EXIT.to_ne_bytes());
        for (off, v) in [(16, 42u32), (20, 40), (24, 9), (28, 17), (32, 1), (36, 1)] {
            msg[e + off..e + off + 4].copy_from_slice(&v.to_ne_bytes());
        }
        let exits = parse(&msg);
        assert_eq!(exits.len(), 1);
        assert_eq!(
            (exits[0].pid, exits[0].tgid, exits[0].exit_code),
            (42, 40, 9)
        );
        assert!(parse(&msg[..10]).is_empty());
    }
}
