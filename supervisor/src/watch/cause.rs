//! Why a watch's process died, in one line: the supervisor's own doing,
//! with the reason it stopped the process, or what the kernel recorded of
//! the signal that ended it (its sender, a fault, the kernel), and how
//! long the process ran. Words only, from what the watch knows and the
//! death it is handed.
use std::time::Duration;

use super::{history::ExitKind, State, Watch};
use crate::{
    exit::{Death, ExitStatus},
    process::Pid,
    units::short_duration,
};

impl Watch {
    /// The cause of the death of its process `pid`, which ran `lifetime`,
    /// and its kind; what the watch knew of the stop is used up.
    pub(super) fn cause(
        &mut self,
        pid: Pid,
        death: &Death,
        lifetime: Option<Duration>,
    ) -> (String, ExitKind) {
        let stopping = self.stopping.take();
        let killed = std::mem::take(&mut self.killed_at_timeout);
        let after = lifetime.map_or_else(String::new, |d| format!(" after {}", short_duration(d)));
        let by_us = ExitKind::Supervisor;
        match (self.state, stopping) {
            (State::Stop | State::Restart, Some(why)) if killed => (
                format!(
                    "killed by the supervisor{after}: did not stop within stop_timeout {} ({why})",
                    short_duration(self.config.stop_timeout)
                ),
                by_us,
            ),
            (State::Stop, Some(why)) => (format!("stopped by the supervisor{after}: {why}"), by_us),
            (State::Restart, Some(why)) => {
                (format!("restarted by the supervisor{after}: {why}"), by_us)
            }
            _ => {
                let refused = death.forks_refused.map_or_else(String::new, |(n, limit)| {
                    format!("; pids_max {limit} refused {n} fork(s) meanwhile")
                });
                (
                    format!("{}{after}{refused}", of_death(pid, death)),
                    kind_of(death),
                )
            }
        }
    }
}

/// The kind of a death the supervisor did not cause.
fn kind_of(death: &Death) -> ExitKind {
    match death.status {
        _ if death.oom.is_some() => ExitKind::Oom,
        ExitStatus::Killed {
            signal: libc::SIGXCPU | libc::SIGXFSZ,
            ..
        } => ExitKind::Limit,
        _ if death.forks_refused.is_some() => ExitKind::Limit,
        ExitStatus::Killed {
            core_dumped: true, ..
        } => ExitKind::Core,
        ExitStatus::Killed { .. } => ExitKind::Signal,
        ExitStatus::Exited(_) | ExitStatus::Unknown => ExitKind::Exit,
    }
}

/// What the kernel recorded of the death of `pid`: `killed by SIGKILL
/// from pid 4242 (bash, uid 1000, parent sshd 4100)`, else its status.
pub fn of_death(pid: Pid, death: &Death) -> String {
    if let Some(oom) = &death.oom {
        return oom.describe(pid);
    }
    match (death.status, &death.origin) {
        (
            ExitStatus::Killed {
                signal,
                core_dumped,
            },
            Some(origin),
        ) if origin.signal == signal => origin.describe(pid, core_dumped),
        (status @ ExitStatus::Killed { .. }, None) => match death.senders_unseen {
            Some(why) => format!("{status} (sender unknown: {why})"),
            None => format!("{status} (sender not seen)"),
        },
        (status, _) => status.to_string(),
    }
}
