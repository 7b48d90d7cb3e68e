//! Finding tracefs, and mounting it where the boot did not.
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// The tracefs root, mounting it at /sys/kernel/tracing if no mount exists.
pub fn ensure_mounted() -> Result<PathBuf> {
    if let Some(found) = find()? {
        return Ok(found);
    }
    let target = Path::new(CANDIDATES[0]);
    log::info!(
        "tracefs is not mounted; mounting it at {}",
        target.display()
    );
    let mounted = nix::mount::mount(
        Some("tracefs"),
        target,
        Some("tracefs"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        None::<&str>,
    );
    // Someone else (another instance starting at the same moment) may
    // have mounted it meanwhile: that is as good.
    if let Some(found) = find()? {
        return Ok(found);
    }
    mounted.with_context(|| {
        format!(
            "tracefs is not mounted and mounting it at {} failed (needs CAP_SYS_ADMIN)",
            target.display()
        )
    })?;
    bail!(
        "mounted tracefs at {} but it has no events/ folder",
        target.display()
    )
}

/// The first tracefs that has events, `None` if none is mounted, or an
/// error when one is there but this user may not look inside.
fn find() -> Result<Option<PathBuf>> {
    for candidate in CANDIDATES.iter().map(PathBuf::from) {
        match std::fs::metadata(candidate.join("events")) {
            Ok(meta) if meta.is_dir() => return Ok(Some(candidate)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                bail!(
                    "tracefs at {} is not readable by this user (needs root)",
                    candidate.display()
                )
            }
            _ => {}
        }
    }
    Ok(None)
}
