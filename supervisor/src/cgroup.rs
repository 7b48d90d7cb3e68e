//! One cgroup v2 per watch, so that the supervisor knows a watch's whole
//! process tree, including descendants that left its process group or
//! session (the workers of a server that daemonized), and can signal or
//! kill all of it. Only core cgroup files are used (`cgroup.procs`,
//! `cgroup.events`): no controller is enabled, so nothing
//! about resource limits changes.
//!
//! Owns the `supervisor/<instance>/<watch>` folders: under the cgroup
//! systemd delegated to the daemon's unit (`Delegate=yes`, which it marks
//! with a `trusted.delegate` xattr), the daemon itself then moved into its
//! leaf `daemon` beside them; else at the root of the cgroup2 mount. Where
//! there is none (or it is not writable) the daemon falls back to fork
//! tracking or process groups, and says so.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::Signal;

pub struct Cgroups {
    base: PathBuf,
    /// The delegated cgroup the folder is in, if it is in one.
    delegated: Option<PathBuf>,
    /// The folder, locked (flock) while this daemon uses it.
    lock: Option<std::fs::File>,
}

/// Where the cgroup2 file system is mounted.
pub fn mount() -> Result<PathBuf> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
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
    Ok(mount)
}

/// The folder of daemon `instance`'s cgroups, under `parent` (the mount,
/// or the delegated cgroup).
pub fn instance_dir(parent: &Path, instance: &str) -> PathBuf {
    parent.join("supervisor").join(instance)
}

/// The leaf of a delegated cgroup the daemon moves itself into: cgroup v2
/// lets a cgroup with processes in it enable no controller for its
/// children, so the unit's own cgroup is left empty for the watches'
/// limits.
const DAEMON_LEAF: &str = "daemon";

/// The daemon's own cgroup v2, as /proc/self/cgroup says it (`0::/path`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

/// Whether systemd delegated `dir` (a unit with `Delegate=yes`): since
/// v251 it sets `trusted.delegate` (`user.delegate` for a user manager's
/// units) to 1 on the unit's cgroup. Root believes only the first, which
/// only a privileged process can set: a user may set `user.delegate` on
/// a cgroup of theirs.
fn is_delegated(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let names: &[&str] = if nix::unistd::geteuid().is_root() {
        &["trusted.delegate"]
    } else {
        &["trusted.delegate", "user.delegate"]
    };
    names.iter().any(|name| {
        let name = std::ffi::CString::new(*name).expect("no NUL");
        let mut value = [0u8; 8];
        // SAFETY: both strings are NUL-terminated; the buffer's length is
        // passed with it.
        let n = unsafe {
            libc::getxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        n > 0 && value[..n as usize].trim_ascii() == b"1"
    })
}

/// The delegated cgroup the daemon runs in (or, moved already, whose
/// `daemon` leaf it runs in), if any.
fn delegated(mount: &Path, own: &str) -> Option<PathBuf> {
    let dir = mount.join(own.trim_start_matches('/'));
    if own != "/" && is_delegated(&dir) {
        return Some(dir);
    }
    let parent = dir.parent()?;
    (dir.file_name()? == DAEMON_LEAF && parent != mount && is_delegated(parent))
        .then(|| parent.to_owned())
}

/// Moves the daemon into `unit`'s `daemon` leaf (every thread of it: the
/// move is through `cgroup.procs`).
fn move_into_leaf(unit: &Path) -> Result<()> {
    let leaf = unit.join(DAEMON_LEAF);
    std::fs::create_dir_all(&leaf).with_context(|| format!("creating {}", leaf.display()))?;
    let procs = leaf.join("cgroup.procs");
    std::fs::write(&procs, std::process::id().to_string())
        .with_context(|| format!("writing {}", procs.display()))
}

impl Cgroups {
    /// Finds the cgroup2 mount and makes this daemon's folder in it. The
    /// instance name (from the socket path) stays the same across daemon
    /// restarts, so a re-adopted watch keeps its cgroup.
    pub fn discover(instance: &str) -> Result<Self> {
        let mount = mount()?;
        if !crate::clone3::available() || !crate::kernel::at_least(5, 7) {
            bail!("processes cannot be cloned into a cgroup here (clone3 CLONE_INTO_CGROUP needs x86_64 and Linux 5.7)");
        }
        let delegated = own_cgroup().and_then(|own| delegated(&mount, &own));
        if let Some(unit) = &delegated {
            move_into_leaf(unit)?;
        }
        let base = instance_dir(delegated.as_deref().unwrap_or(&mount), instance);
        std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
        Ok(Self {
            base,
            delegated,
            lock: None,
        })
    }

    /// The cgroup delegated to the daemon's unit, if the folder is in one.
    pub fn delegated(&self) -> Option<&Path> {
        self.delegated.as_deref()
    }

    /// Makes the folder this daemon's alone: a second daemon that would
    /// share it (and kill its processes as strays) is refused.
    pub fn claim(&mut self) -> Result<()> {
        use std::os::fd::AsRawFd as _;
        let dir = std::fs::File::open(&self.base)
            .with_context(|| format!("opening {}", self.base.display()))?;
        // SAFETY: flock on an fd this function owns.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            bail!(
                "cgroup {} is in use by another supervisor",
                self.base.display()
            );
        }
        self.lock = Some(dir);
        Ok(())
    }

    /// Removes this daemon's (empty) folder, once its watches' are gone.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.base);
    }

    /// The folder the watches' cgroups are in.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The cgroup of watch `name`, created if needed; its files are kept
    /// open with `keep_open`.
    pub fn watch(&self, name: &str, keep_open: bool) -> Result<WatchCgroup> {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        WatchCgroup::at(dir, keep_open)
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

/// The whole of a cgroup file kept open, read again from its start (one
/// read for a small one).
fn reread(file: &std::fs::File) -> String {
    use std::os::unix::fs::FileExt as _;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = file.read_at(&mut buf, text.len() as u64) {
        text.extend_from_slice(&buf[..n]);
        // A short read is the end: spare the read that would say so.
        if n < buf.len() {
            break;
        }
    }
    String::from_utf8(text).unwrap_or_default()
}

#[derive(Clone, Debug)]
pub struct WatchCgroup {
    dir: PathBuf,
    /// Its files, kept open while the daemon's fd limit allows (`None`:
    /// opened at each use instead, so that hundreds of watches fit under a
    /// limit of 1024).
    kept: Option<std::sync::Arc<Kept>>,
}

/// A cgroup's folder and files, open.
#[derive(Debug)]
pub struct Kept {
    /// The folder, for clone3's CLONE_INTO_CGROUP: a process born in its
    /// cgroup costs nothing, while moving one in through `cgroup.procs`
    /// waits for an RCU grace period (milliseconds on an idle machine).
    dir: std::os::fd::OwnedFd,
    /// `cgroup.events`, `cgroup.procs` and `cpu.stat`: read after every
    /// exit (on the restart path) and at every resource check, and reading
    /// again from offset 0 regenerates them, without the path walk through
    /// the cgroup file system each time.
    events: std::fs::File,
    procs: std::fs::File,
    cpu_stat: Option<std::fs::File>,
}

/// A cgroup's folder as clone3 takes it: kept open (shared with the
/// watch's cgroup, so that a start prepared on the loop and made on a
/// spawner thread holds it), or opened for one use.
pub enum DirFd {
    Kept(std::sync::Arc<Kept>),
    Opened(std::os::fd::OwnedFd),
}

impl std::os::fd::AsFd for DirFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Self::Kept(kept) => kept.dir.as_fd(),
            Self::Opened(fd) => fd.as_fd(),
        }
    }
}

