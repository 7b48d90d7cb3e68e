//! `supervisor import FILE`: a supervisord config (`[program:x]`, with its
//! `[include]`s) or a systemd `.service` unit, written out as the
//! equivalent `[[watch]]` tables. What has no equivalent here is never
//! dropped silently: each is listed, with its file and line, in a comment
//! at the top (and in `--json`'s `skipped`). The output is checked by the
//! config loader before it is printed, so that it always loads.
//!
//! Owns the reading of foreign files and the writing of TOML; the
//! meaning of each key is `supervisord`'s and `systemd`'s.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Result};
use serde::Serialize;

mod ini;
mod supervisord;
mod systemd;

/// What an import made.
#[derive(Debug, Default)]
pub struct Imported {
    pub watches: Vec<Watch>,
    pub skipped: Vec<Skipped>,
}

/// One `[[watch]]`, its keys in the order they are written.
#[derive(Debug, Default)]
pub struct Watch {
    pub keys: Vec<(String, toml::Value)>,
}

impl Watch {
    fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        let value = value.into();
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.keys.push((key.to_owned(), value)),
        }
    }

    /// Adds `values` to the array `key` (a key systemd may repeat).
    fn push(&mut self, key: &str, values: impl IntoIterator<Item = toml::Value>) {
        let mut array = self
            .get(key)
            .and_then(toml::Value::as_array)
            .cloned()
            .unwrap_or_default();
        array.extend(values);
        self.set(key, toml::Value::Array(array));
    }

    /// Sets `name` in the table `key` (`env`, `limits`).
    fn insert(&mut self, key: &str, name: String, value: toml::Value) {
        let mut table = self
            .get(key)
            .and_then(toml::Value::as_table)
            .cloned()
            .unwrap_or_default();
        table.insert(name, value);
        self.set(key, toml::Value::Table(table));
    }

    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn name(&self) -> &str {
        self.get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or_default()
    }
}

/// Something of the file that has no equivalent here.
#[derive(Debug, Serialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: usize,
    /// What was written (`stdout_logfile_maxbytes = 50MB`).
    pub what: String,
    pub why: String,
}

impl Imported {
    fn skip(&mut self, file: &Path, line: usize, what: impl Into<String>, why: impl Into<String>) {
        self.skipped.push(Skipped {
            file: file.to_owned(),
            line,
            what: what.into(),
            why: why.into(),
        });
    }

    /// The TOML: the skipped items as comments, then the watches.
    pub fn to_toml(&self, source: &Path) -> String {
        let mut out = format!(
            "# Imported by `supervisor import` from {}.\n",
            source.display()
        );
        if self.skipped.is_empty() {
            out.push_str("# Everything in it has an equivalent here.\n");
        } else {
            out.push_str("# Not imported (no equivalent here), by file and line:\n");
            for s in &self.skipped {
                let what = s.what.replace('\n', " ");
                out.push_str(&format!(
                    "#   {}:{}: {what}: {}\n",
                    s.file.display(),
                    s.line,
                    s.why
                ));
            }
        }
        for w in &self.watches {
            out.push_str("\n[[watch]]\n");
            for (key, value) in &w.keys {
                out.push_str(&format!("{key} = {value}\n"));
            }
        }
        out
    }
}

/// Which kind of file `path` is: a unit by its name, else supervisord's.
fn read(path: &Path) -> Result<Imported> {
    let is_unit = path
        .extension()
        .is_some_and(|e| e == "service" || e == "unit");
    if is_unit {
        systemd::import(path)
    } else {
        supervisord::import(path)
    }
}

#[derive(Serialize)]
struct Report<'a> {
    toml: &'a str,
    watches: Vec<&'a str>,
    skipped: &'a [Skipped],
}

/// Prints the TOML of `file` (with `json`: a report holding it).
pub async fn run(file: &Path, json: bool) -> Result<ExitCode> {
    let imported = read(file)?;
    if imported.watches.is_empty() {
        bail!(
            "{}: no program or service to import{}",
            file.display(),
            if imported.skipped.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} section(s) without an equivalent)",
                    imported.skipped.len()
                )
            }
        );
    }
    let text = imported.to_toml(file);
    // What it prints must load here; a user or group that this host does
    // not have is the one reason it may not, said on stderr.
    let loads = crate::config::parse(Path::new("imported.toml"), &text);
    if json {
        let report = Report {
            toml: &text,
            watches: imported.watches.iter().map(Watch::name).collect(),
            skipped: &imported.skipped,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{text}");
    }
    match loads {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("supervisor import: the result does not load on this host: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A name a watch may have: characters it may not are made `-`.
fn watch_name(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        "imported".to_owned()
    } else {
        name.chars().take(64).collect()
    }
}

/// Seconds as the config writes a duration.
fn seconds(text: &str) -> Option<String> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs >= 0.0).then(|| {
        if secs.fract() == 0.0 {
            format!("{secs}s")
        } else {
            format!("{}ms", (secs * 1000.0).round())
        }
    })
}
