//! Kernel-enforced limits of a watch: `memory_max`, `memory_high`,
//! `cpu_max` and `pids_max`, with systemd's meaning (MemoryMax,
//! MemoryHigh, CPUQuota, TasksMax). Each is set in cgroup v2 where
//! its controller is enabled there, else in a cgroup v1 of the
//! controller's own hierarchy, made per watch under the daemon's own
//! (`<mount><own path>/supervisor/<instance>/<watch>`), which the child
//! joins before its exec (CLONE_INTO_CGROUP takes a v2 cgroup only).
//! Hosts differ: one with memory and pids on v1 (this project's test
//! machines) takes the v1 path. A limit the host cannot honour (v1 has no
//! `memory.high`) is an error naming the key, at the start that needs it.
//!
//! Owns the v1 folders and the limit files; the v2 folder is `cgroup`'s.
use std::{
    fs::File,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};

/// A watch's limits, as the config says them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes: the OOM killer acts above it.
    pub memory_max: Option<u64>,
    /// Bytes: the kernel throttles and reclaims above it, and kills
    /// nothing (v2 only).
    pub memory_high: Option<u64>,
    pub cpu_max: Option<CpuQuota>,
    pub pids_max: Option<u64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        Controller::ALL.iter().any(|c| !self.keys(*c).is_empty())
    }

    /// Whether both set the same limits (perhaps to other values).
    pub fn same_keys(&self, other: &Limits) -> bool {
        Controller::ALL
            .iter()
            .all(|c| self.keys(*c) == other.keys(*c))
    }

    /// The keys set that `controller` enforces.
    fn keys(&self, controller: Controller) -> Vec<&'static str> {
        let set = |key, value: bool| value.then_some(key);
        match controller {
            Controller::Memory => [
                set("memory_max", self.memory_max.is_some()),
                set("memory_high", self.memory_high.is_some()),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Controller::Cpu => set("cpu_max", self.cpu_max.is_some()).into_iter().collect(),
            Controller::Pids => set("pids_max", self.pids_max.is_some())
                .into_iter()
                .collect(),
        }
    }
}

/// CPU time per `CpuQuota::PERIOD_US` period, in microseconds: `cpu_max =
/// "150%"` is 150,000 µs each 100 ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuQuota(u64);

impl CpuQuota {
    /// systemd's period, and the kernel's default.
    pub const PERIOD_US: u64 = 100_000;

    pub fn from_percent(percent: f64) -> Result<Self, String> {
        let quota = (percent * Self::PERIOD_US as f64 / 100.0).round();
        if !(1000.0..=(1u64 << 40) as f64).contains(&quota) {
            return Err(format!(
                "{percent}%: a CPU quota is at least 1% (the kernel's 1 ms a period)"
            ));
        }
        Ok(Self(quota as u64))
    }

    pub fn micros(self) -> u64 {
        self.0
    }

    /// Of one CPU: 150.0 for one and a half.
    pub fn percent(self) -> f64 {
        self.0 as f64 * 100.0 / Self::PERIOD_US as f64
    }
}

/// A controller the limits use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    const ALL: [Controller; 3] = [Self::Memory, Self::Cpu, Self::Pids];

    fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Pids => "pids",
        }
    }
}

/// Where a controller is on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    /// Enabled in the cgroup v2 tree: the limit goes into the watch's v2
    /// cgroup.
    V2,
    /// A v1 hierarchy: the daemon's own cgroup in it.
    V1(PathBuf),
}

/// Where each controller is, found once.
#[derive(Clone, Debug, Default)]
pub struct Host {
    memory: Option<Place>,
    cpu: Option<Place>,
    pids: Option<Place>,
}

