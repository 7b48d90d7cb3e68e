//! A `[[watch]]` table: what the daemon keeps of one watch (`WatchConfig`),
//! its raw form and how it is checked, key by key; where in the file a bad
//! key is, is `config`'s.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use nix::{
    sys::signal::Signal,
    unistd::{Gid, Uid},
};
use serde::Deserialize;

use super::{
    conditions::{condition, RawCondition, Resource, ResourceCondition},
    health,
    keepalive::{Keepalive, RawKeepalive},
    logs::{log_file, LogFile, Rotation},
    values::{
        CpuMax, DirMode, GroupSpec, HumanDuration, HumanSize, MemoryMax, OomScoreAdj, Percent,
        PidsMax, SignalName, Umask, UserSpec,
    },
    HealthCheck, Readiness,
};

#[derive(Clone, Debug, PartialEq)]
pub struct WatchConfig {
    pub name: String,
    pub group: Option<String>,
    /// Watches this one starts after: it waits, when they are starting
    /// too, until they are up.
    pub after: Vec<String>,
    /// The program and its arguments; `["/bin/sh", "-c", line]` when the
    /// config asked for a shell.
    pub argv: Vec<String>,
    /// Run to stop it, instead of sending `stop_signal` (SIGKILL still
    /// follows after `stop_timeout`).
    pub stop: Option<Vec<String>>,
    /// Run to restart it in place (a reload); if the process exits, it is
    /// started again as usual.
    pub restart: Option<Vec<String>>,
    pub dir: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    /// Read at each start, under `env`.
    pub env_files: Vec<crate::env_file::EnvFile>,
    pub clear_env: bool,
    /// Made under /run before each start, the watch's user's.
    pub runtime_dirs: Vec<crate::runtime_dir::RuntimeDir>,
    pub user: Option<RunAs>,
    pub umask: Option<u32>,
    /// Its process's `oom_score_adj` (else the kernel's default, 0: never
    /// the daemon's own).
    pub oom_score_adj: Option<i16>,
    pub stdout: Option<PathBuf>,
    /// The same path as `stdout` (`stderr = "&stdout"`, or written twice):
    /// one pipe on fds 1 and 2, so that their lines stay in order.
    pub stderr: Option<PathBuf>,
    /// Each line of output in the log files begins with when it arrived.
    pub timestamps: bool,
    /// Rotation of the stdout and stderr files by size.
    pub stdout_rotation: Option<Rotation>,
    pub stderr_rotation: Option<Rotation>,
    pub stop_signal: Signal,
    pub stop_timeout: Duration,
    /// How long the `stop` command may take to end the process; then the
    /// command is killed and `stop_signal` sent (SIGKILL `stop_timeout`
    /// later).
    pub stop_grace: Duration,
    /// How long the `restart` command may take; then it is killed and the
    /// watch is stopped and started instead.
    pub restart_grace: Duration,
    /// For programs that daemonize themselves: the file they write their
    /// pid to. The supervisor follows that process, not the one it ran.
    pub pid_file: Option<PathBuf>,
    /// A program that daemonizes itself and writes no pid file: once its
    /// launch exits 0, the process it left in the watch's cgroup is
    /// followed (`survivor`). A `pid_file` wins.
    pub daemonizes: bool,
    /// When it ends for good (its process exited and is not started
    /// again), the daemon stops the others and exits with its status: a
    /// container's main program.
    pub main: bool,
    /// How long a start may take: for a `pid_file` watch, until the file
    /// names a live process of ours; with `ready`, until it is ready.
    pub start_grace: Duration,
    /// When a started process counts as up.
    pub ready: Readiness,
    /// systemd's `WatchdogSec=`: once up, its process must send
    /// `WATCHDOG=1` at least this often, or it is hung.
    pub watchdog: Option<Duration>,
    /// What a hung process is sent (SIGABRT, so that its core shows
    /// where it hung).
    pub watchdog_signal: Signal,
    pub health: Option<HealthCheck>,
    pub autostart: bool,
    pub keepalive: Keepalive,
    /// Exit codes that count as success for `keepalive = "on-failure"`.
    pub success_codes: Vec<u8>,
    /// How long after a death it is started again (systemd's
    /// `RestartSec=`); the flapping backoff, when longer, wins.
    pub restart_delay: Duration,
    pub flapping: Flapping,
    /// Memory and CPU limits over the watch's whole process tree.
    pub conditions: Vec<ResourceCondition>,
    /// What the kernel enforces (cgroup limits).
    pub limits: crate::resources::Limits,
    /// What its process starts with (setrlimit), in resource order.
    pub rlimits: Vec<crate::rlimit::Rlimit>,
}