impl WatchCgroup {
    /// The cgroup at `dir` if it exists, its files opened at each use: for
    /// a reader apart from the daemon's loop, which makes and removes them.
    pub fn existing(dir: PathBuf) -> Option<Self> {
        Self::at(dir, false).ok()
    }

    fn at(dir: PathBuf, keep_open: bool) -> Result<Self> {
        let open = |name: &str| {
            let path = dir.join(name);
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))
        };
        let kept = if keep_open {
            Some(std::sync::Arc::new(Kept {
                dir: open("")?.into(),
                events: open("cgroup.events")?,
                procs: open("cgroup.procs")?,
                cpu_stat: open("cpu.stat").ok(),
            }))
        } else {
            open("")?;
            None
        };
        Ok(Self { dir, kept })
    }

    /// `name` in the cgroup, kept open or opened now.
    fn with_file<T>(
        &self,
        name: &str,
        kept: impl Fn(&Kept) -> Option<&std::fs::File>,
        f: impl FnOnce(&std::fs::File) -> Option<T>,
    ) -> Option<T> {
        match self.kept.as_deref() {
            Some(files) => f(kept(files)?),
            None => f(&std::fs::File::open(self.dir.join(name)).ok()?),
        }
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn fd(&self) -> Result<DirFd> {
        match &self.kept {
            Some(kept) => Ok(DirFd::Kept(kept.clone())),
            None => Ok(DirFd::Opened(
                std::fs::File::open(&self.dir)
                    .with_context(|| format!("opening {}", self.dir.display()))?
                    .into(),
            )),
        }
    }

    /// Whether any process is left in it.
    pub fn populated(&self) -> bool {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 128];
        self.with_file(
            "cgroup.events",
            |k| Some(&k.events),
            |file| {
                let n = file.read_at(&mut buf, 0).ok()?;
                Some(buf[..n].split(|&b| b == b'\n').any(|l| l == b"populated 1"))
            },
        )
        .unwrap_or(false)
    }

    /// CPU time used by every process that ever ran in it, in µs
    /// (`cpu.stat`, which cgroup v2 keeps even with no controller enabled).
    pub fn cpu_usage_usec(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt as _;
        // usage_usec is the first line: one read of the start will do.
        let mut buf = [0u8; 128];
        let n = self.with_file(
            "cpu.stat",
            |k| k.cpu_stat.as_ref(),
            |file| file.read_at(&mut buf, 0).ok(),
        )?;
        std::str::from_utf8(&buf[..n])
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
    }

    pub fn pids(&self) -> Vec<i32> {
        self.with_file(
            "cgroup.procs",
            |k| Some(&k.procs),
            |file| Some(reread(file)),
        )
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
    }

    /// Sends `signal` to every process in it.
    pub fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    }

    /// SIGKILLs everything in it. Not through `cgroup.kill`: on this
    /// kernel a process later cloned into a cgroup that was once killed that
    /// way (CLONE_INTO_CGROUP) is killed at birth, which would kill every
    /// restart. Callers repeat this until the cgroup is empty, which also
    /// catches a fork that was in flight.
    pub fn kill_all(&self) {
        self.signal_all(Signal::SIGKILL);
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}
