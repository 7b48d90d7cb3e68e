//! The daemon's file-descriptor budget. It holds a few fds per watch
//! (pidfd, cgroup files, log pipes), so the usual soft limit of 1024 is
//! raised at start to the hard limit, and the hard limit too where root
//! may (up to `fs.nr_open`). The limits it started with are kept: every
//! process it starts gets those back, not the raised ones.
//!
//! Owns RLIMIT_NOFILE and the count of open fds; knows nothing of watches.
use std::sync::OnceLock;

static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the daemon's RLIMIT_NOFILE as far as it may; returns the new
/// soft limit. Remembers the original limits for `original_nofile`.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let _ = ORIGINAL.set(limit);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(limit.rlim_max);
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max.max(nr_open),
        rlim_max: limit.rlim_max.max(nr_open),
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(raised.rlim_cur);
    }
    // Not root (or not allowed more): the soft limit up to the hard one.
    let soft = libc::rlimit {
        rlim_cur: limit.rlim_max,
        ..limit
    };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(soft.rlim_cur)
}

/// The limits the daemon started with, for the processes it starts
/// (`None` when they were never raised).
pub fn original_nofile() -> Option<libc::rlimit> {
    ORIGINAL.get().copied()
}

/// The daemon's soft RLIMIT_NOFILE now.
pub fn nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur
}

/// How many fds the daemon has open, and its soft limit.
pub fn fds_in_use() -> (usize, u64) {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    (open, nofile_limit())
}
