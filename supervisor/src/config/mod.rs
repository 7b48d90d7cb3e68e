//! The configuration: TOML, one file or a directory of `*.toml`, parsed and
//! checked completely before anything starts. Every value is turned into
//! its type here, once (durations, signals, users, argv), and every error
//! names the file, line, column and key.
//!
//! This module reads files and the user database; it starts nothing.
use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use nix::{
    sys::signal::Signal,
    unistd::{Gid, Uid},
};
use serde::Deserialize;

mod daemon;
mod health;
mod notify;
pub mod reload;
mod spans;
mod trust;
mod values;

use daemon::{daemon_config, RawDaemon};
pub use daemon::{DaemonConfig, Scheduling, Tracking, DEFAULT_SOCKET};
use spans::Spans;
use trust::trusted;
use values::{
    CpuMax, GroupSpec, HumanDuration, HumanSize, MemoryMax, Percent, PidsMax, SignalName, Umask,
    UserSpec,
};

pub use health::{HealthCheck, Probe, Readiness};
pub use notify::{NotifyConfig, NotifyEvent, Webhook};

/// A config error: where, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {key}{message}", location(*.line, *.column), key = key_prefix(.key))]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted path of the key, e.g. `watch[2].stop_signal`.
    pub key: String,
    pub message: String,
}

fn location(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// What was loaded: the file, or the directory.
    pub source: PathBuf,
    pub daemon: DaemonConfig,
    pub watches: Vec<WatchConfig>,
    /// Who hears about what happens to watches.
    pub notify: Vec<NotifyConfig>,
    /// Whether files others may write were accepted (`--insecure-config`);
    /// a reload is held to the same rule.
    pub trust: Trust,
}

/// Which config files are believed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// Only files (and their folders) that root or the daemon's own user
    /// owns and nobody else may write: whoever may write a config runs
    /// commands as root.
    #[default]
    Owner,
    /// Any file the daemon can read.
    Insecure,
}

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
    pub clear_env: bool,
    pub user: Option<RunAs>,
    pub umask: Option<u32>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
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
    /// How long a start may take: for a `pid_file` watch, until the file
    /// names a live process of ours; with `ready`, until it is ready.
    pub start_grace: Duration,
    /// When a started process counts as up.
    pub ready: Readiness,
    pub health: Option<HealthCheck>,
    pub autostart: bool,
    pub keepalive: bool,
    pub flapping: Flapping,
    /// Memory and CPU limits over the watch's whole process tree.
    pub conditions: Vec<ResourceCondition>,
    /// What the kernel enforces (cgroup limits).
    pub limits: crate::resources::Limits,
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
            clear_env: false,
            user: None,
            umask: None,
            stdout: None,
            stderr: None,
            stop_signal: Signal::SIGTERM,
            stop_timeout: Duration::from_secs(10),
            stop_grace: Duration::from_secs(10),
            restart_grace: Duration::from_secs(30),
            pid_file: None,
            start_grace: Duration::from_secs(5),
            ready: Readiness::Started,
            health: None,
            autostart: false,
            keepalive: false,
            flapping: Flapping::default(),
            conditions: Vec::new(),
            limits: Default::default(),
        }
    }
}

/// A limit on what a watch's processes use, checked every `every`; it
/// fires when the use was above the limit in `times.0` of the last
/// `times.1` checks.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceCondition {
    pub resource: Resource,
    pub every: Duration,
    pub times: (u32, u32),
    pub action: ConditionAction,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resource {
    /// Resident memory, in bytes.
    Memory { above: u64 },
    /// CPU, in percent of one core, averaged over the last interval.
    Cpu { above: f64 },
}

/// What a fired condition does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConditionAction {
    Restart,
    Stop,
    /// Only say so (in the log and `status`).
    Notify,
}

