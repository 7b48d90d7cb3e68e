//! What a watch takes back from a previous daemon and hands to the next:
//! its counts and exits, a running process to re-adopt, and its entry in
//! the state file. Policy only, as in the rest of the watch.
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Action, Delay, Exit, Now, State, Watch};
use crate::{
    config::Readiness,
    exit::ExitStatus,
    process::ProcessId,
    state::{SavedExit, SavedWatch},
};

impl Watch {
    /// Takes back what a previous daemon recorded: counts, last exit, and
    /// whether an operator had stopped it.
    pub fn restore(&mut self, saved: &SavedWatch) {
        self.restarts = saved.restarts;
        let exit = saved.last_exit.as_ref().and_then(|e| {
            Some(Exit::bare(
                e.status(),
                UNIX_EPOCH + Duration::try_from_secs_f64(e.at).ok()?,
                crate::process::Pid::new(e.pid)?,
                e.status().to_string(),
            ))
        });
        if let Some(exit) = exit {
            self.history.keep(exit);
        }
    }

    /// Takes back the exits a previous daemon kept (its exit history),
    /// oldest first, in place of the last one the state file holds.
    pub fn restore_exits(&mut self, exits: impl IntoIterator<Item = Exit>) {
        self.history.restore_exits(exits);
    }

    /// Runs `process`, which a previous daemon started and which still
    /// runs; `ready` says whether it had been ready (else it waits again,
    /// for a whole `start_grace`).
    pub fn adopt(
        &mut self,
        process: ProcessId,
        ready: bool,
        started_at: Option<SystemTime>,
        now: Now,
    ) -> Vec<Action> {
        self.now = Some(now);
        self.process = Some(process);
        self.started_at = started_at;
        if ready || self.config.ready == Readiness::Started {
            self.moved(
                State::Up,
                &format!("re-adopted running process {}", process.pid),
            );
            self.watchdog_armed()
        } else {
            self.moved(
                State::Start,
                &format!("re-adopted running process {}, not yet ready", process.pid),
            );
            vec![self.arm(Delay::Ready, self.config.start_grace)]
        }
    }

    /// A previous daemon's process died while no daemon was watching.
    pub fn died_unwatched(&mut self, pid: crate::process::Pid, now: Now) {
        self.now = Some(now);
        self.history.keep(Exit::bare(
            ExitStatus::Unknown,
            now.wall,
            pid,
            "died while no supervisor was running".to_owned(),
        ));
        self.restarts += 1;
    }

    pub fn snapshot(&self) -> SavedWatch {
        SavedWatch {
            pid: self.process.map(|p| p.pid.get()),
            start_ticks: self.process.map(|p| p.start.ticks()),
            restarts: self.restarts,
            monitored: self.state != State::Unmonitored,
            ready: !self.awaiting_ready(),
            notify_socket: None,
            last_exit: self.history.last_exit().map(|e| {
                SavedExit::from_status(
                    e.pid.get(),
                    e.status,
                    e.at.duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_secs_f64(),
                )
            }),
        }
    }
}
