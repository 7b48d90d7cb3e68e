//! supervisord's config: each `[program:x]` a watch (`numprocs` its
//! instances), `[group:x]` a group, `[include]` files read in turn; the
//! daemon's own sections (`[supervisord]`, `[unix_http_server]` ...) and
//! keys without an equivalent are listed as skipped.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::{
    ini::{self, Dialect, Section},
    seconds, watch_name, Imported, Watch,
};

/// Keys that mean nothing more here than the way this daemon already
/// works, and need no word (`stopasgroup`: it always stops the group).
const SAME_HERE: [&str; 4] = [
    "stopasgroup",
    "killasgroup",
    "process_name",
    "numprocs_start",
];

pub fn import(path: &Path) -> Result<Imported> {
    let mut imported = Imported::default();
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    let mut files = vec![path.to_owned()];
    let mut read = 0;
    while read < files.len() {
        let file = files[read].clone();
        read += 1;
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let sections = ini::parse(&text, Dialect::Supervisord)
            .map_err(|(line, why)| anyhow::anyhow!("{}:{line}: {why}", file.display()))?;
        for section in &sections {
            let kind = section
                .name
                .split_once(':')
                .map_or(section.name.as_str(), |(k, _)| k);
            match (kind, section.name.split_once(':')) {
                ("program", Some((_, name))) => {
                    let watch = program(&file, name.trim(), section, &mut imported);
                    imported.watches.push(watch);
                }
                ("group", Some((_, name))) => {
                    let programs = section
                        .get("programs")
                        .map(|(p, _)| p.split(',').map(|s| s.trim().to_owned()).collect())
                        .unwrap_or_default();
                    groups.push((name.trim().to_owned(), programs));
                    for (key, value, line) in &section.keys {
                        if key != "programs" {
                            imported.skip(
                                &file,
                                *line,
                                format!("{key} = {value}"),
                                "a group here is a name only",
                            );
                        }
                    }
                }
                ("include", _) => {
                    let Some((patterns, line)) = section.get("files") else {
                        continue;
                    };
                    let here = file.parent().unwrap_or(Path::new("."));
                    for pattern in patterns.split_whitespace() {
                        let found = glob(here, pattern);
                        if found.is_empty() {
                            imported.skip(
                                &file,
                                line,
                                format!("files = {pattern}"),
                                "matches no file now",
                            );
                        }
                        for f in found {
                            if !files.contains(&f) {
                                files.push(f);
                            }
                        }
                    }
                }
                _ => imported.skip(
                    &file,
                    section.line,
                    format!("[{}]", section.name),
                    match kind {
                        "supervisord" | "unix_http_server" | "inet_http_server"
                        | "supervisorctl" | "rpcinterface" => {
                            "supervisord's own settings; this daemon's are its [daemon] table"
                        }
                        "eventlistener" => "event listeners: use [[notify]] hooks or webhooks",
                        "fcgi-program" => "FastCGI sockets are not made here",
                        _ => "an unknown section",
                    },
                ),
            }
        }
        if files.len() > 64 {
            bail!("{}: more than 64 files included", path.display());
        }
    }
    for (group, programs) in groups {
        for program in programs {
            let name = watch_name(&program);
            if let Some(w) = imported.watches.iter_mut().find(|w| w.name() == name) {
                w.set("group", group.clone());
            }
        }
    }
    Ok(imported)
}

