//! The daemon: runs the watches of a config, feeds them the exit events of
//! the backend and carries out what they decide (spawn, signal, release).
//!
//! One task owns all state; backends, the control socket and timers talk to
//! it through its `select!`. It is the subreaper of everything it starts and
//! reaps everything, so no zombie is left.
//!
//! Here: the loop and what arrives in it (`Internal`). Each watch's state is
//! one `slot::WatchSlot`, each watched process one `slot::ProcSlot`. Beside
//! the loop: `exits` (the one exit path), `limited` (kernel-enforced limits),
//! `effects` (carrying out what the
//! watches decide, then the settle phase), `starts` (launches, pid files,
//! helper commands), `reach` (finding and signalling a watch's processes),
//! `requests` (control requests and the requests waiting on watches),
//! `persist` (the state file and resuming from it), `shown` (the snapshot
//! readers see, published each turn), `checks` (conditions
//! and health probes), `readiness` (sd_notify), `notices` (to the
//! notifiers), `reload` (hot reload, parsed off the loop), `signals`
//! (what the daemon's signals mean, as a daemon and as an init) and
//! `shutdown` (the ordered stop at the end, and the exit status).
mod checks;
mod effects;
mod exits;
mod feed;
mod limited;
mod manager;
mod notices;
mod persist;
mod reach;
mod readiness;
mod reload;
mod requests;
mod shown;
mod shutdown;
mod signals;
mod slot;
mod spawner;
mod starts;

use self::{
    reach::{follow_forks, tracking},
    requests::PendingReply,
    slot::{Helper, ProcSlot, WatchSlot},
    spawner::next_done,
};

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::mpsc,
};
use tokio_util::time::DelayQueue;

use crate::{
    backend::{Backend, Options},
    cgroup::Cgroups,
    config::{Config, Scheduling},
    control::{self, Incoming},
    exit::Death,
    exit_log::ExitLog,
    output::Logs,
    process::{Pid, ProcessId},
    snapshot::Publisher,
    state::StateDir,
    tree::Trees,
    watch::{Action, Now, Timer, Watch},
};
use crate::{health::Outcome, helper, notification::Notifier, sd_notify};

/// How often every watched process is checked for an exit no backend
/// reported: a safety net under the backends, which should never need it.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// How long a turn of the loop may spend starting watches at start-up.
const PENDING_SLICE: Duration = Duration::from_millis(5);

/// How often the state file is written at most while events keep coming;
/// and at least this many times as long as the last write took must pass
/// before the next, so that the file (all of 10,000 watches) takes at most
/// a tenth of the loop's time.
const SAVE_EVERY: Duration = Duration::from_millis(20);
const SAVE_SHARE: u32 = 10;

/// How often a process group is looked at while it empties after a stop.
const GROUP_DRAIN_TICK: Duration = Duration::from_millis(5);

enum Internal {
    /// The process has exited for good (its pidfd turned readable).
    Gone { name: String, pid: Pid },
    /// Nothing is left of this process group.
    GroupEmpty { name: String, death: Death },
    /// What a previous daemon left in watch `name`'s cgroup is gone.
    StraysGone { name: String },
    /// The watch's restart command `helper` has exited.
    RestartDone { name: String, helper: Pid },
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
    /// A config file was read and parsed (off the loop), for a reload.
    Loaded(reload::Loaded),
    /// What a self-daemonizing watch's launch `launch` left: the process
    /// its pid file names, or the one it left in its cgroup.
    Left {
        name: String,
        launch: u64,
        launcher: Pid,
        /// With how it was found.
        result: Result<(ProcessId, String), String>,
    },
}

