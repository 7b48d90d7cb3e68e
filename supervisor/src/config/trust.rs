//! Whom a config file is believed from: whoever may write it runs commands
//! as root, so a file (and the folder it is in) must belong to root or the
//! daemon's user and be writable by nobody else, as sshd and sudo demand.
use std::path::Path;

use super::ConfigError;

/// Refuses `path` if someone other than root or the daemon's user owns it
/// or may write it, or may write the folder it is in.
pub(super) fn trusted(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt as _;
    let refuse = |message: String| {
        ConfigError {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key: String::new(),
        message: format!("{message}: whoever may write a config runs commands as root; refusing it (fix its owner and mode, or run with --insecure-config)"),
    }
    };
    let own = nix::unistd::geteuid().as_raw();
    let check = |what: &str, meta: &std::fs::Metadata, sticky_ok: bool| {
        if meta.uid() != 0 && meta.uid() != own {
            return Err(refuse(format!("{what} belongs to uid {}", meta.uid())));
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !(sticky_ok && sticky) {
            return Err(refuse(format!(
                "{what} may be written by others (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
        Ok(())
    };
    let Ok(meta) = std::fs::metadata(path) else {
        // Not there: reading it says so.
        return Ok(());
    };
    check("it", &meta, false)?;
    let parent = std::fs::canonicalize(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = parent {
        if let Ok(meta) = std::fs::metadata(&dir) {
            // A sticky folder (/tmp) lets nobody replace root's file.
            check(&format!("its folder {}", dir.display()), &meta, true)?;
        }
    }
    Ok(())
}
