//! What readers are shown: each watch's status, built from its slot, and
//! the snapshot (`crate::snapshot`) published at the end of a loop turn in
//! which something changed. Only the watches that changed are built
//! again, and while they keep changing (a thousand restarting at once) at
//! most every `publish_pause`, except that a turn that answered a client
//! always publishes: what the client was told, a `status` it sends next
//! shows. Reads the slots; changes nothing but the publisher.
use std::time::{Duration, Instant};

use crate::{
    protocol::{EventStatus, LastExitStatus, WatchStatus},
    snapshot::Shown,
    watch::Exit,
};

use super::{slot::WatchSlot, Daemon};

/// How often the snapshot is published at most while watches keep
/// changing and no client is answered; and at least this many times as
/// long as the last publish took must pass before the next, so that
/// publishing (a copy of ten thousand entries' handles) takes at most a
/// fiftieth of the loop's time.
const PUBLISH_EVERY: Duration = Duration::from_millis(5);
const PUBLISH_SHARE: u32 = 50;

impl Daemon {
    /// Publishes what changed since the last publish, if anything did and
    /// it is time (see the module comment).
    pub(super) fn publish_snapshot(&mut self) {
        let settled = self.unsaved.is_empty();
        let forced = std::mem::take(&mut self.answered)
            || self.order_stale
            || settled != self.published_settled;
        if !forced
            && (self.unpublished.is_empty() || self.last_publish.elapsed() < self.publish_pause)
        {
            return;
        }
        let started = Instant::now();
        if std::mem::take(&mut self.order_stale) {
            let order = self.in_start_order(self.slots.keys().cloned().collect());
            let slots = &self.slots;
            self.publisher
                .reorder(order, |name| slots.get(name).map(shown));
        }
        for name in std::mem::take(&mut self.unpublished) {
            if let Some(slot) = self.slots.get(&name) {
                self.publisher.update(&name, shown(slot));
            }
        }
        self.publisher.publish(self.info(false), settled);
        self.published_settled = settled;
        self.last_publish = Instant::now();
        self.publish_pause = PUBLISH_EVERY.max(started.elapsed() * PUBLISH_SHARE);
    }
}

fn shown(slot: &WatchSlot) -> Shown {
    let watch = &slot.watch;
    let history = watch.history();
    Shown {
        started_at: watch.started_at(),
        status: WatchStatus {
            name: watch.name().to_owned(),
            group: watch.config().group.clone(),
            state: watch.state(),
            pid: watch.process().map(|p| p.pid.get()),
            uptime_secs: None,
            restarts: watch.restarts(),
            last_exit: watch.last_exit().map(exit_status),
            last_error: watch.last_error().map(str::to_owned),
            backoff_secs: watch.backoff().map(|(d, _)| d.as_secs_f64()),
            conditions: slot
                .conditions
                .as_ref()
                .map_or_else(Vec::new, |c| c.status()),
            ready: watch.config().ready.name().to_owned(),
            memory_max: watch.config().limits.memory_max,
            memory_high: watch.config().limits.memory_high,
            cpu_max_percent: watch.config().limits.cpu_max.map(|q| q.percent()),
            pids_max: watch.config().limits.pids_max,
            health: slot.health.as_ref().map(|h| h.status()),
            said: watch.said().map(str::to_owned),
            events: history
                .events()
                .map(|e| EventStatus {
                    at: crate::exit::unix_seconds(e.at),
                    what: e.what.clone(),
                })
                .collect(),
            exits: history.exits().map(exit_status).collect(),
            exit_counts: history.counts(),
            stdout: watch.config().stdout.clone(),
            stderr: watch.config().stderr.clone(),
        },
    }
}

pub(super) fn exit_status(exit: &Exit) -> LastExitStatus {
    LastExitStatus {
        status: exit.status.report(),
        at: crate::exit::unix_seconds(exit.at),
        pid: exit.pid.get(),
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
