//! Fork tracking: which processes belong to which watch, where there is no
//! cgroup v2 to say it. Every process a watch's process forks, and what
//! they fork in turn, stays that watch's, whatever session or process group
//! it moves to (the workers of a server that daemonized).
//!
//! Fed by the kernel's proc connector (fork and exit events). A tree is
//! rooted by `track` in the same turn of the daemon's loop as the spawn, so
//! the root's first forks, already queued on the socket, are read after it.
//! When the socket overflows, the trees are rebuilt from /proc (parent
//! links), and the overflow is logged. Knows watches only by name; does
//! not signal anything itself.
use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    proc_connector::{self, Event, PROC_EVENT_EXIT, PROC_EVENT_FORK},
    process::Pid,
};

const RCVBUF: usize = 4 << 20;

pub struct Trees {
    socket: AsyncFd<OwnedFd>,
    members: Members,
    buf: Vec<u8>,
}

/// A shared view of the trees: tgid → watch name.
#[derive(Clone, Default)]
pub struct Members(Arc<Mutex<HashMap<u32, String>>>);

impl Members {
    /// The live processes of watch `name`.
    pub fn of(&self, name: &str) -> Vec<Pid> {
        let map = self.0.lock().expect("not poisoned");
        map.iter()
            .filter(|(_, n)| n.as_str() == name)
            .filter_map(|(&pid, _)| Pid::new(pid))
            .filter(|&pid| crate::process::stat(pid).is_ok_and(|s| s.is_some()))
            .collect()
    }

    /// Sends `signal` to every process of watch `name`.
    pub fn signal_all(&self, name: &str, signal: nix::sys::signal::Signal) {
        for pid in self.of(name) {
            let _ = nix::sys::signal::kill(pid.as_nix(), signal);
        }
    }
}

impl Trees {
    pub fn open() -> Result<Self> {
        if let Some(why) = crate::kernel::foreign_pid_namespace() {
            anyhow::bail!("{why}");
        }
        let fd = proc_connector::open(PROC_EVENT_FORK | PROC_EVENT_EXIT, RCVBUF)?;
        // SAFETY: the OwnedFd stays open as long as the AsyncFd holds it.
        let socket = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .context("registering the fork-tracking socket with tokio")?;
        Ok(Self {
            socket,
            members: Members::default(),
            buf: vec![0; 64 * 1024],
        })
    }

    pub fn members(&self) -> Members {
        self.members.clone()
    }

    /// Makes `pid`, just started, part of watch `name`.
    pub fn track(&mut self, pid: Pid, name: &str) {
        let mut map = self.members.0.lock().expect("not poisoned");
        map.insert(pid.get(), name.to_owned());
    }

    /// Makes `pid`, found running (re-adopted), and its descendants part
    /// of watch `name`.
    pub fn track_running(&mut self, pid: Pid, name: &str) {
        let mut map = self.members.0.lock().expect("not poisoned");
        map.insert(pid.get(), name.to_owned());
        adopt_descendants(&mut map);
    }

    /// Forgets watch `name` (it was removed).
    pub fn forget(&mut self, name: &str) {
        let mut map = self.members.0.lock().expect("not poisoned");
        map.retain(|_, n| n != name);
    }

    /// Reads and applies events as they come; returns only if the socket
    /// fails.
    pub async fn follow(&mut self) -> Result<()> {
        loop {
            let mut guard = self
                .socket
                .readable()
                .await
                .context("waiting on the fork-tracking socket")?;
            guard.clear_ready();
            drop(guard);
            self.catch_up()?;
        }
    }

    /// Applies whatever events are queued now, without waiting: called
    /// before deciding that nothing of a watch is left, since a fork that
    /// happened before its parent's death is already queued.
    pub fn catch_up(&mut self) -> Result<()> {
        let mut events = Vec::new();
        let overflowed = proc_connector::drain(self.socket.get_ref(), &mut self.buf, &mut events)
            .context("reading the fork-tracking socket")?;
        let mut map = self.members.0.lock().expect("not poisoned");
        for event in events {
            apply(&mut map, event);
        }
        if overflowed {
            log::warn!(
                "fork-tracking socket overflowed (ENOBUFS): rebuilding the process trees from /proc"
            );
            map.retain(|&pid, _| {
                Pid::new(pid).is_some_and(|p| crate::process::stat(p).is_ok_and(|s| s.is_some()))
            });
            adopt_descendants(&mut map);
        }
        Ok(())
    }
}

fn apply(map: &mut HashMap<u32, String>, event: Event) {
    match event {
        Event::Fork {
            parent_tgid,
            child_pid,
            child_tgid,
        } if child_pid == child_tgid => {
            if let Some(name) = map.get(&parent_tgid).cloned() {
                map.insert(child_tgid, name);
            }
        }
        Event::Exit { pid, tgid, .. } if pid == tgid => {
            map.remove(&tgid);
        }
        _ => {}
    }
}

/// Adds every process whose parent is tracked, until nothing changes: the
/// parent links in /proc hold for whatever has not been orphaned.
fn adopt_descendants(map: &mut HashMap<u32, String>) {
    let Ok(all) = procfs::process::all_processes() else {
        return;
    };
    let parents: Vec<(u32, u32)> = all
        .filter_map(|p| p.ok()?.stat().ok())
        .filter_map(|s| Some((u32::try_from(s.pid).ok()?, u32::try_from(s.ppid).ok()?)))
        .collect();
    loop {
        let mut added = false;
        for &(pid, ppid) in &parents {
            if map.contains_key(&pid) {
                continue;
            }
            if let Some(name) = map.get(&ppid).cloned() {
                map.insert(pid, name);
                added = true;
            }
        }
        if !added {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forks_join_their_parents_tree_and_exits_leave_it() {
        let mut map = HashMap::from([(10, "web".to_owned())]);
        let fork = |parent_tgid, child_pid, child_tgid| Event::Fork {
            parent_tgid,
            child_pid,
            child_tgid,
        };
        apply(&mut map, fork(10, 11, 11));
        apply(&mut map, fork(11, 12, 12));
        // A thread is no new process; a stranger's fork is not ours.
        apply(&mut map, fork(10, 13, 10));
        apply(&mut map, fork(99, 14, 14));
        let exit = |pid, tgid| Event::Exit {
            timestamp_ns: 0,
            pid,
            tgid,
            exit_code: 0,
            parent_tgid: 1,
        };
        apply(&mut map, exit(10, 10));
        let mut pids: Vec<u32> = map.keys().copied().collect();
        pids.sort();
        assert_eq!(pids, [11, 12], "the dead root left, its descendants stay");
        assert!(map.values().all(|n| n == "web"));
    }
}
