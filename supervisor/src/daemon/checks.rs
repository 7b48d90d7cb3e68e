//! The daemon's periodic checks of running watches: resource conditions
//! and health probes, scheduled on the shared grid, their outcomes taken
//! in, and what fires acted on (restart, stop, or only told).
//!
//! Measuring and judging belong to `conditions` and `health`; this part
//! only decides when to ask, hands out exec probes as helper processes,
//! and turns a verdict into a command of the watch's.
use std::time::{Duration, Instant, SystemTime};

use nix::sys::wait::{waitid, Id, WaitPidFlag};

use super::{
    reach::Reach,
    slot::{Helper, HelperJob, WatchSlot},
    Daemon, Internal,
};

use crate::{
    conditions::{self, Conditions},
    config::{ConditionAction, Probe, ResourceCondition},
    exit::ExitStatus,
    health::{self, Health, Outcome, Verdict},
    helper,
    process::Pid,
    watch::{Command, Now, State, Watch},
};

impl Daemon {
    /// When the next resource condition is due (far away if none is).
    pub(super) fn next_check(&self) -> Instant {
        self.slots
            .values()
            .flat_map(|s| {
                let conditions = s.conditions.as_ref().and_then(Conditions::next_due);
                let health = s.health.as_ref().and_then(Health::next_due);
                conditions.into_iter().chain(health)
            })
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Checks the resource conditions that are due, on the whole process
    /// tree of each watch that is up, and carries out what fires.
    pub(super) fn check_conditions(&mut self) {
        let now = Instant::now();
        self.probe_health(now);
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.conditions
                    .as_ref()
                    .and_then(Conditions::next_due)
                    .is_some_and(|d| d <= now)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let process = self
                .slots
                .get(&name)
                .map(|s| &s.watch)
                .filter(|w| w.state() == State::Up)
                .and_then(|w| w.process());
            let Some(process) = process else {
                // Nothing to measure now: look again an interval later.
                if let Some(conditions) = self
                    .slots
                    .get_mut(&name)
                    .and_then(|s| s.conditions.as_mut())
                {
                    conditions.restart();
                }
                continue;
            };
            let reach = self.reach(&name);
            let cgroup = match &reach {
                Reach::Cgroup(cgroup) => Some(cgroup.clone()),
                _ => None,
            };
            let Some(conditions) = self
                .slots
                .get_mut(&name)
                .and_then(|s| s.conditions.as_mut())
            else {
                continue;
            };
            let sample = || conditions::sample(&reach.members(process.pid), cgroup.as_ref());
            let fired = conditions.check(now, &sample);
            self.unpublished.insert(name.clone());
            let Some(fired) = fired else {
                continue;
            };
            self.fire(&name, process.pid, fired.action, fired.reason);
        }
    }