impl Host {
    /// Reads /proc/self/cgroup, /proc/self/mountinfo and the v2 root's
    /// `cgroup.controllers`.
    pub fn discover(v2_mount: Option<&Path>) -> Self {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let v2: Vec<String> = v2_mount
            .and_then(|m| std::fs::read_to_string(m.join("cgroup.controllers")).ok())
            .map(|c| c.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let place = |controller: Controller| {
            if v2.iter().any(|c| c == controller.name()) {
                return Some(Place::V2);
            }
            v1_place(&own, &mounts, controller.name()).map(Place::V1)
        };
        Self {
            memory: place(Controller::Memory),
            cpu: place(Controller::Cpu),
            pids: place(Controller::Pids),
        }
    }

    fn place(&self, controller: Controller) -> Option<&Place> {
        match controller {
            Controller::Memory => self.memory.as_ref(),
            Controller::Cpu => self.cpu.as_ref(),
            Controller::Pids => self.pids.as_ref(),
        }
    }
}

/// The daemon's own cgroup in the v1 hierarchy of `controller`, from
/// /proc/self/cgroup (`4:memory:/some/path`) and the hierarchy's mount.
fn v1_place(own: &str, mountinfo: &str, controller: &str) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_owned())
    })?;
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut right = right.split_whitespace();
        if right.next()? != "cgroup" {
            return None;
        }
        let options = right.nth(1)?;
        options
            .split(',')
            .any(|o| o == controller)
            .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
    })?;
    Some(mount.join(path.trim_start_matches('/')))
}

/// What a watch's limits are applied to: the v1 folders its process joins.
pub struct Applied {
    /// Each v1 folder and its `cgroup.procs`, open for the child to write
    /// itself into.
    v1: Vec<(Controller, PathBuf)>,
    /// Where its OOM kills are counted, and the times its memory limit
    /// was reached.
    oom_counter: Option<OomFiles>,
    /// Where the forks its `pids_max` refused are counted.
    pids_counter: Option<PathBuf>,
    /// The v2 cgroup its limits are in, and the controllers of those
    /// limits that are there.
    v2: Option<(PathBuf, Vec<Controller>)>,
}

impl Applied {
    /// The `cgroup.procs` files the child writes itself into, opened now.
    pub fn join(&self) -> Result<Vec<File>> {
        self.v1
            .iter()
            .map(|(_, dir)| {
                let procs = dir.join("cgroup.procs");
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&procs)
                    .with_context(|| format!("opening {}", procs.display()))
            })
            .collect()
    }

    /// How many times the OOM killer has killed in it, and its memory
    /// limit was reached.
    pub fn oom_counters(&self) -> Option<OomCounters> {
        let files = self.oom_counter.as_ref()?;
        let read = |path: &Path| std::fs::read_to_string(path).ok();
        Some(match files {
            OomFiles::V1 { control, failcnt } => OomCounters {
                kills: oom_kill_count(&read(control)?)?,
                limit_reached: read(failcnt)?.trim().parse().ok()?,
            },
            OomFiles::V2 { events } => {
                let text = read(events)?;
                OomCounters {
                    kills: oom_kill_count(&text)?,
                    limit_reached: counter(&text, "oom")?,
                }
            }
        })
    }

    /// How many forks `pids_max` has refused in it.
    pub fn fork_refusals(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.pids_counter.as_ref()?).ok()?;
        counter(&text, "max")
    }

    /// Sets new values of the limits it has (`limits` limits the same
    /// controllers), in place: the kernel applies them to what runs.
    pub fn update(&self, limits: &Limits) -> Result<()> {
        for (controller, dir) in &self.v1 {
            for (key, file, value) in v1_writes(*controller, limits)? {
                write(dir, file, &value).context(key)?;
            }
        }
        if let Some((dir, controllers)) = &self.v2 {
            for controller in controllers {
                for (key, file, value) in v2_writes(*controller, limits) {
                    write(dir, file, &value).context(key)?;
                }
            }
        }
        Ok(())
    }

    /// Removes the v1 folders (once their processes are gone), and the
    /// daemon's folders above them once empty.
    pub fn remove(&self) {
        for (_, dir) in &self.v1 {
            for dir in dir.ancestors().take(3) {
                if std::fs::remove_dir(dir).is_err() {
                    break;
                }
            }
        }
    }
}

/// The files a memory cgroup counts OOM kills in.
enum OomFiles {
    /// `memory.oom_control` (`oom_kill`), and `memory.failcnt`: the
    /// times usage hit the limit.
    V1 { control: PathBuf, failcnt: PathBuf },
    /// `memory.events`: `oom_kill`, and `oom`, the times the limit was
    /// reached with nothing left to reclaim.
    V2 { events: PathBuf },
}