/// `[program:name]` as a watch.
fn program(file: &Path, name: &str, section: &Section, imported: &mut Imported) -> Watch {
    let mut w = Watch::default();
    let watch = watch_name(name);
    w.set("name", watch.clone());
    if watch != name {
        imported.skip(
            file,
            section.line,
            format!("[program:{name}]"),
            format!("renamed '{watch}': a watch's name has letters, digits, '-', '_' and '.'"),
        );
    }
    let here = file
        .parent()
        .unwrap_or(Path::new("."))
        .display()
        .to_string();
    let numprocs = section
        .get("numprocs")
        .and_then(|(n, _)| n.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let first: u32 = section
        .get("numprocs_start")
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    // `%(process_num)d` counts from numprocs_start.
    let process_num = if first == 0 {
        "{instance}".to_owned()
    } else {
        format!("{{{first} + instance}}")
    };
    let expand = |value: &str, line: usize, imported: &mut Imported| -> String {
        // In a watch with instances, braces are placeholders: the file's
        // own are escaped first.
        let escape = |t: &str| {
            if numprocs > 1 {
                t.replace('{', "{{").replace('}', "}}")
            } else {
                t.to_owned()
            }
        };
        let number = if numprocs > 1 {
            process_num.clone()
        } else {
            first.to_string()
        };
        let text = escape(value)
            .replace("%(program_name)s", &escape(name))
            .replace("%(here)s", &escape(&here))
            .replace("%(process_num)d", &number);
        if text.contains("%(") {
            imported.skip(
                file,
                line,
                value.to_owned(),
                "a %(...) expansion other than program_name, here and process_num (an ENV_ one, a padded number) is left as written",
            );
        }
        text
    };
    for (key, value, line) in &section.keys {
        let (value, line) = (value.as_str(), *line);
        match key.as_str() {
            "command" => w.set("start", expand(value, line, imported)),
            "directory" => w.set("dir", expand(value, line, imported)),
            "user" => w.set("uid", value),
            "umask" => w.set("umask", value),
            "environment" => {
                let mut env = toml::Table::new();
                for (k, v) in environment(value) {
                    env.insert(k, toml::Value::String(expand(&v, line, imported)));
                }
                w.set("env", toml::Value::Table(env));
            }
            "autostart" => w.set("autostart", truth(value)),
            "autorestart" => match value.to_lowercase().as_str() {
                "unexpected" => w.set("keepalive", "on-failure"),
                v => w.set("keepalive", truth(v)),
            },
            "exitcodes" => {
                let codes: Vec<toml::Value> = value
                    .split(',')
                    .filter_map(|c| c.trim().parse::<i64>().ok())
                    .map(toml::Value::Integer)
                    .collect();
                w.set("success_codes", toml::Value::Array(codes));
            }
            "stopsignal" => w.set("stop_signal", value.to_uppercase()),
            "stopwaitsecs" => match seconds(value) {
                Some(d) => w.set("stop_timeout", d),
                None => imported.skip(
                    file,
                    line,
                    format!("stopwaitsecs = {value}"),
                    "not a number of seconds",
                ),
            },
            "stdout_logfile" | "stderr_logfile" => {
                let to = if key == "stdout_logfile" {
                    "stdout"
                } else {
                    "stderr"
                };
                match value.to_uppercase().as_str() {
                    "NONE" => {}
                    "AUTO" => imported.skip(
                        file,
                        line,
                        format!("{key} = AUTO"),
                        "supervisord names AUTO logs itself: give a path",
                    ),
                    _ => w.set(to, expand(value, line, imported)),
                }
            }
            "numprocs" if numprocs > 1 => w.set("instances", i64::from(numprocs)),
            "numprocs"
            | "startsecs"
            | "startretries"
            | "redirect_stderr"
            | "priority"
            | "stdout_logfile_maxbytes"
            | "stdout_logfile_backups"
            | "stderr_logfile_maxbytes"
            | "stderr_logfile_backups" => {}
            k if SAME_HERE.contains(&k) => {}
            _ => imported.skip(file, line, format!("{key} = {value}"), why_not(key)),
        }
    }
    // supervisord gives up after startretries quick deaths (each within
    // startsecs); this daemon backs off instead, as flapping.
    let retries = section
        .get("startretries")
        .and_then(|(r, _)| r.trim().parse::<u32>().ok());
    let startsecs = section
        .get("startsecs")
        .and_then(|(s, _)| s.trim().parse::<u32>().ok());
    if retries.is_some() || startsecs.is_some() {
        let starts = retries.unwrap_or(3) + 1;
        let within = startsecs.unwrap_or(1).max(1) * starts;
        let mut flapping = toml::Table::new();
        flapping.insert("starts".into(), toml::Value::Integer(i64::from(starts)));
        flapping.insert("within".into(), toml::Value::String(format!("{within}s")));
        w.set("flapping", toml::Value::Table(flapping));
    }
    // supervisord rotates its logs at 50MB, ten backups, unless told
    // otherwise (maxbytes = 0: never).
    for stream in ["stdout", "stderr"] {
        let Some(path) = w
            .keys
            .iter()
            .find(|(k, _)| k == stream)
            .map(|(_, v)| v.clone())
        else {
            continue;
        };
        let max = section.get(&format!("{stream}_logfile_maxbytes"));
        let backups = section.get(&format!("{stream}_logfile_backups"));
        let max_size = match max.map(|(m, l)| (size(m), m, l)) {
            None => Some("50MB".to_owned()),
            Some((Some(m), _, _)) if m == "0B" => None,
            Some((Some(m), _, _)) => Some(m),
            Some((None, m, line)) => {
                imported.skip(
                    file,
                    line,
                    format!("{stream}_logfile_maxbytes = {m}"),
                    "not a size",
                );
                None
            }
        };
        let backups = backups
            .and_then(|(b, _)| b.trim().parse::<i64>().ok())
            .unwrap_or(10);
        if let (Some(max_size), true) = (max_size, backups > 0) {
            let mut table = toml::Table::new();
            table.insert("path".into(), path);
            table.insert("max_size".into(), toml::Value::String(max_size));
            table.insert("backups".into(), toml::Value::Integer(backups));
            w.set(stream, toml::Value::Table(table));
        }
    }
    if section
        .get("redirect_stderr")
        .is_some_and(|(v, _)| truth(v))
        && w.keys.iter().any(|(k, _)| k == "stdout")
    {
        w.set("stderr", "&stdout");
    }
    if let Some((priority, line)) = section.get("priority") {
        imported.skip(
            file,
            line,
            format!("priority = {priority}"),
            "an order by number; here a watch names those it starts `after`",
        );
    }
    w
}

fn why_not(key: &str) -> &'static str {
    match key {
        k if k.ends_with("_maxbytes") || k.ends_with("_backups") => {
            "log rotation is not done here yet: use logrotate with copytruncate"
        }
        k if k.ends_with("_capture_maxbytes")
            || k.ends_with("_events_enabled")
            || k.ends_with("_syslog") =>
        {
            "no equivalent"
        }
        "serverurl" => "an RPC setting",
        _ => "no equivalent",
    }
}

