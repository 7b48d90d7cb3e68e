//! Process identity: a pid alone names a process only until it is reused,
//! so a process is a pid plus the start time the kernel gave it.
//!
//! This module reads `/proc`; it owns no state and signals nothing.
use std::{collections::HashSet, fmt, io};

use procfs::{process::Process, ProcError};
use serde::Serialize;

/// A thread-group id, as userspace names processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Pid(u32);

impl Pid {
    pub fn new(raw: u32) -> Option<Self> {
        (raw != 0).then_some(Self(raw))
    }

    pub fn from_child(child: &std::process::Child) -> Self {
        Self(child.id())
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_nix(self) -> nix::unistd::Pid {
        nix::unistd::Pid::from_raw(self.0 as i32)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for Pid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u32>()
            .ok()
            .and_then(Pid::new)
            .ok_or_else(|| format!("'{s}' is not a process id (a positive integer)"))
    }
}

/// When a process started, in clock ticks since boot: field 22 of
/// `/proc/PID/stat`, the unit every interface to userspace agrees on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct StartTime(u64);

impl StartTime {
    /// For a process that was gone (exited and reaped) before its start
    /// time could be read: no live process matches it.
    pub const GONE: Self = Self(0);

    pub fn from_ticks(ticks: u64) -> Self {
        Self(ticks)
    }

    pub fn from_boottime_ns(ns: u64) -> Self {
        Self(ns / ns_per_tick())
    }

    pub fn ticks(self) -> u64 {
        self.0
    }
}

/// Nanoseconds per USER_HZ clock tick.
pub fn ns_per_tick() -> u64 {
    1_000_000_000 / ticks_per_second()
}

/// Clock ticks per second (USER_HZ).
pub fn ticks_per_second() -> u64 {
    procfs::ticks_per_second().max(1)
}

/// A particular process: its pid and when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ProcessId {
    pub pid: Pid,
    pub start: StartTime,
}

impl fmt::Display for ProcessId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (started at tick {})", self.pid, self.start.0)
    }
}

/// What `/proc/PID/stat` says of a process.
#[derive(Clone, Debug)]
pub struct Stat {
    pub id: ProcessId,
    pub ppid: Option<Pid>,
    pub state: char,
    pub comm: String,
    /// User + system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
}

impl Stat {
    /// Zombie or dead: the process has exited even if it is still listed.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Reads `/proc/PID/stat`; `Ok(None)` when no such process exists.
pub fn stat(pid: Pid) -> io::Result<Option<Stat>> {
    let stat = match Process::new(pid.0 as i32).and_then(|p| p.stat()) {
        Ok(stat) => stat,
        Err(ProcError::NotFound(_)) => return Ok(None),
        Err(ProcError::Io(e, _)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(ProcError::Io(e, _)) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
        Err(e) => return Err(io::Error::other(format!("reading /proc/{pid}/stat: {e}"))),
    };
    Ok(Some(Stat {
        id: ProcessId {
            pid,
            start: StartTime(stat.starttime),
        },
        ppid: u32::try_from(stat.ppid).ok().and_then(Pid::new),
        state: stat.state,
        comm: stat.comm,
        cpu_ticks: stat.utime + stat.stime,
    }))
}

/// CLOCK_MONOTONIC now: the clock of the kernel's timestamps on exits.
pub fn monotonic() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec the call fills in.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The name (`comm`) of process `pid`, while it exists (a zombie too).
pub fn comm(pid: Pid) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(text.trim_end_matches('\n').to_owned())
}

/// The command line of process `id` (arguments joined by spaces, at most
/// `limit` bytes read), if it still runs; `None` once it has exited, or
/// its pid is gone or names another process.
pub fn cmdline(id: ProcessId, limit: usize) -> Option<String> {
    use std::io::Read as _;
    let file = std::fs::File::open(format!("/proc/{}/cmdline", id.pid)).ok()?;
    // Opened first, then checked: the file open pins what it reads to the
    // process that had the pid then.
    if !matches!(stat(id.pid), Ok(Some(s)) if s.id == id && !s.has_exited()) {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(limit as u64).read_to_end(&mut bytes).ok()?;
    // Empty once it has exited (a zombie has no memory left to read).
    if bytes.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&bytes);
    Some(text.trim_end_matches('\0').replace('\0', " "))
}

/// The identity of the process that has `pid` now.
pub fn identify(pid: Pid) -> io::Result<ProcessId> {
    stat(pid)?.map(|s| s.id).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process with pid {pid}"),
        )
    })
}

/// Whether the process `id` still runs: same pid, same start time, and at
/// least one of its threads not yet exited. A thread group outlives its
/// leader thread, so a zombie leader with live threads is alive; threads in
/// `exited` (whose exit was already reported) count as dead even while the
/// kernel still lists them.
pub fn is_alive(id: ProcessId, exited: &HashSet<u32>) -> bool {
    let stat = match stat(id.pid) {
        Ok(Some(stat)) => stat,
        Ok(None) => return false,
        // Unreadable but present: assume alive rather than report a death
        // that did not happen.
        Err(_) => return true,
    };
    if stat.id.start != id.start {
        return false;
    }
    if !stat.has_exited() && !exited.contains(&id.pid.0) {
        return true;
    }
    // Read directly: procfs refuses a process whose leader is a zombie.
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", id.pid)) else {
        return false;
    };
    tasks.flatten().any(|task| {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            return false;
        };
        !exited.contains(&tid)
            && std::fs::read_to_string(task.path().join("stat"))
                .ok()
                .and_then(|stat| stat_state(&stat))
                .is_some_and(|state| !matches!(state, 'Z' | 'X' | 'x'))
    })
}

/// The state letter of a `stat` line: the first field after the comm,
/// which is parenthesised and may itself contain ") ".
fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until the process behind `pidfd` has exited (its pidfd turns
/// readable): the one wait for a pidfd, for a watch's process or a helper.
pub async fn exited(pidfd: std::os::fd::OwnedFd) {
    use tokio::io::{unix::AsyncFd, Interest};
    // SAFETY: the AsyncFd owns the pidfd, which stays open until it is
    // dropped (deregistered) here.
    if let Ok(afd) = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) } {
        let _ = afd.readable().await;
    }
}

/// A pidfd for `pid` (Linux 5.3+): it keeps naming that process even after
/// the pid is reused, and turns readable when the process has exited.
pub fn pidfd_open(pid: Pid) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.get() as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd, owned by no one else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the process `pidfd` names has exited (the pidfd is readable).
pub fn pidfd_exited(pidfd: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(
        std::os::fd::AsFd::as_fd(pidfd),
        PollFlags::POLLIN,
    )];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// Sends `signal` to the process `pidfd` names, never to one that took
/// its pid since.
pub fn pidfd_kill(
    pidfd: &std::os::fd::OwnedFd,
    signal: nix::sys::signal::Signal,
) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: pidfd_send_signal(2) with an open pidfd, a signal number, no
    // siginfo and no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal as libc::c_int,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wall-clock time at which a process with this start time started.
pub fn started_at(start: StartTime) -> Option<std::time::SystemTime> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    let since_boot = std::time::Duration::from_nanos(start.ticks().checked_mul(ns_per_tick())?);
    Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(btime) + since_boot)
}
