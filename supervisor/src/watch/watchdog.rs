//! systemd's watchdog for a watch's process (`watchdog`, `WatchdogSec=`):
//! once up, the process must send `WATCHDOG=1` at least that often, or it
//! is hung and is sent `watchdog_signal`, then restarted. It may change
//! its own timeout (`WATCHDOG_USEC=`, 0 for none) or declare itself hung
//! (`WATCHDOG=trigger`). Policy only, as in the rest of the watch: the
//! daemon hands the messages in and the timer back.
use std::time::Duration;

use super::{Action, Delay, Now, State, Watch};
use crate::{config::NotifyEvent, units::short_duration};

impl Watch {
    /// The running process's timeout: its own `WATCHDOG_USEC=` if it
    /// sent one, else the config's.
    fn watchdog_timeout(&self) -> Option<Duration> {
        match self.watchdog_override {
            Some((process, timeout)) if Some(process) == self.process => timeout,
            _ => self.config.watchdog,
        }
    }

    /// (Re)starts the count for an up process; elsewhere, none runs.
    pub(super) fn watchdog_armed(&mut self) -> Vec<Action> {
        match self.watchdog_timeout() {
            Some(timeout) if self.state == State::Up && self.process.is_some() => {
                vec![self.arm(Delay::Watchdog, timeout)]
            }
            _ => {
                self.timers.disarm(Delay::Watchdog);
                Vec::new()
            }
        }
    }

    /// `WATCHDOG=1`: the count starts again.
    pub fn watchdog_ping(&mut self, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if !self.timers.armed(Delay::Watchdog) {
            return Vec::new();
        }
        self.watchdog_armed()
    }

    /// `WATCHDOG_USEC=usec`: the running process's timeout from now on
    /// (0: none), for a watch that has a watchdog.
    pub fn watchdog_usec(&mut self, usec: u64, now: Now) -> Vec<Action> {
        self.now = Some(now);
        let Some(process) = self.process.filter(|_| self.config.watchdog.is_some()) else {
            return Vec::new();
        };
        let timeout = (usec > 0).then(|| Duration::from_micros(usec));
        self.watchdog_override = Some((process, timeout));
        self.watchdog_armed()
    }

    /// `WATCHDOG=trigger`: the process says it is hung.
    pub fn watchdog_trigger(&mut self, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if self.watchdog_timeout().is_none() {
            return Vec::new();
        }
        self.hung(Some("WATCHDOG=trigger"))
    }

    /// The process is hung (it said so, or said nothing in time): it is
    /// sent `watchdog_signal`, SIGKILL after `stop_timeout`, and started
    /// again.
    pub(super) fn hung(&mut self, said: Option<&str>) -> Vec<Action> {
        let Some(process) = self.process.filter(|_| self.state == State::Up) else {
            return Vec::new();
        };
        let why = match (said, self.watchdog_timeout()) {
            (Some(said), _) => format!("hung: it sent {said}"),
            (None, Some(timeout)) => format!("hung: no WATCHDOG=1 for {}", short_duration(timeout)),
            (None, None) => return Vec::new(),
        };
        log::warn!(
            "{}: process {} {why}; sending {}",
            self.config.name,
            process.pid,
            self.config.watchdog_signal
        );
        self.note(format!("process {} {why}", process.pid));
        self.notice(NotifyEvent::Condition, Some(process.pid), None, why.clone());
        self.timers.disarm(Delay::Watchdog);
        self.stopping = Some(why);
        self.moved(State::Restart, "hung");
        vec![
            Action::Signal(self.config.watchdog_signal),
            self.arm(Delay::StopTimeout, self.config.stop_timeout),
        ]
    }
}
