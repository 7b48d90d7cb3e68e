//! The exit history that survives the daemon: `exits.jsonl` beside
//! `state.json`, one JSON line per exit, appended as exits happen (a
//! burst is one write, never a rewrite of the file), read back at
//! start-up, and compacted to the last `EXITS` of each watch once it has
//! grown to twice that. Each line is capped at `LINE_MAX` bytes (what a
//! process printed is cut first), so that the file stays bounded in size
//! and in write cost at ten thousand watches. Owns the file's format;
//! what an exit holds is the watch history's.
use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::{self, BufRead as _, Write as _},
};

use serde::{Deserialize, Serialize};

use crate::{
    core_file::CoreFile,
    origin::{OomReport, OriginReport},
    state::{SavedExit, StateDir},
    watch::{Exit, EXITS},
};

const FILE: &str = "exits.jsonl";
/// The longest line kept.
pub const LINE_MAX: usize = 8 * 1024;
/// Below this the file is never compacted.
const COMPACT_MIN: u64 = 1024 * 1024;

/// One line of the file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Line {
    watch: String,
    #[serde(flatten)]
    exit: SavedExit,
    #[serde(default)]
    cause: String,
    #[serde(default)]
    origin: Option<OriginReport>,
    #[serde(default)]
    lifetime_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oom: Option<OomReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    peak_rss: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_secs: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    core: Option<CoreFile>,
    /// What the process wrote last to each stream, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stdout: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    stderr: Vec<String>,
}

impl Line {
    fn of(watch: &str, exit: &Exit) -> Self {
        Self {
            watch: watch.to_owned(),
            exit: SavedExit::from_status(
                exit.pid.get(),
                exit.status,
                crate::exit::unix_seconds(exit.at),
            ),
            cause: exit.cause.clone(),
            origin: exit.origin.clone(),
            lifetime_secs: exit.lifetime.map(|d| d.as_secs_f64()),
            oom: exit.oom.clone(),
            peak_rss: exit.usage.map(|u| u.max_rss),
            cpu_secs: exit.usage.map(|u| u.cpu.as_secs_f64()),
            core: exit.core.clone(),
            stdout: exit.stdout.clone(),
            stderr: exit.stderr.clone(),
        }
    }

    fn exit(self) -> Option<Exit> {
        Some(Exit {
            status: self.exit.status(),
            at: std::time::UNIX_EPOCH
                + std::time::Duration::try_from_secs_f64(self.exit.at).ok()?,
            pid: crate::process::Pid::new(self.exit.pid)?,
            cause: self.cause,
            origin: self.origin,
            lifetime: self
                .lifetime_secs
                .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok()),
            oom: self.oom,
            usage: self.peak_rss.zip(self.cpu_secs).and_then(|(max_rss, cpu)| {
                Some(crate::exit::Usage {
                    max_rss,
                    cpu: std::time::Duration::try_from_secs_f64(cpu).ok()?,
                })
            }),
            core: self.core,
            stdout: self.stdout,
            stderr: self.stderr,
        })
    }

    /// As one line of at most `LINE_MAX` bytes, newline included: the
    /// oldest output lines go first (stdout's, then stderr's), then the
    /// cause is cut.
    fn encode(mut self) -> Vec<u8> {
        loop {
            let mut bytes = serde_json::to_vec(&self).unwrap_or_default();
            bytes.push(b'\n');
            if bytes.len() <= LINE_MAX {
                return bytes;
            }
            if !self.stdout.is_empty() {
                self.stdout.remove(0);
            } else if !self.stderr.is_empty() {
                self.stderr.remove(0);
            } else if self.cause.len() > 256 {
                let mut end = 256;
                while !self.cause.is_char_boundary(end) {
                    end -= 1;
                }
                self.cause.truncate(end);
            } else {
                // Nothing left to cut (a sender's command line): without it.
                self.origin = None;
            }
        }
    }
}

pub struct ExitLog {
    file: File,
    /// Lines to append at the next `flush`.
    pending: Vec<u8>,
    /// How long the file is, and how long it was when last compacted.
    bytes: u64,
    compacted: u64,
}

/// What the file holds: each watch's last exits, oldest first.
pub type Kept = HashMap<String, VecDeque<Exit>>;

