//! A systemd `.service` unit as one watch (a template, `foo@.service`, as
//! a watch with instances, `%i` its `{instance}`). What systemd does that
//! this daemon does not (sandboxing, `ExecStartPre`, targets, sockets ...)
//! is listed as skipped, never guessed at.
use std::path::Path;

use anyhow::{Context as _, Result};

use super::{
    ini::{self, Dialect, Section},
    watch_name, Imported, Watch,
};

pub fn import(path: &Path) -> Result<Imported> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let sections = ini::parse(&text, Dialect::Systemd)
        .map_err(|(line, why)| anyhow::anyhow!("{}:{line}: {why}", path.display()))?;
    let mut imported = Imported::default();
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("imported");
    let (prefix, template) = match stem.strip_suffix('@') {
        Some(prefix) => (prefix, true),
        None => (stem, false),
    };
    let mut w = Watch::default();
    w.set("name", watch_name(prefix));
    if template {
        w.set("instances", 1i64);
        imported.skip(
            path,
            1,
            format!("{stem}.service"),
            "a template: set instances to how many to run (%i is {instance}, counting from 0)",
        );
    }
    let fill = |value: &str| -> (String, Vec<&'static str>) {
        let mut missing = Vec::new();
        let mut out = String::new();
        let mut chars = value.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '{' || c == '}' {
                // Braces are placeholders in a watch with instances.
                out.push(c);
                if template {
                    out.push(c);
                }
                continue;
            }
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('i' | 'I') if template => out.push_str("{instance}"),
                Some('p' | 'P') => out.push_str(prefix),
                Some('n' | 'N') => out.push_str(stem),
                Some(other) => {
                    missing.push("a % specifier other than %i, %p and %n");
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        (out, missing)
    };
    for section in &sections {
        match section.name.as_str() {
            "Service" => service(path, section, &mut w, &mut imported, &fill),
            "Unit" => unit(path, section, &mut imported),
            "Install" => imported.skip(
                path,
                section.line,
                "[Install]",
                "this daemon starts what its config has: no targets to be wanted by",
            ),
            other => imported.skip(path, section.line, format!("[{other}]"), "no equivalent"),
        }
    }
    Ok(imported.with(w))
}

impl Imported {
    fn with(mut self, watch: Watch) -> Self {
        if watch.keys.iter().any(|(k, _)| k == "start") {
            self.watches.push(watch);
        }
        self
    }
}

fn unit(path: &Path, section: &Section, imported: &mut Imported) {
    for (key, value, line) in &section.keys {
        let why = match key.as_str() {
            "After" | "Requires" | "Wants" | "BindsTo" | "Requisite" => {
                "other units: a watch starts `after` watches of the same config (import them too)"
            }
            "Description" | "Documentation" => "text only",
            _ => "no equivalent",
        };
        imported.skip(path, *line, format!("{key}={value}"), why);
    }
}

