//! How the daemon ends: `terminate` stops every watch in reverse `after`
//! order (a watch only once those that start after it are down), within
//! one overall deadline when there is one (`[init] stop_timeout`), past
//! which what is left is SIGKILLed; the main watch (`main = true`) ending
//! for good starts that shutdown; and the daemon's exit status is then the
//! main watch's.
//!
//! Owns the shutdown's order, its deadline and the signals it forwards in
//! place of the watches' own `stop_signal`. The stops themselves go through
//! the watches' state machines like any other.
use std::{
    collections::{BTreeSet, HashMap},
    time::{Duration, Instant},
};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::protocol::{Command, Response, State};

use super::{requests::Goal, Daemon};

pub(super) struct Shutdown {
    why: String,
    /// Watches not told to stop yet: a watch that starts after them is
    /// still running.
    waiting: BTreeSet<String>,
    /// Of each watch, the watches that start after it.
    dependents: HashMap<String, Vec<String>>,
    /// Past it, what is left is killed.
    deadline: Option<Instant>,
    /// The signal the watches in `forwarded` are stopped with, instead of
    /// their `stop_signal`: the one the init was sent.
    signal: Option<Signal>,
    forwarded: BTreeSet<String>,
    /// What was monitored when it began (and the main watch whose end
    /// began it): saved as monitored, so that the next daemon starts them.
    monitored: BTreeSet<String>,
}

impl Shutdown {
    pub(super) fn keeps_monitored(&self, name: &str) -> bool {
        self.monitored.contains(name)
    }

    /// The signal watch `name` is stopped with, if not its own.
    pub(super) fn signal_for(&self, name: &str) -> Option<Signal> {
        self.signal.filter(|_| self.forwarded.contains(name))
    }
}

/// How a shutdown is asked for.
pub(super) struct Ask {
    pub why: String,
    pub reply: Option<oneshot::Sender<Response>>,
    /// At most this long, then SIGKILL.
    pub within: Option<Duration>,
    /// Stop these with this signal, not their `stop_signal`.
    pub signal: Option<(Signal, BTreeSet<String>)>,
    /// The main watch that ended, which began it.
    pub main: Option<String>,
}

impl Daemon {
    /// Stops every watch, those that start after others first, then ends
    /// the daemon (`terminated`).
    pub(super) fn terminate(&mut self, ask: Ask) {
        if self.shutdown.is_some() {
            // Already under way: a second `terminate` is answered when
            // every watch is down, like the first.
            if let Some(reply) = ask.reply {
                self.answer_when_all_down(reply);
            }
            return;
        }
        log::info!(
            "terminating ({}): stopping every watch, those that start after others first",
            ask.why
        );
        self.pending_starts.clear();
        let reply = ask.reply.unwrap_or_else(|| oneshot::channel().0);
        self.terminating = Some(self.answer_when_all_down(reply));
        let names: Vec<String> = self.slots.keys().cloned().collect();
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for name in &names {
            for dependency in self.after_of(name) {
                dependents.entry(dependency).or_default().push(name.clone());
            }
        }
        let (signal, forwarded) = ask
            .signal
            .map_or((None, BTreeSet::new()), |(s, to)| (Some(s), to));
        let monitored = self
            .slots
            .iter()
            .filter(|(_, s)| s.watch.state() != State::Unmonitored)
            .map(|(n, _)| n.clone())
            .chain(ask.main)
            .collect::<BTreeSet<String>>();
        // Written again (the main watch's end was saved already).
        self.unsaved.extend(monitored.iter().cloned());
        self.shutdown = Some(Shutdown {
            why: ask.why,
            waiting: names.into_iter().collect(),
            dependents,
            deadline: ask.within.map(|d| Instant::now() + d),
            signal,
            forwarded,
            monitored,
        });
        self.stop_ordered();
    }

