//! What the kernel says about a death, in one type whatever told us.
use std::{fmt, time::SystemTime};

use serde::{Serialize, Serializer};

use crate::process::{Pid, ProcessId};

/// How a process ended, decoded from a wait(2) status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(u8),
    Killed {
        signal: i32,
        core_dumped: bool,
    },
    /// The source could not know (a stranger's death seen through pidfd or
    /// polling, or a death found by resynchronisation).
    Unknown,
}

impl ExitStatus {
    /// As a shell (and tini) says it: the exit code, or 128+N for signal
    /// N; `None` when it is not known.
    pub fn as_exit_code(&self) -> Option<u8> {
        match *self {
            Self::Exited(code) => Some(code),
            Self::Killed { signal, .. } => u8::try_from(128 + signal).ok(),
            Self::Unknown => None,
        }
    }

    pub fn from_wait_status(raw: u32) -> Self {
        let signal = (raw & 0x7f) as i32;
        if signal == 0 {
            Self::Exited(((raw >> 8) & 0xff) as u8)
        } else {
            Self::Killed {
                signal,
                core_dumped: raw & 0x80 != 0,
            }
        }
    }

    pub fn from_nix(status: nix::sys::wait::WaitStatus) -> Self {
        use nix::sys::wait::WaitStatus as W;
        match status {
            W::Exited(_, code) => Self::Exited(code as u8),
            W::Signaled(_, signal, core_dumped) => Self::Killed {
                signal: signal as i32,
                core_dumped,
            },
            _ => Self::Unknown,
        }
    }
}

/// What a reaped child used in its life: its peak resident memory and its
/// CPU time (user + system), from the kernel's rusage.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Bytes.
    pub max_rss: u64,
    pub cpu: std::time::Duration,
}

impl Usage {
    fn of(rusage: &libc::rusage) -> Self {
        let time = |t: libc::timeval| {
            std::time::Duration::from_secs(t.tv_sec.max(0) as u64)
                + std::time::Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Self {
            max_rss: rusage.ru_maxrss.max(0) as u64 * 1024,
            cpu: time(rusage.ru_utime) + time(rusage.ru_stime),
        }
    }
}

/// Reaps any exited child of ours: its pid, status and usage; `Ok(None)`
/// when none has exited.
pub fn reap_any() -> std::io::Result<Option<(crate::process::Pid, ExitStatus, Usage)>> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills in.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 with valid pointers to locals.
    let pid = unsafe { libc::wait4(-1, &mut status, libc::WNOHANG, &mut rusage) };
    match pid {
        0 => Ok(None),
        p if p > 0 => Ok(crate::process::Pid::new(p as u32).map(|pid| {
            (
                pid,
                ExitStatus::from_wait_status(status as u32),
                Usage::of(&rusage),
            )
        })),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Reaps the process `pidfd` pins if it has exited: `Ok(None)` while it
/// runs; ECHILD when it is not our child.
pub fn reap_pidfd(
    pidfd: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<Option<(ExitStatus, Usage)>> {
    use std::os::fd::AsRawFd as _;
    const P_PIDFD: libc::c_long = 3;
    // SAFETY: plain data the kernel fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the raw waitid (which, unlike libc's, also fills in rusage)
    // with valid pointers to locals.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_waitid,
            P_PIDFD,
            pidfd.as_raw_fd() as libc::c_long,
            &mut info as *mut libc::siginfo_t,
            (libc::WEXITED | libc::WNOHANG) as libc::c_long,
            &mut rusage as *mut libc::rusage,
        )
    };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: filled in by the kernel; si_pid is 0 while it runs.
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    let status = match info.si_code {
        libc::CLD_EXITED => ExitStatus::Exited(status as u8),
        libc::CLD_KILLED => ExitStatus::Killed {
            signal: status,
            core_dumped: false,
        },
        libc::CLD_DUMPED => ExitStatus::Killed {
            signal: status,
            core_dumped: true,
        },
        _ => ExitStatus::Unknown,
    };
    Ok(Some((status, Usage::of(&rusage))))
}

pub use crate::units::signal_name;

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "exited {code}"),
            Self::Killed {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(signal))?;
                if core_dumped {
                    f.write_str(" (core dumped)")?;
                }
                Ok(())
            }
            Self::Unknown => f.write_str("exit status unknown"),
        }
    }
}

impl ExitStatus {
    /// The exit code, the signal number and whether a core was dumped: the
    /// one mapping every report of an exit (status, state file) uses.
    pub fn parts(self) -> (Option<u8>, Option<i32>, bool) {
        match self {
            Self::Exited(code) => (Some(code), None, false),
            Self::Killed {
                signal,
                core_dumped,
            } => (None, Some(signal), core_dumped),
            Self::Unknown => (None, None, false),
        }
    }

