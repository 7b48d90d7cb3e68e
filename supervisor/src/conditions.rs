//! Resource conditions: what a watch's whole process tree uses (resident
//! memory, CPU over the last interval), checked every interval; a
//! condition fires when its limit was exceeded in N of the last M checks
//! (god's `times = [N, M]`).
//!
//! Owns each condition's history and last value, and the measuring. CPU
//! is measured over the window since the previous check (god reports a
//! lifetime average, which never moves for a process that has run long):
//! from the cgroup's `cpu.stat`, which counts processes that have already
//! exited too, else from the members' own counters. Knows nothing of
//! which processes belong to a watch: the daemon passes them in, and acts
//! on what fires.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use crate::{
    cgroup::WatchCgroup,
    config::{ConditionAction, Resource, ResourceCondition},
    process::Pid,
};

/// What a watch's processes used, at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub at: Instant,
    pub memory_bytes: u64,
    /// CPU time used so far, by processes alive or (with a cgroup) gone.
    pub cpu_usec: u64,
}

/// Measures a watch whose main process is `pid`: everything in its
/// cgroup when it has one, else that process.
pub fn sample_watch(pid: Pid, cgroup: Option<&WatchCgroup>) -> Sample {
    let members: Vec<Pid> = match cgroup {
        Some(c) => c
            .pids()
            .into_iter()
            .filter_map(|p| Pid::new(u32::try_from(p).ok()?))
            .collect(),
        None => vec![pid],
    };
    sample(&members, cgroup)
}

/// Measures `members` (and, for CPU, the cgroup when there is one).
pub fn sample(members: &[Pid], cgroup: Option<&WatchCgroup>) -> Sample {
    let page = page_size();
    let mut memory_bytes = 0;
    let mut ticks = 0;
    for pid in members {
        memory_bytes += resident_pages(*pid) * page;
        if cgroup.is_none() {
            if let Ok(Some(stat)) = crate::process::stat(*pid) {
                ticks += stat.cpu_ticks;
            }
        }
    }
    let cpu_usec = match cgroup.and_then(WatchCgroup::cpu_usage_usec) {
        Some(usec) => usec,
        None => ticks * 1_000_000 / crate::process::ticks_per_second(),
    };
    Sample {
        at: Instant::now(),
        memory_bytes,
        cpu_usec,
    }
}

