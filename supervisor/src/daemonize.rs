//! `run --daemonize`: the classic double fork, with the first process
//! staying in the foreground until the daemon reports it serves its socket,
//! so that `supervisor run --daemonize && supervisor status` just works and
//! a daemon that fails to start says why where it was started.
use std::{
    io::Read as _,
    os::fd::{AsRawFd as _, OwnedFd},
    path::Path,
};

use anyhow::{Context as _, Result};
use nix::unistd::{fork, setsid, ForkResult};

/// Returns, in the daemon, the pipe to report readiness on. The process
/// that called it exits: 0 once the daemon is ready, 1 if it died first.
/// Must be called before any thread is started.
pub fn detach(log: &Path) -> Result<OwnedFd> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log_file = crate::safe_open::open(log, None, crate::safe_open::Access::Append)
        .context("opening the daemon's log file")?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    // SAFETY: no other thread exists yet (see above).
    if let ForkResult::Parent { .. } = unsafe { fork() }.context("fork")? {
        drop(write);
        let mut answer = String::new();
        let _ = std::fs::File::from(read).read_to_string(&mut answer);
        if answer.starts_with("ready") {
            std::process::exit(0);
        }
        eprintln!(
            "supervisor: the daemon did not start; see {}",
            log.display()
        );
        std::process::exit(1);
    }
    drop(read);
    setsid().context("setsid")?;
    // SAFETY: still single-threaded.
    if let ForkResult::Parent { .. } = unsafe { fork() }.context("fork")? {
        std::process::exit(0);
    }
    let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
    // SAFETY: dup2 onto the standard descriptors of this process.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(log_file.as_raw_fd(), 1);
        libc::dup2(log_file.as_raw_fd(), 2);
    }
    Ok(write)
}