    /// A condition or health check of watch `name` fired for its process
    /// `pid`: said, noted, notified, and acted on.
    pub(super) fn fire(&mut self, name: &str, pid: Pid, action: ConditionAction, reason: String) {
        log::warn!(
            "{name}: {reason} (process {pid}): {}",
            match action {
                ConditionAction::Restart => "restarting it",
                ConditionAction::Stop => "stopping it",
                ConditionAction::Notify => "notify only",
            }
        );
        if let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) {
            watch.condition_fired(reason.clone(), Now::read());
        }
        self.touched.insert(name.to_owned());
        match action {
            ConditionAction::Restart => self.command(name, Command::Restart, &reason),
            ConditionAction::Stop => self.command(name, Command::Stop, &reason),
            ConditionAction::Notify => {}
        }
    }

    /// Sends out the health probes that are due, for watches that are up
    /// or waiting to be ready.
    pub(super) fn probe_health(&mut self, now: Instant) {
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.health
                    .as_ref()
                    .and_then(Health::next_due)
                    .is_some_and(|d| d <= now)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in due {
            let Some(WatchSlot {
                watch,
                health: Some(health),
                ..
            }) = self.slots.get_mut(&name)
            else {
                continue;
            };
            let Some(process) = watch
                .process()
                .filter(|_| watch.state() == State::Up || watch.awaiting_ready())
            else {
                // Stopping or restarting: not now.
                health.postpone();
                continue;
            };
            health.probing();
            let check = health.config.clone();
            let pid = process.pid;
            if let Probe::Exec { argv } = &check.probe {
                let config = crate::config::WatchConfig {
                    argv: argv.clone(),
                    ..watch.config().clone()
                };
                let tx = self.tx.clone();
                let started = helper::start(&config, &[], check.timeout, move |finished| {
                    let _ = tx.send(Internal::HelperDone(finished));
                });
                match started {
                    Ok((helper, pidfd)) => {
                        self.helpers.insert(
                            helper,
                            Helper::new(HelperJob::Probe {
                                name,
                                process: pid,
                                pidfd,
                            }),
                        );
                    }
                    Err(e) => {
                        let outcome = Outcome {
                            ok: false,
                            message: format!("cannot run the check: {e:#}"),
                            latency: Duration::ZERO,
                            at: SystemTime::now(),
                        };
                        self.probed(name, pid, outcome);
                    }
                }
                continue;
            }
            let client = match check.probe {
                Probe::Http { tls_verify, .. } => Some(
                    self.http
                        .entry(tls_verify)
                        .or_insert_with(|| health::http_client(tls_verify))
                        .clone(),
                ),
                _ => None,
            };
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let outcome = health::probe(client, &check).await;
                let _ = tx.send(Internal::Probed { name, pid, outcome });
            });
        }
    }

    /// A health probe of watch `name`'s process `pid` came back.
    pub(super) fn probed(&mut self, name: String, pid: Pid, outcome: Outcome) {
        let Some(WatchSlot {
            watch,
            health: Some(health),
            ..
        }) = self.slots.get_mut(&name)
        else {
            return;
        };
        if watch.process().map(|p| p.pid) != Some(pid) {
            return;
        }
        let waiting = watch.awaiting_ready();
        if !outcome.ok {
            log::info!(
                "{name}: health check ({}) failed: {}",
                health.config.probe.describe(),
                outcome.message
            );
        }
        let message = outcome.message.clone();
        let said = format!(
            "health check {}: {} ({:.1} ms)",
            if outcome.ok { "passed" } else { "failed" },
            outcome.message,
            outcome.latency.as_secs_f64() * 1000.0
        );
        let verdict = health.record(outcome, waiting);
        let feed = &self.feed;
        super::feed::tell(feed, &name, crate::protocol::EventKind::Check, || said);
        self.unpublished.insert(name.clone());
        match verdict {
            Verdict::Nothing => {}
            Verdict::Ready => {
                let actions = watch.ready(&format!("health check passed: {message}"), Now::read());
                self.act(&name, actions);
            }
            Verdict::Fired { action, reason } => self.fire(&name, pid, action, reason),
        }
    }

    /// A helper process has exited (or was killed at its time limit).
    pub(super) fn helper_done(&mut self, finished: helper::Finished) {
        let Some(Helper { job, reaped }) = self.helpers.remove(&finished.pid) else {
            return;
        };
        let status = match reaped {
            Some(status) => status,
            None => match waitid(
                Id::PIDFd(std::os::fd::AsFd::as_fd(job.pidfd())),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG,
            ) {
                Ok(status) => ExitStatus::from_nix(status),
                Err(_) => ExitStatus::Unknown,
            },
        };
        let ok = !finished.timed_out && status == ExitStatus::Exited(0);
        let first_line = finished.output.lines().next().unwrap_or("").to_owned();
        let message = if finished.timed_out {
            format!("no answer within {:?}; killed", finished.elapsed)
        } else if first_line.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {first_line}")
        };
        match job {
            HelperJob::Probe { name, process, .. } => {
                let outcome = Outcome {
                    ok,
                    message,
                    latency: finished.elapsed,
                    at: SystemTime::now(),
                };
                self.probed(name, process, outcome);
            }
            HelperJob::Hook { what, .. } => self.hook_done(&what, ok, &message),
        }
    }
}

/// A watch has a new process: its resource conditions start afresh.
pub(super) fn start_conditions(configs: &[ResourceCondition]) -> Option<Conditions> {
    (!configs.is_empty()).then(|| Conditions::new(configs))
}

/// A watch has a new process: its health check starts afresh (probed
/// often while the process has yet to be ready).
pub(super) fn start_health(watch: &Watch) -> Option<Health> {
    let check = watch.config().health.as_ref()?;
    Some(Health::new(check.clone(), watch.awaiting_ready()))
}
