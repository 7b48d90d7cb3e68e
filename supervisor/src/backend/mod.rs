//! Where exit events come from: four sources behind one interface.
//!
//! A backend is told which processes to watch (pid + start time) and yields
//! one `ExitEvent` per death of one of them, whatever the source. Backends
//! know processes, never watches, names or policy; they never signal or reap
//! anything. Every backend keeps a `Tracked` set so that it can
//! resynchronise (re-check each process) when it may have missed a record,
//! and so that a death is reported once even when two paths see it.
use std::{
    collections::{HashMap, HashSet, VecDeque},
    fmt,
    time::Duration,
};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::{
    exit::ExitEvent,
    process::{self, Pid, ProcessId, StartTime},
};

pub mod ebpf;
mod kernel_layout;
pub mod netlink;
pub mod pidfd;
pub mod poll;
mod tracefs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    Ebpf,
    Netlink,
    Pidfd,
    Poll,
}

impl BackendKind {
    /// The order `auto` tries them in: fastest and most informative first.
    pub const AUTO_ORDER: [BackendKind; 4] = [Self::Ebpf, Self::Netlink, Self::Pidfd, Self::Poll];

    pub fn name(self) -> &'static str {
        match self {
            Self::Ebpf => "ebpf",
            Self::Netlink => "netlink",
            Self::Pidfd => "pidfd",
            Self::Poll => "poll",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which backend to use: `auto` (the first of `AUTO_ORDER` that opens) or
/// one by name; what `[daemon] backend` and `--backend` say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendChoice {
    #[default]
    Auto,
    Only(BackendKind),
}

impl BackendChoice {
    /// The backends this choice would try, in order.
    pub fn candidates(self) -> Vec<BackendKind> {
        match self {
            Self::Auto => BackendKind::AUTO_ORDER.to_vec(),
            Self::Only(kind) => vec![kind],
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        BackendKind::AUTO_ORDER
            .into_iter()
            .find(|k| text.eq_ignore_ascii_case(k.name()))
            .map(Self::Only)
            .ok_or_else(|| format!("unknown backend '{text}' (auto, ebpf, netlink, pidfd or poll)"))
    }
}

/// Which deaths a backend reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only processes passed to `watch`.
    Watched,
    /// Every process on the machine (for `trace`); eBPF and netlink only.
    All,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub scope: Scope,
    /// How often the poll backend looks.
    pub poll_interval: Duration,
    /// eBPF ring buffer size in bytes (a power of two, at least a page).
    pub ring_bytes: Option<u32>,
    /// Netlink socket receive buffer in bytes.
    pub netlink_rcvbuf: Option<usize>,
    /// Decide group death from `signal_struct.live`, as on kernels whose
    /// tracepoint has no `group_dead` field, even where it has one (so
    /// that path is tested on new kernels too).
    pub ebpf_ignore_group_dead_field: bool,
    /// Also report each signal that could end a watched process, as it is
    /// sent (`trace --signals`; eBPF only).
    pub report_signals: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            scope: Scope::Watched,
            poll_interval: Duration::from_secs(1),
            ring_bytes: None,
            netlink_rcvbuf: None,
            ebpf_ignore_group_dead_field: false,
            report_signals: false,
        }
    }
}

/// Why `auto` passed over a backend.
#[derive(Clone, Debug, Serialize)]
pub struct Refusal {
    pub backend: BackendKind,
    pub reason: String,
}

/// A fault for the reliability tests, in debug builds only: with
/// `SUPERVISOR_FAULT_BACKEND=N`, the Nth exit event is swallowed and the
/// backend fails instead, as one whose ring buffer or socket broke would.
fn injected_failure() -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    use std::sync::atomic::{AtomicU64, Ordering};
    static LEFT: std::sync::OnceLock<AtomicU64> = std::sync::OnceLock::new();
    let left = LEFT.get_or_init(|| {
        AtomicU64::new(
            std::env::var("SUPERVISOR_FAULT_BACKEND")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        )
    });
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)) == Ok(1)
}

