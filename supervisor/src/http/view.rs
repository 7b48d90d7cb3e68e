//! What the web page may show: the watches as `status` has them, less
//! everything a reader without a token must not see. The page is readable
//! by anyone who reaches the listener, so output lines, paths (a core
//! file, a command, a health check's URL), environment and a check's own
//! words never get here; words that look like paths in the texts kept
//! (a cause, an event) are replaced. Pure: from a snapshot and samples to
//! serde types.
use std::{
    collections::{HashMap, VecDeque},
    time::SystemTime,
};

use serde::Serialize;

use crate::{
    events::seconds,
    protocol::{EventKind, LastExitStatus, State, StreamEvent, WatchStatus},
    sampler::Usage,
    snapshot::{Shown, Snapshot},
};

/// Events of every watch the page starts with.
const RECENT_EVENTS: usize = 40;

#[derive(Debug, Serialize)]
pub struct Page {
    /// The daemon's clock, so that the page can count uptimes from it.
    pub now: f64,
    pub daemon: Daemon,
    pub watches: Vec<Watch>,
    pub events: Vec<Event>,
    /// Whether the page has buttons (a token is configured).
    pub actions: bool,
}

#[derive(Debug, Serialize)]
pub struct Daemon {
    pub version: String,
    pub backend: String,
    pub tracking: String,
    pub watches: usize,
    /// Exit records the backend lost, which the page shows as a warning.
    pub lost: u64,
    pub sample_every_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct Watch {
    pub name: String,
    pub group: Option<String>,
    pub state: State,
    pub pid: Option<u32>,
    /// Unix time its process started: the page counts the uptime.
    pub started_at: Option<f64>,
    pub restarts: u32,
    /// Held back after starting too often, for this long.
    pub backoff_secs: Option<f64>,
    pub last_exit: Option<Exit>,
    pub health: Option<Health>,
    pub conditions: Vec<Condition>,
    /// The last samples, oldest first: resident bytes, and CPU percent
    /// of one core between two samples.
    pub memory: Vec<u64>,
    pub cpu_percent: Vec<f64>,
}

#[derive(Debug, Serialize)]
pub struct Exit {
    pub at: f64,
    pub pid: u32,
    pub status: String,
    pub cause: String,
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub ok: Option<bool>,
    pub latency_ms: Option<f64>,
    pub checks: u64,
    pub failures: u64,
}

#[derive(Debug, Serialize)]
pub struct Condition {
    pub condition: String,
    pub limit: String,
    pub last_value: Option<f64>,
    pub fired: u32,
}

#[derive(Debug, Serialize)]
pub struct Event {
    pub at: f64,
    pub watch: String,
    pub kind: EventKind,
    pub text: String,
}

pub fn page(
    snapshot: &Snapshot,
    recent: &HashMap<String, VecDeque<(SystemTime, Usage)>>,
    actions: bool,
) -> Page {
    let info = snapshot.info();
    let watches: Vec<&WatchStatus> = snapshot.watches().iter().map(|s| &s.status).collect();
    let mut events: Vec<Event> = watches
        .iter()
        .flat_map(|w| {
            w.events.iter().map(|e| Event {
                at: e.at,
                watch: w.name.clone(),
                kind: EventKind::Event,
                text: scrub(&e.what),
            })
        })
        .collect();
    events.sort_by(|a, b| a.at.total_cmp(&b.at));
    let cut = events.len().saturating_sub(RECENT_EVENTS);
    events.drain(..cut);
    Page {
        now: seconds(SystemTime::now()),
        daemon: Daemon {
            version: info.map(|i| i.version.clone()).unwrap_or_default(),
            backend: info.map(|i| i.backend.clone()).unwrap_or_default(),
            tracking: info.map(|i| i.tracking.clone()).unwrap_or_default(),
            watches: watches.len(),
            lost: info.map_or(0, |i| i.counters.dropped + i.unreported_exits),
            sample_every_secs: crate::sampler::EVERY.as_secs_f64(),
        },
        watches: snapshot
            .watches()
            .iter()
            .map(|s| watch(s, recent.get(&s.status.name)))
            .collect(),
        events,
        actions,
    }
}

fn watch(shown: &Shown, recent: Option<&VecDeque<(SystemTime, Usage)>>) -> Watch {
    let w = &shown.status;
    let samples: Vec<&(SystemTime, Usage)> = recent.into_iter().flatten().collect();
    let cpu_percent = samples
        .windows(2)
        .map(|pair| {
            let ((t0, u0), (t1, u1)) = (pair[0], pair[1]);
            let wall = t1.duration_since(*t0).unwrap_or_default().as_secs_f64();
            if wall > 0.0 {
                ((u1.cpu_seconds - u0.cpu_seconds).max(0.0) / wall * 100.0 * 10.0).round() / 10.0
            } else {
                0.0
            }
        })
        .collect();
    Watch {
        name: w.name.clone(),
        group: w.group.clone(),
        state: w.state,
        pid: w.pid,
        started_at: shown.started_at.map(seconds),
        restarts: w.restarts,
        backoff_secs: w.backoff_secs,
        last_exit: w.last_exit.as_ref().map(exit),
        health: w.health.as_ref().map(|h| Health {
            ok: h.last.as_ref().map(|l| l.ok),
            latency_ms: h.last.as_ref().map(|l| l.latency),
            checks: h.checks,
            failures: h.failures,
        }),
        conditions: w
            .conditions
            .iter()
            .map(|c| Condition {
                condition: c.condition.clone(),
                limit: c.limit.clone(),
                last_value: c.last_value,
                fired: c.fired,
            })
            .collect(),
        memory: samples.iter().map(|(_, u)| u.memory_bytes).collect(),
        cpu_percent,
    }
}

fn exit(e: &LastExitStatus) -> Exit {
    Exit {
        at: e.at,
        pid: e.pid,
        status: scrub(&e.status.text),
        cause: scrub(&e.cause),
    }
}

/// A live event as the page may show it.
pub fn event(e: &StreamEvent) -> Event {
    let text = match e.kind {
        // A check's message is the check's own output: only its verdict.
        EventKind::Check => e.text.split(':').next().unwrap_or_default().to_owned(),
        _ => scrub(&e.text),
    };
    Event {
        at: e.at,
        watch: e.watch.clone(),
        kind: e.kind,
        text,
    }
}

/// `text` with every word that holds a path or a URL replaced.
fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.contains('/') && word.chars().any(|c| c.is_alphabetic() || c == '.') {
            out.push_str("[path]");
        } else {
            out.push_str(word);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_urls_are_scrubbed_from_texts() {
        assert_eq!(
            scrub("failed to start: changing to its dir /srv/app: No such file"),
            "failed to start: changing to its dir [path] No such file"
        );
        assert_eq!(
            scrub("killed by SIGSEGV (core dumped) core written to ./core.12"),
            "killed by SIGSEGV (core dumped) core written to [path]"
        );
        assert_eq!(
            scrub("health check http://10.0.0.1/x"),
            "health check [path]"
        );
        assert_eq!(
            scrub("memory above 150.0 MB in 3/5 checks"),
            "memory above 150.0 MB in 3/5 checks"
        );
    }

    #[test]
    fn a_check_event_keeps_only_its_verdict() {
        let e = StreamEvent {
            at: 1.0,
            watch: "w".into(),
            kind: EventKind::Check,
            text: "health check failed: secret output here (1.0 ms)".into(),
            exit: None,
        };
        assert_eq!(event(&e).text, "health check failed");
    }
}
