//! The control protocol's types: what a client sends and what the daemon
//! answers, typed on both sides. Newline-delimited JSON, one request and
//! one answer per line; the shape a script sees is written down in
//! docs/protocol.md. Here only data: the socket is `control`'s, what a
//! request does is the daemon's.
use std::{fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

/// A watch's state, in god's vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Unmonitored,
    Init,
    Up,
    Start,
    Restart,
    Stop,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unmonitored => "unmonitored",
            Self::Init => "init",
            Self::Up => "up",
            Self::Start => "start",
            Self::Restart => "restart",
            Self::Stop => "stop",
        })
    }
}

/// What an operator asked of a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Start,
    Stop,
    Restart,
    Monitor,
    Unmonitor,
}

impl Command {
    /// The CLI verb that asks for it.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Monitor => "monitor",
            Self::Unmonitor => "unmonitor",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status {
        target: Option<String>,
    },
    Command {
        command: Command,
        target: Option<String>,
    },
    /// Sends a signal (by name or number) to the process group of each
    /// running target.
    Signal {
        target: String,
        signal: String,
    },
    /// Stops a watch and forgets it.
    Remove {
        name: String,
    },
    /// Loads a config file or directory in place of the running one.
    Load {
        path: PathBuf,
        missing: Missing,
    },
    /// The daemon itself: backend, its counters, process tracking.
    Info,
    /// Everything that happens to the target (or every watch) from now
    /// on, one `StreamEvent` a line after the `Response`; with
    /// `since_secs`, what the histories kept of that many seconds first.
    Events {
        target: Option<String>,
        #[serde(default)]
        since_secs: Option<f64>,
    },
    Quit,
    Terminate,
}

impl Request {
    /// How the daemon's log names a request that changes something
    /// (`stop web`, `load /etc/app.toml`); `None` for those that only read.
    pub fn audit_line(&self) -> Option<String> {
        let everything = "every watch";
        Some(match self {
            Self::Status { .. } | Self::Info | Self::Events { .. } => return None,
            Self::Command { command, target } => format!(
                "{} {}",
                command.verb(),
                target.as_deref().unwrap_or(everything)
            ),
            Self::Signal { target, signal } => format!("signal {target} {signal}"),
            Self::Remove { name } => format!("remove {name}"),
            Self::Load { path, missing } => {
                format!("load {} (missing: {missing:?})", path.display())
            }
            Self::Quit => "quit".to_owned(),
            Self::Terminate => "terminate".to_owned(),
        })
    }
}

/// Whether `target` (of a request) names the watch `name` of `group`:
/// by its name, by its group, or (for an instance, `web@2`) by the base
/// name all its instances share (`web`).
pub fn names(target: &str, name: &str, group: Option<&str>) -> bool {
    name == target || group == Some(target) || base_name(name) == Some(target)
}

/// The base name of an instance (`web` of `web@2`); `None` for a watch
/// that is not one (`@` is in no name a config may give).
pub fn base_name(name: &str) -> Option<&str> {
    name.split_once('@').map(|(base, _)| base)
}

/// The error of a request whose target names nothing.
pub fn no_target(target: &str) -> String {
    format!("no watch or group named '{target}'")
}

/// What `load` does with running watches the new config no longer has.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Keep them as they are: running and watched.
    #[default]
    Leave,
    /// Stop them; they stay listed, unmonitored.
    Stop,
    /// Stop them and forget them.
    Remove,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<WatchStatus>,
    /// The daemon (for `info` and `status`), or what a `load` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
}

impl Response {
    pub fn ok(watches: Vec<WatchStatus>) -> Self {
        Self {
            ok: true,
            error: None,
            watches,
            summary: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            watches: Vec::new(),
            summary: None,
        }
    }
}

/// One watch, as `status` shows it (`status --json` prints a list of these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchStatus {
    pub name: String,
    pub group: Option<String>,
    pub state: State,
    /// The process it runs now.
    pub pid: Option<u32>,
    pub uptime_secs: Option<f64>,
    /// Starts after the first that nobody asked for (crashes, failed
    /// starts, restarts).
    pub restarts: u32,
    pub last_exit: Option<LastExitStatus>,
    /// Why the last start failed, until one works.
    pub last_error: Option<String>,
    /// The crash-loop delay, while the watch is held back.
    pub backoff_secs: Option<f64>,
    #[serde(default)]
    pub conditions: Vec<ConditionStatus>,
    /// `started`, `health` or `notify`.
    pub ready: String,
    /// What the kernel enforces: `memory_max` and `memory_high` (bytes),
    /// `cpu_max` (percent of one CPU) and `pids_max`.
    #[serde(default)]
    pub memory_max: Option<u64>,
    #[serde(default)]
    pub memory_high: Option<u64>,
    #[serde(default)]
    pub cpu_max_percent: Option<f64>,
    #[serde(default)]
    pub pids_max: Option<u64>,
    pub health: Option<HealthStatus>,
    /// What the process last said of itself (sd_notify `STATUS=`).
    pub said: Option<String>,
    /// Recent transitions and conditions, oldest first.
    #[serde(default)]
    pub events: Vec<EventStatus>,
    /// Its processes' deaths since the daemon started, by kind.
    #[serde(default)]
    pub exit_counts: ExitCounts,
    /// Recent exits (the last is `last_exit`), oldest first.
    #[serde(default)]
    pub exits: Vec<LastExitStatus>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