/// supervisord's byte counts (`50MB`, `1KB`, `1024`) as the config
/// writes a size.
fn size(text: &str) -> Option<String> {
    let t = text.trim().to_uppercase();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    number.parse::<u64>().ok()?;
    matches!(unit, "" | "B" | "KB" | "MB" | "GB")
        .then(|| format!("{number}{}", if unit.is_empty() { "B" } else { unit }))
}

fn truth(value: &str) -> bool {
    matches!(
        value.trim().to_lowercase().as_str(),
        "true" | "yes" | "on" | "1"
    )
}

/// `KEY="value",KEY2=value2`: supervisord's environment, quotes keeping
/// commas.
fn environment(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.trim().is_empty() {
            return out;
        }
        let mut value = String::new();
        match chars.peek() {
            Some(&q @ ('"' | '\'')) => {
                chars.next();
                for c in chars.by_ref() {
                    if c == q {
                        break;
                    }
                    value.push(c);
                }
            }
            _ => {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// The files `pattern` (relative to `here`) names: `*` and `?` in its
/// last part only, as supervisord's conf.d use is.
fn glob(here: &Path, pattern: &str) -> Vec<PathBuf> {
    let path = here.join(pattern);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return if path.is_file() {
            vec![path]
        } else {
            Vec::new()
        };
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| matches(name, n)))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
}

/// Whether `name` fits `pattern` (`*` any run, `?` one character).
fn matches(pattern: &str, name: &str) -> bool {
    match (pattern.chars().next(), name.chars().next()) {
        (None, None) => true,
        (Some('*'), _) => {
            matches(&pattern[1..], name)
                || name
                    .chars()
                    .next()
                    .is_some_and(|c| matches(pattern, &name[c.len_utf8()..]))
        }
        (Some('?'), Some(c)) => matches(&pattern[1..], &name[c.len_utf8()..]),
        (Some(p), Some(c)) if p == c => matches(&pattern[p.len_utf8()..], &name[c.len_utf8()..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_keeps_quoted_commas() {
        assert_eq!(
            environment("A=\"1,2\",B=plain, C='x'"),
            vec![
                ("A".into(), "1,2".into()),
                ("B".into(), "plain".into()),
                ("C".into(), "x".into())
            ]
        );
    }

    #[test]
    fn globs_match_the_last_part() {
        assert!(matches("*.conf", "web.conf"));
        assert!(!matches("*.conf", "web.conf.bak"));
        assert!(matches("w?b.*", "web.ini"));
    }
}
