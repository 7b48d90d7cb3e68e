//! The configuration: TOML, one file or a directory of `*.toml`, parsed and
//! checked completely before anything starts. Every value is turned into
//! its type here, once (durations, signals, users, argv), and every error
//! names the file, line, column and key.
//!
//! This module reads files and the user database; it starts nothing.
use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use serde::Deserialize;

mod conditions;
mod daemon;
mod health;
mod init;
mod instances;
mod keepalive;
mod logs;
mod notify;
pub mod reload;
mod rlimits;
mod spans;
mod trust;
mod values;
mod watch;

use daemon::{daemon_config, RawDaemon};
pub use daemon::{DaemonConfig, Scheduling, Tracking, Web, WebListen, WebToken, DEFAULT_SOCKET};
use spans::Spans;
use trust::trusted;

pub use conditions::{ConditionAction, Resource, ResourceCondition};
pub use health::{HealthCheck, Probe, Readiness};
pub use init::{Forward, InitConfig};
pub use keepalive::Keepalive;
pub use logs::Rotation;
pub use notify::{NotifyConfig, NotifyEvent, Webhook};
pub use watch::{check_name, Flapping, RunAs, WatchConfig};
use watch::{command_argv, watch_config, Command, RawWatch};

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
    /// For `supervisor init -c`.
    pub init: InitConfig,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    daemon: Option<RawDaemon>,
    #[serde(default)]
    init: Option<init::RawInit>,
    #[serde(default)]
    watch: Vec<RawWatch>,
    #[serde(default)]
    notify: Vec<notify::RawNotify>,
}

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
    init: Option<(PathBuf, InitConfig)>,
    /// The main watch, and where its `main` is written.
    main: Option<String>,
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
                return Err(second_table(file, &spans, "daemon", first));
            }
            let daemon = daemon_config(raw_daemon).map_err(|(key, message)| ConfigError {
                file: file.to_path_buf(),
                line: spans.table_key_line("[daemon]", 0, key),
                column: None,
                key: format!("daemon.{key}"),
                message,
            })?;
            self.daemon = Some((file.to_path_buf(), daemon));
        }
        if let Some(raw_init) = raw.init {
            if let Some((first, _)) = &self.init {
                return Err(second_table(file, &spans, "init", first));
            }
            self.init = Some((file.to_path_buf(), init::init_config(raw_init)));
        }
        for (index, raw_watch) in raw.watch.into_iter().enumerate() {
            let watches = watch_config(raw_watch).map_err(|(key, message)| ConfigError {
                file: file.to_path_buf(),
                line: spans.key_line(index, key),
                column: None,
                key: format!("watch[{index}].{key}"),
                message,
            })?;
            if watches.len() > 1 && self.watches.len() + watches.len() > instances::TOTAL {
                return Err(ConfigError {
                    file: file.to_path_buf(),
                    line: spans.key_line(index, "instances"),
                    column: None,
                    key: format!("watch[{index}].instances"),
                    message: format!(
                        "{} more watches would make more than {} in all",
                        watches.len(),
                        instances::TOTAL
                    ),
                });
            }
            for watch in watches {
                if watch.main {
                    if let Some(first) = &self.main {
                        return Err(ConfigError {
                            file: file.to_path_buf(),
                            line: spans.key_line(index, "main"),
                            column: None,
                            key: format!("watch[{index}].main"),
                            message: format!(
                                "a second main watch: '{first}' is main already (the init ends with one)"
                            ),
                        });
                    }
                    self.main = Some(watch.name.clone());
                }
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
            .flat_map(|w| {
                std::iter::once(w.name.as_str())
                    .chain(w.group.as_deref())
                    .chain(crate::protocol::base_name(&w.name))
            })
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
        let names: Vec<&str> = self.watches.iter().map(|w| w.name.as_str()).collect();
        let after: Vec<Vec<String>> = self
            .watches
            .iter()
            .map(|w| crate::after::expand(&w.name, &w.after, &names))
            .collect();
        for (i, watch) in self.watches.iter().enumerate() {
            if let Some(unknown) = watch.after.iter().find(|n| {
                !names
                    .iter()
                    .any(|w| *w == n.as_str() || crate::protocol::base_name(w) == Some(n.as_str()))
            }) {
                return Err(error(i, format!("no watch named '{unknown}'")));
            }
        }
        let order = crate::after::start_order(names.iter().copied(), |name| {
            index.get(name).map(|&i| after[i].as_slice())
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
            init: self.init.map(|(_, i)| i).unwrap_or_default(),
            watches: self.watches,
            notify: self.notify,
            trust,
        })
    }
}

/// `[table]` again in `file`, where only one may be (the first is in
/// `first`).
fn second_table(file: &Path, spans: &Spans<'_>, table: &str, first: &Path) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        line: spans.line_of(&format!("[{table}]")),
        column: None,
        key: table.into(),
        message: format!(
            "a second [{table}] table (the first is in {})",
            first.display()
        ),
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
