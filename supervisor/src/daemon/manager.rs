//! What the daemon tells its own service manager (`service_manager`):
//! `READY=1` once every watch of the config had its first start, a status
//! line as watches change, `STOPPING=1`, and `WATCHDOG=1` pings sent from
//! the loop itself, so that they stop when the loop is wedged.
use std::time::Duration;

use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::Daemon;
use crate::service_manager::ServiceManager;

/// How often the status line is brought up to date.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Manager {
    told: ServiceManager,
    ping: Option<Interval>,
    status: Interval,
    stopping: bool,
}

pub(super) enum Tick {
    Ping,
    Status,
}

impl Manager {
    /// `None` when nothing manages the daemon.
    pub(super) fn from_env() -> Option<Self> {
        let told = ServiceManager::from_env()
            .inspect_err(|e| log::warn!("{e:#}: not telling the service manager anything"))
            .ok()
            .flatten()?;
        // The first one a period from now: READY=1 comes first.
        let ticking = |every| {
            let mut tick = interval_at(Instant::now() + every, every);
            tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
            tick
        };
        let ping = told.ping_every().map(ticking);
        if let Some(every) = told.ping_every() {
            log::info!("pinging the service manager's watchdog every {every:?}");
        }
        Some(Self {
            told,
            ping,
            status: ticking(STATUS_EVERY),
            stopping: false,
        })
    }

    pub(super) async fn next(manager: &mut Option<Self>) -> Tick {
        let Some(manager) = manager else {
            return std::future::pending().await;
        };
        let ping = async {
            match &mut manager.ping {
                Some(ping) => ping.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ping => Tick::Ping,
            _ = manager.status.tick() => Tick::Status,
        }
    }

    pub(super) fn ready(&mut self, daemon: &Daemon) {
        self.told.ready(daemon.summary());
    }

    pub(super) fn on_tick(&mut self, tick: Tick, daemon: &Daemon) {
        match tick {
            Tick::Ping => {
                wedge_if_asked();
                self.told.ping();
            }
            Tick::Status => self.told.status(daemon.summary()),
        }
    }

    /// Once, as the daemon begins to end.
    pub(super) fn stopping(&mut self) {
        if !self.stopping {
            self.stopping = true;
            self.told.stopping();
        }
    }
}

impl Daemon {
    /// One line: how many watches, in which states, and the backend.
    pub(super) fn summary(&self) -> String {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for slot in self.slots.values() {
            *counts.entry(slot.watch.state().to_string()).or_default() += 1;
        }
        let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        format!(
            "{} watch(es): {}; exit backend {}",
            self.slots.len(),
            if states.is_empty() {
                "none".to_owned()
            } else {
                states.join(", ")
            },
            self.backend.kind()
        )
    }
}

/// A fault for the tests, in debug builds only: with
/// `SUPERVISOR_FAULT_WEDGE_FILE` set, the loop hangs at its next ping
/// once that file exists, as a loop stuck in a bug would.
fn wedge_if_asked() {
    #[cfg(debug_assertions)]
    if let Some(file) = std::env::var_os("SUPERVISOR_FAULT_WEDGE_FILE") {
        if std::path::Path::new(&file).exists() {
            log::error!("fault injected: the loop hangs");
            loop {
                std::thread::park();
            }
        }
    }
}
