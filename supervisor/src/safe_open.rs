//! Opening a file on behalf of a watch. The daemon runs as root, and the
//! paths a watch's config names (its log files, its pid file) often lie in
//! folders that the watch's user owns, who could replace the file with a
//! symlink to `/etc/shadow`, a FIFO that blocks the daemon, or
//! `/dev/zero`. So:
//!
//! - a path along which the watch's user may write anything is opened with
//!   that user's file-system identity (fsuid, fsgid and groups, changed for
//!   the daemon's thread alone and put back at once): the open can do
//!   nothing the user could not;
//! - every open is `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`: the last
//!   component is never a symlink, and a FIFO or device never blocks;
//! - what was opened must be a regular file owned by root, the daemon's
//!   user or the watch's user.
//!
//! Errors name the path and what was wrong with it, never what it holds.
//! Owns these rules; knows nothing of what the files are for.
use std::{
    fs::File,
    io::Read as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use crate::config::RunAs;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0} does not exist")]
    NotFound(String),
    #[error("{path} is a symbolic link; it is not followed")]
    Symlink { path: String },
    #[error("{path} is {what}, not a regular file")]
    NotRegular { path: String, what: &'static str },
    #[error("{path} belongs to uid {owner}, neither root nor the watch's user")]
    Stranger { path: String, owner: u32 },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: usize },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// How a file is opened.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// To read what is there.
    Read,
    /// To append to, created (mode 0600) if missing.
    Append,
    /// To append to a new file (mode 0600) that must not exist yet
    /// (O_EXCL): a log file made anew by a rotation.
    CreateNew,
}

/// Opens `path` as described in the module comment, for a watch running as
/// `user` (`None`: as the daemon).
pub fn open(path: &Path, user: Option<&RunAs>, access: Access) -> Result<File, OpenError> {
    let shown = path.display().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    match access {
        Access::Read => options.read(true),
        Access::Append => options.append(true).create(true).mode(0o600),
        Access::CreateNew => options.append(true).create_new(true).mode(0o600),
    };
    let as_user = user.filter(|u| u.uid.as_raw() != 0 && user_may_change(path, u));
    let opened = match as_user {
        Some(user) => with_identity_of(user, || options.open(path)),
        None => options.open(path),
    };
    let file = opened.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => OpenError::Symlink {
            path: shown.clone(),
        },
        // A FIFO opened for writing with no reader.
        Some(libc::ENXIO) => OpenError::NotRegular {
            path: shown.clone(),
            what: "a FIFO or socket",
        },
        _ if e.kind() == std::io::ErrorKind::NotFound => OpenError::NotFound(shown.clone()),
        _ => OpenError::Io {
            path: shown.clone(),
            source: e,
        },
    })?;
    let meta = file.metadata().map_err(|e| OpenError::Io {
        path: shown.clone(),
        source: e,
    })?;
    if !meta.file_type().is_file() {
        return Err(OpenError::NotRegular {
            path: shown,
            what: kind_of(&meta),
        });
    }
    let owner = meta.uid();
    let expected = [0, nix::unistd::geteuid().as_raw()]
        .into_iter()
        .chain(user.map(|u| u.uid.as_raw()));
    if !expected.into_iter().any(|uid| uid == owner) {
        return Err(OpenError::Stranger { path: shown, owner });
    }
    Ok(file)
}

/// Reads at most `limit` bytes of `path` (opened as `open` does); a file
/// that holds more is an error, not read further.
pub fn read_small(path: &Path, user: Option<&RunAs>, limit: usize) -> Result<Vec<u8>, OpenError> {
    let file = open(path, user, Access::Read)?;
    let mut bytes = Vec::with_capacity(limit.min(4096));
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| OpenError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    if bytes.len() > limit {
        return Err(OpenError::TooLarge {
            path: path.display().to_string(),
            limit,
        });
    }
    Ok(bytes)
}