impl ConditionAction {
    /// As the config and `status` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Stop => "stop",
            Self::Notify => "notify",
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    watch: Vec<RawWatch>,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
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
    #[serde(default)]
    clear_env: bool,
    uid: Option<UserSpec>,
    gid: Option<GroupSpec>,
    umask: Option<Umask>,
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    stop_signal: Option<SignalName>,
    stop_timeout: Option<HumanDuration>,
    stop_grace: Option<HumanDuration>,
    restart_grace: Option<HumanDuration>,
    pid_file: Option<PathBuf>,
    start_grace: Option<HumanDuration>,
    #[serde(default = "yes")]
    autostart: bool,
    #[serde(default = "yes")]
    keepalive: bool,
    flapping: Option<RawFlapping>,
    memory: Option<RawCondition<HumanSize>>,
    cpu: Option<RawCondition<Percent>>,
    memory_max: Option<MemoryMax>,
    memory_high: Option<MemoryMax>,
    cpu_max: Option<CpuMax>,
    pids_max: Option<PidsMax>,
    health: Option<health::RawHealth>,
    ready: Option<Readiness>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCondition<T> {
    above: T,
    every: Option<HumanDuration>,
    times: Option<(u32, u32)>,
    action: Option<ConditionAction>,
}

/// A raw condition as the daemon uses it; `key` names it in errors.
fn condition<T>(
    raw: RawCondition<T>,
    resource: impl FnOnce(T) -> Resource,
    key: &'static str,
) -> Result<ResourceCondition, (&'static str, String)> {
    let times = raw.times.unwrap_or((3, 5));
    if times.0 == 0 || times.0 > times.1 {
        return Err((
            key,
            format!(
                "times = [{}, {}]: fire after N of the last M checks needs 1 <= N <= M",
                times.0, times.1
            ),
        ));
    }
    let every = raw.every.map_or(Duration::from_secs(10), |d| d.0);
    if every < Duration::from_millis(100) {
        return Err((key, format!("every = {every:?}: at least 100ms")));
    }
    Ok(ResourceCondition {
        resource: resource(raw.above),
        every,
        times,
        action: raw.action.unwrap_or(ConditionAction::Restart),
    })
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
enum Command {
    Argv(Vec<String>),
    Line(String),
}

// ---- loading ----

/// Loads a file, or every `*.toml` in a directory (in name order; at most
/// one of them may have a `[daemon]` table).
pub fn load(path: &Path, trust: Trust) -> Result<Config, ConfigError> {
    let whole = |message: String| ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: String::new(),
        message,
    };
    if trust == Trust::Owner {
        trusted(path)?;
    }
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| whole(format!("cannot read directory: {e}")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(whole("directory has no *.toml files".into()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };

    let mut merged = Merged::default();
    for file in &files {
        if trust == Trust::Owner {
            trusted(file)?;
        }
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            key: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        merged.add(file, &text)?;
    }
    merged.into_config(path, trust)
}

/// Parses the text of one config file (`file` names it in errors).
pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut merged = Merged::default();
    merged.add(file, text)?;
    merged.into_config(file, Trust::Owner)
}

/// The files of a config so far.
#[derive(Default)]
struct Merged {
    daemon: Option<(PathBuf, DaemonConfig)>,
    watches: Vec<WatchConfig>,
    names: HashSet<String>,
    /// Where each watch's `after` is written, for errors found once every
    /// file is read.
    after_at: Vec<(PathBuf, Option<usize>, String)>,
    notify: Vec<NotifyConfig>,
    /// Where each `[[notify]]`'s `watches` is written, likewise.
    notify_at: Vec<(PathBuf, Option<usize>, String)>,
}

impl Merged {
    fn add(&mut self, file: &Path, text: &str) -> Result<(), ConfigError> {
        let (raw, spans) = parse_file(file, text)?;
        if let Some(raw_daemon) = raw.daemon {
            if let Some((first, _)) = &self.daemon {
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: spans.line_of("[daemon]"),
                    column: None,
                    key: "daemon".into(),
                    message: format!(
                        "a second [daemon] table (the first is in {})",
                        first.display()
                    ),
                });
            }
            self.daemon = Some((file.to_path_buf(), daemon_config(raw_daemon)));
        }
        for (index, raw_watch) in raw.watch.into_iter().enumerate() {
            let watch = watch_config(raw_watch).map_err(|(key, message)| ConfigError {
                file: file.to_path_buf(),
                line: spans.key_line(index, key),
                column: None,
                key: format!("watch[{index}].{key}"),
                message,
            })?;
            if !self.names.insert(watch.name.clone()) {
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: spans.key_line(index, "name"),
                    column: None,
                    key: format!("watch[{index}].name"),
                    message: format!("duplicate watch name '{}'", watch.name),
                });
            }
            self.after_at.push((
                file.to_path_buf(),
                spans.key_line(index, "after"),
                format!("watch[{index}].after"),
            ));
            self.watches.push(watch);
        }
        for (index, raw_notify) in raw.notify.into_iter().enumerate() {
            let notify =
                notify::notify_config(raw_notify).map_err(|(key, message)| ConfigError {
                    file: file.to_path_buf(),
                    line: spans.table_key_line("[[notify]]", index, key),
                    column: None,
                    key: format!("notify[{index}].{key}"),
                    message,
                })?;
            self.notify_at.push((
                file.to_path_buf(),
                spans.table_key_line("[[notify]]", index, "watches"),
                format!("notify[{index}].watches"),
            ));
            self.notify.push(notify);
        }
        Ok(())
    }

    /// What a `[[notify]]` names must be a watch or a group.
    fn check_notify(&self) -> Result<(), ConfigError> {
        let known: HashSet<&str> = self
            .watches
            .iter()
            .flat_map(|w| std::iter::once(w.name.as_str()).chain(w.group.as_deref()))
            .collect();
        for (notify, (file, line, key)) in self.notify.iter().zip(&self.notify_at) {
            if let Some(unknown) = notify.watches.iter().find(|n| !known.contains(n.as_str())) {
                return Err(ConfigError {
                    file: file.clone(),
                    line: *line,
                    column: None,
                    key: key.clone(),
                    message: format!("no watch or group named '{unknown}'"),
                });
            }
        }
        Ok(())
    }

    /// Every name in an `after` must be a watch, and the order must have
    /// no cycle.
    fn check_order(&self) -> Result<(), ConfigError> {
        let error = |i: usize, message: String| {
            let (file, line, key) = &self.after_at[i];
            ConfigError {
                file: file.clone(),
                line: *line,
                column: None,
                key: key.clone(),
                message,
            }
        };
        let index: std::collections::HashMap<&str, usize> = self
            .watches
            .iter()
            .enumerate()
            .map(|(i, w)| (w.name.as_str(), i))
            .collect();
        for (i, watch) in self.watches.iter().enumerate() {
            if let Some(unknown) = watch.after.iter().find(|n| !index.contains_key(n.as_str())) {
                return Err(error(i, format!("no watch named '{unknown}'")));
            }
        }
        let order =
            crate::after::start_order(self.watches.iter().map(|w| w.name.as_str()), |name| {
                index.get(name).map(|&i| self.watches[i].after.as_slice())
            });
        if let Err(cycle) = order {
            return Err(error(
                index[cycle[0]],
                format!("start order has a cycle: {}", cycle.join(" after ")),
            ));
        }
        Ok(())
    }

    fn into_config(self, source: &Path, trust: Trust) -> Result<Config, ConfigError> {
        self.check_order()?;
        self.check_notify()?;
        Ok(Config {
            source: source.to_path_buf(),
            daemon: self.daemon.map(|(_, d)| d).unwrap_or_default(),
            watches: self.watches,
            notify: self.notify,
            trust,
        })
    }
}

