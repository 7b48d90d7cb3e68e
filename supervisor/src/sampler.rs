//! What every watch uses, sampled off the loop for the metrics: resident
//! memory of its processes and CPU time, every `EVERY`, so that a scrape
//! reads the last sample and never /proc (and a thousand watches cost
//! the loop nothing). A watch with a cgroup is measured over everything in
//! it (its CPU from `cpu.stat`, which counts processes already gone); one
//! without, over its main process. The last `KEPT` samples of each
//! running watch stay for the web page's sparklines. Reads the snapshot
//! (which watches run what), /proc and the cgroup tree; writes only its
//! table.
use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use crate::{cgroup::WatchCgroup, process::Pid, snapshot::Reader};

pub const EVERY: Duration = Duration::from_secs(10);
/// Samples kept per watch: ten minutes.
pub const KEPT: usize = 60;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    pub memory_bytes: u64,
    pub cpu_seconds: f64,
}

/// The last sample of each running watch, by name, and how many samples
/// were taken (a new one is a new picture).
#[derive(Clone, Debug, Default)]
pub struct Sampled {
    pub serial: u64,
    pub watches: HashMap<String, Usage>,
    /// The last `KEPT` samples of each running watch, oldest first, with
    /// when they were taken.
    pub recent: HashMap<String, VecDeque<(SystemTime, Usage)>>,
}

impl Sampled {
    /// Takes in a new sample of the running watches; the history of a
    /// watch that no longer runs goes.
    fn take(&mut self, watches: HashMap<String, Usage>, at: SystemTime) {
        self.serial += 1;
        self.recent.retain(|name, _| watches.contains_key(name));
        for (name, usage) in &watches {
            let kept = self.recent.entry(name.clone()).or_default();
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back((at, *usage));
        }
        self.watches = watches;
    }
}

pub type Table = Arc<RwLock<Sampled>>;

/// Samples every `EVERY` until the daemon exits; `cgroups` is the folder
/// of the watches' cgroups, where they have them.
pub fn start(snapshot: Reader, cgroups: Option<PathBuf>) -> Table {
    let table = Table::default();
    let filled = table.clone();
    tokio::spawn(async move {
        // A first sample soon after start-up, then every `EVERY`.
        let first = tokio::time::Instant::now() + Duration::from_secs(1);
        let mut tick = tokio::time::interval_at(first, EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (snapshot, cgroups, table) = (snapshot.latest(), cgroups.clone(), filled.clone());
            let sampled = tokio::task::spawn_blocking(move || {
                snapshot
                    .watches()
                    .iter()
                    .filter_map(|shown| {
                        let w = &shown.status;
                        let pid = Pid::new(w.pid?)?;
                        let cgroup = cgroups
                            .as_ref()
                            .and_then(|base| WatchCgroup::existing(base.join(&w.name)));
                        let sample = crate::conditions::sample_watch(pid, cgroup.as_ref());
                        Some((
                            w.name.clone(),
                            Usage {
                                memory_bytes: sample.memory_bytes,
                                cpu_seconds: sample.cpu_usec as f64 / 1e6,
                            },
                        ))
                    })
                    .collect::<HashMap<_, _>>()
            })
            .await;
            if let Ok(watches) = sampled {
                let mut table = table.write().unwrap_or_else(|p| p.into_inner());
                table.take(watches, SystemTime::now());
            }
        }
    });
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(memory_bytes: u64) -> Usage {
        Usage {
            memory_bytes,
            cpu_seconds: 0.0,
        }
    }

    #[test]
    fn keeps_the_last_samples_of_running_watches_only() {
        let mut sampled = Sampled::default();
        for i in 0..(KEPT as u64 + 5) {
            let watches = HashMap::from([("a".to_owned(), usage(i)), ("b".to_owned(), usage(i))]);
            sampled.take(watches, SystemTime::UNIX_EPOCH);
        }
        let a = &sampled.recent["a"];
        assert_eq!(a.len(), KEPT);
        assert_eq!(a.front().unwrap().1.memory_bytes, 5);
        assert_eq!(a.back().unwrap().1.memory_bytes, KEPT as u64 + 4);
        sampled.take(
            HashMap::from([("a".to_owned(), usage(1))]),
            SystemTime::UNIX_EPOCH,
        );
        assert!(!sampled.recent.contains_key("b"));
        assert_eq!(sampled.serial, KEPT as u64 + 6);
    }
}
