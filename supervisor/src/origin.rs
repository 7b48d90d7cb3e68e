//! Where the signal that ended a process came from, as the kernel recorded
//! it when the signal was sent: a process (with its uid, parent and, if it
//! still runs, command line), the kernel, or a fault at an address; and
//! how that reads. Data and words only: the eBPF backend fills it in, the
//! watch puts it into the exit's cause.
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{
    process::{Pid, StartTime},
    units::signal_name,
};

/// `si_code` of the signal, in the kernel's categories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// `kill(2)` (`SI_USER`).
    User,
    /// `tkill(2)`/`tgkill(2)` (`SI_TKILL`).
    Tkill,
    /// `sigqueue(3)` (`SI_QUEUE`).
    Queue,
    /// The kernel itself (`SI_KERNEL`): the OOM killer, a limit, a hangup.
    Kernel,
    /// A fault the kernel raised for the process (a positive `si_code`).
    Fault(i32),
    /// Any other code (timers, async I/O, message queues).
    Other(i32),
}

impl Code {
    pub fn from_raw(code: i32) -> Self {
        match code {
            0 => Self::User,
            -6 => Self::Tkill,
            -1 => Self::Queue,
            0x80 => Self::Kernel,
            c if c > 0 => Self::Fault(c),
            c => Self::Other(c),
        }
    }

    /// The sender is a process that asked for it (not the kernel).
    pub fn from_a_process(self) -> bool {
        matches!(self, Self::User | Self::Tkill | Self::Queue)
    }

    /// The constant's name, as in `siginfo.h`.
    pub fn name(self, signal: i32) -> String {
        match self {
            Self::User => "SI_USER".to_owned(),
            Self::Tkill => "SI_TKILL".to_owned(),
            Self::Queue => "SI_QUEUE".to_owned(),
            Self::Kernel => "SI_KERNEL".to_owned(),
            Self::Fault(c) => {
                fault(signal, c).map_or_else(|| c.to_string(), |(name, _)| name.to_owned())
            }
            Self::Other(c) => match c {
                -2 => "SI_TIMER".to_owned(),
                -3 => "SI_MESGQ".to_owned(),
                -4 => "SI_ASYNCIO".to_owned(),
                -5 => "SI_SIGIO".to_owned(),
                c => c.to_string(),
            },
        }
    }
}

/// The name and meaning of fault code `code` of `signal`
/// (asm-generic/siginfo.h).
fn fault(signal: i32, code: i32) -> Option<(&'static str, &'static str)> {
    Some(match (signal, code) {
        (libc::SIGSEGV, 1) => ("SEGV_MAPERR", "not mapped"),
        (libc::SIGSEGV, 2) => ("SEGV_ACCERR", "not accessible (permissions)"),
        (libc::SIGSEGV, 3) => ("SEGV_BNDERR", "out of bounds"),
        (libc::SIGSEGV, 4) => ("SEGV_PKUERR", "denied by a protection key"),
        (libc::SIGBUS, 1) => ("BUS_ADRALN", "misaligned"),
        (libc::SIGBUS, 2) => ("BUS_ADRERR", "beyond the end of its file"),
        (libc::SIGBUS, 3) => ("BUS_OBJERR", "a hardware error"),
        (libc::SIGBUS, 4) => ("BUS_MCEERR_AR", "a memory error (machine check)"),
        (libc::SIGBUS, 5) => ("BUS_MCEERR_AO", "a memory error (machine check)"),
        (libc::SIGILL, 1) => ("ILL_ILLOPC", "illegal opcode"),
        (libc::SIGILL, 2) => ("ILL_ILLOPN", "illegal operand"),
        (libc::SIGILL, 3) => ("ILL_ILLADR", "illegal addressing mode"),
        (libc::SIGILL, 4) => ("ILL_ILLTRP", "illegal trap"),
        (libc::SIGILL, 5) => ("ILL_PRVOPC", "privileged opcode"),
        (libc::SIGILL, 6) => ("ILL_PRVREG", "privileged register"),
        (libc::SIGILL, 7) => ("ILL_COPROC", "coprocessor error"),
        (libc::SIGILL, 8) => ("ILL_BADSTK", "internal stack error"),
        (libc::SIGFPE, 1) => ("FPE_INTDIV", "integer divide by zero"),
        (libc::SIGFPE, 2) => ("FPE_INTOVF", "integer overflow"),
        (libc::SIGFPE, 3) => ("FPE_FLTDIV", "floating-point divide by zero"),
        (libc::SIGFPE, 4) => ("FPE_FLTOVF", "floating-point overflow"),
        (libc::SIGFPE, 5) => ("FPE_FLTUND", "floating-point underflow"),
        (libc::SIGFPE, 6) => ("FPE_FLTRES", "floating-point inexact result"),
        (libc::SIGFPE, 7) => ("FPE_FLTINV", "invalid floating-point operation"),
        (libc::SIGFPE, 8) => ("FPE_FLTSUB", "subscript out of range"),
        (libc::SIGTRAP, 1) => ("TRAP_BRKPT", "breakpoint"),
        (libc::SIGTRAP, 2) => ("TRAP_TRACE", "trace trap"),
        _ => return None,
    })
}

