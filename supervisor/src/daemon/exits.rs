//! The one exit path: however a watched process's death is learnt (the
//! backend, the SIGCHLD reaper, the periodic sweep, a stop timeout), it is
//! reported, then reaped, then what it left behind is drained; only then
//! does its watch learn of it, once.
use std::{
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use crate::{
    exit::{Death, ExitEvent, ExitStatus},
    process::Pid,
    watch::{Now, State},
};
use nix::sys::signal::Signal;

use super::{reach::Reach, Daemon, Internal, GROUP_DRAIN_TICK};

impl Daemon {
    /// Finds watched processes that exited without an event (their pidfd
    /// is readable) and handles them as exits.
    pub(super) fn sweep(&mut self) {
        let gone: Vec<(Pid, String)> = self
            .procs
            .iter()
            .filter(|(_, p)| pidfd_readable(&p.pidfd))
            .map(|(pid, p)| (*pid, p.watch.clone()))
            .collect();
        for (pid, name) in gone {
            log::warn!(
                "{name}: process {pid} exited without an exit event; found by the periodic check"
            );
            self.unreported_exits += 1;
            self.confirm_gone(name, pid, None);
        }
    }

    pub(super) fn on_exit(&mut self, event: ExitEvent) {
        let Some(proc) = self.procs.get_mut(&event.pid) else {
            return;
        };
        if let Some(sent) = event.kernel_ns {
            let latency = crate::process::monotonic().saturating_sub(Duration::from_nanos(sent));
            self.detection_latency.observe(latency);
        }
        proc.origin = event.origin;
        proc.oom = event.oom;
        proc.comm = event.comm;
        let name = proc.watch.clone();
        self.confirm_gone(name, event.pid, Some(event.status));
    }

    /// The exit event can come before the process has let go of its files
    /// and ports: respawn only once it is really gone (reaped).
    pub(super) fn confirm_gone(&mut self, name: String, pid: Pid, reported: Option<ExitStatus>) {
        let may_have_dumped = !matches!(
            reported,
            Some(
                ExitStatus::Exited(_)
                    | ExitStatus::Killed {
                        core_dumped: false,
                        ..
                    }
            )
        );
        if let Some(proc) = self.procs.get_mut(&pid).filter(|p| p.comm.is_none()) {
            if may_have_dumped {
                // While it is a zombie: its name is gone once reaped.
                proc.comm = crate::process::comm(pid);
            }
        }
        let exact = match self.try_reap(pid) {
            Some(exact) => exact,
            None => {
                let Some(fd) = self
                    .procs
                    .get(&pid)
                    .map(|p| &p.pidfd)
                    .and_then(|fd| fd.try_clone().ok())
                else {
                    return;
                };
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    crate::process::exited(fd).await;
                    let _ = tx.send(Internal::Gone { name, pid });
                });
                return;
            }
        };
        let status = exact.or(reported).unwrap_or(ExitStatus::Unknown);
        self.process_gone(name, pid, status);
    }

    /// `Some(status)` once `pid` is reaped (by us now, or earlier by the
    /// SIGCHLD reaper), `None` while it is still exiting.
    /// What it used is kept with it, for its exit.
    pub(super) fn try_reap(&mut self, pid: Pid) -> Option<Option<ExitStatus>> {
        let proc = self.procs.get_mut(&pid)?;
        if let Some(status) = proc.reaped.take() {
            return Some(Some(status));
        }
        match crate::exit::reap_pidfd(std::os::fd::AsFd::as_fd(&proc.pidfd)) {
            Ok(None) => None,
            Ok(Some((status, usage))) => {
                proc.usage = Some(usage);
                Some(Some(status))
            }
            // Not our child (re-adopted): gone once its pidfd is readable.
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                pidfd_readable(&proc.pidfd).then_some(None)
            }
            Err(_) => Some(None),
        }
    }

    pub(super) fn process_gone(&mut self, name: String, pid: Pid, status: ExitStatus) {
        let (origin, oom, usage, comm) = self
            .procs
            .remove(&pid)
            .map_or((None, None, None, None), |p| {
                (p.origin, p.oom, p.usage, p.comm)
            });
        let core = match status {
            ExitStatus::Killed {
                signal,
                core_dumped: true,
            } => self.slots.get(&name).and_then(|slot| {
                let dir = crate::core_file::working_dir(slot.watch.config().dir.as_deref());
                crate::core_file::locate(&crate::core_file::Dumped {
                    pid,
                    comm: comm.as_deref(),
                    signal,
                    dir: &dir,
                })
            }),
            _ => None,
        };
        let death = Death {
            status,
            origin,
            senders_unseen: self.backend.senders_unseen(),
            oom: self.oom_death(&name, status, oom),
            forks_refused: self.forks_refused(&name),
            usage,
            core,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        let _ = self.backend.unwatch(pid);
        let reach = self.reach(&name);
        let Some(watch) = self.slots.get(&name).map(|s| &s.watch) else {
            return;
        };
        // What the process left behind goes too, in its group or anywhere
        // in its cgroup or tree: after a stop they had the stop signal and
        // get the rest of the timeout; after a crash they are strays of a
        // dead program and would hold its ports.
        if reach.alive(pid) {
            let grace = match watch.state() {
                State::Stop | State::Restart => watch.config().stop_timeout,
                _ => Duration::ZERO,
            };
            self.drain(name, pid, reach, death, grace);
            return;
        }
        self.finish_exit(&name, death);
    }

    pub(super) fn finish_exit(&mut self, name: &str, death: Death) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        // Everything that wrote into its pipes is gone by now: what they
        // hold is all it printed.
        let (stdout, stderr) = std::mem::take(&mut slot.output).last_lines();
        let death = Death {
            stdout,
            stderr,
            ..death
        };
        slot.died_at = Some(std::time::Instant::now());
        let actions = slot.watch.exited(death, Now::read());
        if let (Some(log), Some(exit)) = (&mut self.exit_log, slot.watch.last_exit()) {
            log.append(name, exit);
        }
        self.act(name, actions);
    }

    pub(super) fn drain(
        &self,
        name: String,
        pid: Pid,
        reach: Reach,
        death: Death,
        grace: Duration,
    ) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let deadline = Instant::now() + grace;
            let mut killed = false;
            let mut tick = tokio::time::interval(GROUP_DRAIN_TICK);
            while reach.alive(pid) {
                if Instant::now() >= deadline {
                    if !killed {
                        log::info!("{name}: killing what process {pid} left behind");
                        killed = true;
                    }
                    // Again each round: a fork in flight lands after a kill.
                    reach.signal(pid, Signal::SIGKILL);
                }
                tick.tick().await;
            }
            let _ = tx.send(Internal::GroupEmpty { name, death });
        });
    }

    /// Reaps every exited child, ours or orphans handed to us.
    pub(super) fn reap(&mut self) {
        loop {
            match crate::exit::reap_any() {
                Ok(None) => break,
                Ok(Some((pid, status, usage))) => {
                    if let Some(proc) = self.procs.get_mut(&pid) {
                        proc.reaped = Some(status);
                        proc.usage = Some(usage);
                        let name = proc.watch.clone();
                        self.confirm_gone(name, pid, None);
                    } else if let Some(launch) = self.launchers.remove(&pid) {
                        let _ = launch.send(status);
                    } else if let Some(helper) = self.helpers.get_mut(&pid) {
                        // Its task reports when its output is read.
                        helper.reaped = Some(status);
                    } else if let Some(spawner) = &mut self.spawner {
                        spawner.reaped_unknown(pid, status);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ECHILD) => break,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => {
                    log::warn!("wait4: {e}");
                    break;
                }
            }
        }
    }
}

pub(super) fn pidfd_readable(fd: &OwnedFd) -> bool {
    crate::process::pidfd_exited(fd)
}
