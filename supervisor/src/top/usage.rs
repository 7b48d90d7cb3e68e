//! `top`'s own measure of each watch's processes, taken on the host as
//! htop does, at `top`'s pace rather than the daemon's sampler's (which
//! runs only for the metrics and the web page, every 10 s): the watch's
//! cgroup when its process is in one named for it, else its process.
//! CPU is the time used between two measures, as a share of one core.
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::app::Usage;
use crate::{cgroup::WatchCgroup, process::Pid, protocol::WatchStatus};

pub struct Meter {
    cgroup_root: Option<PathBuf>,
    /// The last measure of each watch: when, of which process, its CPU.
    last: HashMap<String, (Instant, u32, u64)>,
}

impl Meter {
    pub fn new() -> Self {
        Self {
            cgroup_root: crate::cgroup::mount().ok(),
            last: HashMap::new(),
        }
    }

    pub fn measure(&mut self, watches: &[WatchStatus]) -> HashMap<String, Usage> {
        let now = Instant::now();
        let mut usage = HashMap::new();
        let mut last = HashMap::new();
        for w in watches {
            let Some(pid) = w.pid.and_then(Pid::new) else {
                continue;
            };
            let cgroup = self.cgroup_of(pid, &w.name);
            let sample = crate::conditions::sample_watch(pid, cgroup.as_ref());
            let cpu_percent = match self.last.get(&w.name) {
                Some(&(at, was, cpu)) if was == pid.get() && now > at => {
                    let wall = now.duration_since(at).max(Duration::from_millis(1));
                    let used = sample.cpu_usec.saturating_sub(cpu) as f64 / 1e6;
                    Some(used / wall.as_secs_f64() * 100.0)
                }
                _ => None,
            };
            usage.insert(
                w.name.clone(),
                Usage {
                    cpu_percent,
                    memory_bytes: Some(sample.memory_bytes),
                },
            );
            last.insert(w.name.clone(), (now, pid.get(), sample.cpu_usec));
        }
        self.last = last;
        usage
    }

    /// The cgroup `pid` is in, if it is the watch's own (the daemon names
    /// each watch's cgroup for it).
    fn cgroup_of(&self, pid: Pid, name: &str) -> Option<WatchCgroup> {
        let root = self.cgroup_root.as_ref()?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let relative = text.lines().find_map(|l| l.strip_prefix("0::/"))?;
        let dir = root.join(relative);
        (dir.file_name()? == name).then(|| WatchCgroup::existing(dir))?
    }
}
