//! Starting a watch's program: a self-daemonizing one's launch and the
//! pid file that names what it leaves, following a started process, and
//! the helper commands (stop, restart) run as the watch's own process.
use std::os::fd::OwnedFd;

use anyhow::Result;
use nix::sys::signal::Signal;

use crate::{
    cgroup::WatchCgroup,
    output::Logs,
    pid_file,
    process::{self, Pid, ProcessId},
    spawn,
    survivor::Tree,
    tree::Trees,
    watch::{Action, Now},
};

use super::{
    checks::{start_conditions, start_health},
    reach::{group_alive, signal_group, Reach},
    slot::ProcSlot,
    Daemon, Internal,
};

impl Daemon {
    /// Starts a program that daemonizes itself and follows the process its
    /// pid file names, or (`daemonizes`) the one its launch leaves in the
    /// watch's cgroup or fork-tracked tree (ours through the subreaper:
    /// reparented to us).
    pub(super) fn launch_daemonizing(&mut self, name: &str) {
        let cgroup = self.cgroup_of(name);
        let tree = match (&cgroup, &self.trees) {
            (Some(cgroup), _) => Some(Tree::Cgroup(cgroup.clone())),
            (None, Some(trees)) => Some(Tree::Forks(trees.members(), name.to_owned())),
            (None, None) => None,
        };
        let env = self.notify_env(name, None);
        let join = self.limits_for_start(name);
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let watch = &mut slot.watch;
        let pid_file = watch.config().pid_file.clone();
        let cleared = match &pid_file {
            Some(path) => pid_file::clear(path, watch.config().user.as_ref()),
            None if tree.is_none() => Err(anyhow::anyhow!(
                "daemonizes needs the watch's cgroup or fork tracking to find what the launch left (neither works here: see the daemon's log): give it a pid_file"
            )),
            None => Ok(()),
        };
        let launched = cleared.and(join).and_then(|join| {
            spawn::spawn(watch.config(), cgroup.as_ref(), join, &mut self.logs, &env)
        });
        let launcher = match launched {
            Ok(spawned) => {
                track(&mut self.trees, name, spawned.id.pid);
                watch.launched();
                // The daemon it leaves behind inherits its streams.
                slot.output = spawned.output;
                spawned.id.pid
            }
            Err(e) => {
                let actions = watch.spawn_failed(&format!("{e:#}"), Now::read());
                self.act(name, actions);
                return;
            }
        };
        let launch = self.next_request;
        self.next_request += 1;
        let limit = watch.config().start_grace;
        let user = watch.config().user.clone();
        slot.launch = Some(launch);
        let tx = self.tx.clone();
        let name = name.to_owned();
        let ours = Pid::new(std::process::id()).expect("own pid");
        let left = match pid_file {
            Some(path) => {
                let owner = pid_file::Owner { user, cgroup };
                Box::pin(async move {
                    pid_file::wait_for(&path, &owner, ours, launcher, limit)
                        .await
                        .map(|id| (id, format!("named by {}", path.display())))
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<_>> + Send>>
            }
            None => {
                let (told, exited) = tokio::sync::oneshot::channel();
                self.launchers.insert(launcher, told);
                let tree = tree.expect("checked before the launch");
                Box::pin(async move { left_behind(exited, &tree, ours, limit).await })
            }
        };
        tokio::spawn(async move {
            let result = left.await.map_err(|e| format!("{e:#}"));
            let _ = tx.send(Internal::Left {
                name,
                launch,
                launcher,
                result,
            });
        });
    }

    pub(super) fn launch_left(
        &mut self,
        name: &str,
        launch: u64,
        launcher: Pid,
        result: Result<(ProcessId, String), String>,
    ) {
        self.launchers.remove(&launcher);
        let reach = self.reach(name);
        match self.slots.get_mut(name) {
            Some(slot) if slot.launch == Some(launch) => slot.launch = None,
            _ => return,
        }
        let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) else {
            return;
        };
        let actions = match result {
            Ok((id, how))
                if self
                    .procs
                    .get(&id.pid)
                    .map(|p| &p.watch)
                    .is_some_and(|n| n != name) =>
            {
                let other = self.procs[&id.pid].watch.clone();
                if group_alive(launcher) {
                    signal_group(launcher, Signal::SIGKILL);
                }
                watch.spawn_failed(
                    &format!("pid {} ({how}) is watch {other}'s process", id.pid),
                    Now::read(),
                )
            }
            Ok((id, how)) => match process::pidfd_open(id.pid) {
                Ok(pidfd) => {
                    log::info!("{name}: following pid {}, {how}", id.pid);
                    self.follow(name, id, pidfd)
                }
                Err(e) => watch.spawn_failed(&format!("pidfd_open({}): {e}", id.pid), Now::read()),
            },
            Err(e) => {
                // Whatever the launch left running would run unwatched.
                if group_alive(launcher) {
                    signal_group(launcher, Signal::SIGKILL);
                }
                match reach {
                    Reach::Cgroup(cgroup) => cgroup.kill_all(),
                    Reach::Forks(members, name) => members.signal_all(&name, Signal::SIGKILL),
                    Reach::Group => {}
                }
                watch.spawn_failed(&e, Now::read())
            }
        };
        self.act(name, actions);
    }

    /// Starts watch `name`'s process on a spawner thread: now, or once
    /// fewer starts are in flight.
    pub(super) fn queue_start(&mut self, name: &str) {
        let launch = self.next_request;
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        if slot.launch.is_some() {
            // Already on its way: one process at a time.
            return;
        }
        self.next_request += 1;
        slot.launch = Some(launch);
        slot.watch.launched();
        match &mut self.spawner {
            Some(spawner) if spawner.has_room() => self.send_start(name, launch),
            Some(spawner) => spawner.wait(name, launch),
            None => {}
        }
    }

    /// Prepares launch `launch` of watch `name` and hands it to the
    /// spawner threads.
    fn send_start(&mut self, name: &str, launch: u64) {
        let cgroup = self.cgroup_of(name);
        let env = self.notify_env(name, None);
        let join = self.limits_for_start(name);
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let prepared = join.and_then(|join| {
            spawn::prepare(
                slot.watch.config(),
                cgroup.as_ref(),
                join,
                &mut self.logs,
                &env,
            )
        });
        match prepared {
            Ok(prepared) => {
                if let Some(spawner) = &mut self.spawner {
                    spawner.send(name, launch, prepared);
                }
            }
            Err(e) => {
                slot.launch = None;
                let actions = slot.watch.spawn_failed(&format!("{e:#}"), Now::read());
                self.act(name, actions);
            }
        }
    }

    /// A spawner thread carried out a launch.
    pub(super) fn spawned(&mut self, done: super::spawner::Done) {
        let super::spawner::Done {
            name,
            launch,
            result,
        } = done;
        let name = name.as_str();
        let ours = self
            .slots
            .get_mut(name)
            .filter(|s| s.launch == Some(launch))
            .map(|s| s.launch = None)
            .is_some();
        let actions = match (ours, result) {
            (true, Ok(spawned)) => {
                if let Some(slot) = self.slots.get_mut(name) {
                    slot.output = spawned.output;
                }
                self.follow(name, spawned.id, spawned.pidfd)
            }
            (true, Err(e)) => match self.slots.get_mut(name) {
                Some(slot) => slot.watch.spawn_failed(&e, Now::read()),
                None => Vec::new(),
            },
            (false, Ok(spawned)) => {
                // Nothing waits for it (its watch is gone): it must not
                // run on unwatched.
                log::warn!(
                    "{name}: process {} started for a launch no longer wanted; killing it",
                    spawned.id.pid
                );
                let _ = process::pidfd_kill(&spawned.pidfd, Signal::SIGKILL);
                Vec::new()
            }
            (false, Err(_)) => Vec::new(),
        };
        self.act(name, actions);
        if let Some(spawner) = &mut self.spawner {
            spawner.done();
        }
        while let Some((next, launch)) = self.spawner.as_mut().and_then(|s| s.next_waiting()) {
            if self
                .slots
                .get(&next)
                .is_some_and(|s| s.launch == Some(launch))
            {
                self.send_start(&next, launch);
            }
        }
    }

    /// Follows `id`, the process watch `name` has just started (or whose
    /// pid file named it); returns what the watch does next.
    pub(super) fn follow(&mut self, name: &str, id: ProcessId, pidfd: OwnedFd) -> Vec<Action> {
        // Reaped before the loop knew it was this watch's (a status kept
        // for its pid counts only if this process is the one that exited).
        let early = self.spawner.as_mut().and_then(|s| s.take_early(id.pid));
        let mut proc = ProcSlot::new(name, pidfd);
        proc.reaped = early.filter(|_| process::pidfd_exited(&proc.pidfd));
        self.procs.insert(id.pid, proc);
        track(&mut self.trees, name, id.pid);
        let Some(slot) = self.slots.get_mut(name) else {
            return Vec::new();
        };
        if let Some(died) = slot.died_at.take() {
            self.restart_duration.observe(died.elapsed());
        }
        let watch = &mut slot.watch;
        slot.conditions = start_conditions(&watch.config().conditions);
        let more = watch.spawned(id, Now::read());
        slot.health = start_health(watch);
        // Watched before anything can be missed: a process that already
        // died is reported by `watch` itself.
        if let Err(e) = self.backend.watch(id) {
            log::error!("{name}: cannot watch process {}: {e:#}", id.pid);
        }
        more
    }
}

/// Runs a watch's stop or restart command as the watch's own process would
/// run (user, directory, environment, cgroup). The daemon's reaper
/// collects it.
pub(super) fn run_helper_command(
    config: &crate::config::WatchConfig,
    argv: Vec<String>,
    cgroup: Option<&WatchCgroup>,
    logs: &mut Logs,
    trees: &mut Option<Trees>,
) -> Result<spawn::Spawned> {
    let helper = crate::config::WatchConfig {
        argv,
        ..config.clone()
    };
    let spawned = spawn::spawn(&helper, cgroup, Vec::new(), logs, &[])?;
    track(trees, &config.name, spawned.id.pid);
    Ok(spawned)
}

/// Counts `pid`, just started, as one of watch `name`'s processes.
pub(super) fn track(trees: &mut Option<Trees>, name: &str, pid: Pid) {
    if let Some(trees) = trees {
        trees.track(pid, name);
    }
}

/// `daemonizes`: waits for the launch to exit 0 within `limit`, then for
/// the process it left in `tree`.
async fn left_behind(
    exited: tokio::sync::oneshot::Receiver<crate::exit::ExitStatus>,
    tree: &Tree,
    ours: Pid,
    limit: std::time::Duration,
) -> Result<(ProcessId, String)> {
    let deadline = std::time::Instant::now() + limit;
    let status = match tokio::time::timeout(limit, exited).await {
        Ok(Ok(status)) => status,
        Ok(Err(_)) => anyhow::bail!("the launch's exit was not seen"),
        Err(_) => anyhow::bail!(
            "the launch did not exit within start_grace ({limit:?}): with daemonizes, the program must fork and its launch exit 0"
        ),
    };
    if status != crate::exit::ExitStatus::Exited(0) {
        anyhow::bail!("the launch {status} (with daemonizes, it must exit 0 once it has forked)");
    }
    let found = crate::survivor::find(tree, ours, deadline).await?;
    Ok((found.id, found.why))
}
