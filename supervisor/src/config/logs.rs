//! A watch's log file keys: `stdout = "PATH"` or `{ path = "PATH",
//! max_size = "50MB", backups = 5 }`, read into a path and its rotation.
//! Checks only; the rotating is `output`'s.
use std::path::PathBuf;

use serde::Deserialize;

use super::values::HumanSize;

/// A log file that is rotated by size: when a line would take it past
/// `max_size`, it becomes `PATH.1` (`PATH.1` becomes `PATH.2` ...,
/// `PATH.backups` is deleted) and a new `PATH` is begun.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_size: u64,
    pub backups: u32,
}

/// `stdout = "PATH"` or `{ path = "PATH", max_size = "50MB", backups = 5 }`.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum LogFile {
    Path(PathBuf),
    Rotated(RawRotated),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotated {
    path: PathBuf,
    max_size: Option<HumanSize>,
    backups: Option<u32>,
}

/// The path of a log file key, and its rotation.
pub(super) fn log_file(
    raw: Option<LogFile>,
) -> Result<(Option<PathBuf>, Option<Rotation>), String> {
    Ok(match raw {
        None => (None, None),
        Some(LogFile::Path(path)) => (Some(path), None),
        Some(LogFile::Rotated(RawRotated {
            path,
            max_size,
            backups,
        })) => {
            let rotation = match (max_size, backups) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err("backups without max_size: a file is rotated at a size".into())
                }
                (Some(HumanSize(size)), _) if size < 4096 => {
                    return Err(format!("max_size {size} bytes: at least 4KB"))
                }
                (Some(_), Some(0)) => {
                    return Err(
                        "backups = 0 would delete each file as it is rotated: at least 1".into(),
                    )
                }
                (Some(HumanSize(max_size)), backups) => Some(Rotation {
                    max_size,
                    backups: backups.unwrap_or(5).min(1000),
                }),
            };
            (Some(path), rotation)
        }
    })
}
