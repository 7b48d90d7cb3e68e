//! Runtime directories (`runtime_dir`), systemd's `RuntimeDirectory=`: a
//! directory under `/run` that the watch's process may write, made before
//! each start and given to the watch's user (mode 0755 unless
//! `runtime_dir_mode` says otherwise), its path in
//! `RUNTIME_DIRECTORY`. A daemon that drops root (redis, sshd) cannot make
//! its own directory in `/run`, which only root may write.
//!
//! Unlike systemd, the directory is left when the process stops (as with
//! `RuntimeDirectoryPreserve=yes`): what the process left there is then
//! there to look at, and the next start finds it as it was.
//!
//! Owns the name's checking and the making; the spawner decides when.
use std::{
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

use nix::unistd::{Gid, Uid};

/// Where runtime directories are.
const RUN: &str = "/run";

/// One `runtime_dir` entry: a name relative to `/run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeDir {
    name: PathBuf,
    mode: u32,
}

impl RuntimeDir {
    /// From its config form: `"redis"` or `"app/sockets"`, no `..`, not
    /// absolute; `mode` is what it is given.
    pub fn parse(text: &str, mode: u32) -> Result<Self, String> {
        let name = PathBuf::from(text);
        let plain = name.components().all(|c| matches!(c, Component::Normal(_)));
        if text.is_empty() || !plain {
            return Err(format!(
                "'{text}' is not a name under {RUN} (as in systemd's RuntimeDirectory=: \"redis\", \"app/sockets\"; no '/' first, no '..')"
            ));
        }
        Ok(Self { name, mode })
    }

    pub fn path(&self) -> PathBuf {
        Path::new(RUN).join(&self.name)
    }

    /// Makes it (and what leads to it, as root's) unless it is there, and
    /// gives it to `owner` (the watch's user and group). A symlink anywhere
    /// on the way is refused: whoever planted it would have the chown land
    /// where they chose.
    pub fn make(&self, owner: Option<(Uid, Gid)>) -> Result<(), String> {
        let path = self.path();
        let fail = |e: &dyn std::fmt::Display| format!("runtime_dir {}: {e}", path.display());
        let mut at = PathBuf::from(RUN);
        for part in self.name.components() {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(fail(&format!("{} is a symlink", at.display())))
                }
                Ok(meta) if !meta.is_dir() => {
                    return Err(fail(&format!("{} is not a directory", at.display())))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match std::fs::DirBuilder::new().mode(0o755).create(&at) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                        Err(e) => return Err(fail(&e)),
                    }
                }
                Err(e) => return Err(fail(&e)),
            }
        }
        // Through the directory itself, opened without following a
        // symlink: one swapped in since the walk above gets nothing.
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| fail(&e))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&dir, Some(uid.as_raw()), Some(gid.as_raw()))
                .map_err(|e| fail(&e))?;
        }
        dir.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|e| fail(&e))
    }
}

/// What `RUNTIME_DIRECTORY` says: the paths, `:` between them.
pub fn variable(dirs: &[RuntimeDir]) -> Option<(String, String)> {
    (!dirs.is_empty()).then(|| {
        let paths: Vec<String> = dirs
            .iter()
            .map(|d| d.path().display().to_string())
            .collect();
        ("RUNTIME_DIRECTORY".to_owned(), paths.join(":"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_stays_under_run() {
        assert_eq!(
            RuntimeDir::parse("redis", 0o755).unwrap().path(),
            Path::new("/run/redis")
        );
        assert_eq!(
            RuntimeDir::parse("app/sockets", 0o755).unwrap().path(),
            Path::new("/run/app/sockets")
        );
        for bad in ["", "/run/redis", "../etc", "a/../../etc", "./x"] {
            assert!(RuntimeDir::parse(bad, 0o755).is_err(), "{bad:?}");
        }
    }
}
