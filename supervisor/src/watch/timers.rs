//! The delays a watch asks for, keyed by generation: each timer handed
//! out carries the generation it was armed with, and only the one armed
//! now may act when it fires. A timer for a process that is gone, or one
//! re-armed or cancelled since, is stale and does nothing. Plain data: no
//! clock is read here (the watch says when).
/// The delays a watch asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    /// The crash-loop backoff before a held start.
    Backoff = 0,
    /// `start_grace`: how long a started process has to be ready.
    Ready,
    /// `stop_grace`: how long the stop command has to end the process.
    StopGrace,
    /// `stop_timeout`: how long the stop signal has before SIGKILL.
    StopTimeout,
    /// `restart_grace`: how long the restart command may run.
    RestartGrace,
    /// `watchdog`: how long an up process may go without `WATCHDOG=1`.
    Watchdog,
}

const DELAYS: usize = 6;

/// The delays that belong to the process that runs now, and end with it.
const PROCESS_DELAYS: [Delay; 5] = [
    Delay::Ready,
    Delay::StopGrace,
    Delay::StopTimeout,
    Delay::RestartGrace,
    Delay::Watchdog,
];

/// A delay a watch asked for, to be handed back when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    pub delay: Delay,
    generation: u64,
}

/// What is armed now.
#[derive(Debug, Default)]
pub(super) struct Timers {
    /// The generation each delay is armed with (0: not armed).
    armed: [u64; DELAYS],
    /// The last generation handed out.
    generation: u64,
}

impl Timers {
    /// Arms `delay`; any earlier timer for it is stale from here on.
    pub fn arm(&mut self, delay: Delay) -> Timer {
        self.generation += 1;
        self.armed[delay as usize] = self.generation;
        Timer {
            delay,
            generation: self.generation,
        }
    }

    pub fn disarm(&mut self, delay: Delay) {
        self.armed[delay as usize] = 0;
    }

    pub fn armed(&self, delay: Delay) -> bool {
        self.armed[delay as usize] != 0
    }

    /// Disarms what belongs to the process that ran (it is gone or no
    /// longer ours).
    pub fn disarm_process(&mut self) {
        for delay in PROCESS_DELAYS {
            self.disarm(delay);
        }
    }

    /// Whether `timer` is the one armed now; if so, it is disarmed (a
    /// timer acts once).
    pub fn take(&mut self, timer: Timer) -> bool {
        let armed = &mut self.armed[timer.delay as usize];
        if *armed != timer.generation {
            return false;
        }
        *armed = 0;
        true
    }
}