/// As `status --json` prints it (one line), for messages.
impl fmt::Display for WatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self) {
            Ok(json) => f.write_str(&json),
            Err(_) => write!(f, "{self:?}"),
        }
    }
}

/// How a process ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatusReport {
    /// In words: `exited 3`, `killed by SIGKILL (core dumped)`.
    pub text: String,
    pub code: Option<u8>,
    /// The signal's name (`SIGKILL`).
    pub signal: Option<String>,
    pub core_dumped: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastExitStatus {
    pub status: ExitStatusReport,
    /// Unix time, in seconds.
    pub at: f64,
    pub pid: u32,
    /// Why it died, in one line: `killed by SIGKILL from pid 4242 (bash,
    /// uid 1000, parent sshd 4100) after 3h12m`, `stopped by the
    /// supervisor after 2s: ...`.
    #[serde(default)]
    pub cause: String,
    /// Where the signal that killed it came from (the eBPF backend only).
    #[serde(default)]
    pub origin: Option<crate::origin::OriginReport>,
    /// How long it ran, where its start is known.
    #[serde(default)]
    pub lifetime_secs: Option<f64>,
    /// The OOM killer chose it (the eBPF backend only).
    #[serde(default)]
    pub oom: Option<crate::origin::OomReport>,
    /// Its peak resident memory (bytes) and CPU time (user + system) in
    /// the life that ended, where the daemon reaped it (not a process a
    /// previous daemon started).
    #[serde(default)]
    pub peak_rss: Option<u64>,
    #[serde(default)]
    pub cpu_secs: Option<f64>,
    /// Where its core dump went, if it dumped one: `{"kind": "file",
    /// "path": ...}`, `{"kind": "piped", "handler": ...}` or `{"kind":
    /// "missing", "pattern": ..., "dir": ...}`.
    #[serde(default)]
    pub core: Option<crate::core_file::CoreFile>,
    /// The last lines it wrote to its stdout and its stderr (where the
    /// daemon carries them: a log file is configured), oldest first.
    #[serde(default)]
    pub stdout: Vec<String>,
    #[serde(default)]
    pub stderr: Vec<String>,
}

/// What a line of the event stream is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// A transition or a condition, as `events` in `status` shows it.
    Event,
    /// A process died; `exit` says how and why.
    Exit,
    /// A health check's result.
    Check,
    /// A notification was handed to the notifiers.
    Notification,
    /// About the stream itself: where a replay was cut, or why the stream
    /// ends (the reader fell behind).
    Stream,
}

/// One line of `supervisor events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// Unix time, in seconds.
    pub at: f64,
    /// Empty for a `stream` line.
    pub watch: String,
    pub kind: EventKind,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<LastExitStatus>,
}

/// Deaths by kind: a small fixed set (metrics label them by it), never a
/// sender's name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCounts {
    /// Exited with a code.
    pub exit: u64,
    /// Killed by a signal, no core.
    pub signal: u64,
    /// Killed with a core dump.
    pub core: u64,
    /// Killed by the OOM killer.
    pub oom: u64,
    /// Ended by a limit: SIGXCPU, SIGXFSZ, or an exit after `pids_max`
    /// refused it forks.
    pub limit: u64,
    /// Stopped, restarted or killed by the supervisor.
    pub supervisor: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventStatus {
    /// Unix time, in seconds.
    pub at: f64,
    pub what: String,
}

/// A `memory` or `cpu` condition of a watch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConditionStatus {
    /// `memory` or `cpu`.
    pub condition: String,
    /// The limit in words: `150.0 MB`, `90%`.
    pub limit: String,
    pub every_secs: f64,
    /// N of the last M checks: `[N, M]`.
    pub times: [u32; 2],
    /// `restart`, `stop` or `notify`.
    pub action: String,
    /// The last measurement in words, once there is one.
    pub last: Option<String>,
    /// The last measurement: bytes, or percent of one core.
    pub last_value: Option<f64>,
    /// How many of the last M checks were over the limit.
    pub recent_over: usize,
    pub fired: u32,
}