/// `/proc/PID/statm`'s resident pages, in one read.
fn resident_pages(pid: Pid) -> u64 {
    use std::io::Read as _;
    let mut buf = [0u8; 128];
    let Ok(n) =
        std::fs::File::open(format!("/proc/{pid}/statm")).and_then(|mut f| f.read(&mut buf))
    else {
        return 0;
    };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn page_size() -> u64 {
    // SAFETY: sysconf with a valid name.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

/// The conditions of one watch, for the process it runs now.
pub struct Conditions {
    states: Vec<State>,
}

struct State {
    config: ResourceCondition,
    /// Over the limit or not, newest last, at most M long.
    history: VecDeque<bool>,
    /// The last value: bytes, or percent of one core.
    last: Option<f64>,
    next_due: Instant,
    /// The previous sample, for CPU over the window.
    previous: Option<Sample>,
    fired: u32,
}

/// A condition that fired: what to do, and why in words.
pub struct Fired {
    pub action: ConditionAction,
    pub reason: String,
}

impl Conditions {
    pub fn new(configs: &[ResourceCondition]) -> Self {
        let now = Instant::now();
        Self {
            states: configs
                .iter()
                .map(|config| State {
                    config: config.clone(),
                    history: VecDeque::new(),
                    last: None,
                    next_due: crate::grid::next_tick(now, config.every),
                    previous: None,
                    fired: 0,
                })
                .collect(),
        }
    }

    /// When the next check is due, if there is any condition.
    pub fn next_due(&self) -> Option<Instant> {
        self.states.iter().map(|s| s.next_due).min()
    }

    /// A new process: its history starts afresh.
    pub fn restart(&mut self) {
        let now = Instant::now();
        for state in &mut self.states {
            state.history.clear();
            state.previous = None;
            state.next_due = crate::grid::next_tick(now, state.config.every);
        }
    }

    /// Checks each condition that is due against `sample` (taken once for
    /// all of them); returns the first that fired.
    pub fn check(&mut self, now: Instant, sample: &impl Fn() -> Sample) -> Option<Fired> {
        if self.next_due().is_none_or(|due| due > now) {
            return None;
        }
        let sample = sample();
        let mut fired = None;
        for state in &mut self.states {
            if state.next_due > now {
                continue;
            }
            state.next_due = crate::grid::next_tick(now, state.config.every);
            let value = match state.config.resource {
                Resource::Memory { .. } => Some(sample.memory_bytes as f64),
                Resource::Cpu { .. } => state.previous.and_then(|before| {
                    let wall = sample.at.duration_since(before.at);
                    (wall > Duration::ZERO).then(|| {
                        sample.cpu_usec.saturating_sub(before.cpu_usec) as f64
                            / wall.as_micros() as f64
                            * 100.0
                    })
                }),
            };
            state.previous = Some(sample);
            // The first CPU check only starts the window.
            let Some(value) = value else {
                continue;
            };
            state.last = Some(value);
            let (n, m) = state.config.times;
            let over = match state.config.resource {
                Resource::Memory { above } => value > above as f64,
                Resource::Cpu { above } => value > above,
            };
            state.history.push_back(over);
            while state.history.len() > m as usize {
                state.history.pop_front();
            }
            let count = state.history.iter().filter(|&&o| o).count() as u32;
            if over && count >= n && fired.is_none() {
                state.fired += 1;
                state.history.clear();
                fired = Some(Fired {
                    action: state.config.action,
                    reason: format!(
                        "{} above {} in {count} of the last {m} checks",
                        describe(state.config.resource, value),
                        limit(state.config.resource)
                    ),
                });
            }
        }
        fired
    }

    /// For `status`: each condition with its limit, last value and history.
    pub fn status(&self) -> Vec<crate::protocol::ConditionStatus> {
        self.states
            .iter()
            .map(|s| crate::protocol::ConditionStatus {
                condition: match s.config.resource {
                    Resource::Memory { .. } => "memory",
                    Resource::Cpu { .. } => "cpu",
                }
                .to_owned(),
                limit: limit(s.config.resource),
                every_secs: s.config.every.as_secs_f64(),
                times: [s.config.times.0, s.config.times.1],
                action: s.config.action.name().to_owned(),
                last: s.last.map(|v| describe(s.config.resource, v)),
                last_value: s.last,
                recent_over: s.history.iter().filter(|&&o| o).count(),
                fired: s.fired,
            })
            .collect()
    }
}

fn limit(resource: Resource) -> String {
    match resource {
        Resource::Memory { above } => bytes(above as f64),
        Resource::Cpu { above } => format!("{above:.0}%"),
    }
}

fn describe(resource: Resource, value: f64) -> String {
    match resource {
        Resource::Memory { .. } => format!("memory {}", bytes(value)),
        Resource::Cpu { .. } => format!("CPU {value:.0}%"),
    }
}

fn bytes(value: f64) -> String {
    crate::units::short_size(value as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory_over(above: u64, times: (u32, u32)) -> Conditions {
        Conditions::new(&[ResourceCondition {
            resource: Resource::Memory { above },
            every: Duration::from_millis(100),
            times,
            action: ConditionAction::Restart,
        }])
    }

    #[test]
    fn fires_after_n_of_the_last_m_checks_only() {
        let mut c = memory_over(100, (2, 3));
        let mut now = Instant::now();
        let mut check = |bytes: u64| {
            now += Duration::from_millis(100);
            let sample = Sample {
                at: now,
                memory_bytes: bytes,
                cpu_usec: 0,
            };
            c.check(now, &|| sample).is_some()
        };
        assert!(!check(200), "one check over is not enough");
        assert!(!check(50));
        assert!(check(200), "two of the last three");
        assert!(!check(200), "fired: the count starts again");
        assert!(!check(50));
        assert!(!check(50));
        assert!(!check(200), "one in the window");
    }

    #[test]
    fn cpu_is_measured_over_the_window() {
        let mut c = Conditions::new(&[ResourceCondition {
            resource: Resource::Cpu { above: 50.0 },
            every: Duration::from_millis(100),
            times: (1, 1),
            action: ConditionAction::Notify,
        }]);
        let start = Instant::now();
        let at = |ms: u64, cpu_usec: u64| Sample {
            at: start + Duration::from_millis(ms),
            memory_bytes: 0,
            cpu_usec,
        };
        // Ten seconds of CPU already spent before: only the window counts.
        let check = |c: &mut Conditions, s: Sample| c.check(s.at, &|| s);
        assert!(
            check(&mut c, at(100, 10_000_000)).is_none(),
            "starts the window"
        );
        assert!(
            check(&mut c, at(200, 10_010_000)).is_none(),
            "10% of a core"
        );
        let fired = check(&mut c, at(300, 10_090_000)).expect("80% of a core");
        assert_eq!(fired.action, ConditionAction::Notify);
        assert!(fired.reason.contains("CPU 80%"), "{}", fired.reason);
    }
}
