//! The state file: which process each watch runs (pid + start time), its
//! restart count and last exit, so a daemon started again after a crash or
//! `quit` re-adopts what still runs instead of starting duplicates.
//!
//! Written whole to a temporary file and renamed over the old one, so a
//! reader (or a daemon killed mid-write) never sees half a file. A file
//! that does not parse is set aside and reported, never fatal.
//!
//! The state directory is trusted with which processes the daemon signals,
//! so it must be the daemon's alone (`StateDir`): created 0700, or refused
//! when it belongs to someone else or others may write it; every file in
//! it is opened relative to the folder opened once, never through a
//! symlink. A lock file in it makes one daemon per state directory, and the
//! instance id kept there names this daemon's cgroup folder.
use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use nix::{
    fcntl::{openat, renameat, OFlag},
    sys::stat::Mode,
    unistd::unlinkat,
};
use serde::{Deserialize, Serialize};

use crate::exit::ExitStatus;

/// The version this daemon writes. The format only ever grows: a new field
/// comes with `serde(default)`, unknown fields are ignored, and a file of
/// any version is read (one from a newer daemon for what this one knows),
/// because throwing it away would restart every watch.
const VERSION: u32 = 1;

/// A state file is a few hundred bytes a watch: this is far beyond any.
const STATE_MAX: u64 = 256 << 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    #[serde(default)]
    pub version: u32,
    /// The boot the file was written in (`/proc/sys/kernel/random/boot_id`):
    /// pids and start times of another boot name nothing of ours.
    #[serde(default)]
    pub boot_id: Option<String>,
    #[serde(default)]
    pub watches: BTreeMap<String, SavedWatch>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedWatch {
    /// The process the watch ran, if any.
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub start_ticks: Option<u64>,
    #[serde(default)]
    pub restarts: u32,
    /// False once an operator stopped or unmonitored it: it stays so.
    #[serde(default = "monitored_unless_said")]
    pub monitored: bool,
    #[serde(default)]
    pub last_exit: Option<SavedExit>,
    /// False while its process had yet to be ready (`ready = "health"` or
    /// `"notify"`): re-adopted, it waits to be ready again.
    #[serde(default = "ready_unless_said")]
    pub ready: bool,
    /// The abstract name of its `NOTIFY_SOCKET`, which its process knows:
    /// bound again under the same name when it is re-adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_socket: Option<String>,
}

/// A file that does not say keeps the watch as the config says.
fn monitored_unless_said() -> bool {
    true
}

/// Files from before readiness existed: their processes were up.
fn ready_unless_said() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedExit {
    pub pid: u32,
    #[serde(default)]
    pub code: Option<u8>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub core_dumped: bool,
    /// Seconds since the epoch.
    #[serde(default)]
    pub at: f64,
}

impl SavedExit {
    pub fn status(&self) -> ExitStatus {
        match (self.code, self.signal) {
            (Some(code), _) => ExitStatus::Exited(code),
            (None, Some(signal)) => ExitStatus::Killed {
                signal,
                core_dumped: self.core_dumped,
            },
            (None, None) => ExitStatus::Unknown,
        }
    }

    pub fn from_status(pid: u32, status: ExitStatus, at: f64) -> Self {
        let (code, signal, core_dumped) = status.parts();
        Self {
            pid,
            code,
            signal,
            core_dumped,
            at,
        }
    }
}

/// The daemon's state directory, checked, opened and locked.
pub struct StateDir {
    path: PathBuf,
    dir: OwnedFd,
    /// Held (flock) for the daemon's life.
    lock: File,
    /// Names this daemon's cgroup folder and sockets.
    instance: String,
}

