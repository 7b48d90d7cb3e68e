//! The poll backend, the last resort: every interval, check that each
//! watched pid still names a live process with the same start time, so a
//! reused pid is never taken for the old process. Latency is up to one
//! interval; the status is known only for our children.
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::time::{interval, Interval, MissedTickBehavior};

use super::{Counters, Options, Scope, Tracked};
use crate::{
    exit::ExitEvent,
    process::{Pid, ProcessId},
};

pub struct PollBackend {
    ticker: Interval,
    tracked: Tracked,
    counters: Counters,
}

impl PollBackend {
    pub fn open(options: &Options) -> Result<Self> {
        if options.scope == Scope::All {
            bail!("polling can only watch given processes, not report every exit");
        }
        if std::fs::metadata("/proc/self/stat").is_err() {
            bail!("/proc is not mounted");
        }
        let mut ticker = interval(options.poll_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Self {
            ticker,
            tracked: Tracked::default(),
            counters: Counters::default(),
        })
    }

    pub fn watch(&mut self, process: ProcessId) -> Result<()> {
        self.tracked.insert(process);
        self.tracked.confirm_alive(process);
        Ok(())
    }

    pub fn unwatch(&mut self, pid: Pid) -> Result<()> {
        self.tracked.remove(pid);
        Ok(())
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub async fn next_exit(&mut self) -> Result<ExitEvent> {
        loop {
            if let Some(event) = self.tracked.pop() {
                return Ok(event);
            }
            self.ticker.tick().await;
            let found = self.tracked.resync();
            self.counters.delivered += found.len() as u64;
        }
    }
}
