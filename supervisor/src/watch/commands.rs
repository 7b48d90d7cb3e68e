//! What operators and the daemon ask of a watch (start, stop, restart,
//! monitor, unmonitor), with who asked: the queue of commands waiting for
//! the watch to be free, and what each does in each state. Policy only, as
//! in the rest of the watch.
use super::{Action, Command, Delay, Now, State, Watch};

/// A command waiting for the watch to be free.
#[derive(Debug)]
pub(super) struct Queued {
    command: Command,
    /// An operator asked for it.
    asked: bool,
    /// Who or what asked, in words (for the exit it causes).
    why: String,
}

impl Watch {
    /// Queues `command`, which the daemon decided on (a condition, a
    /// reload, start-up) for the reason `why`; returns the actions for
    /// whatever can run now.
    pub fn command(&mut self, command: Command, why: &str, now: Now) -> Vec<Action> {
        self.queue(command, false, why, now)
    }

    /// Queues `command`, which an operator asked for (`why` says who).
    pub fn asked(&mut self, command: Command, why: &str, now: Now) -> Vec<Action> {
        self.queue(command, true, why, now)
    }

    fn queue(&mut self, command: Command, asked: bool, why: &str, now: Now) -> Vec<Action> {
        self.now = Some(now);
        self.queue.push_back(Queued {
            command,
            asked,
            why: why.to_owned(),
        });
        self.run_queue()
    }

    pub(super) fn run_queue(&mut self) -> Vec<Action> {
        let mut actions = Vec::new();
        while !self.busy() {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if matches!(queued.command, Command::Stop | Command::Restart) {
                self.stopping = Some(queued.why);
            }
            actions.extend(self.apply(queued.command, queued.asked));
        }
        actions
    }

    fn apply(&mut self, command: Command, asked: bool) -> Vec<Action> {
        match (command, self.state) {
            (Command::Start | Command::Monitor, State::Unmonitored) => {
                self.asked = asked;
                // A new attempt: the last one's failure is history (still
                // in the events), not this start's answer.
                self.last_error = None;
                self.moved(
                    State::Init,
                    &format!("{command:?} requested").to_lowercase(),
                );
                self.begin_start("starting", false)
            }
            (Command::Start | Command::Monitor, _) => Vec::new(),
            (Command::Stop, State::Up) => {
                self.moved(State::Stop, "stop requested");
                self.begin_stop()
            }
            (Command::Stop, State::Start) if self.process.is_some() => {
                self.restarting = None;
                self.moved(State::Stop, "stop requested before it was ready");
                self.begin_stop()
            }
            (Command::Stop, State::Start) if self.launching => {
                // What the launch leaves behind is stopped once it is known.
                self.restarting = None;
                self.moved(State::Stop, "stop requested while it was starting");
                Vec::new()
            }
            (Command::Restart, State::Start) if self.process.is_some() => {
                self.asked = asked;
                self.moved(State::Restart, "restart requested before it was ready");
                self.begin_stop()
            }
            (Command::Restart, State::Up) => {
                self.asked = asked;
                self.moved(State::Restart, "restart requested");
                match self.config.restart.clone() {
                    Some(command) => vec![
                        Action::RunRestart(command),
                        self.arm(Delay::RestartGrace, self.config.restart_grace),
                    ],
                    None => self.begin_stop(),
                }
            }
            (Command::Restart, State::Unmonitored) => self.apply(Command::Start, asked),
            (Command::Stop, _) => {
                self.backoff = None;
                self.timers.disarm(Delay::Backoff);
                self.restarting = None;
                self.moved(State::Unmonitored, "stop requested");
                Vec::new()
            }
            (Command::Unmonitor, _) => {
                self.backoff = None;
                self.timers.disarm(Delay::Backoff);
                self.timers.disarm_process();
                let release = self.process.take().is_some();
                self.moved(State::Unmonitored, "unmonitor requested");
                if release {
                    vec![Action::Release]
                } else {
                    Vec::new()
                }
            }
            (Command::Restart, _) => Vec::new(),
        }
    }

    /// Commands queued behind a restart, once its process is gone: a
    /// `start` or `restart` is met by the start that follows (it comes
    /// after them), and a `stop` is carried out by this stop, so the
    /// process is not started again first.
    pub(super) fn settle_queue_behind_restart(&mut self) {
        if self.state != State::Restart {
            return;
        }
        while self.queue.front().is_some_and(|q| {
            matches!(
                q.command,
                Command::Start | Command::Restart | Command::Monitor
            )
        }) {
            self.queue.pop_front();
        }
        if self
            .queue
            .front()
            .is_some_and(|q| matches!(q.command, Command::Stop | Command::Unmonitor))
        {
            let queued = self.queue.pop_front().expect("looked at");
            self.moved(
                State::Stop,
                &format!("{} requested during the restart", queued.command.verb()),
            );
            self.stopping = Some(queued.why);
        }
    }
}