/// A memory cgroup's counters at one moment. The kill counter counts
/// every OOM kill in it, the host's too; the limit counter tells whether
/// its own limit was involved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomCounters {
    pub kills: u64,
    pub limit_reached: u64,
}

/// `oom_kill N` in `memory.oom_control` (v1) or `memory.events` (v2).
fn oom_kill_count(text: &str) -> Option<u64> {
    counter(text, "oom_kill")
}

/// `NAME N` in a flat-keyed cgroup file.
fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == name).then(|| value.trim().parse().ok())?
    })
}

/// A limit's key, and the file and value that set it.
type Write = (&'static str, &'static str, String);

/// The files and values that set the limits of `controller` in cgroup v2.
fn v2_writes(controller: Controller, limits: &Limits) -> Vec<Write> {
    let mut writes = Vec::new();
    match controller {
        Controller::Memory => {
            if let Some(bytes) = limits.memory_max {
                writes.push(("memory_max", "memory.max", bytes.to_string()));
            }
            if let Some(bytes) = limits.memory_high {
                writes.push(("memory_high", "memory.high", bytes.to_string()));
            }
        }
        Controller::Cpu => {
            if let Some(quota) = limits.cpu_max {
                let value = format!("{} {}", quota.micros(), CpuQuota::PERIOD_US);
                writes.push(("cpu_max", "cpu.max", value));
            }
        }
        Controller::Pids => {
            if let Some(n) = limits.pids_max {
                writes.push(("pids_max", "pids.max", n.to_string()));
            }
        }
    }
    writes
}

