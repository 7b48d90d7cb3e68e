//! How all of a watch's processes are found and signalled: its cgroup,
//! else what fork tracking saw, else its process group; and which of those
//! the daemon has (`tracking`).

use anyhow::Result;
use nix::{
    errno::Errno,
    sys::signal::{killpg, Signal},
};

use crate::{
    cgroup::{Cgroups, WatchCgroup},
    config::{Config, Tracking},
    process::Pid,
    tree::{Members, Trees},
};

use super::Daemon;

pub(super) async fn follow_forks(trees: &mut Option<Trees>) -> Result<()> {
    match trees {
        Some(trees) => trees.follow().await,
        None => std::future::pending().await,
    }
}

/// Cgroups or fork tracking, as `[daemon] tracking` says.
pub(super) fn tracking(
    config: &Config,
    instance: &str,
) -> Result<(Option<Cgroups>, Option<Trees>)> {
    let tracking = config.daemon.tracking;
    if tracking != Tracking::Fork {
        match Cgroups::discover(instance) {
            Ok(mut cgroups) => {
                cgroups.claim()?;
                match cgroups.delegated() {
                    Some(unit) => log::info!(
                        "each watch's processes are tracked in a cgroup of their own, under {} (delegated to this daemon's unit; the daemon is in its leaf daemon)",
                        unit.display()
                    ),
                    None => log::info!(
                        "each watch's processes are tracked in a cgroup of their own, under {}",
                        cgroups.base().display()
                    ),
                }
                return Ok((Some(cgroups), None));
            }
            Err(e) if tracking == Tracking::Cgroup => {
                return Err(e.context("tracking = \"cgroup\" in [daemon]"))
            }
            Err(e) => log::warn!("no cgroups ({e:#}); tracking each watch's forks instead"),
        }
    }
    match Trees::open() {
        Ok(trees) => {
            log::info!("each watch's processes are tracked by their forks");
            Ok((None, Some(trees)))
        }
        Err(e) if tracking == Tracking::Fork => Err(e.context("tracking = \"fork\" in [daemon]")),
        Err(e) => {
            log::warn!("no fork tracking ({e:#}): tracking each watch by its session and process group only");
            Ok((None, None))
        }
    }
}

impl Daemon {
    pub(super) fn reach(&mut self, name: &str) -> Reach {
        match (self.cgroup_of(name), &mut self.trees) {
            (Some(cgroup), _) => Reach::Cgroup(cgroup),
            (None, Some(trees)) => {
                if let Err(e) = trees.catch_up() {
                    log::error!("fork tracking: {e:#}");
                }
                Reach::Forks(trees.members(), name.to_owned())
            }
            (None, None) => Reach::Group,
        }
    }

    /// The watch's cgroup, made on first use; `None` without cgroups.
    pub(super) fn cgroup_of(&mut self, name: &str) -> Option<WatchCgroup> {
        if let Some(cgroup) = self.slots.get(name).and_then(|s| s.cgroup.as_ref()) {
            return Some(cgroup.clone());
        }
        // Four fds a watch while there are plenty; where the limit is
        // tight (a daemon run under `ulimit -n 1024` it cannot raise), the
        // files are opened at each use instead.
        let keep_open = crate::limits::nofile_limit() > 16 * self.slots.len() as u64 + 1024;
        let cgroup = match self.cgroups.as_ref()?.watch(name, keep_open) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                log::warn!("{name}: no cgroup ({e:#}); tracking its process group only");
                return None;
            }
        };
        if let Some(slot) = self.slots.get_mut(name) {
            slot.cgroup = Some(cgroup.clone());
        }
        Some(cgroup)
    }
}

/// Signals a watch's process group; a process that is no group leader
/// (a daemon that did not call setsid) is signalled alone.
pub(super) fn signal_group(pid: Pid, signal: Signal) {
    if let Err(Errno::ESRCH) = killpg(pid.as_nix(), signal) {
        let _ = nix::sys::signal::kill(pid.as_nix(), signal);
    }
}

/// How all of a watch's processes are found: its cgroup, else what fork
/// tracking saw it start, and its process group.
#[derive(Clone)]
pub(super) enum Reach {
    Cgroup(WatchCgroup),
    Forks(Members, String),
    Group,
}

impl Reach {
    /// Whether anything of the watch whose process group `pid` leads is
    /// left. Every member of the group descends from the watch's process,
    /// so a cgroup holds it too.
    pub(super) fn alive(&self, pid: Pid) -> bool {
        match self {
            Self::Cgroup(cgroup) => cgroup.populated(),
            Self::Forks(members, name) => group_alive(pid) || !members.of(name).is_empty(),
            Self::Group => group_alive(pid),
        }
    }

    /// The watch's live processes (its process group led by `pid`, where
    /// nothing better is known).
    pub(super) fn members(&self, pid: Pid) -> Vec<Pid> {
        match self {
            Self::Cgroup(cgroup) => cgroup
                .pids()
                .into_iter()
                .filter_map(|p| Pid::new(u32::try_from(p).ok()?))
                .collect(),
            Self::Forks(members, name) => members.of(name),
            Self::Group => procfs::process::all_processes()
                .into_iter()
                .flatten()
                .filter_map(|p| p.ok()?.stat().ok())
                .filter(|s| u32::try_from(s.pgrp).ok() == Some(pid.get()))
                .filter_map(|s| Pid::new(u32::try_from(s.pid).ok()?))
                .collect(),
        }
    }

    /// Sends the stop signal, then SIGCONT as systemd does: a stopped
    /// (SIGSTOP, ^Z) process would otherwise see its stop signal only
    /// when SIGKILL comes after `stop_timeout`.
    pub(super) fn stop(&self, pid: Pid, signal: Signal) {
        self.signal(pid, signal);
        if signal != Signal::SIGKILL && signal != Signal::SIGCONT {
            self.signal(pid, Signal::SIGCONT);
        }
    }

    /// Sends `signal` to the process group `pid` leads and to every other
    /// process of the watch, once each: a second SIGTERM or SIGINT is, to
    /// many programs, "quit now" (and a shell trap runs twice).
    pub(super) fn signal(&self, pid: Pid, signal: Signal) {
        signal_group(pid, signal);
        let others: Vec<i32> = match self {
            Self::Cgroup(cgroup) => cgroup.pids(),
            Self::Forks(members, name) => members
                .of(name)
                .into_iter()
                .filter_map(|p| i32::try_from(p.get()).ok())
                .collect(),
            Self::Group => Vec::new(),
        };
        let group = nix::unistd::Pid::from_raw(pid.get() as i32);
        for other in others.into_iter().map(nix::unistd::Pid::from_raw) {
            if nix::unistd::getpgid(Some(other)).ok() != Some(group) {
                let _ = nix::sys::signal::kill(other, signal);
            }
        }
    }
}

pub(super) fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid.as_nix(), None), Err(Errno::ESRCH))
}
