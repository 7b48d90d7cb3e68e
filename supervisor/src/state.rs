//! The state file: which process each watch runs (pid + start time), its
//! restart count and last exit, so a daemon started again after a crash or
//! `quit` re-adopts what still runs instead of starting duplicates.
//!
//! Written whole to a temporary file and renamed over the old one, so a
//! reader (or a daemon killed mid-write) never sees half a file. A file
//! that does not parse is set aside and reported, never fatal.
use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::exit::ExitStatus;

const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Saved {
    pub version: u32,
    pub watches: BTreeMap<String, SavedWatch>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedWatch {
    /// The process the watch ran, if any.
    pub pid: Option<u32>,
    pub start_ticks: Option<u64>,
    pub restarts: u32,
    /// False once an operator stopped or unmonitored it: it stays so.
    pub monitored: bool,
    pub last_exit: Option<SavedExit>,
    /// False while its process had yet to be ready (`ready = "health"` or
    /// `"notify"`): re-adopted, it waits to be ready again.
    #[serde(default = "ready_unless_said")]
    pub ready: bool,
}

/// Files from before readiness existed: their processes were up.
fn ready_unless_said() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedExit {
    pub pid: u32,
    pub code: Option<u8>,
    pub signal: Option<i32>,
    pub core_dumped: bool,
    /// Seconds since the epoch.
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
        let (code, signal, core_dumped) = match status {
            ExitStatus::Exited(code) => (Some(code), None, false),
            ExitStatus::Killed {
                signal,
                core_dumped,
            } => (None, Some(signal), core_dumped),
            ExitStatus::Unknown => (None, None, false),
        };
        Self {
            pid,
            code,
            signal,
            core_dumped,
            at,
        }
    }
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join("state.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the last daemon left; empty when there is nothing or it is
    /// unreadable (then it is renamed to `state.json.corrupt` and logged).
    pub fn load(&self) -> Saved {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Saved::default(),
            Err(e) => {
                log::error!(
                    "cannot read state file {}: {e}; starting without it",
                    self.path.display()
                );
                return Saved::default();
            }
        };
        match serde_json::from_str::<Saved>(&text) {
            Ok(saved) if saved.version == VERSION => saved,
            Ok(saved) => {
                log::error!(
                    "state file {} has version {}, expected {VERSION}; starting without it",
                    self.path.display(),
                    saved.version
                );
                Saved::default()
            }
            Err(e) => {
                let aside = self.path.with_extension("json.corrupt");
                let _ = std::fs::rename(&self.path, &aside);
                log::error!(
                    "state file {} is corrupt ({e}); moved it to {} and starting without it",
                    self.path.display(),
                    aside.display()
                );
                Saved::default()
            }
        }
    }

    pub fn save(&self, watches: &BTreeMap<String, SavedWatch>) -> io::Result<()> {
        #[derive(Serialize)]
        struct Saving<'a> {
            version: u32,
            watches: &'a BTreeMap<String, SavedWatch>,
        }
        let saved = Saving {
            version: VERSION,
            watches,
        };
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        // Private: it says what runs, as whom, and how it died.
        let tmp = self.path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        std::io::Write::write_all(&mut file, &serde_json::to_vec(&saved)?)?;
        drop(file);
        std::fs::rename(&tmp, &self.path)
    }
}
