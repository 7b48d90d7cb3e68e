//! Where the daemon keeps its socket and its state when nothing else is
//! said: `/run/supervisor-rs.sock` and `/var/lib/supervisor`, or, for a
//! container's init on a read-only root (or without /run), the same names
//! under `$TMPDIR` (else /tmp), where the CLI also looks. A place the
//! config names is kept as it is.
//!
//! Owns the choice of those paths; it opens nothing but a probe.
use std::path::{Path, PathBuf};

use crate::config::DaemonConfig;

/// The writable place of a read-only container.
fn fallback_dir() -> PathBuf {
    std::env::var_os("TMPDIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

fn fallback_socket() -> PathBuf {
    fallback_dir().join("supervisor-rs.sock")
}

/// The socket a client talks to when not told: the default, unless only
/// the fallback exists, and is a socket of root's or the client's own
/// (`$TMPDIR` may be /tmp, where anyone could leave one to listen in).
pub fn default_socket() -> PathBuf {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let default = PathBuf::from(crate::config::DEFAULT_SOCKET);
    let fallback = fallback_socket();
    let own = nix::unistd::geteuid().as_raw();
    let trusted = std::fs::symlink_metadata(&fallback)
        .is_ok_and(|m| m.file_type().is_socket() && (m.uid() == 0 || m.uid() == own));
    if !default.exists() && trusted {
        fallback
    } else {
        default
    }
}

/// Whether files can be made in `dir` (made if missing).
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt as _;
    if std::fs::create_dir_all(dir).is_err() {
        return false;
    }
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path.
    unsafe { libc::access(path.as_ptr(), libc::W_OK) == 0 }
}

/// Moves the default socket and state directory of `daemon` to the
/// fallback where their own places cannot be written; returns what was
/// moved, to be said once the log is up.
pub fn settle(daemon: &mut DaemonConfig) -> Vec<String> {
    let defaults = DaemonConfig::default();
    let mut moved = Vec::new();
    let socket_dir = daemon.socket.parent().map(Path::to_path_buf);
    if daemon.socket == defaults.socket && !socket_dir.as_deref().is_some_and(writable) {
        let to = fallback_socket();
        moved.push(format!(
            "the socket is {} ({} cannot be written)",
            to.display(),
            socket_dir.unwrap_or_default().display()
        ));
        daemon.socket = to;
    }
    if daemon.state_dir == defaults.state_dir && !writable(&daemon.state_dir) {
        let to = fallback_dir().join("supervisor-rs");
        moved.push(format!(
            "the state directory is {} ({} cannot be written)",
            to.display(),
            daemon.state_dir.display()
        ));
        daemon.state_dir = to;
    }
    moved
}
