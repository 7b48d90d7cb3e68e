//! Following a program that daemonizes itself: wait (event-driven, with
//! inotify) until its pid file names a live process that descends from
//! us, and refuse anything else a pid file may say: garbage, pid 1, a dead
//! pid, or a stranger's process.
use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::{unix::AsyncFd, Interest};

use crate::process::{self, Pid, ProcessId};

/// Waits until `path` names a process that descends from `ancestor` (the
/// daemon, subreaper of whatever its children leave behind) or from
/// `launcher`, for at most `limit`.
pub async fn wait_for(
    path: &Path,
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
    loop {
        match check(path, ancestor, launcher) {
            Ok(Some(id)) => return Ok(id),
            Ok(None) => {}
            Err(problem) => last_problem = format!("{problem:#}"),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            bail!(
                "{} did not name a process of ours within {limit:?}: {last_problem}",
                path.display()
            );
        }
        if let Ok(Ok(mut guard)) = tokio::time::timeout(remaining, events.readable()).await {
            let _ = inotify.read_events();
            guard.clear_ready();
        }
    }
}

/// `Ok(None)`: not there yet; `Err`: there, but not acceptable (yet).
fn check(path: &Path, ancestor: Pid, launcher: Pid) -> Result<Option<ProcessId>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    let pid: Pid = trimmed
        .parse()
        .map_err(|e: String| anyhow::anyhow!("{} holds {trimmed:?}: {e}", path.display()))?;
    if pid.get() == 1 {
        bail!("{} names pid 1", path.display());
    }
    let id =
        process::identify(pid).with_context(|| format!("{} names pid {pid}", path.display()))?;
    if !descends_from(pid, &[ancestor, launcher]) {
        bail!(
            "{} names pid {pid}, which is not a process this watch started",
            path.display()
        );
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
pub fn clear(path: &PathBuf) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing stale {}", path.display())),
    }
}