impl WatchConfig {
    /// A plain command run as the daemon runs (its user, directory and
    /// environment), for the daemon's own helpers such as hooks; `name`
    /// names it in errors.
    pub fn for_command(name: &str, argv: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            group: None,
            after: Vec::new(),
            argv,
            stop: None,
            restart: None,
            dir: None,
            env: BTreeMap::new(),
            env_files: Vec::new(),
            clear_env: false,
            runtime_dirs: Vec::new(),
            user: None,
            umask: None,
            oom_score_adj: None,
            stdout: None,
            stderr: None,
            timestamps: false,
            stdout_rotation: None,
            stderr_rotation: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(10),
            restart_grace: Duration::from_secs(30),
            pid_file: None,
            daemonizes: false,
            main: false,
            start_grace: Duration::from_secs(5),
            ready: Readiness::Started,
            watchdog: None,
            watchdog_signal: Signal::SIGABRT,
            health: None,
            autostart: false,
            keepalive: Keepalive::Never,
            success_codes: vec![0],
            restart_delay: Duration::ZERO,
            flapping: Flapping::default(),
            conditions: Vec::new(),
            limits: Default::default(),
            rlimits: Vec::new(),
        }
    }
}

/// Who a watch's process runs as.
#[derive(Clone, Debug, PartialEq)]
pub struct RunAs {
    pub uid: Uid,
    pub gid: Gid,
    /// Supplementary groups (the user's, from the group database).
    pub groups: Vec<Gid>,
    pub user_name: Option<String>,
}

/// Crash-loop protection: more than `starts` starts within `within` puts
/// the watch in backoff, doubling from one second up to `max_backoff`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Flapping {
    pub starts: u32,
    pub within: Duration,
    pub max_backoff: Duration,
}

impl Default for Flapping {
    fn default() -> Self {
        Self {
            starts: 5,
            within: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
        }
    }
}

// ---- the file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWatch {
    name: String,
    group: Option<String>,
    #[serde(default)]
    after: Vec<String>,
    start: Command,
    stop: Option<Command>,
    restart: Option<Command>,
    #[serde(default)]
    shell: bool,
    dir: Option<PathBuf>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    env_file: Option<OneOrMany>,
    #[serde(default)]
    clear_env: bool,
    runtime_dir: Option<OneOrMany>,
    runtime_dir_mode: Option<DirMode>,
    uid: Option<UserSpec>,
    gid: Option<GroupSpec>,
    umask: Option<Umask>,
    oom_score_adj: Option<OomScoreAdj>,
    stdout: Option<LogFile>,
    stderr: Option<LogFile>,
    #[serde(default)]
    timestamps: bool,
    stop_signal: Option<SignalName>,
    stop_timeout: Option<HumanDuration>,
    stop_grace: Option<HumanDuration>,
    restart_grace: Option<HumanDuration>,
    pid_file: Option<PathBuf>,
    #[serde(default)]
    daemonizes: bool,
    #[serde(default)]
    main: bool,
    start_grace: Option<HumanDuration>,
    #[serde(default = "yes")]
    autostart: bool,
    keepalive: Option<RawKeepalive>,
    success_codes: Option<Vec<i64>>,
    restart_delay: Option<HumanDuration>,
    flapping: Option<RawFlapping>,
    memory: Option<RawCondition<HumanSize>>,
    cpu: Option<RawCondition<Percent>>,
    memory_max: Option<MemoryMax>,
    memory_high: Option<MemoryMax>,
    cpu_max: Option<CpuMax>,
    pids_max: Option<PidsMax>,
    health: Option<health::RawHealth>,
    ready: Option<Readiness>,
    watchdog: Option<HumanDuration>,
    watchdog_signal: Option<SignalName>,
    limits: Option<super::rlimits::RawRlimits>,
    instances: Option<u32>,
}

/// `"x"` or `["x", "y"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlapping {
    starts: Option<u32>,
    within: Option<HumanDuration>,
    max_backoff: Option<HumanDuration>,
}

/// `start = ["prog", "arg"]` or `start = "prog arg"`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Command {
    Argv(Vec<String>),
    Line(String),
}

// ---- loading ----

/// The argv of a command key, `["/bin/sh", "-c", line]` with `shell`.
pub(super) fn command_argv(
    command: Command,
    shell: bool,
    key: &'static str,
) -> Result<Vec<String>, (&'static str, String)> {
    let argv = match (command, shell) {
        (Command::Line(line), true) => vec!["/bin/sh".into(), "-c".into(), line],
        (Command::Argv(argv), true) => vec!["/bin/sh".into(), "-c".into(), argv.join(" ")],
        (Command::Line(line), false) => shell_words::split(&line)
            .map_err(|e| (key, format!("cannot split '{line}' into words: {e}")))?,
        (Command::Argv(argv), false) => argv,
    };
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err((key, "is empty: name the program to run".into()));
    }
    Ok(argv)
}