pub struct Daemon {
    /// What the backend was opened with, to open it again.
    options: Options,
    /// How often the backend failed and was opened again.
    backend_failures: u64,
    /// Exits no backend reported, found by `sweep`.
    unreported_exits: u64,
    /// Every reader of `events`.
    feed: crate::events::Feed,
    /// Where `/metrics` and the web page are served.
    listening: crate::http::Listening,
    /// Kernel timestamp of each death to the loop reading it.
    detection_latency: crate::histogram::Histogram,
    /// Each death seen to its watch's next process running.
    restart_duration: crate::histogram::Histogram,
    /// Every watch and what the daemon keeps of it, by name.
    slots: BTreeMap<String, WatchSlot>,
    /// Every watched process, by pid.
    procs: HashMap<Pid, ProcSlot>,
    /// The threads that start watches' processes, where starts can be
    /// made off the loop (clone3 and cgroups).
    spawner: Option<spawner::Spawner>,
    /// Exec checks and hooks running now.
    helpers: HashMap<Pid, Helper>,
    /// The launches of `daemonizes` watches, told how they exited.
    launchers: HashMap<Pid, tokio::sync::oneshot::Sender<crate::exit::ExitStatus>>,
    /// For HTTP health checks, made when the first is probed; one that
    /// verifies certificates, one that does not.
    http: HashMap<bool, reqwest::Client>,
    notifier: Notifier,
    /// The `[daemon]` table and where the config came from; the watches'
    /// configs live in their slots.
    config: Config,
    backend: Backend,
    replies: HashMap<u64, PendingReply>,
    next_request: u64,
    /// The request the shutdown answers when every watch is down.
    terminating: Option<u64>,
    shutdown: Option<shutdown::Shutdown>,
    /// The main watch has been on its way up or up in this daemon's life:
    /// its next end is the end.
    main_began: bool,
    /// Run as a container's init (`init -c`): its signals are forwarded.
    init: Option<crate::config::InitConfig>,
    quitting: bool,
    state_file: StateDir,
    /// Every watch's exit history, beside the state file (none if it
    /// could not be opened).
    exit_log: Option<ExitLog>,
    /// The state file lacks a change no slot shows (a watch was removed,
    /// or the last write failed).
    state_stale: bool,
    /// Watches something happened to since the state file was last
    /// written (it is written only if what it holds of them changed).
    unsaved: std::collections::BTreeSet<String>,
    /// When it was, and how long to wait from then before the next.
    last_save: Instant,
    save_pause: Duration,
    cgroups: Option<Cgroups>,
    /// Where the memory and pids controllers are, for watches' limits.
    resources: crate::resources::Host,
    /// Fork tracking, where there are no cgroups.
    trees: Option<Trees>,
    /// What the daemon's own `oom_score_adj` is, and why not what it
    /// asked for.
    oom: crate::oom::Protection,
    logs: Logs,
    /// Watches to start when the daemon comes up, in start order, started
    /// a slice per loop turn so that the control socket answers (and
    /// restarts happen) while ten thousand of them start.
    pending_starts: std::collections::VecDeque<String>,
    /// What watches decided and the daemon has yet to carry out.
    effects: std::collections::VecDeque<(String, Action)>,
    /// Watches that changed since the last settle phase.
    touched: std::collections::BTreeSet<String>,
    /// What `status` (and every other reader) sees, and the watches whose
    /// entry there may be out of date.
    publisher: Publisher,
    unpublished: std::collections::BTreeSet<String>,
    /// Watches were added or removed, or their `after` changed.
    order_stale: bool,
    /// Whether the last version published was settled, and when it was.
    published_settled: bool,
    last_publish: Instant,
    /// How long after it the next may be, unless forced (`shown`).
    publish_pause: Duration,
    /// A client was answered (or its request handled) since the last
    /// publish: the next publishes at once.
    answered: bool,
    /// The delays the watches asked for, with the name and serial of the
    /// slot that asked.
    timers: DelayQueue<(String, u64, Timer)>,
    tx: mpsc::UnboundedSender<Internal>,
    rx: mpsc::UnboundedReceiver<Internal>,
}

