//! Following a program that daemonizes itself: wait (event-driven, with
//! inotify) until its pid file names a live process of this watch (in its
//! cgroup, else descended from its launch or from us), and refuse anything
//! else a pid file may say: garbage, pid 1, a dead pid, a stranger's
//! process or another watch's.
//!
//! The file is read as the watch's user would read it (`safe_open`): never
//! through a symlink, never a FIFO or device, a few bytes at most, and
//! what it holds is never quoted back.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    cgroup::WatchCgroup,
    config::RunAs,
    process::{self, Pid, ProcessId},
    safe_open::{self, OpenError},
};

/// More than this is no pid file.
const PID_FILE_MAX: usize = 64;

/// Who a pid file belongs to, and so how it is read and whom it may name.
pub struct Owner {
    /// The watch's user, as whom the file is read.
    pub user: Option<RunAs>,
    /// The watch's cgroup: the pid must be in it. Without one, it must
    /// descend from the daemon (subreaper of what the launch left) or the
    /// launch.
    pub cgroup: Option<WatchCgroup>,
}

/// Waits until `path` names a process that descends from `ancestor` (the
/// daemon, subreaper of whatever its children leave behind) or from
/// `launcher`, for at most `limit`.
pub async fn wait_for(
    path: &Path,
    owner: &Owner,
    ancestor: Pid,
    launcher: Pid,
    limit: Duration,
) -> Result<ProcessId> {
    let deadline = Instant::now() + limit;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let inotify =
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).context("inotify_init")?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE
                | AddWatchFlags::IN_MOVED_TO
                | AddWatchFlags::IN_MODIFY
                | AddWatchFlags::IN_CREATE,
        )
        .with_context(|| format!("watching {} for the pid file", dir.display()))?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&inotify));
    // SAFETY: `inotify` owns the fd and, declared first, outlives this.
    let events = unsafe { AsyncFd::register_with_interest(raw, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .context("registering inotify with tokio")?;
    let mut last_problem = String::from("the file was never written");
    let mut dead_before: Option<Pid> = None;
    loop {
        // A file that is there but not acceptable yet (a parent chain in
        // the middle of the double fork) is looked at again soon, without
        // waiting for the file to change.
        let mut recheck = remaining_time(deadline);
        match check(path, owner, ancestor, launcher) {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => {}
            // Named twice in a row, a dead pid is no half-written file: the
            // program died right after it started.
            Err(Refused::Dead(pid)) if dead_before == Some(pid) => {
                bail!(
                    "{} names pid {pid}, which does not run (did the program die as it started?)",
                    path.display()
                )
            }
            Err(Refused::Dead(pid)) => {
                dead_before = Some(pid);
                last_problem = format!("{} names pid {pid}, which does not run", path.display());
                recheck = recheck.min(RECHECK);
            }
            Err(Refused::Other(problem)) => {
                last_problem = format!("{problem:#}");
                recheck = recheck.min(RECHECK);
            }
        }
        if remaining_time(deadline).is_zero() {
            bail!(
                "{} did not name a process of ours within {limit:?}: {last_problem}",
                path.display()
            );
        }
        if let Ok(Ok(mut guard)) = tokio::time::timeout(recheck, events.readable()).await {
            let _ = inotify.read_events();
            guard.clear_ready();
        }
    }
}

const RECHECK: Duration = Duration::from_millis(2);

fn remaining_time(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Why a pid file is not accepted (yet).
enum Refused {
    /// It names a pid no process has.
    Dead(Pid),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Refused {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

/// `Ok(None)`: not there yet; `Err`: there, but not acceptable (yet).
fn check(
    path: &Path,
    owner: &Owner,
    ancestor: Pid,
    launcher: Pid,
) -> Result<Option<ProcessId>, Refused> {
    let bytes = match safe_open::read_small(path, owner.user.as_ref(), PID_FILE_MAX) {
        Ok(bytes) => bytes,
        Err(OpenError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(anyhow::Error::new(e).into()),
    };
    let text = String::from_utf8_lossy(&bytes);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let pid: Pid = trimmed.parse().map_err(|_: String| {
        anyhow::anyhow!("{} holds something other than a pid", path.display())
    })?;
    if pid.get() == 1 {
        return Err(anyhow::anyhow!("{} names pid 1", path.display()).into());
    }
    let id = match process::stat(pid) {
        Ok(Some(stat)) if !stat.has_exited() => stat.id,
        Ok(_) => return Err(Refused::Dead(pid)),
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context(format!("{} names pid {pid}", path.display()))
                .into())
        }
    };
    let ours = match &owner.cgroup {
        Some(cgroup) => cgroup.pids().into_iter().any(|p| p == pid.get() as i32),
        None => descends_from(pid, &[ancestor, launcher]),
    };
    if !ours {
        return Err(anyhow::anyhow!(
            "{} names pid {pid}, which is not a process this watch started",
            path.display()
        )
        .into());
    }
    Ok(Some(id))
}

/// Whether `pid`'s parent chain reaches one of `ancestors`.
fn descends_from(pid: Pid, ancestors: &[Pid]) -> bool {
    let mut current = pid;
    for _ in 0..64 {
        let Ok(Some(stat)) = process::stat(current) else {
            return false;
        };
        let Some(parent) = stat.ppid else {
            return false;
        };
        if ancestors.contains(&parent) {
            return true;
        }
        if parent.get() == 1 {
            return false;
        }
        current = parent;
    }
    false
}

/// Removes a leftover pid file before a start, so that only what the new
/// process writes is ever read.
pub fn clear(path: &Path, user: Option<&RunAs>) -> Result<()> {
    match safe_open::remove(path, user) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
}