/// The files and values that set the limits of `controller` in cgroup v1,
/// or why one cannot be.
fn v1_writes(controller: Controller, limits: &Limits) -> Result<Vec<Write>> {
    let mut writes = Vec::new();
    match controller {
        Controller::Memory => {
            if limits.memory_high.is_some() {
                bail!(
                    "memory_high: the memory controller is in cgroup v1 on this host, which has \
                     no memory.high (MemoryHigh needs cgroup v2; memory_max works on both)"
                );
            }
            if let Some(bytes) = limits.memory_max {
                writes.push(("memory_max", "memory.limit_in_bytes", bytes.to_string()));
            }
        }
        Controller::Cpu => {
            if let Some(quota) = limits.cpu_max {
                // The period first: a quota is checked against it.
                let period = CpuQuota::PERIOD_US.to_string();
                writes.push(("cpu_max", "cpu.cfs_period_us", period));
                writes.push(("cpu_max", "cpu.cfs_quota_us", quota.micros().to_string()));
            }
        }
        Controller::Pids => {
            if let Some(n) = limits.pids_max {
                writes.push(("pids_max", "pids.max", n.to_string()));
            }
        }
    }
    Ok(writes)
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let path = dir.join(file);
    std::fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// Sets `limits` for watch `name` of daemon `instance`, whose v2 cgroup
/// (if it has one) is `v2_dir`; returns what its process must join.
pub fn apply(
    host: &Host,
    instance: &str,
    name: &str,
    v2_dir: Option<&Path>,
    limits: &Limits,
) -> Result<Applied> {
    let mut applied = Applied {
        v1: Vec::new(),
        oom_counter: None,
        pids_counter: None,
        v2: None,
    };
    for controller in Controller::ALL {
        let keys = limits.keys(controller);
        if keys.is_empty() {
            continue;
        }
        let keys = keys.join(", ");
        let kind = controller.name();
        match host.place(controller) {
            None => {
                bail!("{keys}: this host has no {kind} controller (neither in cgroup v2 nor v1)")
            }
            Some(Place::V2) => {
                let Some(dir) = v2_dir else {
                    bail!(
                        "{keys}: the {kind} controller is in cgroup v2 here, and the watch has no cgroup of its own"
                    );
                };
                for (key, file, value) in v2_writes(controller, limits) {
                    write(dir, file, &value).context(key)?;
                }
                let (_, controllers) = applied
                    .v2
                    .get_or_insert_with(|| (dir.to_owned(), Vec::new()));
                controllers.push(controller);
                match controller {
                    Controller::Memory => {
                        applied.oom_counter = Some(OomFiles::V2 {
                            events: dir.join("memory.events"),
                        })
                    }
                    Controller::Pids => applied.pids_counter = Some(dir.join("pids.events")),
                    Controller::Cpu => {}
                }
            }
            Some(Place::V1(own)) => {
                // Checked before anything is made.
                let writes = v1_writes(controller, limits)?;
                let dir = own.join("supervisor").join(instance).join(name);
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("{keys}: creating {}", dir.display()))?;
                for (key, file, value) in writes {
                    write(&dir, file, &value).context(key)?;
                }
                match controller {
                    Controller::Memory => {
                        applied.oom_counter = Some(OomFiles::V1 {
                            control: dir.join("memory.oom_control"),
                            failcnt: dir.join("memory.failcnt"),
                        })
                    }
                    Controller::Pids => applied.pids_counter = Some(dir.join("pids.events")),
                    Controller::Cpu => {}
                }
                applied.v1.push((controller, dir));
            }
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_v1_controller_under_the_daemons_own_cgroup() {
        let own = "9:name=systemd:/\n4:memory:/process_api/abc\n8:pids:/\n0::/\n";
        let mounts = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                      39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_place(own, mounts, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/abc"))
        );
        assert_eq!(
            v1_place(own, mounts, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids/"))
        );
        assert_eq!(v1_place(own, mounts, "cpu"), None);
    }

    #[test]
    fn writes_systemds_meanings_into_v2_and_v1_files() {
        let limits = Limits {
            memory_max: Some(64 << 20),
            memory_high: None,
            cpu_max: Some(CpuQuota::from_percent(150.0).unwrap()),
            pids_max: Some(100),
        };
        let files = |writes: Vec<Write>| -> Vec<(&str, String)> {
            writes.into_iter().map(|(_, f, v)| (f, v)).collect()
        };
        let v2: Vec<_> = Controller::ALL
            .into_iter()
            .flat_map(|c| files(v2_writes(c, &limits)))
            .collect();
        assert_eq!(
            v2,
            [
                ("memory.max", "67108864".to_owned()),
                ("cpu.max", "150000 100000".to_owned()),
                ("pids.max", "100".to_owned())
            ]
        );
        let high = Limits {
            memory_high: Some(48 << 20),
            ..limits
        };
        assert_eq!(
            files(v2_writes(Controller::Memory, &high)),
            [
                ("memory.max", "67108864".to_owned()),
                ("memory.high", "50331648".to_owned())
            ]
        );
        let v1 = |c, l: &Limits| files(v1_writes(c, l).unwrap());
        assert_eq!(
            v1(Controller::Memory, &limits),
            [("memory.limit_in_bytes", "67108864".to_owned())]
        );
        assert_eq!(
            v1(Controller::Cpu, &limits),
            [
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "150000".to_owned())
            ]
        );
        assert_eq!(
            v1(Controller::Pids, &limits),
            [("pids.max", "100".to_owned())]
        );
        let refused = v1_writes(Controller::Memory, &high).unwrap_err();
        assert!(
            refused
                .to_string()
                .starts_with("memory_high: the memory controller is in cgroup v1"),
            "{refused}"
        );
    }

    #[test]
    fn a_cpu_quota_is_a_percentage_of_one_cpu_from_one_percent() {
        assert_eq!(CpuQuota::from_percent(150.0).unwrap().micros(), 150_000);
        assert_eq!(CpuQuota::from_percent(2.5).unwrap().percent(), 2.5);
        assert!(CpuQuota::from_percent(0.5).is_err());
        assert!(Limits::default().same_keys(&Limits::default()));
        let cpu = Limits {
            cpu_max: CpuQuota::from_percent(50.0).ok(),
            ..Limits::default()
        };
        assert!(!cpu.same_keys(&Limits::default()));
        assert!(cpu.any());
    }

    #[test]
    fn reads_the_oom_kill_counter_of_either_version() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let v2 = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(oom_kill_count(v1), Some(3));
        assert_eq!(oom_kill_count(v2), Some(2));
        assert_eq!(counter("max 4\n", "max"), Some(4));
    }
}