/// What the OOM killer saw when it chose the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomKill {
    /// Resident memory, in bytes: anonymous, file-backed, shared.
    pub anon_rss: u64,
    pub file_rss: u64,
    pub shmem_rss: u64,
    /// The task whose allocation made the kernel kill.
    pub trigger: Option<(Pid, String)>,
}

/// An OOM kill as the watch learns of it: what the OOM killer saw, where
/// the backend could see it (eBPF), and the watch's `memory_max` where
/// its cgroup says that limit was reached. Without the first, the
/// watch's cgroup counted the kill (any backend).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OomDeath {
    pub kill: Option<OomKill>,
    pub limit: Option<u64>,
}

impl OomDeath {
    /// How the death of `pid` reads: by its cgroup's limit where that was
    /// reached, else a system-wide shortage.
    pub fn describe(&self, pid: Pid) -> String {
        let rss = match &self.kill {
            Some(kill) => format!("anon RSS {}", crate::units::short_size(kill.anon_rss)),
            None => "counted by its cgroup".to_owned(),
        };
        let trigger = self.kill.as_ref().and_then(|k| k.trigger.as_ref());
        match (self.limit, trigger) {
            (Some(limit), _) => format!(
                "killed by the OOM killer: cgroup memory limit {} reached ({rss})",
                crate::units::short_size(limit)
            ),
            (None, Some((trigger, _))) if *trigger == pid => {
                format!("killed by the OOM killer: system out of memory, triggered by itself ({rss})")
            }
            (None, Some((trigger, comm))) => format!(
                "killed by the OOM killer: system out of memory, triggered by pid {trigger} ({comm}) ({rss})"
            ),
            (None, None) => format!("killed by the OOM killer: out of memory ({rss})"),
        }
    }

    pub fn report(&self) -> OomReport {
        let kill = self.kill.as_ref();
        let trigger = kill.and_then(|k| k.trigger.as_ref());
        OomReport {
            anon_rss: kill.map(|k| k.anon_rss),
            file_rss: kill.map(|k| k.file_rss),
            shmem_rss: kill.map(|k| k.shmem_rss),
            trigger_pid: trigger.map(|(p, _)| p.get()),
            trigger_comm: trigger.map(|(_, c)| c.clone()),
            cgroup_limit: self.limit,
        }
    }
}

/// An OOM kill as `status --json` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OomReport {
    /// Resident memory when it was chosen, in bytes; null where only the
    /// watch's cgroup counted the kill (a backend other than eBPF).
    pub anon_rss: Option<u64>,
    pub file_rss: Option<u64>,
    pub shmem_rss: Option<u64>,
    /// The task whose allocation made the kernel kill.
    pub trigger_pid: Option<u32>,
    pub trigger_comm: Option<String>,
    /// The watch's `memory_max` (bytes), when that limit was reached;
    /// null for a system-wide shortage.
    pub cgroup_limit: Option<u64>,
}

/// The process that sent a signal, as it was when it sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sender {
    /// Its tgid (the pid `ps` shows), even if a thread of it sent it.
    pub pid: Pid,
    pub tid: Pid,
    /// Its real uid.
    pub uid: u32,
    pub comm: String,
    pub parent: Option<(Pid, String)>,
    pub start: StartTime,
    /// Its command line, if it still ran when the death was read.
    pub cmdline: Option<String>,
}