/// Counters a backend keeps about itself, for `check` and `status`.
pub use crate::protocol::BackendCounters as Counters;

pub struct Backend {
    imp: Imp,
}

enum Imp {
    Ebpf(Box<ebpf::EbpfBackend>),
    Netlink(netlink::NetlinkBackend),
    Pidfd(pidfd::PidfdBackend),
    Poll(poll::PollBackend),
}

impl Backend {
    /// Opens one backend, or says why it cannot run here.
    pub fn open(kind: BackendKind, options: &Options) -> Result<Self> {
        if matches!(kind, BackendKind::Ebpf | BackendKind::Netlink) {
            if let Some(why) = crate::kernel::foreign_pid_namespace() {
                anyhow::bail!("{why}");
            }
        }
        let imp = match kind {
            BackendKind::Ebpf => Imp::Ebpf(Box::new(ebpf::EbpfBackend::open(options)?)),
            BackendKind::Netlink => Imp::Netlink(netlink::NetlinkBackend::open(options)?),
            BackendKind::Pidfd => Imp::Pidfd(pidfd::PidfdBackend::open(options)?),
            BackendKind::Poll => Imp::Poll(poll::PollBackend::open(options)?),
        };
        Ok(Self { imp })
    }

    /// Opens what `choice` says: that backend, or the first that works.
    pub fn open_chosen(choice: BackendChoice, options: &Options) -> Result<Self> {
        match choice {
            BackendChoice::Only(kind) => {
                Self::open(kind, options).with_context(|| format!("backend {kind}"))
            }
            BackendChoice::Auto => Ok(Self::open_auto(options)?.0),
        }
    }

    /// Tries each backend in `AUTO_ORDER`, logging why each refusal
    /// happened, and returns the first that opens.
    pub fn open_auto(options: &Options) -> Result<(Self, Vec<Refusal>)> {
        let mut refusals = Vec::new();
        for kind in BackendKind::AUTO_ORDER {
            match Self::open(kind, options) {
                Ok(backend) => {
                    log::info!("exit backend: {kind}");
                    return Ok((backend, refusals));
                }
                Err(err) => {
                    let reason = format!("{err:#}");
                    log::warn!("exit backend {kind} unavailable: {reason}");
                    refusals.push(Refusal {
                        backend: kind,
                        reason,
                    });
                }
            }
        }
        let all: Vec<String> = refusals
            .iter()
            .map(|r| format!("{}: {}", r.backend, r.reason))
            .collect();
        anyhow::bail!("no exit backend can run here ({})", all.join("; "))
    }

    pub fn kind(&self) -> BackendKind {
        match self.imp {
            Imp::Ebpf(_) => BackendKind::Ebpf,
            Imp::Netlink(_) => BackendKind::Netlink,
            Imp::Pidfd(_) => BackendKind::Pidfd,
            Imp::Poll(_) => BackendKind::Poll,
        }
    }