/// The longest watch name: it becomes a cgroup folder, an abstract socket
/// name and a key of the state file.
const NAME_MAX: usize = 64;

/// A watch name is a path component and a word on the command line:
/// letters, digits, `-`, `_` and `.`, not `.` or `..`. `@` is kept for the
/// names of generated instances.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty: a watch needs a name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("'{name}' is not a usable name"));
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "is {} characters long: at most {NAME_MAX}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        let what = if bad == '@' {
            "'@' is reserved for generated instance names".to_owned()
        } else {
            format!("{:?} is not allowed", bad)
        };
        return Err(format!(
            "'{}' is not a usable name: {what} (use letters, digits, '-', '_' and '.')",
            name.escape_debug()
        ));
    }
    Ok(())
}

/// Checks that need more than one key; the error names the key to fix.
/// The watch of `raw`, or its instances (`instances = N`).
pub(super) fn watch_config(raw: RawWatch) -> Result<Vec<WatchConfig>, (&'static str, String)> {
    check_name(&raw.name).map_err(|e| ("name", e))?;
    // A placeholder is one word however it is spaced ({8000 + instance}).
    let words = |command: Command| match command {
        Command::Line(line) if raw.instances.is_some() => {
            Command::Line(super::instances::squeeze(&line))
        }
        other => other,
    };
    let argv = command_argv(words(raw.start), raw.shell, "start")?;
    let stop = raw
        .stop
        .map(|c| command_argv(words(c), raw.shell, "stop"))
        .transpose()?;
    let restart = raw
        .restart
        .map(|c| command_argv(words(c), raw.shell, "restart"))
        .transpose()?;
    let user = match (raw.uid, raw.gid) {
        (None, None) => None,
        (Some(UserSpec(user)), gid) => {
            let gid = gid.map_or(user.gid, |GroupSpec(g)| g.gid);
            let name = std::ffi::CString::new(user.name.clone())
                .map_err(|_| ("uid", "bad user name".to_owned()))?;
            let groups = nix::unistd::getgrouplist(&name, gid).map_err(|e| {
                (
                    "uid",
                    format!("cannot list the groups of '{}': {e}", user.name),
                )
            })?;
            Some(RunAs {
                uid: user.uid,
                gid,
                groups,
                user_name: Some(user.name),
            })
        }
        (None, Some(GroupSpec(group))) => Some(RunAs {
            uid: Uid::current(),
            gid: group.gid,
            groups: vec![group.gid],
            user_name: None,
        }),
    };
    let defaults = Flapping::default();
    let flapping = raw.flapping.map_or(defaults, |f| Flapping {
        starts: f.starts.unwrap_or(defaults.starts),
        within: f.within.map_or(defaults.within, |d| d.0),
        max_backoff: f.max_backoff.map_or(defaults.max_backoff, |d| d.0),
    });
    if flapping.starts == 0 {
        return Err(("flapping.starts", "must be at least 1".into()));
    }
    let health = raw.health.map(health::health_check).transpose()?;
    let ready = raw.ready.unwrap_or_default();
    if ready == Readiness::Health && health.is_none() {
        return Err((
            "ready",
            "\"health\" needs a [watch.health] check to pass".into(),
        ));
    }
    // Waiting for a program to say it is ready takes longer than waiting
    // for a pid file.
    let start_grace = raw.start_grace.map_or(
        Duration::from_secs(if ready == Readiness::Started { 5 } else { 60 }),
        |d| d.0,
    );
    let env_files = raw
        .env_file
        .map_or_else(Vec::new, OneOrMany::into_vec)
        .iter()
        .map(|f| crate::env_file::EnvFile::parse(f))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("env_file", e))?;
    let mode = raw.runtime_dir_mode.as_ref().map_or(0o755, |m| m.0);
    let runtime_dirs = raw
        .runtime_dir
        .map_or_else(Vec::new, OneOrMany::into_vec)
        .iter()
        .map(|d| crate::runtime_dir::RuntimeDir::parse(d, mode))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ("runtime_dir", e))?;
    if raw.runtime_dir_mode.is_some() && runtime_dirs.is_empty() {
        return Err((
            "runtime_dir_mode",
            "set without runtime_dir (e.g. runtime_dir = \"app\")".into(),
        ));
    }
    let keepalive = match raw.keepalive {
        None | Some(RawKeepalive::Bool(true)) => Keepalive::Always,
        Some(RawKeepalive::Bool(false)) => Keepalive::Never,
        Some(RawKeepalive::Word(word)) => match word.as_str() {
            "always" => Keepalive::Always,
            "on-failure" => Keepalive::OnFailure,
            "never" => Keepalive::Never,
            _ => {
                return Err((
                    "keepalive",
                    format!("'{word}': true, false, \"always\", \"on-failure\" or \"never\""),
                ))
            }
        },
    };
    let success_codes = match raw.success_codes {
        None => vec![0],
        Some(codes) => codes
            .into_iter()
            .map(|c| {
                u8::try_from(c).map_err(|_| {
                    (
                        "success_codes",
                        format!("{c} is not an exit code (0 to 255)"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if keepalive != Keepalive::OnFailure && success_codes != [0] {
        return Err((
            "success_codes",
            "only keepalive = \"on-failure\" tells success from failure".into(),
        ));
    }
    let watchdog = raw.watchdog.map(|w| w.0);
    if watchdog.is_some_and(|w| w < Duration::from_millis(100)) {
        return Err((
            "watchdog",
            "at least 100ms: a process cannot be asked to say it lives more often".into(),
        ));
    }
    if raw.watchdog_signal.is_some() && watchdog.is_none() {
        return Err((
            "watchdog_signal",
            "set without watchdog (e.g. watchdog = \"30s\")".into(),
        ));
    }
    let rlimits = raw
        .limits
        .map(super::rlimits::rlimits)
        .transpose()
        .map_err(|e| ("limits", e))?
        .unwrap_or_default();
    let (stdout, stdout_rotation) = log_file(raw.stdout).map_err(|e| ("stdout", e))?;
    let (stderr, stderr_rotation) = log_file(raw.stderr).map_err(|e| ("stderr", e))?;
    // "&stdout" cannot be a file: a relative path would be "./&stdout".
    let (stderr, stderr_rotation) = match stderr {
        Some(path) if path.as_os_str() == "&stdout" => match &stdout {
            Some(stdout) => (Some(stdout.clone()), stdout_rotation),
            None => {
                return Err((
                    "stderr",
                    "\"&stdout\" goes where stdout goes, and stdout is not set".into(),
                ))
            }
        },
        other => (other, stderr_rotation),
    };
    if raw.timestamps && stdout.is_none() && stderr.is_none() {
        return Err((
            "timestamps",
            "stamps lines in the log files, and neither stdout nor stderr is set".into(),
        ));
    }
    let instances = raw.instances;
    let config = WatchConfig {
        name: raw.name,
        group: raw.group,
        after: raw.after,
        argv,
        stop,
        restart,
        dir: raw.dir,
        env: raw.env,
        env_files,
        clear_env: raw.clear_env,
        runtime_dirs,
        user,
        umask: raw.umask.map(|u| u.0),
        oom_score_adj: raw.oom_score_adj.map(|o| o.0),
        stdout,
        stderr,
        timestamps: raw.timestamps,
        stdout_rotation,
        stderr_rotation,
        stop_signal: raw.stop_signal.map_or(Signal::SIGTERM, |s| s.0),
        stop_timeout: raw.stop_timeout.map_or(Duration::from_secs(10), |d| d.0),
        stop_grace: raw.stop_grace.map_or(Duration::from_secs(10), |d| d.0),
        restart_grace: raw.restart_grace.map_or(Duration::from_secs(30), |d| d.0),
        pid_file: raw.pid_file,
        daemonizes: raw.daemonizes,
        main: raw.main,
        start_grace,
        ready,
        watchdog,
        watchdog_signal: raw.watchdog_signal.map_or(Signal::SIGABRT, |s| s.0),
        health,
        autostart: raw.autostart,
        keepalive,
        success_codes,
        restart_delay: raw.restart_delay.map_or(Duration::ZERO, |d| d.0),
        flapping,
        conditions: [
            raw.memory
                .map(|m| {
                    condition(
                        m,
                        |above: HumanSize| Resource::Memory { above: above.0 },
                        "memory",
                    )
                })
                .transpose()?,
            raw.cpu
                .map(|c| condition(c, |above: Percent| Resource::Cpu { above: above.0 }, "cpu"))
                .transpose()?,
        ]
        .into_iter()
        .flatten()
        .collect(),
        limits: crate::resources::Limits {
            memory_max: raw.memory_max.map(|m| m.0),
            memory_high: raw.memory_high.map(|m| m.0),
            cpu_max: raw.cpu_max.map(|c| c.0),
            pids_max: raw.pids_max.map(|p| p.0),
        },
        rlimits,
    };
    match instances {
        Some(_) if config.main => Err((
            "main",
            "a watch of several instances cannot be the main one: which instance's end would end the init?".into(),
        )),
        Some(count) => super::instances::expand(config, count),
        None => super::instances::refuse_placeholders(&config).map(|()| vec![config]),
    }
}
