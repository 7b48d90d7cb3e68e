//! The stop ladder (stop command → `stop_grace` → stop signal →
//! `stop_timeout` → SIGKILL), the restart command and its
//! `restart_grace`, and what each delay a watch asked for does when it is
//! over. Policy only, as in the rest of the watch: the daemon runs the
//! commands, sends the signals and hands the timers back.
use super::{Action, Delay, Now, State, Timer, Watch};
use crate::config::NotifyEvent;

impl Watch {
    /// A delay it asked for is over. One that is no longer armed (its
    /// process is gone, or it was re-armed or cancelled) does nothing.
    pub fn timer_fired(&mut self, timer: Timer, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if !self.timers.take(timer) {
            return Vec::new();
        }
        match timer.delay {
            Delay::Backoff if self.state == State::Start && self.process.is_none() => {
                vec![Action::Spawn]
            }
            Delay::Backoff => Vec::new(),
            Delay::Ready => self.not_ready(),
            Delay::StopGrace => {
                let Some(process) = self.process else {
                    return Vec::new();
                };
                log::warn!(
                    "{}: stop command did not end process {} within stop_grace {:?}; killing the command, sending {}",
                    self.config.name,
                    process.pid,
                    self.config.stop_grace,
                    self.config.stop_signal
                );
                let mut actions = vec![Action::KillCommand];
                actions.extend(self.signal_stop());
                actions
            }
            Delay::StopTimeout => {
                let Some(process) = self.process else {
                    return Vec::new();
                };
                let line = format!(
                    "process {} did not stop within stop_timeout {:?}; sending SIGKILL",
                    process.pid, self.config.stop_timeout
                );
                log::warn!("{}: {line}", self.config.name);
                self.note(line);
                self.killed_at_timeout = true;
                vec![Action::Kill]
            }
            Delay::RestartGrace => self.restart_command_timed_out(),
            Delay::Watchdog => self.hung(None),
        }
    }

    /// The stop ladder's first step: the stop command, which has
    /// `stop_grace` to end the process, else the stop signal.
    pub(super) fn begin_stop(&mut self) -> Vec<Action> {
        self.timers.disarm(Delay::Ready);
        match self.config.stop.clone() {
            Some(command) => vec![
                Action::RunStop(command),
                self.arm(Delay::StopGrace, self.config.stop_grace),
            ],
            None => self.signal_stop(),
        }
    }

    /// The stop signal, then SIGKILL after `stop_timeout`.
    fn signal_stop(&mut self) -> Vec<Action> {
        vec![
            Action::Signal(self.config.stop_signal),
            self.arm(Delay::StopTimeout, self.config.stop_timeout),
        ]
    }

    /// The stop command could not be run: the stop signal is sent now.
    pub fn stop_command_failed(&mut self, error: &str, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if !self.timers.armed(Delay::StopGrace) {
            return Vec::new();
        }
        self.timers.disarm(Delay::StopGrace);
        log::error!(
            "{}: stop command failed ({error}); sending {}",
            self.config.name,
            self.config.stop_signal
        );
        self.signal_stop()
    }

    /// The restart command outlived `restart_grace`: it is killed, and the
    /// process is stopped and started instead.
    fn restart_command_timed_out(&mut self) -> Vec<Action> {
        if self.state != State::Restart || self.process.is_none() {
            return Vec::new();
        }
        log::warn!(
            "{}: restart command still ran after {:?}; stopping and starting instead",
            self.config.name,
            self.config.restart_grace
        );
        let mut actions = vec![Action::KillCommand];
        actions.extend(self.begin_stop());
        actions
    }

    /// The restart command could not be run: the process is stopped (by
    /// its signal) and started instead.
    pub fn restart_command_failed(&mut self, error: &str, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if !self.timers.armed(Delay::RestartGrace) {
            return Vec::new();
        }
        self.timers.disarm(Delay::RestartGrace);
        log::error!(
            "{}: restart command failed ({error}); stopping and starting instead",
            self.config.name
        );
        self.signal_stop()
    }

    /// The restart command has finished. If the process did not exit, it
    /// restarted in place (a reload): the watch is up again.
    pub fn restart_command_done(&mut self, now: Now) -> Vec<Action> {
        self.now = Some(now);
        if self.state != State::Restart || !self.timers.armed(Delay::RestartGrace) {
            return Vec::new();
        }
        self.timers.disarm(Delay::RestartGrace);
        let Some(process) = self.process else {
            return Vec::new();
        };
        self.restarts += 1;
        self.asked = false;
        let reason = format!(
            "restart command finished; process {} still runs",
            process.pid
        );
        self.moved(State::Up, &reason);
        self.notice(NotifyEvent::Restarted, Some(process.pid), None, reason);
        let mut actions = self.watchdog_armed();
        actions.extend(self.run_queue());
        actions
    }
}