    /// Why deaths it reports never say who sent the fatal signal; `None`
    /// when they do (eBPF with its signal program).
    pub fn senders_unseen(&self) -> Option<&'static str> {
        match &self.imp {
            Imp::Ebpf(b) if b.sees_senders() => None,
            Imp::Ebpf(_) => Some("the eBPF signal program did not load"),
            Imp::Netlink(_) => Some("the netlink backend cannot see senders"),
            Imp::Pidfd(_) => Some("the pidfd backend cannot see senders"),
            Imp::Poll(_) => Some("the poll backend cannot see senders"),
        }
    }

    /// Starts watching `process`. If it is already gone (or its pid now
    /// belongs to another process) its death is reported by `next_exit`
    /// with an unknown or peeked status; the stranger is never watched.
    pub fn watch(&mut self, process: ProcessId) -> Result<()> {
        match &mut self.imp {
            Imp::Ebpf(b) => b.watch(process),
            Imp::Netlink(b) => b.watch(process),
            Imp::Pidfd(b) => b.watch(process),
            Imp::Poll(b) => b.watch(process),
        }
    }

    pub fn unwatch(&mut self, pid: Pid) -> Result<()> {
        match &mut self.imp {
            Imp::Ebpf(b) => b.unwatch(pid),
            Imp::Netlink(b) => b.unwatch(pid),
            Imp::Pidfd(b) => b.unwatch(pid),
            Imp::Poll(b) => b.unwatch(pid),
        }
    }

    /// The next death. Cancel-safe: dropping the future loses nothing.
    pub async fn next_exit(&mut self) -> Result<ExitEvent> {
        let event = match &mut self.imp {
            Imp::Ebpf(b) => b.next_exit().await,
            Imp::Netlink(b) => b.next_exit().await,
            Imp::Pidfd(b) => b.next_exit().await,
            Imp::Poll(b) => b.next_exit().await,
        }?;
        if injected_failure() {
            anyhow::bail!(
                "injected failure (SUPERVISOR_FAULT_BACKEND): died with an exit in flight"
            );
        }
        Ok(event)
    }

    /// The signals `Options::report_signals` asked for, once: `None`
    /// unless this is eBPF with its signal program running.
    pub fn take_signals(&mut self) -> Option<ebpf::SignalTap> {
        match &mut self.imp {
            Imp::Ebpf(b) => b.take_signals(),
            _ => None,
        }
    }

    pub fn counters(&self) -> Counters {
        match &self.imp {
            Imp::Ebpf(b) => b.counters(),
            Imp::Netlink(b) => b.counters(),
            Imp::Pidfd(b) => b.counters(),
            Imp::Poll(b) => b.counters(),
        }
    }
}

/// The processes a backend watches and the deaths it has yet to hand out.
#[derive(Default)]
struct Tracked {
    processes: HashMap<Pid, StartTime>,
    ready: VecDeque<ExitEvent>,
}

impl Tracked {
    fn insert(&mut self, process: ProcessId) {
        self.processes.insert(process.pid, process.start);
    }

    fn remove(&mut self, pid: Pid) -> Option<ProcessId> {
        self.processes
            .remove(&pid)
            .map(|start| ProcessId { pid, start })
    }

    fn get(&self, pid: Pid) -> Option<ProcessId> {
        self.processes
            .get(&pid)
            .map(|&start| ProcessId { pid, start })
    }

    /// Hands out `event` if it is the death of a tracked process, once.
    /// A record whose start time differs is another process with the pid.
    fn report(&mut self, mut event: ExitEvent) -> bool {
        let Some(tracked) = self.get(event.pid) else {
            return false;
        };
        if event.process.is_some_and(|p| p.start != tracked.start) {
            return false;
        }
        self.processes.remove(&event.pid);
        event.process = Some(tracked);
        self.ready.push_back(event);
        true
    }

    /// Checks that a newly watched process still runs; reports it dead at
    /// once if not. Call after the backend's own registration, so that a
    /// death between the two is seen by one path or the other.
    fn confirm_alive(&mut self, process: ProcessId) -> bool {
        if process::is_alive(process, &HashSet::new()) {
            return true;
        }
        self.report(ExitEvent::discovered(process));
        false
    }

    /// Re-checks every tracked process and reports the dead. Returns the
    /// processes found dead, so the backend can drop its own handles.
    fn resync(&mut self) -> Vec<ProcessId> {
        let dead: Vec<ProcessId> = self
            .processes
            .iter()
            .map(|(&pid, &start)| ProcessId { pid, start })
            .filter(|&p| !process::is_alive(p, &HashSet::new()))
            .collect();
        for &p in &dead {
            self.report(ExitEvent::discovered(p));
        }
        dead
    }

    fn pop(&mut self) -> Option<ExitEvent> {
        self.ready.pop_front()
    }
}
