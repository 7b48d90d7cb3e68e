//! The OOM killer's view of the daemon and of what it starts
//! (`oom_score_adj`): the daemon lowers its own (`[daemon] oom_score_adj`,
//! -1000 by default, so that a host short of memory kills a watch, which
//! the daemon then restarts, and never the daemon), and each child sets its
//! own (`oom_score_adj` of its watch, 0 by default) before it drops its
//! privileges, so that no watch inherits the daemon's protection.
//!
//! Owns the daemon's own value and what a child must write; the child's
//! write itself is `clone3`'s (or `spawn`'s pre-exec).
use std::{
    ffi::CString,
    sync::atomic::{AtomicI32, Ordering},
};

use serde::{Deserialize, Serialize};

/// The file, as the child opens it (its own: /proc/self is the child's).
pub const SELF_FILE: &std::ffi::CStr = c"/proc/self/oom_score_adj";

/// A process's value when nothing says otherwise: the kernel's default.
pub const CHILD_DEFAULT: i16 = 0;

/// The daemon's value, once read or set (`UNKNOWN` before).
static DAEMONS: AtomicI32 = AtomicI32::new(UNKNOWN);
const UNKNOWN: i32 = i32::MIN;

/// What the daemon asked for itself and what it has, as `info` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    /// `[daemon] oom_score_adj`.
    pub wanted: i16,
    /// What it has now.
    pub now: i16,
    /// Why it could not have `wanted`.
    pub error: Option<String>,
}

fn read_own() -> Option<i16> {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Sets the daemon's own value to `wanted`, and says what came of it.
pub fn protect(wanted: i16) -> Protection {
    let error = std::fs::write("/proc/self/oom_score_adj", wanted.to_string())
        .err()
        .map(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => {
                format!("{e}: lowering it needs CAP_SYS_RESOURCE")
            }
            _ => e.to_string(),
        });
    let now = read_own().unwrap_or(wanted);
    DAEMONS.store(i32::from(now), Ordering::Relaxed);
    Protection { wanted, now, error }
}

/// What a child of the daemon writes into its own `oom_score_adj` to
/// have `wanted` (its watch's, or the default): nothing if it inherits
/// that already.
pub fn for_child(wanted: Option<i16>) -> Option<CString> {
    let wanted = wanted.unwrap_or(CHILD_DEFAULT);
    let mut daemons = DAEMONS.load(Ordering::Relaxed);
    if daemons == UNKNOWN {
        daemons = read_own().map_or(UNKNOWN, i32::from);
        DAEMONS.store(daemons, Ordering::Relaxed);
    }
    (daemons != i32::from(wanted))
        .then(|| CString::new(wanted.to_string()).expect("digits have no NUL"))
}