/// A watch's health check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// The probe in words: `http http://127.0.0.1:8080/health`.
    pub check: String,
    pub every_secs: f64,
    pub timeout_secs: f64,
    pub times: [u32; 2],
    pub start_period_secs: f64,
    pub action: String,
    pub last: Option<ProbeStatus>,
    pub recent_failures: usize,
    pub checks: u64,
    pub failures: u64,
    pub fired: u32,
}

/// The result of one health probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    pub ok: bool,
    /// What the probe saw, e.g. `HTTP 503 (expected 200-399)`.
    pub message: String,
    /// Milliseconds.
    pub latency: f64,
    /// Unix time, in seconds.
    pub at: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CgroupsInfo {
    pub dir: PathBuf,
    pub delegated: bool,
}

/// The daemon itself, as `info` shows it (and the foot of `status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub pid: u32,
    pub config: PathBuf,
    pub watches: usize,
    /// Starts not made yet: at start-up, the config's watches still to be
    /// started (the daemon starts them a slice at a time, serving requests
    /// meanwhile); 0 once every one has its process (or its start failed),
    /// which is when it prints "supervisor running".
    #[serde(default)]
    pub starting: usize,
    /// The exit backend in use: `ebpf`, `netlink`, `pidfd` or `poll`.
    pub backend: String,
    pub counters: BackendCounters,
    /// How often the backend failed and was opened again.
    pub backend_failures: u64,
    /// Exits no backend reported, found by the periodic check.
    pub unreported_exits: u64,
    /// `cgroup`, `fork` or `process group only`.
    pub tracking: String,
    /// With cgroups, the folder of the watches' cgroups, and whether it
    /// is in a cgroup delegated to the daemon's unit.
    #[serde(default)]
    pub cgroups: Option<CgroupsInfo>,
    /// The daemon's own `oom_score_adj`, what it asked for and why it
    /// has not that.
    #[serde(default)]
    pub oom_score_adj: Option<crate::oom::Protection>,
    pub notifications: NotificationCounters,
    /// Open fds and the limit (`info` only: counting them lists
    /// /proc/self/fd).
    pub fds: Option<FdCount>,
    /// The daemon's version.
    #[serde(default)]
    pub version: String,
    /// Where Prometheus scrapes it (`[daemon] metrics`), if it serves.
    #[serde(default)]
    pub metrics: Option<String>,
    /// Where the web page is served (`[daemon] web`), if it is.
    #[serde(default)]
    pub web: Option<String>,
    /// From the kernel's timestamp of each death to the daemon reading it
    /// (eBPF and netlink, whose records carry one).
    #[serde(default)]
    pub detection_latency: crate::histogram::Histogram,
    /// From each death the daemon saw to its watch's new process running
    /// (backoff included).
    #[serde(default)]
    pub restart_duration: crate::histogram::Histogram,
}

/// What the exit backend counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendCounters {
    /// Process deaths the kernel program saw, watched or not (eBPF only).
    pub kernel_group_exits: Option<u64>,
    /// Records the kernel delivered to userspace.
    pub delivered: u64,
    /// Records the kernel could not deliver (ring or socket buffer full).
    pub dropped: u64,
    /// Times the backend re-checked every process after a loss.
    pub resyncs: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationCounters {
    pub webhooks_delivered: u64,
    pub webhooks_failed: u64,
    /// Documents dropped because the queue was full.
    pub dropped: u64,
    pub hooks_failed: u64,
    pub hooks_waiting: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdCount {
    pub open: u64,
    pub limit: u64,
}

/// What a `load` changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSummary {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    /// Changed only the values of their limits: set again, not restarted.
    #[serde(default)]
    pub limits_changed: Vec<String>,
    pub unchanged: Vec<String>,
    pub missing: Vec<String>,
    pub missing_action: Missing,
    /// Instances beyond a watch's new `instances`: stopped and removed,
    /// whatever `missing_action` says.
    #[serde(default)]
    pub dropped: Vec<String>,
}

/// The `summary` of an answer: the daemon (`info`, `status`) or what a
/// `load` changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Summary {
    Info(Box<DaemonInfo>),
    Load(LoadSummary),
}

impl fmt::Display for LoadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} unchanged, {} missing ({:?})",
            self.added.len(),
            self.changed.len(),
            self.unchanged.len(),
            self.missing.len(),
            self.missing_action
        )?;
        if !self.limits_changed.is_empty() {
            write!(
                f,
                "; {} with new limits, set in place",
                self.limits_changed.len()
            )?;
        }
        if !self.dropped.is_empty() {
            write!(
                f,
                "; {} instance(s) fewer, stopped and removed",
                self.dropped.len()
            )?;
        }
        Ok(())
    }
}
