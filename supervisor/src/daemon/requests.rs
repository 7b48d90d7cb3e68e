//! Control requests: what each does, the requests waiting for a watch to
//! be up or unmonitored, and what `status` and `info` answer.
use std::time::SystemTime;

use anyhow::Result;
use tokio::sync::oneshot;

use crate::{
    control::Incoming,
    protocol::{CgroupsInfo, DaemonInfo, FdCount, Request, Response, Summary},
    watch::{Command, Now, State},
};

use super::{reach::signal_group, Daemon};

/// What a control request waits for before it is answered.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Goal {
    Up,
    Unmonitored,
}

pub(super) struct Waiter {
    goal: Goal,
    request: u64,
    /// The watch's failed starts when the request came: only a later
    /// failure answers it.
    failures: u64,
    /// How often the watch had entered the goal's state when the request
    /// came: entering it again answers the request, even if the watch has
    /// moved on since (a `start` queued behind the `stop`).
    entered: u64,
}

impl Goal {
    pub(super) fn state(self) -> State {
        match self {
            Self::Up => State::Up,
            Self::Unmonitored => State::Unmonitored,
        }
    }
}

/// A request over several watches, answered when the last is done.
pub(super) struct PendingReply {
    remaining: usize,
    errors: Vec<String>,
    reply: oneshot::Sender<Response>,
}

