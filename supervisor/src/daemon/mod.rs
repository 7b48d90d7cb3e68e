//! The daemon: runs the watches of a config, feeds them the exit events of
//! the backend and carries out what they decide (spawn, signal, release).
//!
//! One task owns all state; backends, the control socket and timers talk to
//! it through its `select!`. It is the subreaper of everything it starts and
//! reaps everything, so no zombie is left.
//!
//! Here: the loop, starts and exits, commands and requests. Beside it, on
//! the same `Daemon`: `checks` (resource conditions and health probes),
//! `readiness` (sd_notify sockets and the time limit on being ready),
//! `notices` (what happened, handed to the notifiers) and `reload` (hot
//! reload, parsed off the loop).
mod checks;
mod notices;
mod readiness;
mod reload;

use checks::{start_conditions, start_health};
use readiness::ready_timer;

use std::{
    collections::{BTreeMap, HashMap},
    io::Write as _,
    os::fd::OwnedFd,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result};
use nix::{
    errno::Errno,
    sys::{
        signal::{killpg, Signal},
        wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus},
    },
};
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
    sync::{mpsc, oneshot},
};

use crate::{
    backend::{Backend, Options},
    cgroup::{Cgroups, WatchCgroup},
    config::{Config, Tracking},
    control::{self, Incoming},
    exit::{ExitEvent, ExitStatus},
    output::Logs,
    pid_file,
    process::{self, Pid, ProcessId, StartTime},
    protocol::{
        DaemonInfo, EventStatus, FdCount, LastExitStatus, Missing, Request, Response, Summary,
        WatchStatus,
    },
    spawn,
    state::{SavedWatch, StateDir},
    tree::{Members, Trees},
    watch::{Action, Command, Now, State, Watch},
};
use crate::{
    conditions::Conditions,
    health::{Health, Outcome},
    helper,
    notification::Notifier,
    sd_notify,
};

/// How often every watched process is checked for an exit no backend
/// reported: a safety net under the backends, which should never need it.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// How long a turn of the loop may spend starting watches at start-up.
const PENDING_SLICE: Duration = Duration::from_millis(5);

/// How often a process group is looked at while it empties after a stop.
const GROUP_DRAIN_TICK: Duration = Duration::from_millis(5);

enum Internal {
    /// The process has exited for good (its pidfd turned readable).
    Gone { name: String, pid: Pid },
    /// `stop_timeout` ran out for this process.
    StopTimeout { name: String, pid: Pid },
    /// `stop_grace` ran out for the stop command (`helper`) of this process.
    StopGraceOver { name: String, pid: Pid, helper: Pid },
    /// `restart_grace` ran out for the watch's restart command `helper`.
    RestartGraceOver { name: String, helper: Pid },
    /// Nothing is left of this process group.
    GroupEmpty { name: String, status: ExitStatus },
    /// A start held back by the crash-loop backoff is due.
    SpawnDue { name: String },
    /// The watch's restart command has exited.
    RestartDone { name: String },
    /// A health check's probe of `pid` came back.
    Probed {
        name: String,
        pid: Pid,
        outcome: Outcome,
    },
    /// A helper process (exec check, hook) has exited or was killed.
    HelperDone(helper::Finished),
    /// A process of watch `name` wrote to its `NOTIFY_SOCKET`.
    Notified {
        name: String,
        message: sd_notify::Message,
    },
    /// `start_grace` ran out for `pid` to be ready.
    ReadyTimeout { name: String, pid: Pid },
    /// A config file was read and parsed (off the loop), for a reload.
    Loaded(reload::Loaded),
    /// What the pid file of a self-daemonizing watch said, for launch `launch`.
    PidFile {
        name: String,
        launch: u64,
        launcher: Pid,
        result: Result<ProcessId, String>,
    },
}

/// What a control request waits for before it is answered.
#[derive(Clone, Copy, PartialEq)]
enum Goal {
    Up,
    Unmonitored,
}

struct Waiter {
    goal: Goal,
    request: u64,
    /// The watch's failed starts when the request came: only a later
    /// failure answers it.
    failures: u64,
    /// How often the watch had entered the goal's state when the request
    /// came: entering it again answers the request, even if the watch has
    /// moved on since (a `start` queued behind the `stop`).
    entered: u64,
}

impl Goal {
    fn state(self) -> State {
        match self {
            Self::Up => State::Up,
            Self::Unmonitored => State::Unmonitored,
        }
    }
}

/// What a helper process the daemon runs is for.
enum HelperJob {
    /// The exec health check of watch `name`'s process `process`.
    Probe {
        name: String,
        process: Pid,
        pidfd: OwnedFd,
    },
    /// A notification hook.
    Hook { what: String, pidfd: OwnedFd },
}

impl HelperJob {
    fn pidfd(&self) -> &OwnedFd {
        match self {
            Self::Probe { pidfd, .. } | Self::Hook { pidfd, .. } => pidfd,
        }
    }
}

