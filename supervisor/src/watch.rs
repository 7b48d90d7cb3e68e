//! One watched program's state machine, in god's vocabulary: unmonitored,
//! init, up, start, restart, stop.
//!
//! It decides, the daemon acts: every input (a command, a start that
//! worked or failed, the death of its process) returns the actions to take.
//! It knows nothing of backends, pids' kernel plumbing or sockets; it never
//! spawns or signals anything itself. Each transition is logged on one line.
use std::{
    collections::VecDeque,
    time::{Duration, Instant, SystemTime},
};

use nix::sys::signal::Signal;

pub use self::history::{Event, Exit, Fresh, History, EVENTS, EXITS};
use self::timers::Timers;
pub use self::timers::{Delay, Timer};
pub use crate::protocol::{Command, State};
use crate::{
    config::{Keepalive, NotifyEvent, Readiness, WatchConfig},
    exit::Death,
    process::ProcessId,
};

/// When the event a watch is handed happened, on both clocks. The daemon
/// reads them once per event; the state machine never reads a clock, so
/// that its tests can pass any time they like.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    /// For durations: flapping windows, backoff.
    pub mono: Instant,
    /// For what operators read: start times, exits, events.
    pub wall: SystemTime,
}

impl Now {
    /// The clocks now: for the daemon, at the edge.
    pub fn read() -> Self {
        Self {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// What the daemon must do next for this watch.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the process now.
    Spawn,
    /// Send this (stop) signal to every process of the watch, then
    /// SIGCONT, so that a stopped one sees it.
    Signal(Signal),
    /// SIGKILL every process of the watch.
    Kill,
    /// Run the stop command; `stop_command_failed` follows if it cannot.
    RunStop(Vec<String>),
    /// Run the restart command; `restart_command_done` follows when it
    /// has exited, `restart_command_failed` if it cannot run.
    RunRestart(Vec<String>),
    /// Kill the stop or restart command if it still runs.
    KillCommand,
    /// Stop watching the process (it keeps running).
    Release,
    /// Hand `timer` back to `timer_fired` at `at`.
    Timer { at: Instant, timer: Timer },
}

/// Something an operator may want to hear about, for the notifiers.
#[derive(Clone, Debug)]
pub struct Notice {
    pub event: NotifyEvent,
    pub pid: Option<crate::process::Pid>,
    /// The exit it is about, with its cause.
    pub exit: Option<Exit>,
    pub detail: String,
}

pub struct Watch {
    config: WatchConfig,
    state: State,
    /// The process this watch runs now.
    process: Option<ProcessId>,
    started_at: Option<SystemTime>,
    /// Starts after the first that were not asked for.
    restarts: u32,
    /// Why the last start failed, until one works.
    last_error: Option<String>,
    /// When recent starts happened, for flapping detection.
    starts: VecDeque<Instant>,
    /// Current crash-loop delay and when the held start is due.
    backoff: Option<(Duration, Instant)>,
    /// Commands that arrived while the watch was busy, and whether an
    /// operator asked for each; never dropped.
    queue: VecDeque<commands::Queued>,
    /// The start under way was asked for by an operator: the crash-loop
    /// backoff never holds it back, and it is not counted as a crash.
    asked: bool,
    /// Its recent events and exits.
    history: History,
    /// Why the supervisor is stopping (or restarting) the process now.
    stopping: Option<String>,
    /// The timeout a process set for itself (`WATCHDOG_USEC=`; `None`
    /// inside: no watchdog for it).
    watchdog_override: Option<(ProcessId, Option<Duration>)>,
    /// It did not stop within `stop_timeout` and was sent SIGKILL.
    killed_at_timeout: bool,
    /// What happened since the daemon last took them, for notifications.
    notices: Vec<Notice>,
    /// Why the watch is starting again, until it is up (a restart).
    restarting: Option<String>,
    /// What the process last said of itself (sd_notify `STATUS=`).
    said: Option<String>,
    /// A launch (of a program that writes a pid file) is under way: its
    /// outcome, `spawned` or `spawn_failed`, is still to come.
    launching: bool,
    /// How many starts have failed: a request waits for the outcome of a
    /// start after it arrived, not for an older failure.
    failures: u64,
    /// How many times the watch has entered each state (by `State as
    /// usize`): a request is answered by a state reached after it came,
    /// even if a queued command moved the watch on at once.
    entered: [u64; 6],
    /// The delays armed now.
    timers: Timers,
    /// When the event being handled happened (set by every input).
    now: Option<Now>,
}

impl Watch {
    pub fn new(config: WatchConfig) -> Self {
        Self {
            config,
            state: State::Unmonitored,
            process: None,
            started_at: None,
            restarts: 0,
            last_error: None,
            starts: VecDeque::new(),
            backoff: None,
            queue: VecDeque::new(),
            history: History::default(),
            stopping: None,
            watchdog_override: None,
            killed_at_timeout: false,
            notices: Vec::new(),
            restarting: None,
            said: None,
            launching: false,
            failures: 0,
            asked: false,
            entered: [0; 6],
            timers: Timers::default(),
            now: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Takes a changed config (a reload) for the next start.
    pub fn reconfigure(&mut self, config: WatchConfig) {
        self.config = config;
    }

    /// The process it runs now.
    pub fn process(&self) -> Option<ProcessId> {
        self.process
    }

    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    /// Starts after the first that were not asked for.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    pub fn last_exit(&self) -> Option<&Exit> {
        self.history.last_exit()
    }

    /// Why the last start failed, until one works.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The crash-loop delay and when the held start is due.
    pub fn backoff(&self) -> Option<(Duration, Instant)> {
        self.backoff
    }

    /// Its recent events and exits.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// What happened since the last call, for the event stream.
    pub fn take_fresh(&mut self) -> Vec<Fresh> {
        self.history.take_fresh()
    }

    /// What the process last said of itself (sd_notify `STATUS=`).
    pub fn said(&self) -> Option<&str> {
        self.said.as_deref()
    }

    /// The process said this of itself.
    pub fn says(&mut self, status: String) {
        self.said = Some(status);
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Waiting for its process to exit, or for a launch an `unmonitor`
    /// cut short to end: commands queue until then. (In `start`, a launch
    /// is under way or a backoff runs, and `stop` applies at once.)
    pub fn busy(&self) -> bool {
        matches!(self.state, State::Stop | State::Restart)
            || self.launching && self.state == State::Unmonitored
    }

    /// How many times the watch has entered `state`.
    pub fn entered(&self, state: State) -> u64 {
        self.entered[state as usize]
    }

    /// How many starts have failed so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The launch of a program that writes a pid file has begun; its
    /// process is known once the file names it (`spawned`).
    pub fn launched(&mut self) {
        self.launching = true;
    }

    fn failed(&mut self, error: String) {
        self.failures += 1;
        self.last_error = Some(error);
    }

    fn moved(&mut self, to: State, reason: &str) {
        if self.state != to {
            log::info!(
                "{} moved '{}' to '{}': {reason}",
                self.config.name,
                self.state,
                to
            );
            self.note(format!("moved '{}' to '{to}': {reason}", self.state));
            self.entered[to as usize] += 1;
        }
        self.state = to;
    }

    fn now(&self) -> Now {
        self.now.expect("every input sets the time")
    }

    /// Asks for `delay` to end `after` from now.
    fn arm(&mut self, delay: Delay, after: Duration) -> Action {
        Action::Timer {
            at: self.now().mono + after,
            timer: self.timers.arm(delay),
        }
    }

    /// Remembers `what` among the watch's recent events.
    fn note(&mut self, what: String) {
        let at = self.now().wall;
        self.history.note(at, what);
    }

    fn notice(
        &mut self,
        event: NotifyEvent,
        pid: Option<crate::process::Pid>,
        exit: Option<Exit>,
        detail: String,
    ) {
        self.notices.push(Notice {
            event,
            pid,
            exit,
            detail,
        });
    }

    /// What happened since the last call, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// A resource condition or the health check fired.
    pub fn condition_fired(&mut self, reason: String, now: Now) {
        self.now = Some(now);
        let pid = self.process.map(|p| p.pid);
        self.note(format!("condition: {reason}"));
        self.notice(NotifyEvent::Condition, pid, None, reason);
    }

    /// Whether the process runs but has not yet said it is ready.
    pub fn awaiting_ready(&self) -> bool {
        self.state == State::Start && self.process.is_some()
    }

    /// Enters `start`, now or after the crash-loop backoff.
    fn begin_start(&mut self, reason: &str, counts_as_restart: bool) -> Vec<Action> {
        if counts_as_restart {
            self.restarts += 1;
            self.restarting = Some(reason.to_owned());
        }
        self.moved(State::Start, reason);
        if self.asked {
            return vec![Action::Spawn];
        }
        let now = self.now().mono;
        let window = self.config.flapping.within;
        self.forget_old_starts(now);
        if self.starts.len() as u32 >= self.config.flapping.starts {
            let delay = match self.backoff {
                Some((previous, _)) => (previous * 2).min(self.config.flapping.max_backoff),
                None => Duration::from_secs(1).min(self.config.flapping.max_backoff),
            };
            let due = now + delay;
            self.backoff = Some((delay, due));
            let detail = format!(
                "{} starts within {window:?}; next start in {delay:?}",
                self.starts.len()
            );
            log::warn!("{} is flapping: {detail}", self.config.name);
            self.notice(NotifyEvent::Flapping, None, None, detail);
            return vec![self.arm(Delay::Backoff, delay.max(self.config.restart_delay))];
        }
        if counts_as_restart && !self.config.restart_delay.is_zero() {
            return vec![self.arm(Delay::Backoff, self.config.restart_delay)];
        }
        vec![Action::Spawn]
    }

    /// Drops the starts that have left the flapping window.
    fn forget_old_starts(&mut self, now: Instant) {
        let window = self.config.flapping.within;
        while self
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            self.starts.pop_front();
        }
    }

    pub fn spawned(&mut self, process: ProcessId, now: Now) -> Vec<Action> {
        self.now = Some(now);
        self.launching = false;
        match self.state {
            State::Unmonitored => {
                log::info!(
                    "{}: process {} left running unwatched (unmonitor requested while it was starting)",
                    self.config.name,
                    process.pid
                );
                let mut actions = vec![Action::Release];
                actions.extend(self.run_queue());
                return actions;
            }
            State::Stop => {
                // Stopped while it was starting: what it left is stopped
                // the whole way (stop command or signal, then SIGKILL).
                self.process = Some(process);
                self.started_at = Some(now.wall);
                self.note(format!(
                    "process {} started; stopping it (stop requested while it was starting)",
                    process.pid
                ));
                return self.begin_stop();
            }
            _ => {}
        }
        if !std::mem::take(&mut self.asked) {
            self.starts.push_back(now.mono);
        }
        self.process = Some(process);
        self.started_at = Some(now.wall);
        self.last_error = None;
        self.said = None;
        self.forget_old_starts(now.mono);
        if self.starts.len() < self.config.flapping.starts as usize {
            // A calm stretch ends the backoff sequence.
            self.backoff = None;
        }
        let waiting_for = match self.config.ready {
            Readiness::Started => {
                let mut actions = self.up(&format!("process {} started", process.pid));
                actions.extend(self.run_queue());
                return actions;
            }
            Readiness::Health => "its health check to pass",
            Readiness::Notify => "READY=1 on $NOTIFY_SOCKET",
        };
        let line = format!(
            "process {} started; waiting up to {:?} for {waiting_for}",
            process.pid, self.config.start_grace
        );
        log::info!("{}: {line}", self.config.name);
        self.note(line);
        let mut actions = vec![self.arm(Delay::Ready, self.config.start_grace)];
        actions.extend(self.run_queue());
        actions
    }

    /// Enters `up`; the watchdog starts counting.
    fn up(&mut self, reason: &str) -> Vec<Action> {
        self.moved(State::Up, reason);
        let watchdog = self.watchdog_armed();
        if let Some(why) = self.restarting.take() {
            let pid = self.process.map(|p| p.pid);
            self.notice(
                NotifyEvent::Restarted,
                pid,
                None,
                format!("{reason} (after: {why})"),
            );
        }
        watchdog
    }

    /// The process said it is ready, or its health check passed: the
    /// watch is up.
    pub fn ready(&mut self, how: &str, now: Now) -> Vec<Action> {
        self.now = Some(now);
        let Some(process) = self.process.filter(|_| self.state == State::Start) else {
            return Vec::new();
        };
        self.timers.disarm(Delay::Ready);
        let mut actions = self.up(&format!("process {} is ready ({how})", process.pid));
        actions.extend(self.run_queue());
        actions
    }

    /// The process was not ready within `start_grace`: the start failed,
    /// and the process is stopped (then started again, with keepalive).
    pub(super) fn not_ready(&mut self) -> Vec<Action> {
        let Some(process) = self.process.filter(|_| self.state == State::Start) else {
            return Vec::new();
        };
        let error = format!(
            "process {} was not ready within {:?}",
            process.pid, self.config.start_grace
        );
        log::error!("{}: start failed: {error}; stopping it", self.config.name);
        self.note(format!("start failed: {error}"));
        self.failed(error);
        self.begin_stop()
    }

    pub fn spawn_failed(&mut self, error: &str, now: Now) -> Vec<Action> {
        self.now = Some(now);
        self.launching = false;
        match self.state {
            State::Stop => {
                self.moved(
                    State::Unmonitored,
                    &format!("stopped while it was starting (the start failed: {error})"),
                );
                return self.run_queue();
            }
            State::Unmonitored => return self.run_queue(),
            _ => {}
        }
        if !std::mem::take(&mut self.asked) {
            self.starts.push_back(now.mono);
        }
        self.failed(error.to_owned());
        log::error!("{}: start failed: {error}", self.config.name);
        let reason = format!("start failed: {error}");
        if self.config.keepalive != Keepalive::Never {
            self.begin_start(&reason, true)
        } else {
            self.moved(State::Unmonitored, &reason);
            self.notice(NotifyEvent::GaveUp, None, None, reason);
            self.run_queue()
        }
    }

    /// The process is gone (reaped). Decides what follows.
    pub fn exited(&mut self, death: Death, now: Now) -> Vec<Action> {
        self.now = Some(now);
        let Some(process) = self.process.take() else {
            return Vec::new();
        };
        let status = death.status;
        self.timers.disarm_process();
        self.settle_queue_behind_restart();
        let lifetime = self
            .started_at
            .take()
            .and_then(|t| now.wall.duration_since(t).ok());
        let (cause, kind) = self.cause(process.pid, &death, lifetime);
        self.history.exited(
            Exit {
                status,
                at: now.wall,
                pid: process.pid,
                cause: cause.clone(),
                origin: death.origin.as_ref().map(|o| o.report()),
                lifetime,
                oom: death.oom.as_ref().map(|oom| oom.report()),
                usage: death.usage,
                core: death.core,
                stdout: death.stdout,
                stderr: death.stderr,
            },
            kind,
        );
        let reason = match self.state {
            State::Start if self.last_error.is_none() => {
                let error = format!(
                    "process {} exited before it was ready: {cause}",
                    process.pid
                );
                self.failed(error.clone());
                error
            }
            _ => format!("process {} exited: {cause}", process.pid),
        };
        let unasked = matches!(self.state, State::Up | State::Start);
        if unasked {
            self.notice(
                NotifyEvent::Exited,
                Some(process.pid),
                self.history.last_exit().cloned(),
                reason.clone(),
            );
        }
        let actions = match self.state {
            State::Stop => {
                self.moved(State::Unmonitored, &reason);
                Vec::new()
            }
            State::Restart => self.begin_start(&reason, true),
            State::Up | State::Start
                if self
                    .config
                    .keepalive
                    .restarts(status, &self.config.success_codes) =>
            {
                self.begin_start(&reason, true)
            }
            State::Up if self.config.keepalive == Keepalive::OnFailure => {
                // It ended well: done, not given up on.
                self.moved(
                    State::Unmonitored,
                    &format!("{reason}; not started again (keepalive = \"on-failure\")"),
                );
                Vec::new()
            }
            _ => {
                self.moved(State::Unmonitored, &reason);
                if unasked {
                    let exit = self.history.last_exit().cloned();
                    self.notice(NotifyEvent::GaveUp, Some(process.pid), exit, reason);
                }
                Vec::new()
            }
        };
        let mut all = actions;
        all.extend(self.run_queue());
        all
    }
}

mod cause;
mod commands;
mod history;
mod ladder;
mod resumed;
#[cfg(test)]
mod tests;
mod timers;
mod watchdog;
