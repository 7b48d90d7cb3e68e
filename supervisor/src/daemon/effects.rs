//! Effects in one place: what watches decide is queued by `act` and
//! carried out by `settle`, once per loop turn, followed by one settle
//! phase (notices, waiting requests, `after` ordering). No handler runs
//! another's work.
use nix::sys::signal::Signal;

use crate::{
    process::Pid,
    spawn,
    watch::{Action, Command, Now, State},
};

use super::{
    exits::pidfd_readable, reach::signal_group, slot::Command as HelperCommand,
    starts::run_helper_command, Daemon, Internal,
};

impl Daemon {
    /// Queues `command` for watch `name`; `why` names what decided it.
    pub(super) fn command(&mut self, name: &str, command: Command, why: &str) {
        let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) else {
            return;
        };
        let actions = watch.command(command, why, Now::read());
        self.act(name, actions);
    }

    /// Queues what watch `name` decided, to be carried out by `settle`
    /// (never here: no handler runs another's work); the watch is looked
    /// at in the settle phase even if `actions` is empty.
    pub(super) fn act(&mut self, name: &str, actions: Vec<Action>) {
        self.touched.insert(name.to_owned());
        self.effects
            .extend(actions.into_iter().map(|a| (name.to_owned(), a)));
    }

    /// Carries out the queued effects, then settles: notices go out,
    /// waiting requests are answered, and watches held back by `after`
    /// start once they may. Runs once per loop turn, until nothing is left.
    pub(super) fn settle(&mut self) {
        loop {
            while let Some((name, action)) = self.effects.pop_front() {
                let more = self.carry_out(&name, action);
                self.act(&name, more);
            }
            if self.touched.is_empty() {
                return;
            }
            for name in std::mem::take(&mut self.touched) {
                self.send_events(&name);
                self.send_notices(&name);
                self.settle_waiters(&name);
                self.unpublished.insert(name.clone());
                self.unsaved.insert(name);
            }
            self.start_ordered();
            self.stop_ordered();
            self.check_main();
        }
    }

    /// Carries out one action of watch `name`; returns what the watch
    /// decided next (a spawn that failed, a process already gone).
    pub(super) fn carry_out(&mut self, name: &str, action: Action) -> Vec<Action> {
        if matches!(action, Action::Spawn) {
            if let Some(slot) = self.slots.get_mut(name).filter(|s| s.clearing) {
                slot.held_spawn = true;
                log::info!("{name}: starting once the processes left in its cgroup are gone");
                return Vec::new();
            }
        }
        let cgroup = self.cgroup_of(name);
        let reach = self.reach(name);
        let blocked_by = self.blocked_by(name);
        let env = match action {
            Action::Spawn => self.notify_env(name, None),
            _ => Vec::new(),
        };
        // A start made here, on the loop (not a launch, not on a spawner
        // thread: those set the limits themselves).
        let here = self.spawner.is_none()
            && self.slots.get(name).is_some_and(|s| {
                s.watch.config().pid_file.is_none() && !s.watch.config().daemonizes
            });
        let join = match action {
            Action::Spawn if here && blocked_by.is_none() => Some(self.limits_for_start(name)),
            _ => None,
        };
        let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) else {
            return Vec::new();
        };
        let restart = matches!(action, Action::RunRestart(_));
        match action {
            Action::Spawn if blocked_by.is_some() => {
                let dependency = blocked_by.unwrap_or_default();
                if self
                    .slots
                    .get_mut(name)
                    .is_some_and(|s| !std::mem::replace(&mut s.ordered, true))
                {
                    log::info!("{name}: waiting for {dependency} to be up (after)");
                }
                Vec::new()
            }
            Action::Spawn if watch.config().pid_file.is_some() || watch.config().daemonizes => {
                self.launch_daemonizing(name);
                Vec::new()
            }
            Action::Spawn if self.spawner.is_some() => {
                self.queue_start(name);
                Vec::new()
            }
            Action::Spawn => {
                let spawned = join.unwrap_or_else(|| Ok(Vec::new())).and_then(|join| {
                    spawn::spawn(watch.config(), cgroup.as_ref(), join, &mut self.logs, &env)
                });
                match spawned {
                    Ok(spawned) => {
                        if let Some(slot) = self.slots.get_mut(name) {
                            slot.output = spawned.output;
                        }
                        self.follow(name, spawned.id, spawned.pidfd)
                    }
                    Err(e) => watch.spawn_failed(&format!("{e:#}"), Now::read()),
                }
            }
            Action::Timer { at, timer } => {
                let serial = self.slots.get(name).map_or(0, |s| s.serial);
                self.timers
                    .insert_at((name.to_owned(), serial, timer), at.into());
                Vec::new()
            }
            Action::Signal(signal) => {
                // In a container's shutdown: the signal the init was sent.
                let signal = self
                    .shutdown
                    .as_ref()
                    .and_then(|s| s.signal_for(name))
                    .unwrap_or(signal);
                if let Some(process) = watch.process() {
                    // Descendants that left the group get it too.
                    reach.stop(process.pid, signal);
                }
                Vec::new()
            }
            Action::Kill => {
                let Some(pid) = watch.process().map(|p| p.pid) else {
                    return Vec::new();
                };
                if self
                    .procs
                    .get(&pid)
                    .is_some_and(|p| pidfd_readable(&p.pidfd))
                {
                    log::warn!("{name}: process {pid} exited without an exit event");
                    self.unreported_exits += 1;
                    self.confirm_gone(name.to_owned(), pid, None);
                } else {
                    reach.signal(pid, Signal::SIGKILL);
                }
                Vec::new()
            }
            Action::RunStop(argv) | Action::RunRestart(argv) => {
                let ran = run_helper_command(
                    watch.config(),
                    argv,
                    cgroup.as_ref(),
                    &mut self.logs,
                    &mut self.trees,
                );
                let spawned = match ran {
                    Ok(spawned) => spawned,
                    Err(e) if restart => {
                        return watch.restart_command_failed(&format!("{e:#}"), Now::read())
                    }
                    Err(e) => return watch.stop_command_failed(&format!("{e:#}"), Now::read()),
                };
                let helper = spawned.id.pid;
                if restart {
                    match spawned.pidfd.try_clone() {
                        Ok(pidfd) => {
                            let (tx, name) = (self.tx.clone(), name.to_owned());
                            tokio::spawn(async move {
                                crate::process::exited(pidfd).await;
                                let _ = tx.send(Internal::RestartDone { name, helper });
                            });
                        }
                        Err(e) => log::error!("{name}: restart command {helper}: {e}"),
                    }
                }
                if let Some(slot) = self.slots.get_mut(name) {
                    slot.command = Some(HelperCommand {
                        pid: helper,
                        pidfd: spawned.pidfd,
                    });
                }
                Vec::new()
            }
            Action::KillCommand => {
                if let Some(command) = self.slots.get_mut(name).and_then(|s| s.command.take()) {
                    if !pidfd_readable(&command.pidfd) {
                        signal_group(command.pid, Signal::SIGKILL);
                    }
                }
                Vec::new()
            }
            Action::Release => {
                let released: Vec<Pid> = self
                    .procs
                    .iter()
                    .filter(|(_, p)| p.watch == name)
                    .map(|(pid, _)| *pid)
                    .collect();
                for pid in released {
                    self.procs.remove(&pid);
                    let _ = self.backend.unwatch(pid);
                }
                Vec::new()
            }
        }
    }

    /// The first watch that `name` starts after and that is on its way up
    /// now (a watch that is not starting holds nothing back).
    pub(super) fn blocked_by(&self, name: &str) -> Option<String> {
        self.after_of(name).into_iter().find(|dep| {
            self.slots
                .get(dep.as_str())
                .map(|s| &s.watch)
                .is_some_and(|d| matches!(d.state(), State::Init | State::Start | State::Restart))
        })
    }

    /// What watch `name` starts after, by watch name (a base name in
    /// `after` is each of its instances).
    pub(super) fn after_of(&self, name: &str) -> Vec<String> {
        let Some(after) = self.slots.get(name).map(|s| &s.watch.config().after) else {
            return Vec::new();
        };
        if after.is_empty() {
            return Vec::new();
        }
        let names: Vec<&str> = self.slots.keys().map(String::as_str).collect();
        crate::after::expand(name, after, &names)
    }

    /// Starts the watches that waited for others and may go now.
    pub(super) fn start_ordered(&mut self) {
        let ready: Vec<String> = self
            .slots
            .iter()
            .filter(|(n, s)| s.ordered && self.blocked_by(n).is_none())
            .map(|(n, _)| n.clone())
            .collect();
        for name in ready {
            if let Some(slot) = self.slots.get_mut(&name) {
                slot.ordered = false;
            }
            let still_starting = self
                .slots
                .get(&name)
                .map(|s| &s.watch)
                .is_some_and(|w| w.state() == State::Start && w.process().is_none());
            if still_starting {
                self.act(&name, vec![Action::Spawn]);
            }
        }
    }
}