/// A watch's sd_notify socket and the task reading it.
struct NotifyListener {
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A request over several watches, answered when the last is done.
struct PendingReply {
    remaining: usize,
    errors: Vec<String>,
    reply: oneshot::Sender<Response>,
}

pub struct Daemon {
    /// What the backend was opened with, to open it again.
    options: Options,
    /// How often the backend failed and was opened again.
    backend_failures: u64,
    /// Exits no backend reported, found by `sweep`.
    unreported_exits: u64,
    /// Watches waiting, in `start`, for those they start `after`.
    ordered: std::collections::HashSet<String>,
    /// Resource conditions of the watches that have any, for the process
    /// each runs now.
    conditions: HashMap<String, Conditions>,
    /// Health checks of the watches that have one, for the process each
    /// runs now.
    health: HashMap<String, Health>,
    /// For HTTP health checks, made when the first is probed; one that
    /// verifies certificates, one that does not.
    http: HashMap<bool, reqwest::Client>,
    /// Exec checks and hooks running now.
    helpers: HashMap<Pid, HelperJob>,
    /// The `NOTIFY_SOCKET` of each watch that is ready on `READY=1`.
    notify_sockets: HashMap<String, NotifyListener>,
    notifier: Notifier,
    /// The `[daemon]` table and where the config came from; the watches'
    /// configs live in `watches`.
    config: Config,
    backend: Backend,
    watches: BTreeMap<String, Watch>,
    by_pid: HashMap<Pid, String>,
    pidfds: HashMap<Pid, OwnedFd>,
    /// Exit statuses of watched processes the SIGCHLD reaper got first.
    reaped: HashMap<Pid, ExitStatus>,
    waiters: HashMap<String, Vec<Waiter>>,
    replies: HashMap<u64, PendingReply>,
    next_request: u64,
    terminating: Option<u64>,
    quitting: bool,
    state_file: StateDir,
    cgroups: Option<Cgroups>,
    watch_cgroups: HashMap<String, WatchCgroup>,
    /// Fork tracking, where there are no cgroups.
    trees: Option<Trees>,
    logs: Logs,
    /// Watches to forget once stopped.
    removing: std::collections::HashSet<String>,
    /// The launch whose pid file each self-daemonizing watch waits for.
    launches: HashMap<String, u64>,
    /// What the state file holds now, to write only on change.
    saved: BTreeMap<String, SavedWatch>,
    /// Watches to start when the daemon comes up, in start order, started
    /// a slice per loop turn so that the control socket answers (and
    /// restarts happen) while ten thousand of them start.
    pending_starts: std::collections::VecDeque<String>,
    tx: mpsc::UnboundedSender<Internal>,
    rx: mpsc::UnboundedReceiver<Internal>,
}

/// Runs the daemon until `quit` or `terminate`. `ready` (from
/// `--daemonize`) gets a line once the socket is served and every watch
/// has been resumed or started.
pub async fn run(config: Config, state_file: StateDir, ready: Option<OwnedFd>) -> Result<()> {
    // After `--daemonize`, this is another process than the one that
    // took the lock.
    state_file.claim();
    match crate::limits::raise_nofile() {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    // SAFETY: prctl with plain integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        log::warn!(
            "could not become a child subreaper: {}",
            std::io::Error::last_os_error()
        );
    }
    let options = Options {
        ring_bytes: config.daemon.ring_buffer,
        netlink_rcvbuf: config.daemon.netlink_buffer,
        ..Options::default()
    };
    let backend = Backend::open_chosen(config.daemon.backend, &options)?;
    log::info!("watching exits with {}", backend.kind());
    // Loading the eBPF program parses the kernel's BTF (megabytes, freed
    // since): give that memory back so the daemon, and every fork of it,
    // stays small.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Incoming>();
    let in_flight = control::serve(&config.daemon.socket, control_tx)?;
    let (cgroups, trees) = tracking(&config, state_file.instance())?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut config = config;
    let mut daemon = Daemon {
        options,
        backend_failures: 0,
        unreported_exits: 0,
        conditions: HashMap::new(),
        health: HashMap::new(),
        http: HashMap::new(),
        helpers: HashMap::new(),
        notify_sockets: HashMap::new(),
        notifier: Notifier::new(&config.notify),
        ordered: Default::default(),
        watches: std::mem::take(&mut config.watches)
            .into_iter()
            .map(|w| (w.name.clone(), Watch::new(w)))
            .collect(),
        config,
        backend,
        by_pid: HashMap::new(),
        pidfds: HashMap::new(),
        reaped: HashMap::new(),
        waiters: HashMap::new(),
        replies: HashMap::new(),
        next_request: 0,
        terminating: None,
        quitting: false,
        state_file,
        launches: HashMap::new(),
        cgroups,
        watch_cgroups: HashMap::new(),
        trees,
        logs: Logs::default(),
        removing: Default::default(),
        saved: Default::default(),
        pending_starts: Default::default(),
        tx,
        rx,
    };
    daemon.resume();
    let mut ready = ready;
    let mut sigchld = signal(SignalKind::child())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    if daemon.pending_starts.is_empty() {
        daemon.announce(ready.take());
    }
    // Set after anything happened; the state file is written once a burst
    // of events is handled (the last, always-ready branch of the biased
    // select runs only when nothing else is ready), not after each event:
    // a thousand watches dying at once would otherwise rewrite it a
    // thousand times.
    let mut unsaved = false;
    let mut sweep = tokio::time::interval_at((Instant::now() + SWEEP_EVERY).into(), SWEEP_EVERY);
    loop {
        let next_check = daemon.next_check();
        tokio::select! {
            biased;
            event = daemon.backend.next_exit() => match event {
                Ok(event) => daemon.on_exit(event),
                Err(e) => daemon.backend_failed(e)?,
            },
            Some(internal) = daemon.rx.recv() => daemon.on_internal(internal),
            _ = tokio::time::sleep_until(next_check.into()) => daemon.check_conditions(),
            result = follow_forks(&mut daemon.trees) => {
                if let Err(e) = result {
                    log::error!("fork tracking stopped: {e:#}; tracking process groups only");
                    daemon.trees = None;
                }
            }
            Some(incoming) = control_rx.recv() => daemon.on_request(incoming),
            _ = sigchld.recv() => daemon.reap(),
            _ = sigterm.recv() => daemon.terminate(None),
            _ = sigint.recv() => daemon.terminate(None),
            _ = sigusr1.recv() => daemon.logs.reopen(),
            _ = sighup.recv() => {
                let source = daemon.config.source.clone();
                daemon.start_load(source, Missing::default(), None);
            }
            _ = sweep.tick() => daemon.sweep(),
            () = std::future::ready(()), if !daemon.pending_starts.is_empty() => {
                daemon.start_pending();
                if daemon.pending_starts.is_empty() {
                    daemon.announce(ready.take());
                }
                // The other tasks (the control socket's among them) run
                // only when this one yields, which an always-ready branch
                // never does by itself.
                tokio::task::yield_now().await;
            }
            () = std::future::ready(()), if unsaved => {
                daemon.save_state();
                unsaved = false;
                continue;
            }
        }
        unsaved = true;
        if daemon.quitting || daemon.terminated() {
            daemon.save_state();
            break;
        }
    }
    if daemon.terminated() {
        for cgroup in daemon.watch_cgroups.values() {
            cgroup.remove();
        }
        if let Some(cgroups) = &daemon.cgroups {
            cgroups.remove();
        }
    }
    let _ = std::fs::remove_file(&daemon.config.daemon.socket);
    in_flight.drain(Duration::from_secs(1)).await;
    Ok(())
}

async fn follow_forks(trees: &mut Option<Trees>) -> Result<()> {
    match trees {
        Some(trees) => trees.follow().await,
        None => std::future::pending().await,
    }
}