    /// A request `reply` answers once every watch is down; its id.
    fn answer_when_all_down(&mut self, reply: oneshot::Sender<Response>) -> u64 {
        let names: Vec<String> = self.slots.keys().cloned().collect();
        let id = self.new_request(names.len().max(1), reply);
        if names.is_empty() {
            self.answer_part(id, None);
        }
        for name in &names {
            self.wait_for(name, Goal::Unmonitored, id);
        }
        id
    }

    /// Whether the shutdown is over: every watch is down.
    pub(super) fn terminated(&self) -> bool {
        self.terminating
            .is_some_and(|id| !self.replies.contains_key(&id))
    }

    /// Tells each watch still waiting to stop once nothing that starts
    /// after it runs. Called in every settle phase.
    pub(super) fn stop_ordered(&mut self) {
        let Some(shutdown) = &self.shutdown else {
            return;
        };
        let down = |name: &str| {
            self.slots
                .get(name)
                .is_none_or(|s| s.watch.state() == State::Unmonitored)
        };
        let ready: Vec<String> = shutdown
            .waiting
            .iter()
            .filter(|n| {
                shutdown
                    .dependents
                    .get(n.as_str())
                    .is_none_or(|after| after.iter().all(|a| down(a)))
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            return;
        }
        let why = format!("the supervisor is terminating: {}", shutdown.why);
        for name in ready {
            if let Some(shutdown) = &mut self.shutdown {
                shutdown.waiting.remove(&name);
            }
            self.command(&name, Command::Stop, &why);
        }
    }

    /// When the shutdown's deadline is, if it has one and it is not past.
    pub(super) fn shutdown_deadline(&self) -> Option<Instant> {
        self.shutdown.as_ref()?.deadline
    }

    /// The deadline passed: every watch not down yet is told to stop (if
    /// it waited for others) and killed.
    pub(super) fn shutdown_overdue(&mut self) {
        let Some(shutdown) = &mut self.shutdown else {
            return;
        };
        shutdown.deadline = None;
        let waiting = std::mem::take(&mut shutdown.waiting);
        let why = format!("the supervisor is terminating: {}", shutdown.why);
        let left: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.watch.state() != State::Unmonitored)
            .map(|(n, _)| n.clone())
            .collect();
        log::warn!(
            "the shutdown's deadline passed: killing what is left of {}",
            left.join(", ")
        );
        for name in &left {
            if waiting.contains(name) {
                self.command(name, Command::Stop, &why);
            }
            self.act(name, vec![crate::watch::Action::Kill]);
        }
    }

    /// The main watch ended for good (it is down, and not by the
    /// shutdown): the others are stopped and the daemon ends.
    pub(super) fn check_main(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let Some((name, slot)) = self.slots.iter().find(|(_, s)| s.watch.config().main) else {
            return;
        };
        let watch = &slot.watch;
        if watch.state() != State::Unmonitored || watch.process().is_some() {
            // What this daemon began can end; an exit in the state file
            // from before is over.
            self.main_began = true;
            return;
        }
        if !self.main_began {
            return;
        }
        let how = match (watch.last_exit(), watch.last_error()) {
            (Some(exit), _) => exit.cause.clone(),
            (None, Some(error)) => format!("it could not start: {error}"),
            (None, None) => "stopped".to_owned(),
        };
        let why = format!("its main watch {name} ended ({how})");
        let within = self.init.as_ref().map(|i| i.stop_timeout);
        let main = Some(name.clone());
        self.terminate(Ask {
            why,
            reply: None,
            within,
            signal: None,
            main,
        });
    }

    /// What the daemon exits with: the main watch's last exit (its code,
    /// or 128+N for signal N), 1 if it never ran; 0 without a main watch.
    pub(super) fn exit_code(&self) -> u8 {
        let Some(main) = self.slots.values().find(|s| s.watch.config().main) else {
            return 0;
        };
        main.watch
            .last_exit()
            .and_then(|e| e.status.as_exit_code())
            .unwrap_or(1)
    }
}