/// Removes `path` (not what a symlink there points at), as the watch's
/// user where they could have changed the folders on the way.
pub fn remove(path: &Path, user: Option<&RunAs>) -> std::io::Result<()> {
    match user.filter(|u| u.uid.as_raw() != 0 && user_may_change(path, u)) {
        Some(user) => with_identity_of(user, || std::fs::remove_file(path)),
        None => std::fs::remove_file(path),
    }
}

fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a plain file"
    }
}

/// Whether `user` could have put something else at `path`: some folder on
/// the way to it lets them replace the entry below it (writable by them or
/// by everyone, and for a sticky folder like /tmp, an entry that is theirs
/// or not there yet).
fn user_may_change(path: &Path, user: &RunAs) -> bool {
    let Ok(absolute) = std::path::absolute(path) else {
        return true;
    };
    let chain: Vec<&Path> = absolute.ancestors().collect();
    chain.windows(2).any(|pair| {
        let (entry, dir) = (pair[0], pair[1]);
        let Ok(meta) = std::fs::metadata(dir) else {
            // Not there yet: whoever may make it is judged one level up.
            return false;
        };
        if !writable_by(&meta, user) {
            return false;
        }
        if meta.mode() & libc::S_ISVTX == 0 || meta.uid() == user.uid.as_raw() {
            return true;
        }
        std::fs::symlink_metadata(entry).map_or(true, |m| m.uid() == user.uid.as_raw())
    })
}

fn writable_by(meta: &std::fs::Metadata, user: &RunAs) -> bool {
    let mode = meta.mode();
    let in_group =
        user.gid.as_raw() == meta.gid() || user.groups.iter().any(|g| g.as_raw() == meta.gid());
    mode & 0o002 != 0
        || (meta.uid() == user.uid.as_raw() && mode & 0o200 != 0)
        || (in_group && mode & 0o020 != 0)
}

/// Runs `f` with the daemon's thread holding `user`'s file-system identity:
/// fsuid and fsgid (which also drop the capabilities that override file
/// permissions) and supplementary groups. Raw syscalls, because libc's
/// wrappers would change every thread of the process; the daemon's own
/// runtime is one thread, and this thread changes back before returning.
fn with_identity_of<T>(user: &RunAs, f: impl FnOnce() -> T) -> T {
    let own_groups = nix::unistd::getgroups().unwrap_or_default();
    let groups: Vec<libc::gid_t> = user.groups.iter().map(|g| g.as_raw()).collect();
    // SAFETY: plain syscalls on this thread's credentials, with valid
    // pointers to `groups` and `own`, undone below.
    unsafe {
        libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr());
        libc::syscall(libc::SYS_setfsgid, user.gid.as_raw());
        libc::syscall(libc::SYS_setfsuid, user.uid.as_raw());
    }
    let result = f();
    let own: Vec<libc::gid_t> = own_groups.iter().map(|g| g.as_raw()).collect();
    // SAFETY: as above.
    unsafe {
        libc::syscall(libc::SYS_setfsuid, libc::geteuid());
        libc::syscall(libc::SYS_setfsgid, libc::getegid());
        libc::syscall(libc::SYS_setgroups, own.len(), own.as_ptr());
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_symlinks_fifos_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        assert!(matches!(
            open(&link, None, Access::Read),
            Err(OpenError::Symlink { .. })
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            open(&fifo, None, Access::Read),
            Err(OpenError::NotRegular { what: "a FIFO", .. })
        ));
        assert!(matches!(
            open(&fifo, None, Access::Append),
            Err(OpenError::NotRegular { .. })
        ));
        assert!(matches!(
            open(Path::new("/dev/zero"), None, Access::Read),
            Err(OpenError::NotRegular {
                what: "a device",
                ..
            })
        ));
        let big = dir.path().join("big");
        std::fs::write(&big, [b'1'; 100]).unwrap();
        assert!(matches!(
            read_small(&big, None, 64),
            Err(OpenError::TooLarge { limit: 64, .. })
        ));
        assert_eq!(read_small(&big, None, 100).unwrap().len(), 100);
    }
}