/// Cgroups or fork tracking, as `[daemon] tracking` says.
fn tracking(config: &Config, instance: &str) -> Result<(Option<Cgroups>, Option<Trees>)> {
    let tracking = config.daemon.tracking;
    if tracking != Tracking::Fork {
        match Cgroups::discover(instance) {
            Ok(mut cgroups) => {
                cgroups.claim()?;
                log::info!("each watch's processes are tracked in a cgroup of their own");
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
    /// Picks up where the last daemon left off: re-adopts each watch's
    /// process that still runs (same pid, same start time), keeps counts,
    /// and starts the rest as the config and the operator's last word say.
    fn resume(&mut self) {
        let mut saved = self.state_file.load().watches;
        let names = self.in_start_order(self.watches.keys().cloned().collect());
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
            let watch = self.watches.get_mut(&name).expect("listed");
            let Some(entry) = saved.get(&name) else {
                if watch.config.autostart {
                    self.pending_starts.push_back(name);
                }
                continue;
            };
            watch.restore(entry);
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
                    self.pending_starts.push_back(name);
                }
                _ if entry.monitored && watch.config.autostart => {
                    self.pending_starts.push_back(name)
                }
                _ => {}
            }
        }
        for (name, entry) in &saved {
            if !self.watches.contains_key(name) {
                if let Some(pid) = entry.pid {
                    log::warn!("state file names watch '{name}' (pid {pid}), which the config no longer has; leaving it alone");
                }
            }
        }
    }

    /// Starts the next watches of `pending_starts`, for at most a few
    /// milliseconds: then the loop looks at exits and requests again.
    fn start_pending(&mut self) {
        let until = Instant::now() + PENDING_SLICE;
        while let Some(name) = self.pending_starts.pop_front() {
            self.command(&name, Command::Start);
            if Instant::now() >= until {
                break;
            }
        }
    }

    /// Says the daemon is running, once every watch has been resumed or
    /// started; `ready` (from `--daemonize`) gets a line.
    fn announce(&self, ready: Option<OwnedFd>) {
        // Parsing a big config and starting every watch leave freed memory
        // behind in the heap: hand it back.
        // SAFETY: malloc_trim only releases free heap memory.
        unsafe { libc::malloc_trim(0) };
        eprintln!(
            "supervisor running {} watch(es) from {}, control socket {}",
            self.watches.len(),
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
    fn clear_strays(&mut self, name: &str) {
        let Some(cgroup) = self.cgroup_of(name) else {
            return;
        };
        let strays = cgroup.pids();
        if strays.is_empty() {
            return;
        }
        log::warn!("{name}: processes {strays:?} run in its cgroup, unknown to the state file (a daemon died in the middle of an action): killing them before starting afresh");
        let deadline = Instant::now() + Duration::from_secs(5);
        while cgroup.populated() && Instant::now() < deadline {
            cgroup.kill_all();
            std::thread::sleep(GROUP_DRAIN_TICK);
        }
    }

    /// Whether `pid` is in watch `name`'s cgroup (true without cgroups).
    fn in_own_cgroup(&mut self, name: &str, pid: Pid) -> bool {
        self.cgroup_of(name)
            .is_none_or(|cgroup| cgroup.pids().contains(&(pid.get() as i32)))
    }

    fn adopt(&mut self, name: &str, id: ProcessId, ready: bool, notify_socket: Option<&str>) {
        let pidfd = match process::pidfd_open(id.pid) {
            Ok(fd) => fd,
            Err(e) => {
                log::error!(
                    "{name}: cannot open a pidfd for {}: {e}; starting afresh",
                    id.pid
                );
                self.command(name, Command::Start);
                return;
            }
        };
        // The pidfd pins the process: check it is still the one we mean.
        if !process::is_alive(id, &Default::default()) {
            self.command(name, Command::Start);
            return;
        }
        self.by_pid.insert(id.pid, name.to_owned());
        self.pidfds.insert(id.pid, pidfd);
        if let Some(trees) = &mut self.trees {
            trees.track_running(id.pid, name);
        }
        // Its NOTIFY_SOCKET is the same name as before: it can still talk.
        self.notify_env(name, notify_socket);
        if let Some(watch) = self.watches.get_mut(name) {
            start_conditions(&mut self.conditions, name, &watch.config.conditions);
            watch.adopt(id, ready, process::started_at(id.start), Now::read());
            start_health(&mut self.health, name, watch);
            if watch.awaiting_ready() {
                ready_timer(&self.tx, name, id.pid, watch.config.start_grace);
            }
        }
        if let Err(e) = self.backend.watch(id) {
            log::error!("{name}: cannot watch re-adopted process {}: {e:#}", id.pid);
        }
    }

    /// Starts a program that daemonizes itself and follows the process its
    /// pid file names (ours through the subreaper: it is reparented to us).
    fn launch_daemonizing(&mut self, name: &str) {
        let cgroup = self.cgroup_of(name);
        let env = self.notify_env(name, None);
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        let path = watch
            .config
            .pid_file
            .clone()
            .expect("checked by the caller");
        let launched = pid_file::clear(&path, watch.config.user.as_ref())
            .and_then(|()| spawn::spawn(&watch.config, cgroup.as_ref(), &mut self.logs, &env));
        let launcher = match launched {
            Ok(spawned) => {
                track(&mut self.trees, name, spawned.id.pid);
                watch.launched();
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
        self.launches.insert(name.to_owned(), launch);
        let limit = watch.config.start_grace;
        let owner = pid_file::Owner {
            user: watch.config.user.clone(),
            cgroup,
        };
        let tx = self.tx.clone();
        let name = name.to_owned();
        let ours = Pid::new(std::process::id()).expect("own pid");
        tokio::spawn(async move {
            let result = pid_file::wait_for(&path, &owner, ours, launcher, limit)
                .await
                .map_err(|e| format!("{e:#}"));
            let _ = tx.send(Internal::PidFile {
                name,
                launch,
                launcher,
                result,
            });
        });
    }

    fn pid_file_said(
        &mut self,
        name: &str,
        launch: u64,
        launcher: Pid,
        result: Result<ProcessId, String>,
    ) {
        if self.launches.get(name) != Some(&launch) {
            return;
        }
        self.launches.remove(name);
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        let actions = match result {
            Ok(id) if self.by_pid.get(&id.pid).is_some_and(|n| n != name) => {
                let other = self.by_pid[&id.pid].clone();
                if group_alive(launcher) {
                    signal_group(launcher, Signal::SIGKILL);
                }
                watch.spawn_failed(
                    &format!(
                        "{} names pid {}, which is watch {other}'s process",
                        watch
                            .config
                            .pid_file
                            .as_deref()
                            .unwrap_or(std::path::Path::new(""))
                            .display(),
                        id.pid
                    ),
                    Now::read(),
                )
            }
            Ok(id) => match process::pidfd_open(id.pid) {
                Ok(pidfd) => self.follow(name, id, pidfd),
                Err(e) => watch.spawn_failed(&format!("pidfd_open({}): {e}", id.pid), Now::read()),
            },
            Err(e) => {
                // Whatever the launch left running would run unwatched.
                if group_alive(launcher) {
                    signal_group(launcher, Signal::SIGKILL);
                }
                watch.spawn_failed(&e, Now::read())
            }
        };
        self.act(name, actions);
    }

    /// Follows `id`, the process watch `name` has just started (or whose
    /// pid file named it); returns what the watch does next.
    fn follow(&mut self, name: &str, id: ProcessId, pidfd: OwnedFd) -> Vec<Action> {
        self.by_pid.insert(id.pid, name.to_owned());
        self.pidfds.insert(id.pid, pidfd);
        track(&mut self.trees, name, id.pid);
        let Some(watch) = self.watches.get_mut(name) else {
            return Vec::new();
        };
        start_conditions(&mut self.conditions, name, &watch.config.conditions);
        let more = watch.spawned(id, Now::read());
        start_health(&mut self.health, name, watch);
        if watch.awaiting_ready() {
            ready_timer(&self.tx, name, id.pid, watch.config.start_grace);
        }
        // Watched before anything can be missed: a process that already
        // died is reported by `watch` itself.
        if let Err(e) = self.backend.watch(id) {
            log::error!("{name}: cannot watch process {}: {e:#}", id.pid);
        }
        more
    }

    fn reach(&mut self, name: &str) -> Reach {
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
    fn cgroup_of(&mut self, name: &str) -> Option<WatchCgroup> {
        if let Some(cgroup) = self.watch_cgroups.get(name) {
            return Some(cgroup.clone());
        }
        // Four fds a watch while there are plenty; where the limit is
        // tight (a daemon run under `ulimit -n 1024` it cannot raise), the
        // files are opened at each use instead.
        let keep_open = crate::limits::nofile_limit() > 16 * self.watches.len() as u64 + 1024;
        let cgroup = match self.cgroups.as_ref()?.watch(name, keep_open) {
            Ok(cgroup) => cgroup,
            Err(e) => {
                log::warn!("{name}: no cgroup ({e:#}); tracking its process group only");
                return None;
            }
        };
        self.watch_cgroups.insert(name.to_owned(), cgroup.clone());
        Some(cgroup)
    }

    fn saved_watch(&self, name: &str, watch: &Watch) -> SavedWatch {
        SavedWatch {
            notify_socket: self.notify_sockets.get(name).map(|l| l.address.clone()),
            ..watch.snapshot()
        }
    }

    fn save_state(&mut self) {
        let current = self.saved.len() == self.watches.len()
            && self
                .watches
                .iter()
                .all(|(n, w)| self.saved.get(n) == Some(&self.saved_watch(n, w)));
        if current {
            return;
        }
        let now: BTreeMap<String, SavedWatch> = self
            .watches
            .iter()
            .map(|(n, w)| (n.clone(), self.saved_watch(n, w)))
            .collect();
        match self.state_file.save(&now) {
            Ok(()) => self.saved = now,
            Err(e) => log::error!(
                "cannot write state file {}: {e}",
                self.state_file.path().join("state.json").display()
            ),
        }
    }

    /// The backend broke (its ring buffer or socket failed): it is opened
    /// again (the same kind, else whatever works), and every watched
    /// process is watched anew, which reports those that died meanwhile.
    /// Only if no backend opens does the daemon stop, loudly.
    fn backend_failed(&mut self, error: anyhow::Error) -> Result<()> {
        let kind = self.backend.kind();
        log::error!("exit backend {kind} failed: {error:#}; opening it again");
        self.backend = match Backend::open(kind, &self.options) {
            Ok(backend) => backend,
            Err(e) => {
                log::error!("exit backend {kind} does not open again: {e:#}; trying the others");
                Backend::open_auto(&self.options)
                    .context("no exit backend opens after a failure")?
                    .0
            }
        };
        self.backend_failures += 1;
        log::warn!(
            "watching exits with {} again; re-checking every watched process",
            self.backend.kind()
        );
        let running: Vec<ProcessId> = self
            .watches
            .values()
            .filter_map(|w| w.process)
            .filter(|p| self.by_pid.contains_key(&p.pid))
            .collect();
        for id in running {
            if let Err(e) = self.backend.watch(id) {
                log::error!("cannot watch process {} again: {e:#}", id.pid);
            }
        }
        Ok(())
    }

    /// Finds watched processes that exited without an event (their pidfd
    /// is readable) and handles them as exits.
    fn sweep(&mut self) {
        let gone: Vec<(Pid, String)> = self
            .pidfds
            .iter()
            .filter(|(_, fd)| pidfd_readable(fd))
            .filter_map(|(pid, _)| Some((*pid, self.by_pid.get(pid)?.clone())))
            .collect();
        for (pid, name) in gone {
            log::warn!(
                "{name}: process {pid} exited without an exit event; found by the periodic check"
            );
            self.unreported_exits += 1;
            self.confirm_gone(name, pid, None);
        }
    }

    fn on_exit(&mut self, event: ExitEvent) {
        let Some(name) = self.by_pid.get(&event.pid).cloned() else {
            return;
        };
        self.confirm_gone(name, event.pid, Some(event.status));
    }

    /// The exit event can come before the process has let go of its files
    /// and ports: respawn only once it is really gone (reaped).
    fn confirm_gone(&mut self, name: String, pid: Pid, reported: Option<ExitStatus>) {
        let exact = match self.try_reap(pid) {
            Some(exact) => exact,
            None => {
                let Some(fd) = self.pidfds.get(&pid).and_then(|fd| fd.try_clone().ok()) else {
                    return;
                };
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    // SAFETY: the cloned fd is owned by the AsyncFd.
                    if let Ok(afd) =
                        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    {
                        let _ = afd.readable().await;
                    }
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
    fn try_reap(&mut self, pid: Pid) -> Option<Option<ExitStatus>> {
        if let Some(status) = self.reaped.remove(&pid) {
            return Some(Some(status));
        }
        let fd = self.pidfds.get(&pid)?;
        match waitid(
            Id::PIDFd(std::os::fd::AsFd::as_fd(fd)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
        ) {
            Ok(WaitStatus::StillAlive) => None,
            Ok(status) => Some(Some(ExitStatus::from_nix(status))),
            // Not our child (re-adopted): gone once its pidfd is readable.
            Err(Errno::ECHILD) => pidfd_readable(fd).then_some(None),
            Err(_) => Some(None),
        }
    }

    fn process_gone(&mut self, name: String, pid: Pid, status: ExitStatus) {
        self.by_pid.remove(&pid);
        self.pidfds.remove(&pid);
        let _ = self.backend.unwatch(pid);
        let reach = self.reach(&name);
        let Some(watch) = self.watches.get(&name) else {
            return;
        };
        // What the process left behind goes too, in its group or anywhere
        // in its cgroup or tree: after a stop they had the stop signal and
        // get the rest of the timeout; after a crash they are strays of a
        // dead program and would hold its ports.
        if reach.alive(pid) {
            let grace = match watch.state() {
                State::Stop | State::Restart => watch.config.stop_timeout,
                _ => Duration::ZERO,
            };
            self.drain(name, pid, reach, status, grace);
            return;
        }
        self.finish_exit(&name, status);
    }

    fn finish_exit(&mut self, name: &str, status: ExitStatus) {
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        let actions = watch.exited(status, Now::read());
        self.act(name, actions);
    }

    fn drain(&self, name: String, pid: Pid, reach: Reach, status: ExitStatus, grace: Duration) {
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
            let _ = tx.send(Internal::GroupEmpty { name, status });
        });
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Gone { name, pid } => {
                if self.by_pid.contains_key(&pid) {
                    self.confirm_gone(name, pid, None);
                }
            }
            Internal::StopTimeout { name, pid } => {
                // In `start`, a process that was not ready in time.
                let stopping = self.watches.get(&name).is_some_and(|w| {
                    matches!(w.state(), State::Stop | State::Restart | State::Start)
                        && w.process.is_some_and(|p| p.pid == pid)
                });
                if !stopping || !self.by_pid.contains_key(&pid) {
                    return;
                }
                if self.pidfds.get(&pid).is_some_and(pidfd_readable) {
                    log::warn!("{name}: process {pid} exited without an exit event");
                    self.unreported_exits += 1;
                    self.confirm_gone(name, pid, None);
                    return;
                }
                log::warn!(
                    "{name}: process {pid} outlived its stop timeout; sending SIGKILL to its group"
                );
                self.reach(&name).signal(pid, Signal::SIGKILL);
            }
            Internal::GroupEmpty { name, status, .. } => self.finish_exit(&name, status),
            Internal::Probed { name, pid, outcome } => self.probed(name, pid, outcome),
            Internal::Loaded(loaded) => self.finish_load(loaded),
            Internal::HelperDone(finished) => self.helper_done(finished),
            Internal::Notified { name, message } => self.notified(name, message),
            Internal::ReadyTimeout { name, pid } => {
                let Some(watch) = self.watches.get_mut(&name) else {
                    return;
                };
                if watch.awaiting_ready() && watch.process.is_some_and(|p| p.pid == pid) {
                    let actions = watch.not_ready(Now::read());
                    self.act(&name, actions);
                }
            }
            Internal::PidFile {
                name,
                launch,
                launcher,
                result,
            } => self.pid_file_said(&name, launch, launcher, result),
            Internal::StopGraceOver { name, pid, helper } => {
                let Some(watch) = self.watches.get(&name) else {
                    return;
                };
                let stopping = matches!(watch.state(), State::Stop | State::Restart)
                    && watch.process.is_some_and(|p| p.pid == pid);
                if !stopping || !self.by_pid.contains_key(&pid) {
                    return;
                }
                let (signal, timeout) = (watch.config.stop_signal, watch.config.stop_timeout);
                log::warn!("{name}: stop command did not end process {pid} within its stop_grace; killing the command, sending {signal}");
                signal_group(helper, Signal::SIGKILL);
                self.reach(&name).stop(pid, signal);
                stop_timer(&self.tx, &name, pid, timeout);
            }
            Internal::RestartGraceOver { name, helper } => {
                signal_group(helper, Signal::SIGKILL);
                if let Some(watch) = self.watches.get_mut(&name) {
                    let actions = watch.restart_command_timed_out(Now::read());
                    self.act(&name, actions);
                }
            }
            Internal::RestartDone { name } => {
                if let Some(watch) = self.watches.get_mut(&name) {
                    let actions = watch.restart_command_done(Now::read());
                    self.act(&name, actions);
                }
            }
            Internal::SpawnDue { name } => {
                if let Some(watch) = self.watches.get_mut(&name) {
                    let actions = watch.backoff_over(Now::read());
                    self.act(&name, actions);
                }
            }
        }
    }

    /// Reaps every exited child, ours or orphans handed to us.
    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(status) => {
                    if let Some(pid) = status.pid().and_then(|p| Pid::new(p.as_raw() as u32)) {
                        if let Some(name) = self.by_pid.get(&pid).cloned() {
                            self.reaped.insert(pid, ExitStatus::from_nix(status));
                            self.confirm_gone(name, pid, None);
                        } else if self.helpers.contains_key(&pid) {
                            // Its task reports when its output is read.
                            self.reaped.insert(pid, ExitStatus::from_nix(status));
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    log::warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }

    fn command(&mut self, name: &str, command: Command) {
        let Some(watch) = self.watches.get_mut(name) else {
            return;
        };
        let actions = watch.command(command, Now::read());
        self.act(name, actions);
    }

    fn act(&mut self, name: &str, actions: Vec<Action>) {
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let cgroup = self.cgroup_of(name);
            let reach = self.reach(name);
            let blocked_by = self.blocked_by(name);
            let env = match action {
                Action::Spawn => self.notify_env(name, None),
                _ => Vec::new(),
            };
            let Some(watch) = self.watches.get_mut(name) else {
                return;
            };
            let more = match action {
                Action::Spawn if blocked_by.is_some() => {
                    let dependency = blocked_by.unwrap_or_default();
                    if self.ordered.insert(name.to_owned()) {
                        log::info!("{name}: waiting for {dependency} to be up (after)");
                    }
                    Vec::new()
                }
                Action::Spawn if watch.config.pid_file.is_some() => {
                    self.launch_daemonizing(name);
                    Vec::new()
                }
                Action::Spawn => {
                    match spawn::spawn(&watch.config, cgroup.as_ref(), &mut self.logs, &env) {
                        Ok(spawned) => self.follow(name, spawned.id, spawned.pidfd),
                        Err(e) => watch.spawn_failed(&format!("{e:#}"), Now::read()),
                    }
                }
                Action::SpawnAt(due) => {
                    let tx = self.tx.clone();
                    let name = name.to_owned();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(due.into()).await;
                        let _ = tx.send(Internal::SpawnDue { name });
                    });
                    Vec::new()
                }
                Action::Stop {
                    signal,
                    command,
                    timeout,
                } => {
                    if let Some(process) = watch.process {
                        let helper = command.and_then(|argv| {
                            run_helper_command(
                                &watch.config,
                                argv,
                                cgroup.as_ref(),
                                &mut self.logs,
                                &mut self.trees,
                            )
                            .inspect_err(|e| {
                                log::error!("{name}: stop command failed ({e:#}); sending {signal}")
                            })
                            .ok()
                        });
                        match helper {
                            // The command has `stop_grace` to end the process.
                            Some(helper) => {
                                let tx = self.tx.clone();
                                let (name, grace) = (name.to_owned(), watch.config.stop_grace);
                                tokio::spawn(async move {
                                    tokio::time::sleep(grace).await;
                                    let _ = tx.send(Internal::StopGraceOver {
                                        name,
                                        pid: process.pid,
                                        helper: helper.id.pid,
                                    });
                                });
                            }
                            None => {
                                // Descendants that left the group get it too.
                                reach.stop(process.pid, signal);
                                stop_timer(&self.tx, name, process.pid, timeout);
                            }
                        }
                    }
                    Vec::new()
                }
                Action::RunRestart(argv) => {
                    match run_helper_command(
                        &watch.config,
                        argv,
                        cgroup.as_ref(),
                        &mut self.logs,
                        &mut self.trees,
                    ) {
                        Ok(helper) => {
                            let tx = self.tx.clone();
                            let (name, grace) = (name.to_owned(), watch.config.restart_grace);
                            tokio::spawn(async move {
                                // SAFETY: the pidfd is owned by the AsyncFd.
                                let finished = match unsafe {
                                    AsyncFd::register_with_interest(
                                        helper.pidfd,
                                        Interest::READABLE,
                                    )
                                } {
                                    Ok(afd) => {
                                        tokio::time::timeout(grace, afd.readable()).await.is_ok()
                                    }
                                    Err(_) => true,
                                };
                                let _ = tx.send(if finished {
                                    Internal::RestartDone { name }
                                } else {
                                    Internal::RestartGraceOver {
                                        name,
                                        helper: helper.id.pid,
                                    }
                                });
                            });
                            Vec::new()
                        }
                        Err(e) => {
                            log::error!("{name}: restart command failed ({e:#}); stopping and starting instead");
                            vec![Action::Stop {
                                signal: watch.config.stop_signal,
                                command: None,
                                timeout: watch.config.stop_timeout,
                            }]
                        }
                    }
                }
                Action::Release => {
                    let released: Vec<Pid> = self
                        .by_pid
                        .iter()
                        .filter(|(_, n)| n.as_str() == name)
                        .map(|(p, _)| *p)
                        .collect();
                    for pid in released {
                        self.by_pid.remove(&pid);
                        self.pidfds.remove(&pid);
                        let _ = self.backend.unwatch(pid);
                    }
                    Vec::new()
                }
            };
            queue.extend(more);
        }
        self.publish(name);
        self.settle_waiters(name);
        self.start_ordered();
    }

    /// The first watch that `name` starts after and that is on its way up
    /// now (a watch that is not starting holds nothing back).
    fn blocked_by(&self, name: &str) -> Option<String> {
        self.watches
            .get(name)?
            .config
            .after
            .iter()
            .find(|dep| {
                self.watches.get(dep.as_str()).is_some_and(|d| {
                    matches!(d.state(), State::Init | State::Start | State::Restart)
                })
            })
            .cloned()
    }

    /// Starts the watches that waited for others and may go now.
    fn start_ordered(&mut self) {
        let ready: Vec<String> = self
            .ordered
            .iter()
            .filter(|n| self.blocked_by(n).is_none())
            .cloned()
            .collect();
        for name in ready {
            self.ordered.remove(&name);
            let still_starting = self
                .watches
                .get(&name)
                .is_some_and(|w| w.state() == State::Start && w.process.is_none());
            if still_starting {
                self.act(&name, vec![Action::Spawn]);
            }
        }
    }

    fn settle_waiters(&mut self, name: &str) {
        let Some(watch) = self.watches.get(name) else {
            return;
        };
        if watch.state() == State::Unmonitored && self.removing.remove(name) {
            log::info!("{name} removed");
            self.watches.remove(name);
            if let Some(cgroup) = self.watch_cgroups.remove(name) {
                cgroup.remove();
            }
            if let Some(trees) = &mut self.trees {
                trees.forget(name);
            }
            self.conditions.remove(name);
            self.health.remove(name);
            self.notify_sockets.remove(name);
            for waiter in self.waiters.remove(name).unwrap_or_default() {
                self.answer_part(waiter.request, None);
            }
            return;
        }
        let state = watch.state();
        let failure = match state {
            State::Start => watch
                .backoff
                .map(|(delay, _)| format!("{name} is flapping: next start in {delay:?}")),
            _ => None,
        };
        let error = watch.last_error.as_ref().map(|e| format!("{name}: {e}"));
        let failures = watch.failures();
        let entered = [watch.entered(State::Up), watch.entered(State::Unmonitored)];
        let Some(waiters) = self.waiters.get_mut(name) else {
            return;
        };
        let mut done = Vec::new();
        waiters.retain(|w| {
            let entered = entered[w.goal as usize];
            let reached = state == w.goal.state() || entered > w.entered;
            let new_failure = error.clone().filter(|_| failures > w.failures);
            let failed = w.goal == Goal::Up
                && (failure.is_some() || new_failure.is_some() || state == State::Unmonitored);
            if reached || failed {
                done.push((
                    w.request,
                    if reached {
                        None
                    } else {
                        failure
                            .clone()
                            .or(new_failure)
                            .or(Some(format!("{name} was stopped before it was up")))
                    },
                ));
                false
            } else {
                true
            }
        });
        for (request, error) in done {
            self.answer_part(request, error);
        }
    }

    /// Request `request` waits for watch `name` to reach `goal`.
    fn wait_for(&mut self, name: &str, goal: Goal, request: u64) {
        let (failures, entered) = self
            .watches
            .get(name)
            .map_or((0, 0), |w| (w.failures(), w.entered(goal.state())));
        self.waiters
            .entry(name.to_owned())
            .or_default()
            .push(Waiter {
                goal,
                request,
                failures,
                entered,
            });
    }

    fn answer_part(&mut self, request: u64, error: Option<String>) {
        let Some(pending) = self.replies.get_mut(&request) else {
            return;
        };
        pending.remaining -= 1;
        pending.errors.extend(error);
        if pending.remaining == 0 {
            let pending = self.replies.remove(&request).expect("present");
            let response = if pending.errors.is_empty() {
                Response::ok(Vec::new())
            } else {
                Response::error(pending.errors.join("; "))
            };
            let _ = pending.reply.send(response);
        }
    }

    fn targets(&self, target: Option<&str>) -> Result<Vec<String>, String> {
        let names: Vec<String> = self
            .watches
            .values()
            .filter(|w| {
                target.is_none_or(|t| w.name() == t || w.config.group.as_deref() == Some(t))
            })
            .map(|w| w.name().to_owned())
            .collect();
        match target {
            Some(t) if names.is_empty() => Err(format!("no watch or group named '{t}'")),
            _ => Ok(self.in_start_order(names)),
        }
    }

    /// `names` with each watch after those it starts `after` (the config
    /// has no cycle), so that starting them in turn honours the order.
    fn in_start_order(&self, names: Vec<String>) -> Vec<String> {
        fn visit<'a>(
            name: &'a str,
            watches: &'a BTreeMap<String, Watch>,
            seen: &mut std::collections::HashSet<&'a str>,
            out: &mut Vec<&'a str>,
        ) {
            if !seen.insert(name) {
                return;
            }
            if let Some(watch) = watches.get(name) {
                for dep in &watch.config.after {
                    visit(dep, watches, seen, out);
                }
            }
            out.push(name);
        }
        let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        let (mut seen, mut out) = (Default::default(), Vec::new());
        for name in &names {
            visit(name, &self.watches, &mut seen, &mut out);
        }
        out.into_iter()
            .filter(|n| wanted.contains(n))
            .map(str::to_owned)
            .collect()
    }

    fn on_request(&mut self, incoming: Incoming) {
        let Incoming {
            request,
            from,
            reply,
        } = incoming;
        if let Some(line) = request.audit_line() {
            log::info!("control: {line} (from {from})");
        }
        match request {
            Request::Status { target } => {
                let response = match self.targets(target.as_deref()) {
                    Ok(names) => Response {
                        summary: Some(Summary::Info(Box::new(self.info(false)))),
                        ..Response::ok(
                            names
                                .iter()
                                .filter_map(|n| self.watches.get(n))
                                .map(|w| {
                                    status_of(
                                        w,
                                        self.conditions.get(w.name()),
                                        self.health.get(w.name()),
                                    )
                                })
                                .collect(),
                        )
                    },
                    Err(e) => Response::error(e),
                };
                let _ = reply.send(response);
            }
            Request::Command { command, target } => {
                let names = match self.targets(target.as_deref()) {
                    Ok(names) => names,
                    Err(e) => {
                        let _ = reply.send(Response::error(e));
                        return;
                    }
                };
                let id = self.new_request(names.len(), reply);
                let goal = match command {
                    Command::Start | Command::Restart | Command::Monitor => Goal::Up,
                    Command::Stop | Command::Unmonitor => Goal::Unmonitored,
                };
                // The operator's word comes before a start still pending
                // from start-up.
                if !self.pending_starts.is_empty() {
                    let named: std::collections::HashSet<&String> = names.iter().collect();
                    self.pending_starts.retain(|n| !named.contains(n));
                }
                for name in &names {
                    self.wait_for(name, goal, id);
                    if let Some(watch) = self.watches.get_mut(name) {
                        let actions = watch.asked(command, Now::read());
                        self.act(name, actions);
                    }
                    self.settle_waiters(name);
                }
            }
            Request::Signal { target, signal } => {
                let response = match (
                    self.targets(Some(&target)),
                    crate::units::parse_signal(&signal),
                ) {
                    (Err(e), _) | (_, Err(e)) => Response::error(e),
                    (Ok(names), Ok(signal)) => {
                        let mut running = 0;
                        for process in names.iter().filter_map(|n| self.watches.get(n)?.process) {
                            signal_group(process.pid, signal);
                            running += 1;
                        }
                        if running == 0 {
                            Response::error(format!("'{target}' has no running process"))
                        } else {
                            Response::ok(Vec::new())
                        }
                    }
                };
                let _ = reply.send(response);
            }
            Request::Remove { name } => {
                if !self.watches.contains_key(&name) {
                    let _ = reply.send(Response::error(format!("no watch named '{name}'")));
                    return;
                }
                let id = self.new_request(1, reply);
                self.removing.insert(name.clone());
                self.wait_for(&name, Goal::Unmonitored, id);
                self.command(&name, Command::Stop);
                self.settle_waiters(&name);
            }
            Request::Load { path, missing } => self.start_load(path, missing, Some(reply)),
            Request::Info => {
                let _ = reply.send(Response {
                    summary: Some(Summary::Info(Box::new(self.info(true)))),
                    ..Response::ok(Vec::new())
                });
            }
            Request::Quit => {
                log::info!("quit requested: exiting, leaving every process running");
                let _ = reply.send(Response::ok(Vec::new()));
                self.quitting = true;
            }
            Request::Terminate => self.terminate(Some(reply)),
        }
    }

    /// What `info` (and the foot of `status`) shows of the daemon itself.
    /// `with_fds`: count the open fds too, which lists /proc/self/fd (tens
    /// of thousands with as many watches): for `info`, not for every
    /// `status`.
    fn info(&self, with_fds: bool) -> DaemonInfo {
        let fds = with_fds.then(crate::limits::fds_in_use);
        let tracking = match (&self.cgroups, &self.trees) {
            (Some(_), _) => "cgroup",
            (None, Some(_)) => "fork",
            (None, None) => "process group only",
        };
        DaemonInfo {
            pid: std::process::id(),
            config: self.config.source.clone(),
            watches: self.watches.len(),
            backend: self.backend.kind().name().to_owned(),
            counters: self.backend.counters(),
            backend_failures: self.backend_failures,
            unreported_exits: self.unreported_exits,
            tracking: tracking.to_owned(),
            notifications: self.notifier.counters(),
            fds: fds.map(|(open, limit)| FdCount {
                open: open as u64,
                limit,
            }),
        }
    }

    fn new_request(&mut self, parts: usize, reply: oneshot::Sender<Response>) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        if parts == 0 {
            let _ = reply.send(Response::ok(Vec::new()));
        } else {
            self.replies.insert(
                id,
                PendingReply {
                    remaining: parts,
                    errors: Vec::new(),
                    reply,
                },
            );
        }
        id
    }

    /// Stops every watch, then exits.
    fn terminate(&mut self, reply: Option<oneshot::Sender<Response>>) {
        log::info!("terminating: stopping every watch");
        self.pending_starts.clear();
        let names: Vec<String> = self.watches.keys().cloned().collect();
        let (reply, _rx) = match reply {
            Some(reply) => (reply, None),
            None => {
                let (tx, rx) = oneshot::channel();
                (tx, Some(rx))
            }
        };
        let id = self.new_request(names.len().max(1), reply);
        self.terminating = Some(id);
        if names.is_empty() {
            self.answer_part(id, None);
        }
        for name in names {
            self.wait_for(&name, Goal::Unmonitored, id);
            self.command(&name, Command::Stop);
            self.settle_waiters(&name);
        }
    }

    fn terminated(&self) -> bool {
        self.terminating
            .is_some_and(|id| !self.replies.contains_key(&id))
    }
}

/// Runs a watch's stop or restart command as the watch's own process would
/// run (user, directory, environment, cgroup). The daemon's reaper
/// collects it.
fn run_helper_command(
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
    let spawned = spawn::spawn(&helper, cgroup, logs, &[])?;
    track(trees, &config.name, spawned.id.pid);
    Ok(spawned)
}

/// Counts `pid`, just started, as one of watch `name`'s processes.
fn track(trees: &mut Option<Trees>, name: &str, pid: Pid) {
    if let Some(trees) = trees {
        trees.track(pid, name);
    }
}

/// SIGKILL for `pid`'s group (`StopTimeout`) unless it is gone by then.
fn stop_timer(tx: &mpsc::UnboundedSender<Internal>, name: &str, pid: Pid, timeout: Duration) {
    let (tx, name) = (tx.clone(), name.to_owned());
    tokio::spawn(async move {
        tokio::time::sleep(timeout).await;
        let _ = tx.send(Internal::StopTimeout { name, pid });
    });
}

/// Signals a watch's process group; a process that is no group leader
/// (a daemon that did not call setsid) is signalled alone.
fn signal_group(pid: Pid, signal: Signal) {
    if let Err(Errno::ESRCH) = killpg(pid.as_nix(), signal) {
        let _ = nix::sys::signal::kill(pid.as_nix(), signal);
    }
}

fn pidfd_readable(fd: &OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(std::os::fd::AsFd::as_fd(fd), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// How all of a watch's processes are found: its cgroup, else what fork
/// tracking saw it start, and its process group.
#[derive(Clone)]
enum Reach {
    Cgroup(WatchCgroup),
    Forks(Members, String),
    Group,
}

impl Reach {
    /// Whether anything of the watch whose process group `pid` leads is
    /// left. Every member of the group descends from the watch's process,
    /// so a cgroup holds it too.
    fn alive(&self, pid: Pid) -> bool {
        match self {
            Self::Cgroup(cgroup) => cgroup.populated(),
            Self::Forks(members, name) => group_alive(pid) || !members.of(name).is_empty(),
            Self::Group => group_alive(pid),
        }
    }

    /// The watch's live processes (its process group led by `pid`, where
    /// nothing better is known).
    fn members(&self, pid: Pid) -> Vec<Pid> {
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
    fn stop(&self, pid: Pid, signal: Signal) {
        self.signal(pid, signal);
        if signal != Signal::SIGKILL && signal != Signal::SIGCONT {
            self.signal(pid, Signal::SIGCONT);
        }
    }

    fn signal(&self, pid: Pid, signal: Signal) {
        signal_group(pid, signal);
        match self {
            Self::Cgroup(cgroup) => cgroup.signal_all(signal),
            Self::Forks(members, name) => members.signal_all(name, signal),
            Self::Group => {}
        }
    }
}

fn group_alive(pgid: Pid) -> bool {
    !matches!(killpg(pgid.as_nix(), None), Err(Errno::ESRCH))
}

fn status_of(
    watch: &Watch,
    conditions: Option<&Conditions>,
    health: Option<&Health>,
) -> WatchStatus {
    let uptime = watch
        .started_at
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .map(|d| d.as_secs_f64());
    WatchStatus {
        name: watch.name().to_owned(),
        group: watch.config.group.clone(),
        state: watch.state(),
        pid: watch.process.map(|p| p.pid.get()),
        uptime_secs: uptime,
        restarts: watch.restarts,
        last_exit: watch.last_exit.as_ref().map(|e| LastExitStatus {
            status: e.status.report(),
            at: crate::exit::unix_seconds(e.at),
            pid: e.pid.get(),
        }),
        last_error: watch.last_error.clone(),
        backoff_secs: watch.backoff.map(|(d, _)| d.as_secs_f64()),
        conditions: conditions.map_or_else(Vec::new, Conditions::status),
        ready: watch.config.ready.name().to_owned(),
        health: health.map(Health::status),
        said: watch.said.clone(),
        events: watch
            .events
            .iter()
            .map(|e| EventStatus {
                at: crate::exit::unix_seconds(e.at),
                what: e.what.clone(),
            })
            .collect(),
        stdout: watch.config.stdout.clone(),
        stderr: watch.config.stderr.clone(),
    }
}