impl ExitLog {
    /// Opens the file (made if missing) and reads what it holds; a line
    /// that does not parse (a daemon killed mid-write) is skipped.
    pub fn open(dir: &StateDir) -> io::Result<(Self, Kept)> {
        let kept = match dir.open_read(FILE) {
            Ok(file) => read(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Kept::new(),
            Err(e) => return Err(e),
        };
        let file = dir.open_append(FILE)?;
        let bytes = file.metadata()?.len();
        let mut log = Self {
            file,
            pending: Vec::new(),
            bytes,
            compacted: bytes,
        };
        if bytes > COMPACT_MIN {
            log.compact(dir, &kept)?;
        }
        Ok((log, kept))
    }

    /// Queues `exit` of watch `watch` for the next `flush`.
    pub fn append(&mut self, watch: &str, exit: &Exit) {
        self.pending.extend(Line::of(watch, exit).encode());
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes what was appended, in one write; compacts the file to
    /// `kept` (each watch's history now) once it has doubled.
    pub fn flush<'a>(
        &mut self,
        dir: &StateDir,
        kept: impl Iterator<Item = (&'a str, &'a Exit)>,
    ) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.bytes += self.pending.len() as u64;
        self.pending.clear();
        if self.bytes > COMPACT_MIN.max(2 * self.compacted) {
            let mut text = Vec::new();
            for (watch, exit) in kept {
                text.extend(Line::of(watch, exit).encode());
            }
            self.replace(dir, &text)?;
        }
        Ok(())
    }

    fn compact(&mut self, dir: &StateDir, kept: &Kept) -> io::Result<()> {
        let mut text = Vec::new();
        for (watch, exits) in kept {
            for exit in exits {
                text.extend(Line::of(watch, exit).encode());
            }
        }
        self.replace(dir, &text)
    }

    fn replace(&mut self, dir: &StateDir, text: &[u8]) -> io::Result<()> {
        dir.replace(FILE, text)?;
        self.file = dir.open_append(FILE)?;
        self.bytes = text.len() as u64;
        self.compacted = self.bytes;
        Ok(())
    }
}

fn read(file: File) -> Kept {
    let mut kept = Kept::new();
    for line in io::BufReader::new(file).split(b'\n').map_while(Result::ok) {
        let Ok(line) = serde_json::from_slice::<Line>(&line) else {
            continue;
        };
        let watch = line.watch.clone();
        let Some(exit) = line.exit() else { continue };
        let exits = kept.entry(watch).or_default();
        if exits.len() == EXITS {
            exits.pop_front();
        }
        exits.push_back(exit);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitStatus;

    fn exit(pid: u32, stderr: Vec<String>) -> Exit {
        Exit {
            status: ExitStatus::Killed {
                signal: 9,
                core_dumped: false,
            },
            at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            pid: crate::process::Pid::new(pid).expect("pid"),
            cause: "killed by SIGKILL".to_owned(),
            origin: None,
            lifetime: Some(std::time::Duration::from_secs(3)),
            oom: None,
            usage: None,
            core: Some(CoreFile::File {
                path: "/srv/core".into(),
            }),
            stdout: Vec::new(),
            stderr,
        }
    }

    #[test]
    fn a_line_is_capped_by_cutting_the_oldest_output_first() {
        let output: Vec<String> = (0..20)
            .map(|i| format!("{i}:{}", "x".repeat(1000)))
            .collect();
        let bytes = Line::of("web", &exit(7, output)).encode();
        assert!(bytes.len() <= LINE_MAX);
        let line: Line = serde_json::from_slice(&bytes[..bytes.len() - 1]).expect("still JSON");
        assert!(line.stderr.len() < 20);
        assert!(line.stderr.last().expect("some").starts_with("19:"));
        assert_eq!(line.exit().expect("an exit").pid.get(), 7);
    }

    #[test]
    fn reading_keeps_the_last_of_each_watch_and_skips_torn_lines() {
        let mut text = Vec::new();
        for pid in 1..=30u32 {
            text.extend(Line::of("web", &exit(pid, vec![])).encode());
        }
        text.extend(Line::of("db", &exit(99, vec!["bye".into()])).encode());
        text.extend(b"{\"watch\":\"web\",\"pid\":5");
        let mut file = tempfile::tempfile().expect("file");
        file.write_all(&text).expect("write");
        use std::io::Seek as _;
        file.rewind().expect("rewind");
        let kept = read(file);
        let web: Vec<u32> = kept["web"].iter().map(|e| e.pid.get()).collect();
        assert_eq!(web, (11..=30).collect::<Vec<_>>());
        assert_eq!(kept["db"][0].stderr, ["bye"]);
    }
}
