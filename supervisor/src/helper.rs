//! Short-lived processes the daemon runs for itself (exec health checks,
//! notification hooks): started with their output captured, given a time
//! limit, and killed with their process group when they outlive it.
//!
//! Owns the output pipe and the time limit; it never waits for or reaps
//! the process (the daemon's reaper collects every child, so the status is
//! the daemon's to fetch), and knows nothing of what the run was for.
use std::{
    os::fd::{AsFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Result;
use tokio::io::AsyncReadExt as _;

use crate::{config::WatchConfig, process::Pid, spawn};

/// How much of a helper's output is kept (the rest is read and dropped).
const KEEP_OUTPUT: usize = 4096;

/// How a helper's run ended, short of its exit status.
#[derive(Debug)]
pub struct Finished {
    pub pid: Pid,
    /// The start of what it wrote on stdout and stderr.
    pub output: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

/// Starts `config`'s program with `env` added; `done` gets how it ended
/// once it has exited (or was killed after `limit`). The pidfd returned
/// pins the process until the daemon has its status.
pub fn start(
    config: &WatchConfig,
    env: &[(String, String)],
    limit: Duration,
    done: impl FnOnce(Finished) + Send + 'static,
) -> Result<(Pid, OwnedFd)> {
    let (spawned, output) = spawn::spawn_captured(config, env)?;
    let pid = spawned.id.pid;
    let pidfd = spawned.pidfd.try_clone()?;
    let started = Instant::now();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::from_std(started + limit);
        let collected = tokio::time::timeout_at(deadline, collect(output, &spawned.pidfd)).await;
        let (output, timed_out) = match collected {
            Ok(output) => (output, false),
            Err(_) => {
                kill(pid, &spawned.pidfd);
                (String::new(), true)
            }
        };
        done(Finished {
            pid,
            output,
            timed_out,
            elapsed: started.elapsed(),
        });
    });
    Ok((pid, pidfd))
}

/// Reads the pipe to its end (every writer gone), then waits for the
/// process itself to have exited.
async fn collect(pipe: OwnedFd, pidfd: &OwnedFd) -> String {
    let mut kept = Vec::new();
    if let Ok(mut receiver) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe) {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = receiver.read(&mut buf).await {
            let room = KEEP_OUTPUT.saturating_sub(kept.len());
            kept.extend_from_slice(&buf[..n.min(room)]);
        }
    }
    if let Ok(fd) = pidfd.try_clone() {
        crate::process::exited(fd).await;
    }
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// SIGKILL to the helper and its process group (it leads one: it runs in a
/// session of its own).
fn kill(pid: Pid, pidfd: &OwnedFd) {
    // SAFETY: pidfd_send_signal on a pidfd we own; no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd.as_fd()),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
    let _ = nix::sys::signal::killpg(pid.as_nix(), nix::sys::signal::Signal::SIGKILL);
}