    /// As the control protocol carries it.
    pub fn report(self) -> crate::protocol::ExitStatusReport {
        let (code, signal, core_dumped) = self.parts();
        crate::protocol::ExitStatusReport {
            text: self.to_string(),
            code,
            signal: signal.map(signal_name),
            core_dumped,
        }
    }
}

impl Serialize for ExitStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(s)
    }
}

/// A death as its watch learns of it: how the process ended, and where
/// the signal that ended it came from, where the backend could see that.
#[derive(Clone, Debug)]
pub struct Death {
    pub status: ExitStatus,
    pub origin: Option<crate::origin::Origin>,
    /// Why there is no origin where the backend cannot see senders.
    pub senders_unseen: Option<&'static str>,
    /// The OOM killer chose it.
    pub oom: Option<crate::origin::OomDeath>,
    /// How many forks its `pids_max` refused while it ran, and the limit.
    pub forks_refused: Option<(u64, u64)>,
    /// What it used (where the daemon reaped it: not a re-adopted one).
    pub usage: Option<Usage>,
    /// Where its core dump went, if it dumped one.
    pub core: Option<crate::core_file::CoreFile>,
    /// The last lines it wrote to its stdout and its stderr, where the
    /// daemon carries them (log files).
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

/// One process death, as every backend reports it.
#[derive(Clone, Debug, Serialize)]
pub struct ExitEvent {
    pub pid: Pid,
    /// Known when the watched identity or the kernel record carries it.
    pub process: Option<ProcessId>,
    /// The thread whose exit ended the process, when the source knows it.
    pub tid: Option<Pid>,
    pub ppid: Option<Pid>,
    pub comm: Option<String>,
    pub status: ExitStatus,
    /// When the kernel saw it (CLOCK_MONOTONIC ns), if the source says.
    pub kernel_ns: Option<u64>,
    /// When userspace learned of it.
    #[serde(with = "unix_time")]
    pub seen_at: SystemTime,
    /// True when found by looking (polling, or re-checking after lost
    /// records) rather than reported as it happened.
    pub discovered: bool,
    /// Where the signal that killed it came from (eBPF only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<crate::origin::Origin>,
    /// The OOM killer chose it (eBPF only).
    #[serde(skip)]
    pub oom: Option<crate::origin::OomKill>,
}

impl ExitEvent {
    /// The death of `pid` with `status`, learnt now: the one constructor,
    /// which each backend completes with what its source knows.
    pub fn new(pid: Pid, status: ExitStatus) -> Self {
        Self {
            pid,
            process: None,
            tid: None,
            ppid: None,
            comm: None,
            status,
            kernel_ns: None,
            seen_at: SystemTime::now(),
            discovered: false,
            origin: None,
            oom: None,
        }
    }

    /// A death found by looking rather than told: status from `waitid` if
    /// the process is our unreaped child, else unknown. A pid that now
    /// names another process is never asked: its status is not ours.
    pub fn discovered(process: ProcessId) -> Self {
        let still_ours = matches!(
            crate::process::stat(process.pid),
            Ok(Some(stat)) if stat.id == process
        );
        let status = if still_ours {
            peek_child_status(process.pid)
        } else {
            ExitStatus::Unknown
        };
        Self {
            process: Some(process),
            discovered: true,
            ..Self::new(process.pid, status)
        }
    }
}

pub(crate) mod unix_time {
    use std::time::SystemTime;

    use serde::Serializer;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(super::unix_seconds(*t))
    }
}

/// Seconds since the epoch, as every report of a time carries it.
pub fn unix_seconds(t: std::time::SystemTime) -> f64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The exit status of `pid` if it is an exited child of ours, without
/// reaping it (the reaper stays whoever owns the child).
pub fn peek_child_status(pid: Pid) -> ExitStatus {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    match waitid(
        Id::Pid(pid.as_nix()),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
    ) {
        Ok(status) => ExitStatus::from_nix(status),
        Err(_) => ExitStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wait_statuses() {
        assert_eq!(ExitStatus::from_wait_status(3 << 8).to_string(), "exited 3");
        assert_eq!(
            ExitStatus::from_wait_status(9).to_string(),
            "killed by SIGKILL"
        );
        assert_eq!(
            ExitStatus::from_wait_status(11 | 0x80).to_string(),
            "killed by SIGSEGV (core dumped)"
        );
        assert_eq!(signal_name(libc::SIGRTMIN() + 2), "SIGRTMIN+2");
    }
}
