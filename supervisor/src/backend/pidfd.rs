//! The pidfd backend: one `pidfd_open` per watched process, all on one
//! epoll instance that tokio watches. A pidfd turns readable when the whole
//! thread group has exited. Needs no privileges for the caller's own
//! processes. The exit status is known for our children (peeked with
//! `waitid(P_PIDFD, WNOWAIT)`, leaving the reaping to their owner) and
//! unknown for anyone else's.
use std::{
    collections::HashMap,
    os::fd::{AsFd, AsRawFd, OwnedFd, RawFd},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::{
    epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout},
    wait::{waitid, Id, WaitPidFlag},
};
use tokio::io::{unix::AsyncFd, Interest};

use super::{Counters, Options, Scope, Tracked};
use crate::{
    exit::{ExitEvent, ExitStatus},
    process::{self, Pid, ProcessId},
};

pub struct PidfdBackend {
    /// Declared before `epoll` so it deregisters before the fd closes.
    readiness: AsyncFd<RawFd>,
    epoll: Epoll,
    pidfds: HashMap<Pid, OwnedFd>,
    tracked: Tracked,
    counters: Counters,
}

impl PidfdBackend {
    pub fn open(options: &Options) -> Result<Self> {
        if options.scope == Scope::All {
            bail!("pidfd can only watch given processes, not report every exit");
        }
        // Proves the syscall exists (5.3+) before anyone relies on it.
        process::pidfd_open(Pid::new(std::process::id()).expect("own pid is nonzero"))
            .context("pidfd_open is not available (kernel older than 5.3?)")?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
        // SAFETY: `epoll` owns the fd and outlives `readiness` (field order).
        let readiness =
            unsafe { AsyncFd::register_with_interest(epoll.0.as_raw_fd(), Interest::READABLE) }
                .map_err(|e| e.into_parts().1)
                .context("registering epoll with tokio")?;
        Ok(Self {
            readiness,
            epoll,
            pidfds: HashMap::new(),
            tracked: Tracked::default(),
            counters: Counters::default(),
        })
    }

    pub fn watch(&mut self, process: ProcessId) -> Result<()> {
        self.tracked.insert(process);
        let pidfd = match process::pidfd_open(process.pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                self.tracked.confirm_alive(process);
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("pidfd_open({})", process.pid)),
        };
        // The pidfd pins whichever process has the pid now; if that is not
        // the one we were asked for, the one we want is already gone.
        if !self.tracked.confirm_alive(process) {
            return Ok(());
        }
        let event = EpollEvent::new(EpollFlags::EPOLLIN, u64::from(process.pid.get()));
        self.epoll
            .add(&pidfd, event)
            .with_context(|| format!("adding the pidfd of {} to epoll", process.pid))?;
        self.pidfds.insert(process.pid, pidfd);
        Ok(())
    }

    pub fn unwatch(&mut self, pid: Pid) -> Result<()> {
        self.tracked.remove(pid);
        if let Some(fd) = self.pidfds.remove(&pid) {
            let _ = self.epoll.delete(&fd);
        }
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
            let mut guard = self
                .readiness
                .readable()
                .await
                .context("waiting on epoll")?;
            let mut events = [EpollEvent::empty(); 64];
            let n = self
                .epoll
                .wait(&mut events, EpollTimeout::ZERO)
                .context("epoll_wait")?;
            if n == 0 {
                guard.clear_ready();
                continue;
            }
            drop(guard);
            for ev in &events[..n] {
                let Some(pid) = u32::try_from(ev.data()).ok().and_then(Pid::new) else {
                    continue;
                };
                let Some(fd) = self.pidfds.remove(&pid) else {
                    continue;
                };
                let _ = self.epoll.delete(&fd);
                self.counters.delivered += 1;
                let status = waitid(
                    Id::PIDFd(fd.as_fd()),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
                )
                .map(ExitStatus::from_nix)
                .unwrap_or(ExitStatus::Unknown);
                self.tracked.report(ExitEvent::new(pid, status));
            }
        }
    }
}