/// Where the fatal signal came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub signal: i32,
    pub code: Code,
    /// The task that was running when it was generated: the sender of a
    /// `kill`, the faulting process, or whatever the kernel was serving.
    pub sender: Sender,
    /// The fault's address.
    pub addr: Option<u64>,
    /// When it was sent (CLOCK_MONOTONIC ns).
    pub sent_ns: u64,
}

impl Origin {
    /// How the death reads, for a process `pid` killed by this signal:
    /// `killed by SIGKILL from pid 4242 (bash, uid 1000, parent sshd
    /// 4100)`, `aborted (SIGABRT sent by itself)`, `killed by SIGSEGV:
    /// address 0x0 not mapped`.
    pub fn describe(&self, pid: Pid, core_dumped: bool) -> String {
        let name = signal_name(self.signal);
        let core = if core_dumped { " (core dumped)" } else { "" };
        let by_itself = self.sender.pid == pid;
        match self.code {
            _ if self.signal == libc::SIGABRT && by_itself => {
                format!("aborted (SIGABRT sent by itself){core}")
            }
            Code::Fault(code) => {
                let (_, meaning) = fault(self.signal, code).unwrap_or(("", "a fault"));
                let addr = self.addr.unwrap_or(0);
                match self.signal {
                    libc::SIGSEGV | libc::SIGBUS => {
                        format!("killed by {name}: address {addr:#x} {meaning}{core}")
                    }
                    _ => format!("killed by {name}: {meaning} at {addr:#x}{core}"),
                }
            }
            Code::Kernel => match self.signal {
                libc::SIGXCPU => {
                    format!("killed by SIGXCPU: its CPU time limit (RLIMIT_CPU) was reached{core}")
                }
                libc::SIGXFSZ => format!(
                    "killed by SIGXFSZ: its file size limit (RLIMIT_FSIZE) was reached{core}"
                ),
                _ => format!("killed by {name} from the kernel{core}"),
            },
            _ if by_itself => format!("killed by {name} (sent by itself){core}"),
            code if code.from_a_process() => {
                format!("killed by {name} from {}{core}", self.sender)
            }
            code => format!("killed by {name} ({}){core}", code.name(self.signal)),
        }
    }
}

/// A signal that could end a traced process, seen as it was sent
/// (`trace --signals`): whether it ends the process is told by its exit,
/// if one follows.
#[derive(Clone, Debug, Serialize)]
pub struct SentSignal {
    /// The target process, and the thread it was sent to.
    pub pid: Pid,
    pub tid: Pid,
    /// Sent to the whole process (`kill`), not to one thread (`tgkill`).
    pub group: bool,
    pub comm: String,
    #[serde(serialize_with = "name_of_signal")]
    pub signal: i32,
    pub origin: Origin,
    /// When it was sent (CLOCK_MONOTONIC ns).
    pub kernel_ns: u64,
}

fn name_of_signal<S: serde::Serializer>(signal: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&signal_name(*signal))
}

impl SentSignal {
    /// `SIGTERM (SI_USER) from pid 4242 (bash, uid 1000, parent sshd
    /// 4100)`, `SIGSEGV (SEGV_MAPERR): address 0x0 not mapped`.
    pub fn describe(&self) -> String {
        let o = &self.origin;
        let mut text = format!(
            "{} ({})",
            signal_name(self.signal),
            o.code.name(self.signal)
        );
        match o.code {
            Code::Fault(code) => {
                let meaning = fault(self.signal, code).map_or("a fault", |(_, m)| m);
                let addr = o.addr.unwrap_or(0);
                text += &format!(": address {addr:#x} {meaning}");
            }
            code if code.from_a_process() && o.sender.pid == self.pid => text += " by itself",
            code if code.from_a_process() => text += &format!(" from {}", o.sender),
            _ => text += " from the kernel",
        }
        if !self.group {
            text += &format!(" to thread {}", self.tid);
        }
        text
    }
}