impl StateDir {
    /// Opens `path` (created 0700 if missing), refuses it if it is not
    /// the daemon's own, and takes its lock: a second daemon on the same
    /// state directory stops here. `socket` names a legacy instance (see
    /// `instance_id`).
    pub fn open(path: &Path, legacy_instance: &str) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        let dir: OwnedFd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(io::Error::from)
        .with_context(|| {
            format!(
                "opening state_dir {} (a symbolic link is refused)",
                path.display()
            )
        })?;
        let meta = File::from(dir.try_clone()?).metadata()?;
        let own = nix::unistd::geteuid().as_raw();
        if meta.uid() != own {
            bail!(
                "state_dir {} belongs to uid {}, not to this daemon's uid {own}: refusing it (its files decide which processes the daemon signals)",
                path.display(),
                meta.uid()
            );
        }
        if meta.mode() & 0o022 != 0 {
            bail!(
                "state_dir {} is writable by others (mode {:o}): refusing it; `chmod go-w` it, or give another",
                path.display(),
                meta.mode() & 0o7777
            );
        }
        let lock = open_at(&dir, "lock", OFlag::O_RDWR | OFlag::O_CREAT)
            .with_context(|| format!("opening {}/lock", path.display()))?;
        if !lock_within(&lock, LOCK_PATIENCE) {
            let mut holder = String::new();
            let _ = (&lock).take(32).read_to_string(&mut holder);
            bail!(
                "another supervisor (pid {}) is running on state_dir {}",
                holder.trim_matches(|c: char| c.is_whitespace() || c == '\0'),
                path.display()
            );
        }
        let instance = instance_id(&dir, path, legacy_instance)?;
        let state = Self {
            path: path.to_owned(),
            dir,
            lock,
            instance,
        };
        state.claim();
        Ok(state)
    }

    /// Writes this process's pid into the lock file (again after
    /// `--daemonize` forked), for the message a second daemon prints.
    pub fn claim(&self) {
        use std::os::unix::fs::FileExt as _;
        let _ = self.lock.set_len(0);
        let _ = self
            .lock
            .write_all_at(format!("{}\n", std::process::id()).as_bytes(), 0);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn state_path(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// What the last daemon left; empty when there is nothing or it is
    /// unreadable (then it is renamed to `state.json.corrupt` and logged).
    /// A file from another boot keeps its counts and the operator's word,
    /// but names no process.
    pub fn load(&self) -> Saved {
        let shown = self.state_path();
        let text = match self.read("state.json") {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Saved::default(),
            Err(e) => {
                log::error!(
                    "cannot read state file {}: {e}; starting without it",
                    shown.display()
                );
                return Saved::default();
            }
        };
        let mut saved = match serde_json::from_str::<Saved>(&text) {
            Ok(saved) => {
                if saved.version > VERSION {
                    log::warn!(
                        "state file {} was written by a newer supervisor (version {}, this one writes {VERSION}): reading what this one knows of it",
                        shown.display(),
                        saved.version
                    );
                }
                saved
            }
            Err(e) => {
                let _ = renameat(&self.dir, "state.json", &self.dir, "state.json.corrupt");
                log::error!(
                    "state file {} is corrupt ({e}); moved it to {}.corrupt and starting without it",
                    shown.display(),
                    shown.display()
                );
                return Saved::default();
            }
        };
        let boot = boot_id();
        if saved.boot_id.is_some() && saved.boot_id != boot {
            log::warn!(
                "state file {} was written before the machine last booted: no process it names is re-adopted",
                shown.display()
            );
            for watch in saved.watches.values_mut() {
                watch.pid = None;
                watch.start_ticks = None;
            }
        }
        saved
    }

    fn read(&self, name: &str) -> io::Result<String> {
        let file = self.open_read(name)?;
        let mut text = String::new();
        file.take(STATE_MAX).read_to_string(&mut text)?;
        Ok(text)
    }

    /// Writes the state file from each watch's entry, already serialized
    /// (`serde_json::to_string` of its `SavedWatch`), in name order: a
    /// daemon keeps each watch's and writes ten thousand of them without
    /// serializing them again.
    pub fn save_entries<'a>(
        &self,
        entries: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> io::Result<()> {
        let mut text = format!(
            "{{\"version\":{VERSION},\"boot_id\":{},\"watches\":{{",
            serde_json::to_string(&boot_id())?
        );
        for (i, (name, entry)) in entries.enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(name)?);
            text.push(':');
            text.push_str(entry);
        }
        text.push_str("}}");
        self.replace("state.json", text.as_bytes())
    }

    /// Replaces file `name` of the directory with `bytes` in one step: a
    /// reader (or a daemon killed mid-write) sees the old or the new.
    pub fn replace(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = format!("{name}.tmp");
        // A leftover of a daemon killed mid-write; O_EXCL below makes sure
        // nothing else is written through.
        let _ = unlinkat(
            &self.dir,
            tmp.as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
        // Private: it says what runs, as whom, and how it died.
        let mut file = open_at(
            &self.dir,
            &tmp,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        )?;
        file.write_all(bytes)?;
        drop(file);
        renameat(&self.dir, tmp.as_str(), &self.dir, name).map_err(io::Error::from)
    }

    /// File `name` of the directory, to read (a regular file only).
    pub fn open_read(&self, name: &str) -> io::Result<File> {
        regular(open_at(&self.dir, name, OFlag::O_RDONLY)?)
    }

    /// File `name` of the directory, to append to (made 0600 if missing).
    pub fn open_append(&self, name: &str) -> io::Result<File> {
        regular(open_at(
            &self.dir,
            name,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
        )?)
    }
}

