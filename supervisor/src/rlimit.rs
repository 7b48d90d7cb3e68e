//! Resource limits a watch's process starts with (`limits = { nofile =
//! 65536, core = "unlimited" }`, systemd's `LimitNOFILE=` and the rest),
//! set in the child before exec, soft and hard. Owns the names, the
//! units each is counted in and what the kernel will accept; the config
//! parses the values, the spawner applies them.
use std::fmt;

/// The kernel's "no limit" (`RLIM_INFINITY`).
pub const INFINITY: u64 = libc::RLIM_INFINITY;

/// Every resource `setrlimit` knows, by its systemd name less `Limit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Cpu,
    Fsize,
    Data,
    Stack,
    Core,
    Rss,
    Nofile,
    As,
    Nproc,
    Memlock,
    Locks,
    Sigpending,
    Msgqueue,
    Nice,
    Rtprio,
    Rttime,
}

/// What a resource's value counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Things: files, processes, signals, a priority.
    Count,
    Bytes,
    /// CPU seconds.
    Seconds,
    /// CPU microseconds of real-time scheduling.
    Micros,
}

impl Resource {
    pub const ALL: [Self; 16] = [
        Self::Cpu,
        Self::Fsize,
        Self::Data,
        Self::Stack,
        Self::Core,
        Self::Rss,
        Self::Nofile,
        Self::As,
        Self::Nproc,
        Self::Memlock,
        Self::Locks,
        Self::Sigpending,
        Self::Msgqueue,
        Self::Nice,
        Self::Rtprio,
        Self::Rttime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Fsize => "fsize",
            Self::Data => "data",
            Self::Stack => "stack",
            Self::Core => "core",
            Self::Rss => "rss",
            Self::Nofile => "nofile",
            Self::As => "as",
            Self::Nproc => "nproc",
            Self::Memlock => "memlock",
            Self::Locks => "locks",
            Self::Sigpending => "sigpending",
            Self::Msgqueue => "msgqueue",
            Self::Nice => "nice",
            Self::Rtprio => "rtprio",
            Self::Rttime => "rttime",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Self::Cpu => Unit::Seconds,
            Self::Rttime => Unit::Micros,
            Self::Fsize | Self::Data | Self::Stack | Self::Core | Self::Rss | Self::As => {
                Unit::Bytes
            }
            Self::Memlock | Self::Msgqueue => Unit::Bytes,
            Self::Nofile
            | Self::Nproc
            | Self::Locks
            | Self::Sigpending
            | Self::Nice
            | Self::Rtprio => Unit::Count,
        }
    }

    /// The `RLIMIT_*` number.
    pub fn raw(self) -> libc::c_int {
        (match self {
            Self::Cpu => libc::RLIMIT_CPU,
            Self::Fsize => libc::RLIMIT_FSIZE,
            Self::Data => libc::RLIMIT_DATA,
            Self::Stack => libc::RLIMIT_STACK,
            Self::Core => libc::RLIMIT_CORE,
            Self::Rss => libc::RLIMIT_RSS,
            Self::Nofile => libc::RLIMIT_NOFILE,
            Self::As => libc::RLIMIT_AS,
            Self::Nproc => libc::RLIMIT_NPROC,
            Self::Memlock => libc::RLIMIT_MEMLOCK,
            Self::Locks => libc::RLIMIT_LOCKS,
            Self::Sigpending => libc::RLIMIT_SIGPENDING,
            Self::Msgqueue => libc::RLIMIT_MSGQUEUE,
            Self::Nice => libc::RLIMIT_NICE,
            Self::Rtprio => libc::RLIMIT_RTPRIO,
            Self::Rttime => libc::RLIMIT_RTTIME,
        }) as libc::c_int
    }

    /// The daemon's own limit: what a process that is not root may not
    /// go above.
    pub fn own(self) -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct it is given.
        unsafe { libc::getrlimit(self.raw() as _, &mut limit) };
        limit
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One limit, soft and hard (`INFINITY` for none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    pub fn raw(self) -> (libc::c_int, libc::rlimit) {
        (
            self.resource.raw(),
            libc::rlimit {
                rlim_cur: self.soft,
                rlim_max: self.hard,
            },
        )
    }

    /// Why the kernel would refuse it, checked when the config is read:
    /// above what the daemon may grant (only CAP_SYS_RESOURCE, which root
    /// has unless a container took it, may raise a hard limit), or
    /// `nofile` above `fs.nr_open` (refused even then).
    pub fn refused(self, may_raise: bool) -> Option<String> {
        if self.resource == Resource::Nofile {
            let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok());
            if let Some(max) = nr_open.filter(|&max| self.hard > max) {
                return Some(format!(
                    "{} is above the kernel's fs.nr_open ({max}), which no process may pass",
                    show(self.hard)
                ));
            }
        }
        let own = self.resource.own().rlim_max;
        (!may_raise && self.hard > own).then(|| {
            format!(
                "{} is above the daemon's own hard limit ({}), which only a process with CAP_SYS_RESOURCE may raise",
                show(self.hard),
                show(own)
            )
        })
    }
}

/// Whether this process may raise hard limits: CAP_SYS_RESOURCE in its
/// effective set.
pub fn may_raise() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// A limit's value as the config would say it.
pub fn show(value: u64) -> String {
    if value == INFINITY {
        "unlimited".to_owned()
    } else {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_map_to_distinct_resources() {
        let names: std::collections::HashSet<_> = Resource::ALL.iter().map(|r| r.name()).collect();
        let raws: std::collections::HashSet<_> = Resource::ALL.iter().map(|r| r.raw()).collect();
        assert_eq!(names.len(), 16);
        assert_eq!(raws.len(), 16);
    }

    #[test]
    fn a_hard_limit_above_the_daemons_is_refused_to_all_but_root() {
        let own = Resource::Nproc.own().rlim_max;
        if own == INFINITY {
            return;
        }
        let above = Rlimit {
            resource: Resource::Nproc,
            soft: 1,
            hard: own + 1,
        };
        assert!(above.refused(false).unwrap().contains("CAP_SYS_RESOURCE"));
        assert_eq!(above.refused(true), None);
        let huge = Rlimit {
            resource: Resource::Nofile,
            soft: 1,
            hard: 1 << 40,
        };
        assert!(huge.refused(true).unwrap().contains("fs.nr_open"));
    }
}