impl Daemon {
    pub(super) fn settle_waiters(&mut self, name: &str) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        if slot.watch.state() == State::Unmonitored && slot.removing {
            log::info!("{name} removed");
            let slot = self.slots.remove(name).expect("looked up");
            self.state_stale = true;
            self.order_stale = true;
            if let Some(cgroup) = &slot.cgroup {
                cgroup.remove();
            }
            if let Some(limits) = &slot.limits {
                limits.remove();
            }
            if let Some(trees) = &mut self.trees {
                trees.forget(name);
            }
            for waiter in slot.waiters {
                self.answer_part(waiter.request, None);
            }
            return;
        }
        let watch = &slot.watch;
        let state = watch.state();
        let failure = match state {
            State::Start => watch
                .backoff()
                .map(|(delay, _)| format!("{name} is flapping: next start in {delay:?}")),
            _ => None,
        };
        let error = watch.last_error().as_ref().map(|e| format!("{name}: {e}"));
        let failures = watch.failures();
        let entered = [watch.entered(State::Up), watch.entered(State::Unmonitored)];
        let Some(waiters) = self.slots.get_mut(name).map(|s| &mut s.waiters) else {
            return;
        };
        let mut done = Vec::new();
        waiters.retain(|w| {
            let entered = entered[w.goal as usize];
            let reached = state == w.goal.state() || entered > w.entered;
            let new_failure = error.clone().filter(|_| failures > w.failures);
            let failed = w.goal == Goal::Up
                && (failure.is_some() || new_failure.is_some() || state == State::Unmonitored);
            if reached || failed {
                done.push((
                    w.request,
                    if reached {
                        None
                    } else {
                        failure
                            .clone()
                            .or(new_failure)
                            .or(Some(format!("{name} was stopped before it was up")))
                    },
                ));
                false
            } else {
                true
            }
        });
        for (request, error) in done {
            self.answer_part(request, error);
        }
    }

    /// Request `request` waits for watch `name` to reach `goal`.
    pub(super) fn wait_for(&mut self, name: &str, goal: Goal, request: u64) {
        let Some(slot) = self.slots.get_mut(name) else {
            return;
        };
        let (failures, entered) = (slot.watch.failures(), slot.watch.entered(goal.state()));
        slot.waiters.push(Waiter {
            goal,
            request,
            failures,
            entered,
        });
    }

    pub(super) fn answer_part(&mut self, request: u64, error: Option<String>) {
        let Some(pending) = self.replies.get_mut(&request) else {
            return;
        };
        self.answered = true;
        pending.remaining -= 1;
        pending.errors.extend(error);
        if pending.remaining == 0 {
            let pending = self.replies.remove(&request).expect("present");
            let response = if pending.errors.is_empty() {
                Response::ok(Vec::new())
            } else {
                Response::error(pending.errors.join("; "))
            };
            let _ = pending.reply.send(response);
        }
    }

    pub(super) fn targets(&self, target: Option<&str>) -> Result<Vec<String>, String> {
        let names: Vec<String> = self
            .slots
            .values()
            .map(|s| &s.watch)
            .filter(|w| {
                target.is_none_or(|t| {
                    crate::protocol::names(t, w.name(), w.config().group.as_deref())
                })
            })
            .map(|w| w.name().to_owned())
            .collect();
        match target {
            Some(t) if names.is_empty() => Err(crate::protocol::no_target(t)),
            _ => Ok(self.in_start_order(names)),
        }
    }

    /// `names` with each watch after those it starts `after` (the config
    /// has no cycle), so that starting them in turn honours the order.
    pub(super) fn in_start_order(&self, names: Vec<String>) -> Vec<String> {
        let wanted: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
        // Only the watches that start after others (a few, where there
        // may be thousands).
        let after: std::collections::HashMap<&str, Vec<String>> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.watch.config().after.is_empty())
            .map(|(n, _)| (n.as_str(), self.after_of(n)))
            .collect();
        let order = crate::after::start_order(names.iter().map(String::as_str), |name| {
            Some(after.get(name).map_or(&[][..], Vec::as_slice))
        });
        // The config was refused if it had a cycle.
        match order {
            Ok(order) => order
                .into_iter()
                .filter(|n| wanted.contains(n))
                .map(str::to_owned)
                .collect(),
            Err(_) => names,
        }
    }

    pub(super) fn on_request(&mut self, incoming: Incoming) {
        self.answered = true;
        // What a client is told is on disk first: a daemon killed right
        // after a `status` re-adopts what that status showed. (Costs
        // nothing when nothing happened since the last write.)
        if self.state_unsaved() {
            self.save_state();
        }
        let Incoming {
            request,
            from,
            reply,
        } = incoming;
        if let Some(line) = request.audit_line() {
            log::info!("control: {line} (from {from})");
        }
        match request {
            // Answered from the snapshot by the control socket; here only
            // if a request reaches the loop some other way.
            Request::Status { target } => {
                let _ = reply.send(
                    self.publisher
                        .latest()
                        .status(target.as_deref(), SystemTime::now()),
                );
            }
            Request::Events { .. } => {
                let _ = reply.send(Response::error(
                    "events are streamed by the control socket, not answered",
                ));
            }
            Request::Command { command, target } => {
                let names = match self.targets(target.as_deref()) {
                    Ok(names) => names,
                    Err(e) => {
                        let _ = reply.send(Response::error(e));
                        return;
                    }
                };
                let id = self.new_request(names.len(), reply);
                let why = format!("`{}` requested by {from}", command.verb());
                let goal = match command {
                    Command::Start | Command::Restart | Command::Monitor => Goal::Up,
                    Command::Stop | Command::Unmonitor => Goal::Unmonitored,
                };
                // The operator's word comes before a start still pending
                // from start-up.
                if !self.pending_starts.is_empty() {
                    let named: std::collections::HashSet<&String> = names.iter().collect();
                    self.pending_starts.retain(|n| !named.contains(n));
                }
                for name in &names {
                    self.wait_for(name, goal, id);
                    if let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) {
                        let actions = watch.asked(command, &why, Now::read());
                        self.act(name, actions);
                    }
                }
            }
            Request::Signal { target, signal } => {
                let response = match (
                    self.targets(Some(&target)),
                    crate::units::parse_signal(&signal),
                ) {
                    (Err(e), _) | (_, Err(e)) => Response::error(e),
                    (Ok(names), Ok(signal)) => {
                        let mut running = 0;
                        for process in names
                            .iter()
                            .filter_map(|n| self.slots.get(n).map(|s| &s.watch)?.process())
                        {
                            signal_group(process.pid, signal);
                            running += 1;
                        }
                        if running == 0 {
                            Response::error(format!("'{target}' has no running process"))
                        } else {
                            Response::ok(Vec::new())
                        }
                    }
                };
                let _ = reply.send(response);
            }
            Request::Remove { name } => {
                if !self.slots.contains_key(&name) {
                    let _ = reply.send(Response::error(format!("no watch named '{name}'")));
                    return;
                }
                let id = self.new_request(1, reply);
                if let Some(slot) = self.slots.get_mut(&name) {
                    slot.removing = true;
                }
                self.wait_for(&name, Goal::Unmonitored, id);
                let why = format!("`remove` requested by {from}");
                self.command(&name, Command::Stop, &why);
            }
            Request::Load { path, missing } => self.start_load(path, missing, Some(reply)),
            Request::Info => {
                let _ = reply.send(Response {
                    summary: Some(Summary::Info(Box::new(self.info(true)))),
                    ..Response::ok(Vec::new())
                });
            }
            Request::Quit => {
                log::info!("quit requested: exiting, leaving every process running");
                let _ = reply.send(Response::ok(Vec::new()));
                self.quitting = true;
            }
            Request::Terminate => {
                let why = format!("`terminate` requested by {from}");
                let within = self.init.as_ref().map(|i| i.stop_timeout);
                self.terminate(super::shutdown::Ask {
                    why,
                    reply: Some(reply),
                    within,
                    signal: None,
                    main: None,
                });
            }
        }
    }

    /// What `info` (and the foot of `status`) shows of the daemon itself.
    /// `with_fds`: count the open fds too, which lists /proc/self/fd (tens
    /// of thousands with as many watches): for `info`, not for every
    /// `status`.
    /// Starts not made yet: the config's watches still pending from
    /// start-up, and those waiting for (or on) a spawner thread.
    pub(super) fn starting(&self) -> usize {
        self.pending_starts.len() + self.spawner.as_ref().map_or(0, |s| s.unfinished())
    }

    pub(super) fn info(&self, with_fds: bool) -> DaemonInfo {
        let fds = with_fds.then(crate::limits::fds_in_use);
        let tracking = match (&self.cgroups, &self.trees) {
            (Some(_), _) => "cgroup",
            (None, Some(_)) => "fork",
            (None, None) => "process group only",
        };
        DaemonInfo {
            pid: std::process::id(),
            config: self.config.source.clone(),
            watches: self.slots.len(),
            starting: self.starting(),
            backend: self.backend.kind().name().to_owned(),
            counters: self.backend.counters(),
            backend_failures: self.backend_failures,
            unreported_exits: self.unreported_exits,
            tracking: tracking.to_owned(),
            cgroups: self.cgroups.as_ref().map(|c| CgroupsInfo {
                dir: c.base().to_owned(),
                delegated: c.delegated().is_some(),
            }),
            oom_score_adj: Some(self.oom.clone()),
            notifications: self.notifier.counters(),
            fds: fds.map(|(open, limit)| FdCount {
                open: open as u64,
                limit,
            }),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            metrics: self.listening.metrics.map(|a| a.to_string()),
            web: self.listening.web.map(|a| a.to_string()),
            detection_latency: self.detection_latency.clone(),
            restart_duration: self.restart_duration.clone(),
        }
    }

    pub(super) fn new_request(&mut self, parts: usize, reply: oneshot::Sender<Response>) -> u64 {
        let id = self.next_request;
        self.next_request += 1;
        if parts == 0 {
            let _ = reply.send(Response::ok(Vec::new()));
        } else {
            self.replies.insert(
                id,
                PendingReply {
                    remaining: parts,
                    errors: Vec::new(),
                    reply,
                },
            );
        }
        id
    }
}