/// How long a lock held by someone else is waited for. A daemon that was
/// just killed can hold its lock a moment after its death: a process it
/// was starting shares its file table until that process's first
/// syscall.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(3);

/// Takes `lock` (flock), waiting at most `patience` for another holder.
fn lock_within(lock: &File, patience: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + patience;
    loop {
        // SAFETY: flock on an fd the caller owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `name` in `dir`, never through a symlink, created 0600.
fn regular(file: File) -> io::Result<File> {
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::other("not a regular file"))
    }
}

fn open_at(dir: &OwnedFd, name: &str, flags: OFlag) -> io::Result<File> {
    let fd = openat(
        dir,
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// This daemon's instance id, kept in `instance`. A new state directory
/// gets a random one. One that already has a state file but no id was
/// used by a daemon that named its cgroup folder after its socket
/// (`legacy`): that name is kept, so that its processes, still running in
/// that folder, are re-adopted.
fn instance_id(dir: &OwnedFd, path: &Path, legacy: &str) -> Result<String> {
    match open_at(dir, "instance", OFlag::O_RDONLY) {
        Ok(file) => {
            let mut id = String::new();
            file.take(256).read_to_string(&mut id)?;
            let id = id.trim().to_owned();
            if id.len() > 200
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || id.starts_with('.')
            {
                bail!("{}/instance does not hold an instance id", path.display());
            }
            if !id.is_empty() {
                return Ok(id);
            }
            // Empty: a write that failed half-way; made anew below.
            let _ = unlinkat(dir, "instance", nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}/instance", path.display())),
    }
    let had_state = open_at(dir, "state.json", OFlag::O_RDONLY).is_ok();
    let id = if had_state {
        legacy.to_owned()
    } else {
        random_id()
    };
    let written = open_at(
        dir,
        "instance",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
    )
    .and_then(|mut file| file.write_all(format!("{id}\n").as_bytes()));
    if let Err(e) = written {
        // A full disk costs no daemon: this run goes on with the id it
        // made, and the next one tries to keep it again.
        let _ = unlinkat(dir, "instance", nix::unistd::UnlinkatFlags::NoRemoveDir);
        log::error!(
            "cannot write {}/instance: {e}; instance id {id} is kept in memory only",
            path.display()
        );
    }
    Ok(id)
}

/// 16 random hex digits.
pub fn random_id() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom fills the buffer it is given, of its length.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // Not reached on Linux >= 3.17; still unique per daemon and time.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seed = u64::from(std::process::id()) ^ now;
        bytes = seed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id of this boot.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The instance id a daemon on `state_dir` uses, for tools and tests that
/// look at its cgroup folder or sockets from outside.
pub fn instance_of(state_dir: &Path) -> Option<String> {
    std::fs::read_to_string(state_dir.join("instance"))
        .ok()
        .map(|s| s.trim().to_owned())
}
