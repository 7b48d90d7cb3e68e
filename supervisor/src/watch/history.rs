//! What happened to one watch, bounded: its recent events (transitions,
//! conditions, failed starts) and its recent exits, oldest first. `status`
//! shows both; the exit forensics and the event stream hang their data
//! here. Data only: the state machine records into it, with the time it
//! was handed, and a watch killed thousands of times keeps only the last.
use std::{
    collections::VecDeque,
    time::{Duration, SystemTime},
};

use serde::Serialize;

use crate::{
    core_file::CoreFile,
    exit::{ExitStatus, Usage},
    origin::{OomReport, OriginReport},
    process::Pid,
    protocol::ExitCounts,
};

/// How many events a watch keeps (what `status` shows).
pub const EVENTS: usize = 10;

/// How many exits a watch keeps.
pub const EXITS: usize = 20;

/// Something that happened to a watch, as its log line said.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    #[serde(with = "crate::exit::unix_time")]
    pub at: SystemTime,
    pub what: String,
}

/// One death of a watch's process.
#[derive(Clone, Debug)]
pub struct Exit {
    pub status: ExitStatus,
    pub at: SystemTime,
    pub pid: Pid,
    /// Why it died, in one line.
    pub cause: String,
    /// Where the signal that killed it came from (eBPF only).
    pub origin: Option<OriginReport>,
    /// How long it ran, where the start is known.
    pub lifetime: Option<Duration>,
    /// The OOM killer chose it.
    pub oom: Option<OomReport>,
    /// What it used in its life (where the daemon reaped it).
    pub usage: Option<Usage>,
    /// Where its core dump went, if it dumped one.
    pub core: Option<CoreFile>,
    /// The last lines it wrote to its stdout and its stderr (where the
    /// daemon carries them).
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Exit {
    /// An exit of which no more than its status is known: a previous
    /// daemon's last one, or a death no daemon saw.
    pub fn bare(status: ExitStatus, at: SystemTime, pid: Pid, cause: String) -> Self {
        Self {
            status,
            at,
            pid,
            cause,
            origin: None,
            lifetime: None,
            oom: None,
            usage: None,
            core: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
        }
    }
}

/// What kind of death an exit was, for counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    Exit,
    Signal,
    Core,
    Oom,
    Limit,
    Supervisor,
}

#[derive(Debug, Default)]
pub struct History {
    events: VecDeque<Event>,
    exits: VecDeque<Exit>,
    /// Every exit since the daemon started, by kind.
    counts: ExitCounts,
    /// What happened since the daemon last took it (`take_fresh`), for
    /// the event stream.
    fresh: Vec<Fresh>,
}

/// An event or exit not yet handed to the event stream.
#[derive(Clone, Debug)]
pub enum Fresh {
    Event(Event),
    Exit(Box<Exit>),
}

impl History {
    pub fn note(&mut self, at: SystemTime, what: String) {
        if self.events.len() == EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(Event {
            at,
            what: what.clone(),
        });
        self.fresh.push(Fresh::Event(Event { at, what }));
    }

    /// What happened since the last call, oldest first.
    pub fn take_fresh(&mut self) -> Vec<Fresh> {
        std::mem::take(&mut self.fresh)
    }

    pub fn exited(&mut self, exit: Exit, kind: ExitKind) {
        let c = &mut self.counts;
        *match kind {
            ExitKind::Exit => &mut c.exit,
            ExitKind::Signal => &mut c.signal,
            ExitKind::Core => &mut c.core,
            ExitKind::Oom => &mut c.oom,
            ExitKind::Limit => &mut c.limit,
            ExitKind::Supervisor => &mut c.supervisor,
        } += 1;
        self.fresh.push(Fresh::Exit(Box::new(exit.clone())));
        self.keep(exit);
    }

    /// An exit this daemon did not see happen (a previous daemon's, or a
    /// death while none ran): kept, not counted.
    pub fn keep(&mut self, exit: Exit) {
        if self.exits.len() == EXITS {
            self.exits.pop_front();
        }
        self.exits.push_back(exit);
    }

    /// In place of the exits it holds, oldest first: a previous daemon's,
    /// which this one does not count.
    pub fn restore_exits(&mut self, exits: impl IntoIterator<Item = Exit>) {
        self.exits.clear();
        for exit in exits {
            self.keep(exit);
        }
    }

    pub fn counts(&self) -> ExitCounts {
        self.counts
    }

    /// Oldest first.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter()
    }

    /// Oldest first.
    pub fn exits(&self) -> impl Iterator<Item = &Exit> {
        self.exits.iter()
    }

    pub fn last_exit(&self) -> Option<&Exit> {
        self.exits.back()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn keeps_the_newest_within_its_bounds() {
        let mut history = History::default();
        for i in 0..1000u64 {
            history.note(at(i), format!("event {i}"));
            history.exited(
                Exit::bare(
                    ExitStatus::Exited(1),
                    at(i),
                    Pid::new(1000 + i as u32).expect("nonzero"),
                    "exited 1".to_owned(),
                ),
                ExitKind::Exit,
            );
        }
        assert_eq!(history.counts().exit, 1000, "every exit counted");
        let events: Vec<&str> = history.events().map(|e| e.what.as_str()).collect();
        assert_eq!(events.len(), EVENTS);
        assert_eq!(events.first(), Some(&"event 990"));
        assert_eq!(events.last(), Some(&"event 999"));
        assert_eq!(history.exits().count(), EXITS);
        assert_eq!(history.exits().next().map(|e| e.pid.get()), Some(1980));
        assert_eq!(history.last_exit().map(|e| e.pid.get()), Some(1999));
    }
}