fn service(
    path: &Path,
    section: &Section,
    w: &mut Watch,
    imported: &mut Imported,
    fill: &dyn Fn(&str) -> (String, Vec<&'static str>),
) {
    let kind = section.get("Type").map_or("simple", |(t, _)| t);
    let filled = |value: &str, line: usize, imported: &mut Imported| -> String {
        let (text, missing) = fill(value);
        for why in missing {
            imported.skip(path, line, value.to_owned(), why);
        }
        text
    };
    for (key, value, line) in &section.keys {
        let (value, line) = (value.as_str(), *line);
        let skip = |imported: &mut Imported, why: &str| {
            imported.skip(path, line, format!("{key}={value}"), why.to_owned())
        };
        match key.as_str() {
            "ExecStart" if !value.is_empty() => {
                let command = filled(exec_line(value), line, imported);
                if command.contains('$') {
                    // systemd expands $VAR and ${VAR}; a shell does here.
                    w.set("shell", true);
                }
                w.set("start", command);
            }
            "ExecStop" if !value.is_empty() => {
                let command = filled(exec_line(value), line, imported);
                if command.contains("$MAINPID") {
                    skip(imported, "$MAINPID is not set here: without ExecStop the stop signal goes to every process of the watch");
                } else {
                    w.set("stop", command);
                }
            }
            "ExecReload" if !value.is_empty() => {
                if value.contains("$MAINPID") {
                    skip(
                        imported,
                        "$MAINPID is not set here: `supervisor signal NAME HUP` does this",
                    );
                } else {
                    let command = filled(exec_line(value), line, imported);
                    w.set("restart", command);
                }
            }
            "Type" => match value {
                "simple" | "exec" | "idle" => {}
                "notify" | "notify-reload" => w.set("ready", "notify"),
                "forking" if section.get("PIDFile").is_some() => {}
                // systemd guesses its main pid; so does daemonizes.
                "forking" => w.set("daemonizes", true),
                "oneshot" => {
                    w.set("keepalive", false);
                    skip(imported, "run once: kept as keepalive = false");
                }
                _ => skip(imported, "no equivalent"),
            },
            "PIDFile" if kind == "forking" => w.set("pid_file", filled(value, line, imported)),
            "PIDFile" => skip(
                imported,
                "its process does not fork: it is followed without a pid file",
            ),
            "User" => w.set("uid", value),
            "Group" => w.set("gid", value),
            "WorkingDirectory" => match value.trim_start_matches('-') {
                d if d.starts_with('/') => w.set("dir", filled(d, line, imported)),
                _ => skip(
                    imported,
                    "a directory that is not absolute (~ is not known here)",
                ),
            },
            "UMask" => w.set("umask", value),
            "OOMScoreAdjust" => match value.parse::<i64>() {
                Ok(n) => w.set("oom_score_adj", n),
                Err(_) => skip(imported, "not an integer"),
            },
            "Environment" => {
                for word in shell_words::split(value).unwrap_or_default() {
                    if let Some((k, v)) = word.split_once('=') {
                        let v = filled(v, line, imported);
                        w.insert("env", k.to_owned(), toml::Value::String(v));
                    }
                }
            }
            "EnvironmentFile" => {
                let file = filled(value, line, imported);
                w.push("env_file", [toml::Value::String(file)]);
            }
            "Restart" => match value {
                "always" => w.set("keepalive", true),
                "no" => w.set("keepalive", false),
                "on-failure" => w.set("keepalive", "on-failure"),
                "on-abnormal" | "on-abort" | "on-watchdog" => {
                    w.set("keepalive", "on-failure");
                    skip(imported, "kept as keepalive = \"on-failure\", which also restarts after a failing exit code");
                }
                _ => skip(imported, "no equivalent"),
            },
            "RestartSec" => match timespan(value) {
                Some(d) => w.set("restart_delay", d),
                None => skip(imported, "not a time span"),
            },
            "TimeoutStopSec" => match timespan(value) {
                Some(d) if d != "0ms" => w.set("stop_timeout", d),
                _ => skip(
                    imported,
                    "no time limit (0 or infinity): the default stop_timeout is kept",
                ),
            },
            "TimeoutStartSec" => match timespan(value) {
                Some(d) if d != "0ms" => w.set("start_grace", d),
                _ => skip(
                    imported,
                    "no time limit (0 or infinity): the default start_grace is kept",
                ),
            },
            "WatchdogSec" => match timespan(value) {
                Some(d) if d != "0ms" => w.set("watchdog", d),
                _ => skip(imported, "not a time span"),
            },
            "KillSignal" => w.set("stop_signal", value),
            "WatchdogSignal" => w.set("watchdog_signal", value),
            "SuccessExitStatus" => {
                let codes: Vec<toml::Value> = value
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i64>().ok())
                    .map(toml::Value::Integer)
                    .collect();
                w.set("success_codes", toml::Value::Array(codes));
            }
            "MemoryMax" | "MemoryLimit" => match size(value) {
                Some(s) => w.set("memory_max", s),
                None => skip(
                    imported,
                    "not a size (infinity and percentages are not kept)",
                ),
            },
            "MemoryHigh" => match size(value) {
                Some(s) => w.set("memory_high", s),
                None => skip(imported, "not a size"),
            },
            "TasksMax" => match value.parse::<i64>() {
                Ok(n) => w.set("pids_max", n),
                Err(_) => skip(
                    imported,
                    "not a count (infinity and percentages are not kept)",
                ),
            },
            "CPUQuota" => w.set("cpu_max", value),
            "StandardOutput" | "StandardError" => {
                let to = if key == "StandardOutput" {
                    "stdout"
                } else {
                    "stderr"
                };
                match value.split_once(':') {
                    Some(("file" | "append", file)) => w.set(to, filled(file, line, imported)),
                    _ => skip(
                        imported,
                        "only file: and append: have an equivalent (a path)",
                    ),
                }
            }
            limit if limit.starts_with("Limit") => {
                let name = limit["Limit".len()..].to_lowercase();
                match rlimit(value) {
                    Some(v)
                        if crate::rlimit::Resource::ALL
                            .iter()
                            .any(|r| r.name() == name) =>
                    {
                        w.insert("limits", name, v);
                    }
                    _ => skip(imported, "not a limit here"),
                }
            }
            "RuntimeDirectory" if value.contains('%') => skip(
                imported,
                "specifiers are not expanded in runtime_dir: name the directory in full",
            ),
            "RuntimeDirectory" => w.push(
                "runtime_dir",
                value
                    .split_whitespace()
                    .map(|d| toml::Value::String(d.to_owned())),
            ),
            "RuntimeDirectoryMode" => w.set("runtime_dir_mode", value),
            "RuntimeDirectoryPreserve" => skip(
                imported,
                "a runtime_dir is always kept when its process stops",
            ),
            "ExecStartPre" | "ExecStartPost" | "ExecStopPost" => {
                skip(imported, "commands around the start are not run here")
            }
            _ => skip(
                imported,
                "no equivalent here (systemd's sandboxing and resource controls)",
            ),
        }
    }
}

