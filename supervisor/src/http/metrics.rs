//! What `/metrics` says: the families rendered from one snapshot of the
//! watches and the daemon, never from /proc or the loop. Names follow
//! systemd_exporter and node_exporter's supervisord collector: a
//! `watch` label (and `group` where set), `_total` counters, seconds and
//! bytes. The exit causes are a fixed set of six, never a sender's name.
use std::{collections::HashMap, time::UNIX_EPOCH};

use super::exposition::{Family, Kind};
use crate::{
    protocol::{State, WatchStatus},
    sampler::Usage,
    snapshot::Snapshot,
};

const STATES: [State; 6] = [
    State::Unmonitored,
    State::Init,
    State::Up,
    State::Start,
    State::Restart,
    State::Stop,
];

/// The families of `snapshot`, with each running watch's last `usage`
/// sample.
pub fn families(snapshot: &Snapshot, usage: &HashMap<String, Usage>) -> Vec<Family> {
    let mut up = Family::new(
        "supervisor_watch_up",
        Kind::Gauge,
        "Whether the watch's process runs and is ready (state up).",
    );
    let mut state = Family::new(
        "supervisor_watch_state",
        Kind::Gauge,
        "The watch's state, one-hot.",
    );
    let mut restarts = Family::new(
        "supervisor_watch_restarts",
        Kind::Counter,
        "Starts after the first, by the daemon or an operator.",
    );
    let mut exits = Family::new(
        "supervisor_watch_exits",
        Kind::Counter,
        "Deaths of the watch's processes since the daemon started, by cause: exit, signal, core, oom, limit, supervisor.",
    );
    let mut start_time = Family::new(
        "supervisor_watch_start_time_seconds",
        Kind::Gauge,
        "Unix time at which the running process started.",
    );
    let mut last_code = Family::new(
        "supervisor_watch_last_exit_code",
        Kind::Gauge,
        "Exit code of the last process that exited with one.",
    );
    let mut memory = Family::new(
        "supervisor_watch_memory_bytes",
        Kind::Gauge,
        "Resident memory of the watch's processes (its cgroup's, else its main process's), sampled every 10 s.",
    );
    let mut cpu = Family::new(
        "supervisor_watch_cpu_seconds",
        Kind::Counter,
        "CPU time of the watch's processes (its cgroup's, gone ones included; else its main process's), sampled every 10 s.",
    );
    let mut health_up = Family::new(
        "supervisor_watch_health_up",
        Kind::Gauge,
        "Whether the last health check passed.",
    );
    let mut health_latency = Family::new(
        "supervisor_watch_health_latency_seconds",
        Kind::Gauge,
        "How long the last health check took.",
    );
    let mut flapping = Family::new(
        "supervisor_watch_flapping",
        Kind::Gauge,
        "Whether the watch is held back after starting too often.",
    );
    for shown in snapshot.watches() {
        let w = &shown.status;
        let labels = labels(w);
        up.push(labels.clone(), flag(w.state == State::Up));
        for s in STATES {
            let mut with = labels.clone();
            with.push(("state", s.to_string()));
            state.push(with, flag(w.state == s));
        }
        restarts.push(labels.clone(), w.restarts as f64);
        let c = w.exit_counts;
        for (cause, n) in [
            ("exit", c.exit),
            ("signal", c.signal),
            ("core", c.core),
            ("oom", c.oom),
            ("limit", c.limit),
            ("supervisor", c.supervisor),
        ] {
            let mut with = labels.clone();
            with.push(("cause", cause.to_owned()));
            exits.push(with, n as f64);
        }
        if let Some(at) = shown
            .started_at
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        {
            start_time.push(labels.clone(), at.as_secs_f64());
        }
        if let Some(code) = w.exits.iter().rev().find_map(|e| e.status.code) {
            last_code.push(labels.clone(), f64::from(code));
        }
        if let Some(used) = usage.get(&w.name) {
            memory.push(labels.clone(), used.memory_bytes as f64);
            cpu.push(labels.clone(), used.cpu_seconds);
        }
        if let Some(last) = w.health.as_ref().and_then(|h| h.last.as_ref()) {
            health_up.push(labels.clone(), flag(last.ok));
            health_latency.push(labels.clone(), last.latency / 1000.0);
        }
        flapping.push(labels, flag(w.backoff_secs.is_some()));
    }
    let mut families = vec![
        up,
        state,
        restarts,
        exits,
        start_time,
        last_code,
        memory,
        cpu,
        health_up,
        health_latency,
        flapping,
    ];
    families.extend(daemon(snapshot));
    families
}

fn daemon(snapshot: &Snapshot) -> Vec<Family> {
    let Some(info) = snapshot.info() else {
        return Vec::new();
    };
    let mut build = Family::new("supervisor_build", Kind::Info, "The daemon's version.");
    build.push(vec![("version", info.version.clone())], 1.0);
    let mut backend = Family::new(
        "supervisor_backend",
        Kind::Info,
        "The exit backend in use: ebpf, netlink, pidfd or poll.",
    );
    backend.push(vec![("backend", info.backend.clone())], 1.0);
    let mut watches = Family::new("supervisor_watches", Kind::Gauge, "Watches configured.");
    watches.push(Vec::new(), info.watches as f64);
    let counter = |name, help, value: u64| {
        let mut f = Family::new(name, Kind::Counter, help);
        f.push(Vec::new(), value as f64);
        f
    };
    let mut notifications = Family::new(
        "supervisor_notifications",
        Kind::Counter,
        "Notifications by outcome: delivered, failed, dropped (queue full), hook_failed.",
    );
    let n = info.notifications;
    for (outcome, value) in [
        ("delivered", n.webhooks_delivered),
        ("failed", n.webhooks_failed),
        ("dropped", n.dropped),
        ("hook_failed", n.hooks_failed),
    ] {
        notifications.push(vec![("outcome", outcome.to_owned())], value as f64);
    }
    let mut detection = Family::new(
        "supervisor_detection_latency_seconds",
        Kind::Histogram,
        "From the kernel's timestamp of a death to the daemon reading it.",
    );
    detection.push_histogram(Vec::new(), info.detection_latency.clone());
    let mut restart = Family::new(
        "supervisor_restart_duration_seconds",
        Kind::Histogram,
        "From a death the daemon saw to its watch's next process running (backoff included).",
    );
    restart.push_histogram(Vec::new(), info.restart_duration.clone());
    vec![
        build,
        backend,
        watches,
        counter(
            "supervisor_exit_events",
            "Exit records the backend delivered.",
            info.counters.delivered,
        ),
        counter(
            "supervisor_exit_events_lost",
            "Exit records the kernel could not deliver (ring or socket buffer full).",
            info.counters.dropped,
        ),
        counter(
            "supervisor_exit_events_recovered",
            "Deaths no record reported, found by the daemon's periodic check.",
            info.unreported_exits,
        ),
        notifications,
        detection,
        restart,
    ]
}

fn labels(w: &WatchStatus) -> Vec<(&'static str, String)> {
    let mut labels = vec![("watch", w.name.clone())];
    if let Some(group) = &w.group {
        labels.push(("group", group.clone()));
    }
    labels
}

fn flag(on: bool) -> f64 {
    if on {
        1.0
    } else {
        0.0
    }
}