/// `pid 4242 (bash, uid 1000, parent sshd 4100)`.
impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} ({}, uid {}", self.pid, self.comm, self.uid)?;
        if let Some((pid, comm)) = &self.parent {
            write!(f, ", parent {comm} {pid}")?;
        }
        f.write_str(")")
    }
}

/// The origin as `status --json` shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OriginReport {
    /// `SI_USER`, `SI_TKILL`, `SI_QUEUE`, `SI_KERNEL`, or a fault's code
    /// (`SEGV_MAPERR`).
    pub code: String,
    /// The process that sent it; for `SI_KERNEL` and faults, the task that
    /// was running (not a sender).
    pub sender: Option<SenderReport>,
    /// The fault's address, in hex.
    pub addr: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SenderReport {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub comm: String,
    pub parent_pid: Option<u32>,
    pub parent_comm: Option<String>,
    /// Its command line, if it still ran when the death was read.
    pub cmdline: Option<String>,
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.report().serialize(s)
    }
}

impl Origin {
    pub fn report(&self) -> OriginReport {
        let s = &self.sender;
        OriginReport {
            code: self.code.name(self.signal),
            sender: self.code.from_a_process().then(|| SenderReport {
                pid: s.pid.get(),
                tid: s.tid.get(),
                uid: s.uid,
                comm: s.comm.clone(),
                parent_pid: s.parent.as_ref().map(|(p, _)| p.get()),
                parent_comm: s.parent.as_ref().map(|(_, c)| c.clone()),
                cmdline: s.cmdline.clone(),
            }),
            addr: self.addr.map(|a| format!("{a:#x}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: u32) -> Pid {
        Pid::new(n).expect("nonzero")
    }

    fn origin(signal: i32, code: i32, sender: u32) -> Origin {
        Origin {
            signal,
            code: Code::from_raw(code),
            sender: Sender {
                pid: pid(sender),
                tid: pid(sender + 1),
                uid: 1000,
                comm: "bash".to_owned(),
                parent: Some((pid(4100), "sshd".to_owned())),
                start: StartTime::from_ticks(1),
                cmdline: None,
            },
            addr: (code > 0).then_some(0),
            sent_ns: 0,
        }
    }

    #[test]
    fn reads_as_an_operator_would_say_it() {
        let web = pid(77);
        assert_eq!(
            origin(libc::SIGKILL, 0, 4242).describe(web, false),
            "killed by SIGKILL from pid 4242 (bash, uid 1000, parent sshd 4100)"
        );
        assert_eq!(
            origin(libc::SIGTERM, -6, 4242).describe(web, false),
            "killed by SIGTERM from pid 4242 (bash, uid 1000, parent sshd 4100)"
        );
        assert_eq!(
            origin(libc::SIGABRT, -6, 77).describe(web, true),
            "aborted (SIGABRT sent by itself) (core dumped)"
        );
        assert_eq!(
            origin(libc::SIGSEGV, 1, 77).describe(web, true),
            "killed by SIGSEGV: address 0x0 not mapped (core dumped)"
        );
        assert_eq!(
            origin(libc::SIGFPE, 1, 77).describe(web, false),
            "killed by SIGFPE: integer divide by zero at 0x0"
        );
        assert_eq!(
            origin(libc::SIGKILL, 0x80, 999).describe(web, false),
            "killed by SIGKILL from the kernel"
        );
        assert_eq!(
            origin(libc::SIGXCPU, 0x80, 77).describe(web, true),
            "killed by SIGXCPU: its CPU time limit (RLIMIT_CPU) was reached (core dumped)"
        );
        assert_eq!(
            origin(libc::SIGALRM, -2, 77).describe(pid(5), false),
            "killed by SIGALRM (SI_TIMER)"
        );
    }

    #[test]
    fn a_kernel_signal_names_no_sender() {
        let report = origin(libc::SIGKILL, 0x80, 999).report();
        assert_eq!(report.code, "SI_KERNEL");
        assert_eq!(report.sender, None);
        let report = origin(libc::SIGSEGV, 1, 77).report();
        assert_eq!(report.code, "SEGV_MAPERR");
        assert_eq!(report.addr.as_deref(), Some("0x0"));
    }
}