fn parse_file<'a>(file: &Path, text: &'a str) -> Result<(RawFile, Spans<'a>), ConfigError> {
    let error_at = |span: Option<std::ops::Range<usize>>, key: String, message: String| {
        let (line, column) = span.map_or((None, None), |s| {
            let before = &text[..s.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            (Some(line), Some(column))
        });
        ConfigError {
            file: file.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    };
    let de = toml::de::Deserializer::parse(text)
        .map_err(|e| error_at(e.span(), String::new(), e.message().to_owned()))?;
    let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let key = if key == "." { String::new() } else { key };
        error_at(inner.span(), key, inner.message().to_owned())
    })?;
    Ok((
        raw,
        Spans {
            text,
            tables: Default::default(),
        },
    ))
}

/// The argv of a command key, `["/bin/sh", "-c", line]` with `shell`.
fn command_argv(
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
fn watch_config(raw: RawWatch) -> Result<WatchConfig, (&'static str, String)> {
    check_name(&raw.name).map_err(|e| ("name", e))?;
    let argv = command_argv(raw.start, raw.shell, "start")?;
    let stop = raw
        .stop
        .map(|c| command_argv(c, raw.shell, "stop"))
        .transpose()?;
    let restart = raw
        .restart
        .map(|c| command_argv(c, raw.shell, "restart"))
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
    Ok(WatchConfig {
        name: raw.name,
        group: raw.group,
        after: raw.after,
        argv,
        stop,
        restart,
        dir: raw.dir,
        env: raw.env,
        clear_env: raw.clear_env,
        user,
        umask: raw.umask.map(|u| u.0),
        stdout: raw.stdout,
        stderr: raw.stderr,
        stop_signal: raw.stop_signal.map_or(Signal::SIGTERM, |s| s.0),
        stop_timeout: raw.stop_timeout.map_or(Duration::from_secs(10), |d| d.0),
        stop_grace: raw.stop_grace.map_or(Duration::from_secs(10), |d| d.0),
        restart_grace: raw.restart_grace.map_or(Duration::from_secs(30), |d| d.0),
        pid_file: raw.pid_file,
        start_grace,
        ready,
        health,
        autostart: raw.autostart,
        keepalive: raw.keepalive,
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
    })
}

#[cfg(test)]
mod bad;

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        parse(Path::new("t.toml"), text).unwrap_err().to_string()
    }

    #[test]
    fn names_are_safe_path_components() {
        for (name, expected) in [
            (".", "t.toml:2: watch[0].name: '.' is not a usable name"),
            ("..", "t.toml:2: watch[0].name: '..' is not a usable name"),
            ("a/b", "'a/b' is not a usable name: '/' is not allowed"),
            ("a@b", "'@' is reserved for generated instance names"),
            ("", "is empty"),
        ] {
            let e = error(&format!("[[watch]]\nname = {name:?}\nstart = \"x\"\n"));
            assert!(e.contains(expected), "{name:?}: {e}");
        }
        let long = "a".repeat(65);
        assert!(
            error(&format!("[[watch]]\nname = \"{long}\"\nstart = \"x\"\n")).contains("at most 64")
        );
        for good in ["web", "web-1", "db_2", "v1.2", "A"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn huge_values_are_errors_with_their_place() {
        let e = error(
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstop_timeout = \"99999999999999999999s\"\n",
        );
        assert_eq!(
            e,
            "t.toml:4:16: watch[0].stop_timeout: '99999999999999999999s' is too long (at most 10 years)"
        );
        let e = error("[[watch]]\nname = \"a\"\nstart = \"x\"\nmemory = { above = \"99999999999999999999GB\" }\n");
        assert!(e.contains("memory.above") && e.contains("too large"), "{e}");
    }

    #[test]
    fn error_lines_stay_right_in_a_big_file() {
        let mut text = String::new();
        for i in 0..5000 {
            text.push_str(&format!("[[watch]]\nname = \"w{i}\"\nstart = \"x\"\n\n"));
        }
        text.push_str("[[watch]]\nname = \"w1\"\nstart = \"y\"\n");
        assert_eq!(
            error(&text),
            "t.toml:20002: watch[5000].name: duplicate watch name 'w1'"
        );
    }
}
