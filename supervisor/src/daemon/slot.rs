//! What the daemon keeps of each watch (`WatchSlot`) and of each watched
//! process (`ProcSlot`): one owner each, so that adding or removing a watch
//! or a process is one insert or one remove, and nothing is left behind in
//! a side table. Plain data: the daemon's handlers change it.
use std::{
    os::fd::OwnedFd,
    sync::atomic::{AtomicU64, Ordering},
};

use crate::{
    cgroup::WatchCgroup,
    conditions::Conditions,
    exit::ExitStatus,
    health::Health,
    origin::{OomKill, Origin},
    output::Output,
    process::Pid,
    state::SavedWatch,
    watch::Watch,
};

use super::{readiness::NotifyListener, requests::Waiter};

pub(super) struct WatchSlot {
    pub watch: Watch,
    /// Tells this slot from an earlier one of the same name (a watch
    /// removed and added again): a timer it asked for is handed back only
    /// to it.
    pub serial: u64,
    /// Its stop or restart command, while it may still run.
    pub command: Option<Command>,
    /// Its resource conditions, for the process it runs now.
    pub conditions: Option<Conditions>,
    /// Its health check, for the process it runs now.
    pub health: Option<Health>,
    /// Its `NOTIFY_SOCKET`, if it is ready on `READY=1`.
    pub notify: Option<NotifyListener>,
    /// Its cgroup, made on first use.
    pub cgroup: Option<WatchCgroup>,
    /// Requests waiting for it to be up or unmonitored.
    pub waiters: Vec<Waiter>,
    /// The launch whose pid file it waits for (a self-daemonizing program).
    pub launch: Option<u64>,
    /// To be forgotten once stopped.
    pub removing: bool,
    /// Waiting, in `start`, for those it starts `after`.
    pub ordered: bool,
    /// What the state file holds of it now (and that, serialized), to
    /// write only on change.
    pub saved: Option<(SavedWatch, String)>,
    /// What a previous daemon left in its cgroup is being killed: a start
    /// waits (the kill would take the new process too).
    pub clearing: bool,
    /// A start is waiting for that.
    pub held_spawn: bool,
    /// The streams of its process that the daemon carries.
    pub output: Output,
    /// Where its kernel-enforced limits are, once set.
    pub limits: Option<crate::resources::Applied>,
    /// Its cgroup's OOM counters, and forks refused, when its process
    /// started.
    pub oom_kills: Option<crate::resources::OomCounters>,
    /// When its last process's death was handled, until the next runs.
    pub died_at: Option<std::time::Instant>,
    pub fork_refusals: Option<u64>,
}

/// A stop or restart command the daemon runs for a watch.
pub(super) struct Command {
    pub pid: Pid,
    /// Pins the process: its group is killed only while it runs, never
    /// once its pid may name a stranger.
    pub pidfd: OwnedFd,
}

impl WatchSlot {
    pub fn new(watch: Watch) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        Self {
            watch,
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            command: None,
            conditions: None,
            health: None,
            notify: None,
            cgroup: None,
            waiters: Vec::new(),
            launch: None,
            removing: false,
            ordered: false,
            saved: None,
            clearing: false,
            held_spawn: false,
            output: Output::default(),
            limits: None,
            oom_kills: None,
            died_at: None,
            fork_refusals: None,
        }
    }
}

/// A watched process: whose it is, the pidfd that pins it, its exit
/// status if the SIGCHLD reaper got it first, and where the signal that
/// killed it came from once the backend reported it.
pub(super) struct ProcSlot {
    pub watch: String,
    pub pidfd: OwnedFd,
    pub reaped: Option<ExitStatus>,
    pub origin: Option<Origin>,
    pub oom: Option<OomKill>,
    /// What it used, once reaped.
    pub usage: Option<crate::exit::Usage>,
    /// Its name when it died, for where its core went (`%e`).
    pub comm: Option<String>,
}

impl ProcSlot {
    pub fn new(watch: &str, pidfd: OwnedFd) -> Self {
        Self {
            watch: watch.to_owned(),
            pidfd,
            reaped: None,
            origin: None,
            oom: None,
            usage: None,
            comm: None,
        }
    }
}

/// What a helper process the daemon runs is for.
pub(super) enum HelperJob {
    /// The exec health check of watch `name`'s process `process`.
    Probe {
        name: String,
        process: Pid,
        pidfd: OwnedFd,
    },
    /// A notification hook.
    Hook { what: String, pidfd: OwnedFd },
}

/// A helper process and its exit status, if the SIGCHLD reaper got it
/// before its task reported.
pub(super) struct Helper {
    pub job: HelperJob,
    pub reaped: Option<ExitStatus>,
}

impl Helper {
    pub(super) fn new(job: HelperJob) -> Self {
        Self { job, reaped: None }
    }
}

impl HelperJob {
    pub(super) fn pidfd(&self) -> &OwnedFd {
        match self {
            Self::Probe { pidfd, .. } | Self::Hook { pidfd, .. } => pidfd,
        }
    }
}
