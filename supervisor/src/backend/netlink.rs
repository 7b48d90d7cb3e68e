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
    os::fd::OwnedFd,
};

use anyhow::{Context as _, Result};
use tokio::io::{unix::AsyncFd, Interest};

use super::{Counters, Options, Scope, Tracked};
use crate::{
    exit::{ExitEvent, ExitStatus},
    proc_connector::{self, Event, PROC_EVENT_EXIT},
    process::{self, Pid, ProcessId},
};

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
        let rcvbuf = options.netlink_rcvbuf.unwrap_or(DEFAULT_RCVBUF);
        let fd = proc_connector::open(PROC_EVENT_EXIT, rcvbuf)?;
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
                drain_exits(guard.get_inner(), &mut self.buf, &mut self.queue)
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
            drain_exits(self.socket.get_ref(), &mut self.buf, &mut self.queue)
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
        proc_connector::set_rcvbuf(self.socket.get_ref(), self.rcvbuf);
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
            tid,
            ppid: Pid::new(ppid),
            comm,
            kernel_ns: Some(exit.timestamp_ns),
            ..ExitEvent::new(pid, exact.unwrap_or(reported))
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
    match crate::exit::peek_child_status(pid) {
        ExitStatus::Unknown => None,
        known => Some(known),
    }
}

/// Moves every thread exit waiting on the socket into `queue`; returns how
/// many it queued and whether the kernel reported lost messages.
fn drain_exits(
    fd: &OwnedFd,
    buf: &mut [u8],
    queue: &mut VecDeque<ThreadExit>,
) -> std::io::Result<(usize, bool)> {
    let mut events = Vec::new();
    let overflowed = proc_connector::drain(fd, buf, &mut events)?;
    let before = queue.len();
    queue.extend(events.into_iter().filter_map(|event| match event {
        Event::Exit {
            timestamp_ns,
            pid,
            tgid,
            exit_code,
            parent_tgid,
        } => Some(ThreadExit {
            timestamp_ns,
            pid,
            tgid,
            exit_code,
            parent_tgid,
        }),
        Event::Fork { .. } => None,
    }));
    Ok((queue.len() - before, overflowed))
}