/// An `Exec*=` line less its prefixes (`-` ignore failure, `@`, `:`,
/// `+`, `!`).
fn exec_line(value: &str) -> &str {
    value.trim_start_matches(['-', '@', ':', '+', '!']).trim()
}

/// A systemd time span (`5`, `100ms`, `1min 30s`, `2h`) as the config
/// writes it (milliseconds); `None` for `infinity` or nonsense.
fn timespan(text: &str) -> Option<String> {
    let mut total_ms: f64 = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() || rest == "infinity" {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = rest[digits..].trim_start();
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == ' ')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "" | "s" | "sec" | "second" | "seconds" => 1000.0,
            "ms" | "msec" => 1.0,
            "us" | "usec" => 0.001,
            "m" | "min" | "minute" | "minutes" => 60_000.0,
            "h" | "hr" | "hour" | "hours" => 3_600_000.0,
            "d" | "day" | "days" => 86_400_000.0,
            _ => return None,
        };
        total_ms += number * scale;
        rest = rest[unit_end..].trim_start();
    }
    Some(format!("{}ms", total_ms.round() as u64))
}

/// A systemd size (`512M`, `1G`, bytes) as the config writes it.
fn size(text: &str) -> Option<String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    number.parse::<u64>().ok()?;
    let unit = match unit.to_ascii_uppercase().as_str() {
        "" => "B",
        "K" => "KB",
        "M" => "MB",
        "G" => "GB",
        _ => return None,
    };
    Some(format!("{number}{unit}"))
}

/// `LimitNOFILE=65536`, `=1024:4096`, `=infinity`.
fn rlimit(text: &str) -> Option<toml::Value> {
    let one = |v: &str| -> Option<toml::Value> {
        match v.trim() {
            "infinity" => Some(toml::Value::String("unlimited".into())),
            v => v.parse::<i64>().ok().map(toml::Value::Integer),
        }
    };
    match text.split_once(':') {
        Some((soft, hard)) => Some(toml::Value::Array(vec![one(soft)?, one(hard)?])),
        None => one(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_spans_sizes_and_limits() {
        assert_eq!(timespan("5").as_deref(), Some("5000ms"));
        assert_eq!(timespan("1min 30s").as_deref(), Some("90000ms"));
        assert_eq!(timespan("100ms").as_deref(), Some("100ms"));
        assert_eq!(timespan("infinity"), None);
        assert_eq!(size("512M").as_deref(), Some("512MB"));
        assert_eq!(size("50%"), None);
        assert_eq!(
            rlimit("1024:4096"),
            Some(toml::Value::Array(vec![1024.into(), 4096.into()]))
        );
        assert_eq!(
            rlimit("infinity"),
            Some(toml::Value::String("unlimited".into()))
        );
        assert_eq!(
            exec_line("-/usr/sbin/nginx -g 'daemon off;'"),
            "/usr/sbin/nginx -g 'daemon off;'"
        );
    }
}
