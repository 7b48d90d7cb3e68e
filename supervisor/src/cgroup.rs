//! One cgroup v2 per watch, so that the supervisor knows a watch's whole
//! process tree, including descendants that left its process group or
//! session (the workers of a server that daemonized), and can signal or
//! kill all of it. Only core cgroup files are used (`cgroup.procs`,
//! `cgroup.events`, `cgroup.kill`): no controller is enabled, so nothing
//! about resource limits changes.
//!
//! Owns the `supervisor/<instance>/<watch>` folders under the cgroup2
//! mount; where there is none (or it is not writable) the daemon falls back
//! to process groups, and says so.
use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;

pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Finds the cgroup2 mount and makes this daemon's folder in it. The
    /// instance name (from the socket path) stays the same across daemon
    /// restarts, so a re-adopted watch keeps its cgroup.
    pub fn discover(instance: &str) -> Result<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .context("reading /proc/self/mountinfo")?;
        let mount = mountinfo
            .lines()
            .find_map(|line| {
                let (left, right) = line.split_once(" - ")?;
                (right.split_whitespace().next()? == "cgroup2")
                    .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
            })
            .context("no cgroup2 file system is mounted")?;
        if !mount.join("cgroup.procs").exists() {
            bail!("{} is not a cgroup2 mount", mount.display());
        }
        // The kill file exists in every non-root cgroup on 5.14 and later.
        let base = mount.join("supervisor").join(instance);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        if !base.join("cgroup.kill").exists() {
            bail!(
                "{} has no cgroup.kill (kernel older than 5.14)",
                base.display()
            );
        }
        Ok(Self { base })
    }

    /// Removes this daemon's (empty) folder, once its watches' are gone.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.base);
    }

    /// The cgroup of watch `name`, created if needed.
    pub fn watch(&self, name: &str) -> Result<WatchCgroup> {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        WatchCgroup::at(dir)
    }
}

/// A name for `socket` that fits in one path component.
pub fn instance_name(socket: &Path) -> String {
    socket
        .display()
        .to_string()
        .trim_start_matches('/')
        .replace('/', "-")
}

#[derive(Clone, Debug)]
pub struct WatchCgroup {
    dir: PathBuf,
    /// `cgroup.procs` as a C string, ready for the child to write itself
    /// into between fork and exec (no allocation allowed there).
    procs: CString,
}

impl WatchCgroup {
    fn at(dir: PathBuf) -> Result<Self> {
        let procs = CString::new(dir.join("cgroup.procs").as_os_str().as_bytes())
            .context("cgroup path contains a NUL byte")?;
        Ok(Self { dir, procs })
    }

    pub fn procs_path(&self) -> &std::ffi::CStr {
        &self.procs
    }

    /// Whether any process is left in it.
    pub fn populated(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.events"))
            .map(|events| events.lines().any(|l| l == "populated 1"))
            .unwrap_or(false)
    }

    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in it.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// SIGKILLs everything in it at once, forks in flight included.
    pub fn kill_all(&self) {
        if std::fs::write(self.dir.join("cgroup.kill"), "1").is_err() {
            self.signal_all(Signal::SIGKILL);
        }
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Between fork and exec: moves the calling process into the cgroup whose
/// `cgroup.procs` is `procs`. Only async-signal-safe calls.
pub fn join_from_child(procs: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: open/write/close on a valid NUL-terminated path and buffer.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
}
