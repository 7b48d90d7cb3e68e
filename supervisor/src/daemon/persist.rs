//! The state file: what the daemon writes of each watch, and how a daemon
//! started again picks up from it (re-adopting the processes that still
//! run, starting the rest a slice at a time).
use std::{
    io::Write as _,
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use crate::{
    exit_log::ExitLog,
    process::{self, Pid, ProcessId, StartTime},
    state::SavedWatch,
    watch::{Action, Command, Now, State},
};

use super::{
    checks::{start_conditions, start_health},
    slot::ProcSlot,
    Daemon, Internal, GROUP_DRAIN_TICK, PENDING_SLICE,
};

/// How long the strays a previous daemon left in a cgroup are given to die.
const STRAYS_PATIENCE: Duration = Duration::from_secs(5);

impl Daemon {
    /// Picks up where the last daemon left off: re-adopts each watch's
    /// process that still runs (same pid, same start time), keeps counts,
    /// and starts the rest as the config and the operator's last word say.
    pub(super) fn resume(&mut self) {
        let mut saved = self.state_file.load().watches;
        let mut kept = match ExitLog::open(&self.state_file) {
            Ok((log, kept)) => {
                self.exit_log = Some(log);
                kept
            }
            Err(e) => {
                log::error!(
                    "cannot open the exit history {}: {e}; exits are not kept across restarts",
                    self.state_file.path().join("exits.jsonl").display()
                );
                Default::default()
            }
        };
        let names = self.in_start_order(self.slots.keys().cloned().collect());
        for name in names {
            let previous = saved.get(&name).and_then(|entry| {
                let id = ProcessId {
                    pid: Pid::new(entry.pid?)?,
                    start: StartTime::from_ticks(entry.start_ticks?),
                };
                process::is_alive(id, &Default::default()).then_some(id)
            });
            // Only a process in the watch's own cgroup is the watch's: a
            // state file naming another is not believed.
            let believed = previous.filter(|id| self.in_own_cgroup(&name, id.pid));
            if let (Some(id), None) = (previous, believed) {
                log::warn!(
                    "{name}: the state file names process {}, which is not in the watch's cgroup; not re-adopting it",
                    id.pid
                );
                if let Some(entry) = saved.get_mut(&name) {
                    entry.pid = None;
                    entry.start_ticks = None;
                }
            }
            if believed.is_none() {
                self.clear_strays(&name);
            }
            let watch = self
                .slots
                .get_mut(&name)
                .map(|s| &mut s.watch)
                .expect("listed");
            let Some(entry) = saved.get(&name) else {
                if watch.config().autostart {
                    self.pending_starts.push_back(name);
                }
                continue;
            };
            watch.restore(entry);
            if let Some(exits) = kept.remove(&name) {
                watch.restore_exits(exits);
            }
            let previous =
                entry
                    .pid
                    .and_then(Pid::new)
                    .zip(entry.start_ticks)
                    .map(|(pid, ticks)| ProcessId {
                        pid,
                        start: StartTime::from_ticks(ticks),
                    });
            match previous {
                Some(id) if process::is_alive(id, &Default::default()) => {
                    self.adopt(&name, id, entry.ready, entry.notify_socket.as_deref())
                }
                Some(id) if entry.monitored => {
                    log::warn!(
                        "{name}: process {} died while no supervisor watched it; starting it again",
                        id.pid
                    );
                    watch.died_unwatched(id.pid, Now::read());
                    if let (Some(log), Some(exit)) = (&mut self.exit_log, watch.last_exit()) {
                        log.append(&name, exit);
                    }
                    self.pending_starts.push_back(name);
                }
                _ if entry.monitored && watch.config().autostart => {
                    self.pending_starts.push_back(name)
                }
                _ => {}
            }
        }
        for (name, entry) in &saved {
            if !self.slots.contains_key(name) {
                if let Some(pid) = entry.pid {
                    log::warn!("state file names watch '{name}' (pid {pid}), which the config no longer has; leaving it alone");
                }
            }
        }
    }

    /// Starts the next watches of `pending_starts`, for at most a few
    /// milliseconds: then the loop looks at exits and requests again.
    pub(super) fn start_pending(&mut self) {
        let until = Instant::now() + PENDING_SLICE;
        while let Some(name) = self.pending_starts.pop_front() {
            self.command(&name, Command::Start, "start-up");
            self.settle();
            if Instant::now() >= until {
                break;
            }
        }
    }

    /// Says the daemon is running, once every watch has been resumed or
    /// started; `ready` (from `--daemonize`) gets a line.
    pub(super) fn announce(&self, ready: Option<OwnedFd>) {
        // Parsing a big config and starting every watch leave freed memory
        // behind in the heap: hand it back.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        eprintln!(
            "supervisor running {} watch(es) from {}, control socket {}",
            self.slots.len(),
            self.config.source.display(),
            self.config.daemon.socket.display()
        );
        if let Some(ready) = ready {
            let _ = std::fs::File::from(ready).write_all(b"ready\n");
        }
    }

    /// Kills what a daemon that died in the middle of an action left in the
    /// cgroup of a watch whose saved process is gone (a process started
    /// just before the state file could name it, a stop command): starting
    /// the watch afresh next to it would run it twice.
    pub(super) fn clear_strays(&mut self, name: &str) {
        let Some(cgroup) = self.cgroup_of(name) else {
            return;
        };
        let strays = cgroup.pids();
        if strays.is_empty() {
            return;
        }
        log::warn!("{name}: processes {strays:?} run in its cgroup, unknown to the state file (a daemon died in the middle of an action): killing them before starting afresh");
        if let Some(slot) = self.slots.get_mut(name) {
            slot.clearing = true;
        }
        // Off the loop: the other watches resume meanwhile.
        let (tx, name) = (self.tx.clone(), name.to_owned());
        tokio::spawn(async move {
            let deadline = Instant::now() + STRAYS_PATIENCE;
            let mut tick = tokio::time::interval(GROUP_DRAIN_TICK);
            while cgroup.populated() && Instant::now() < deadline {
                // Again each round: a fork in flight lands after a kill.
                cgroup.kill_all();
                tick.tick().await;
            }
            if cgroup.populated() {
                log::error!("{name}: its cgroup still holds processes after {STRAYS_PATIENCE:?} of SIGKILL; starting it anyway");
            }
            let _ = tx.send(Internal::StraysGone { name });
        });
    }

    /// The strays of watch `name` are gone: a start held back goes now.
    pub(super) fn strays_gone(&mut self, name: &str) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        slot.clearing = false;
        let still_starting = slot.watch.state() == State::Start && slot.watch.process().is_none();
        if std::mem::take(&mut slot.held_spawn) && still_starting {
            self.act(name, vec![Action::Spawn]);
        }
    }

    /// Whether `pid` is in watch `name`'s cgroup (true without cgroups).
    pub(super) fn in_own_cgroup(&mut self, name: &str, pid: Pid) -> bool {
        self.cgroup_of(name)
            .is_none_or(|cgroup| cgroup.pids().contains(&(pid.get() as i32)))
    }

    pub(super) fn adopt(
        &mut self,
        name: &str,
        id: ProcessId,
        ready: bool,
        notify_socket: Option<&str>,
    ) {
        let pidfd = match process::pidfd_open(id.pid) {
            Ok(fd) => fd,
            Err(e) => {
                log::error!(
                    "{name}: cannot open a pidfd for {}: {e}; starting afresh",
                    id.pid
                );
                self.command(name, Command::Start, "start-up");
                return;
            }
        };
        // The pidfd pins the process: check it is still the one we mean.
        if !process::is_alive(id, &Default::default()) {
            self.command(name, Command::Start, "start-up");
            return;
        }
        self.procs.insert(id.pid, ProcSlot::new(name, pidfd));
        if let Some(trees) = &mut self.trees {
            trees.track_running(id.pid, name);
        }
        // Its NOTIFY_SOCKET is the same name as before: it can still talk.
        self.notify_env(name, notify_socket);
        if let Some(slot) = self.slots.get_mut(name) {
            let watch = &mut slot.watch;
            slot.conditions = start_conditions(&watch.config().conditions);
            let actions = watch.adopt(id, ready, process::started_at(id.start), Now::read());
            slot.health = start_health(watch);
            self.act(name, actions);
        }
        if let Err(e) = self.backend.watch(id) {
            log::error!("{name}: cannot watch re-adopted process {}: {e:#}", id.pid);
        }
    }

    /// Whether the state file may lack something that happened.
    pub(super) fn state_unsaved(&self) -> bool {
        self.state_stale
            || !self.unsaved.is_empty()
            || self.exit_log.as_ref().is_some_and(ExitLog::has_pending)
    }

    /// Writes the state file if anything in it changed since the last
    /// write (a watch's slot keeps what was written of it).
    pub(super) fn save_state(&mut self) {
        let started = std::time::Instant::now();
        self.write_state();
        self.last_save = std::time::Instant::now();
        self.save_pause = super::SAVE_EVERY.max(started.elapsed() * super::SAVE_SHARE);
    }

    fn write_state(&mut self) {
        if let Some(exit_log) = &mut self.exit_log {
            let kept = self.slots.iter().flat_map(|(name, slot)| {
                slot.watch
                    .history()
                    .exits()
                    .map(move |exit| (name.as_str(), exit))
            });
            if let Err(e) = exit_log.flush(&self.state_file, kept) {
                log::error!(
                    "cannot write the exit history {}: {e}",
                    self.state_file.path().join("exits.jsonl").display()
                );
            }
        }
        let mut changed = std::mem::take(&mut self.state_stale);
        let unsaved = std::mem::take(&mut self.unsaved);
        for (name, slot) in &mut self.slots {
            // Only what something happened to can have changed.
            if slot.saved.is_some() && !unsaved.contains(name) {
                continue;
            }
            let snapshot = slot.watch.snapshot();
            let now = SavedWatch {
                notify_socket: slot.notify.as_ref().map(|l| l.address.clone()),
                // Stopped by the daemon's own end, not by an operator: the
                // next daemon starts it again.
                monitored: snapshot.monitored
                    || self
                        .shutdown
                        .as_ref()
                        .is_some_and(|s| s.keeps_monitored(name)),
                ..snapshot
            };
            if slot.saved.as_ref().map(|(saved, _)| saved) != Some(&now) {
                let json = match serde_json::to_string(&now) {
                    Ok(json) => json,
                    Err(e) => {
                        log::error!("{name}: cannot write its state: {e}");
                        continue;
                    }
                };
                slot.saved = Some((now, json));
                changed = true;
            }
        }
        if !changed {
            return;
        }
        let entries = self
            .slots
            .iter()
            .filter_map(|(n, s)| Some((n.as_str(), s.saved.as_ref()?.1.as_str())));
        if let Err(e) = self.state_file.save_entries(entries) {
            log::error!(
                "cannot write state file {}: {e}",
                self.state_file.path().join("state.json").display()
            );
            // Written again on the next change.
            self.state_stale = true;
        }
    }
}