/// How the daemon is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `supervisor run`.
    Daemon,
    /// `supervisor init -c`: a container's init, which forwards its
    /// signals and runs on without a control socket if it cannot serve one.
    Init,
}

/// Runs the daemon until `quit` or `terminate`. `ready` (from
/// `--daemonize`) gets a line once the socket is served and every watch
/// has been resumed or started. Returns the exit code: the main watch's
/// status, else 0.
pub async fn run(
    config: Config,
    state_file: StateDir,
    ready: Option<OwnedFd>,
    role: Role,
) -> Result<u8> {
    // After `--daemonize`, this is another process than the one that
    // took the lock.
    state_file.claim();
    match crate::limits::raise_nofile() {
        Ok(limit) => log::info!("file descriptor limit: {limit}"),
        Err(e) => log::warn!("cannot raise the file descriptor limit: {e}"),
    }
    // Before any thread is made: the loop runs on this one.
    if config.daemon.scheduling == Scheduling::Realtime {
        match crate::sched::realtime() {
            Ok(()) => {
                log::info!("scheduling: SCHED_FIFO priority 1 (what it starts runs normally)")
            }
            Err(e) => log::warn!("scheduling = \"realtime\": {e}; running as a normal process"),
        }
    }
    // Before the first child: each sets its own from what the daemon has.
    let oom = crate::oom::protect(config.daemon.oom_score_adj);
    match &oom.error {
        None => log::info!("oom_score_adj: {}", oom.now),
        Some(e) => log::warn!(
            "oom_score_adj: cannot set {} ({e}); it stays {}",
            oom.wanted,
            oom.now
        ),
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
    if role == Role::Init {
        crate::spawn::inherit_unset_output();
    }
    let (control_tx, mut control_rx) = mpsc::unbounded_channel::<Incoming>();
    let (publisher, snapshot) = Publisher::new();
    let (cgroups, trees) = tracking(&config, state_file.instance())?;
    let feed = crate::events::feed();
    let listening = crate::http::listen(
        &config.daemon,
        &snapshot,
        || {
            crate::sampler::start(
                snapshot.clone(),
                cgroups.as_ref().map(|c| c.base().to_owned()),
            )
        },
        control_tx.clone(),
        &feed,
    )?;
    let in_flight = match control::serve(&config.daemon.socket, control_tx, snapshot, feed.clone())
    {
        Ok(in_flight) => Some(in_flight),
        // An init without its socket still runs the container; only the
        // CLI cannot reach it.
        Err(e) if role == Role::Init => {
            log::warn!(
                "no control socket ({e:#}): running without one, the CLI cannot reach this init"
            );
            None
        }
        Err(e) => return Err(e),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    // Off-loop starts need clone3 (the fd slots), and fork tracking sees
    // a process only from the moment the loop knows it: with cgroups only.
    let spawner = match (&cgroups, crate::clone3::available()) {
        (Some(_), true) => spawner::Spawner::start()
            .inspect_err(|e| log::warn!("{e:#}; starting processes on the loop"))
            .ok(),
        _ => None,
    };
    let mut config = config;
    let init = config.init;
    let mut daemon = Daemon {
        options,
        backend_failures: 0,
        unreported_exits: 0,
        listening,
        feed,
        detection_latency: Default::default(),
        restart_duration: Default::default(),
        slots: std::mem::take(&mut config.watches)
            .into_iter()
            .map(|w| (w.name.clone(), WatchSlot::new(Watch::new(w))))
            .collect(),
        procs: HashMap::new(),
        spawner,
        helpers: HashMap::new(),
        launchers: HashMap::new(),
        http: HashMap::new(),
        notifier: Notifier::new(&config.notify),
        config,
        backend,
        replies: HashMap::new(),
        next_request: 0,
        terminating: None,
        shutdown: None,
        main_began: false,
        init: (role == Role::Init).then_some(init),
        quitting: false,
        state_file,
        exit_log: None,
        state_stale: false,
        unsaved: Default::default(),
        last_save: Instant::now(),
        save_pause: SAVE_EVERY,
        cgroups,
        resources: crate::resources::Host::discover(crate::cgroup::mount().ok().as_deref()),
        trees,
        oom,
        logs: Logs::default(),
        pending_starts: Default::default(),
        effects: Default::default(),
        touched: Default::default(),
        publisher,
        unpublished: Default::default(),
        order_stale: true,
        published_settled: false,
        last_publish: Instant::now(),
        publish_pause: Duration::ZERO,
        answered: false,
        timers: DelayQueue::new(),
        tx,
        rx,
    };
    daemon.resume();
    daemon.settle();
    let mut ready = ready;
    let mut sigchld = signal(SignalKind::child())?;
    let mut signals = signals::Signals::open(role == Role::Init)?;
    // Said once every watch of the config has its first process (or its
    // start failed): with spawner threads, the last starts are made after
    // the loop has handed them over.
    let mut announced = false;
    let mut manager = manager::Manager::from_env();
    let save_wanted = daemon.publisher.save_wanted.clone();
    let mut sweep = tokio::time::interval_at((Instant::now() + SWEEP_EVERY).into(), SWEEP_EVERY);
    loop {
        if !announced && daemon.starting() == 0 {
            daemon.announce(ready.take());
            if let Some(manager) = &mut manager {
                manager.ready(&daemon);
            }
            announced = true;
        }
        let next_check = daemon.next_check();
        let shutdown_deadline = daemon.shutdown_deadline();
        tokio::select! {
            biased;
            // First, so that a busy loop still pings; a wedged one does not.
            tick = manager::Manager::next(&mut manager) => {
                if let Some(manager) = &mut manager {
                    manager.on_tick(tick, &daemon);
                }
            }
            event = daemon.backend.next_exit() => match event {
                Ok(event) => daemon.on_exit(event),
                Err(e) => daemon.backend_failed(e)?,
            },
            Some(internal) = daemon.rx.recv() => daemon.on_internal(internal),
            Some(due) = std::future::poll_fn(|cx| daemon.timers.poll_expired(cx)) => {
                daemon.timer_fired(due.into_inner());
            }
            _ = tokio::time::sleep_until(next_check.into()) => daemon.check_conditions(),
            result = follow_forks(&mut daemon.trees) => {
                if let Err(e) = result {
                    log::error!("fork tracking stopped: {e:#}; tracking process groups only");
                    daemon.trees = None;
                }
            }
            Some(incoming) = control_rx.recv() => daemon.on_request(incoming),
            Some(done) = next_done(&mut daemon.spawner) => daemon.spawned(done),
            _ = sigchld.recv() => daemon.reap(),
            signal = signals.next() => daemon.on_signal(signal),
            _ = sleep_until_some(shutdown_deadline) => daemon.shutdown_overdue(),
            _ = sweep.tick() => daemon.sweep(),
            // What was held back while watches kept changing.
            _ = tokio::time::sleep_until((daemon.last_publish + daemon.publish_pause).into()), if !daemon.unpublished.is_empty() => {}
            // A reader waits for what it is shown to be in the state file.
            () = save_wanted.asked(), if daemon.state_unsaved() => {
                daemon.save_state();
            }
            () = std::future::ready(()), if !daemon.pending_starts.is_empty() => {
                daemon.start_pending();
                // The other tasks (the control socket's among them) run
                // only when this one yields, which an always-ready branch
                // never does by itself.
                tokio::task::yield_now().await;
            }
            // The state file is written once a burst of events is handled
            // (the last branch of the biased select runs only when nothing
            // else is ready): at once after a quiet stretch, and at most
            // every `save_pause` while events keep coming. A thousand watches
            // restarting at once, each start coming back from a spawner
            // thread on its own, would otherwise rewrite it a thousand
            // times.
            _ = tokio::time::sleep_until((daemon.last_save + daemon.save_pause).into()), if daemon.state_unsaved() => {
                daemon.save_state();
                daemon.publish_snapshot();
                continue;
            }
        }
        daemon.settle();
        if daemon.quitting || daemon.terminating.is_some() {
            if let Some(manager) = &mut manager {
                manager.stopping();
            }
        }
        // Also while something is always ready (the starts at start-up),
        // and at once for a reader waiting for it.
        if daemon.state_unsaved()
            && (save_wanted.take() || daemon.last_save.elapsed() >= daemon.save_pause)
        {
            daemon.save_state();
        }
        // Before the loop next yields, so that a client answered in this
        // turn (on this thread) then sees what the answer said.
        daemon.publish_snapshot();
        if daemon.quitting && daemon.spawner.as_ref().is_some_and(|s| s.in_flight() > 0) {
            // What is being started is followed (and saved) first: it
            // would run on unwatched, and be started again by the next
            // daemon.
            if let Some(spawner) = &mut daemon.spawner {
                spawner.drop_waiting();
            }
            continue;
        }
        if daemon.quitting || daemon.terminated() {
            daemon.save_state();
            break;
        }
    }
    if daemon.terminated() {
        for cgroup in daemon.slots.values().filter_map(|s| s.cgroup.as_ref()) {
            cgroup.remove();
        }
        for limits in daemon.slots.values().filter_map(|s| s.limits.as_ref()) {
            limits.remove();
        }
        if let Some(cgroups) = &daemon.cgroups {
            cgroups.remove();
        }
    }
    daemon.logs.flush();
    if let Some(in_flight) = in_flight {
        let _ = std::fs::remove_file(&daemon.config.daemon.socket);
        in_flight.drain(Duration::from_secs(1)).await;
    }
    Ok(daemon.exit_code())
}

/// Until `at`; never without one.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Daemon {
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
            .slots
            .values()
            .map(|s| &s.watch)
            .filter_map(|w| w.process())
            .filter(|p| self.procs.contains_key(&p.pid))
            .collect();
        for id in running {
            if let Err(e) = self.backend.watch(id) {
                log::error!("cannot watch process {} again: {e:#}", id.pid);
            }
        }
        Ok(())
    }

    fn on_internal(&mut self, internal: Internal) {
        match internal {
            Internal::Gone { name, pid } => {
                if self.procs.contains_key(&pid) {
                    self.confirm_gone(name, pid, None);
                }
            }
            Internal::GroupEmpty { name, death } => self.finish_exit(&name, death),
            Internal::Probed { name, pid, outcome } => self.probed(name, pid, outcome),
            Internal::Loaded(loaded) => self.finish_load(loaded),
            Internal::HelperDone(finished) => self.helper_done(finished),
            Internal::Notified { name, message } => self.notified(name, message),
            Internal::Left {
                name,
                launch,
                launcher,
                result,
            } => self.launch_left(&name, launch, launcher, result),
            Internal::RestartDone { name, helper } => {
                let Some(slot) = self.slots.get_mut(&name) else {
                    return;
                };
                if slot.command.as_ref().is_some_and(|c| c.pid == helper) {
                    slot.command = None;
                    let actions = slot.watch.restart_command_done(Now::read());
                    self.act(&name, actions);
                }
            }
            Internal::StraysGone { name } => self.strays_gone(&name),
        }
    }

    /// A delay watch `name` asked for is over; it goes to the slot that
    /// asked for it, not to a later watch of the same name.
    fn timer_fired(&mut self, (name, serial, timer): (String, u64, Timer)) {
        let Some(slot) = self.slots.get_mut(&name).filter(|s| s.serial == serial) else {
            return;
        };
        let actions = slot.watch.timer_fired(timer, Now::read());
        self.act(&name, actions);
    }
}
