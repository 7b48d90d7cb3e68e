//! Where a process's core dump went, from the kernel's `core_pattern`: a
//! file (the pattern's specifiers expanded for that process, relative to
//! its working directory, found on disk), or a pipe to a handler, named.
//! Reads the two sysctls and the directory the core is in; knows nothing
//! of watches.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::process::Pid;

const PATTERN: &str = "/proc/sys/kernel/core_pattern";
const USES_PID: &str = "/proc/sys/kernel/core_uses_pid";

/// Where the core of one death is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CoreFile {
    /// Written to this file.
    File { path: String },
    /// Handed to this program (`core_pattern` starts with `|`).
    Piped { handler: String },
    /// The pattern names a file, and none matching it was found (a full
    /// disk, a directory it may not write, a size limit).
    Missing { pattern: String, dir: String },
}

impl std::fmt::Display for CoreFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File { path } => write!(f, "written to {path}"),
            Self::Piped { handler } => write!(f, "piped to {handler} (core_pattern)"),
            Self::Missing { pattern, dir } => write!(
                f,
                "not found where core_pattern '{pattern}' puts it (in {dir})"
            ),
        }
    }
}

/// What is known of the process that dumped.
pub struct Dumped<'a> {
    pub pid: Pid,
    /// Its name (`comm`), if known.
    pub comm: Option<&'a str>,
    pub signal: i32,
    /// Its working directory, where a relative pattern puts the file.
    pub dir: &'a Path,
}

/// Where the core of `dumped` went, by the host's current pattern.
pub fn locate(dumped: &Dumped) -> Option<CoreFile> {
    let pattern = std::fs::read_to_string(PATTERN).ok()?;
    let uses_pid = std::fs::read_to_string(USES_PID).is_ok_and(|v| v.trim() == "1");
    let hostname = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned());
    Some(resolve(
        pattern.trim_end_matches('\n'),
        uses_pid,
        hostname.as_deref(),
        dumped,
        |dir| {
            std::fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| {
                            let modified = e.metadata().ok()?.modified().ok()?;
                            Some((e.file_name().to_string_lossy().into_owned(), modified))
                        })
                        .collect()
                })
                .unwrap_or_default()
        },
    ))
}

/// One piece of an expanded pattern.
#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// A specifier whose value is not known here (`%t`, `%u`, ...).
    Any,
}

/// `pattern` resolved for `dumped`; `list` gives the names in a directory
/// with their modification times, to find a file whose name has parts
/// not known here (the newest match is taken).
fn resolve(
    pattern: &str,
    uses_pid: bool,
    hostname: Option<&str>,
    dumped: &Dumped,
    list: impl Fn(&Path) -> Vec<(String, std::time::SystemTime)>,
) -> CoreFile {
    if let Some(command) = pattern.strip_prefix('|') {
        let handler = command.split_whitespace().next().unwrap_or("").to_owned();
        return CoreFile::Piped { handler };
    }
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut has_pid = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            text.push(c);
            continue;
        }
        let value = match chars.next() {
            Some('%') => Some("%".to_owned()),
            Some('p' | 'P') => {
                has_pid = true;
                Some(dumped.pid.to_string())
            }
            Some('s') => Some(dumped.signal.to_string()),
            Some('e') => dumped.comm.map(str::to_owned),
            Some('h') => hostname.map(str::to_owned),
            // A lone `%` at the end is dropped, as the kernel does.
            None => Some(String::new()),
            Some(_) => None,
        };
        match value {
            Some(v) => text += &v,
            None => {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
                pieces.push(Piece::Any);
            }
        }
    }
    if uses_pid && !has_pid {
        text += &format!(".{}", dumped.pid);
    }
    pieces.push(Piece::Text(text));

    let missing = || CoreFile::Missing {
        pattern: pattern.to_owned(),
        dir: dumped.dir.display().to_string(),
    };
    // The directory part must be known; only the file name is searched.
    let joined: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) => t.as_str(),
            Piece::Any => "\0",
        })
        .collect();
    let path = dumped.dir.join(&joined);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return missing();
    };
    let name = name.to_string_lossy();
    if dir.to_string_lossy().contains('\0') {
        return missing();
    }
    if !name.contains('\0') {
        return if list(dir).iter().any(|(n, _)| *n == name) {
            CoreFile::File {
                path: path.display().to_string(),
            }
        } else {
            missing()
        };
    }
    let parts: Vec<&str> = name.split('\0').collect();
    list(dir)
        .into_iter()
        .filter(|(n, _)| matches(n, &parts))
        .max_by_key(|(_, modified)| *modified)
        .map_or_else(missing, |(n, _)| CoreFile::File {
            path: dir.join(n).display().to_string(),
        })
}

/// Whether `name` is `parts` joined by anything non-empty.
fn matches(name: &str, parts: &[&str]) -> bool {
    let (first, rest) = parts.split_first().expect("split yields one part at least");
    let Some(mut left) = name.strip_prefix(first) else {
        return false;
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let found = if last {
            left.len() > part.len() && left.ends_with(part)
        } else {
            match left.get(1..).and_then(|l| l.find(part)) {
                Some(at) => {
                    left = &left[1 + at + part.len()..];
                    true
                }
                None => false,
            }
        };
        if !found {
            return false;
        }
    }
    true
}

/// The directory a process started in `dir` (or the daemon's own) works in.
pub fn working_dir(dir: Option<&Path>) -> PathBuf {
    dir.map(Path::to_owned)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn dumped(dir: &Path) -> Dumped<'_> {
        Dumped {
            pid: Pid::new(4242).unwrap(),
            comm: Some("web"),
            signal: 11,
            dir,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_pipe_names_its_handler() {
        let core = resolve(
            "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h",
            false,
            None,
            &dumped(Path::new("/srv")),
            |_| unreachable!(),
        );
        assert_eq!(
            core.to_string(),
            "piped to /usr/lib/systemd/systemd-coredump (core_pattern)"
        );
    }

    #[test]
    fn a_relative_pattern_is_in_the_working_directory() {
        let files = |_: &Path| vec![("core".to_owned(), at(1)), ("core.4242".to_owned(), at(2))];
        let srv = Path::new("/srv/app");
        let core = resolve("core", false, None, &dumped(srv), files);
        assert_eq!(core.to_string(), "written to /srv/app/core");
        let core = resolve("core", true, None, &dumped(srv), files);
        assert_eq!(core.to_string(), "written to /srv/app/core.4242");
        let core = resolve("core.%e.%p.%s", false, None, &dumped(srv), files);
        assert_eq!(
            core,
            CoreFile::Missing {
                pattern: "core.%e.%p.%s".into(),
                dir: "/srv/app".into()
            }
        );
    }

    #[test]
    fn parts_not_known_here_are_matched_on_disk_newest_first() {
        let files = |dir: &Path| {
            assert_eq!(dir, Path::new("/var/crash"));
            vec![
                ("core.web.4242.1700000000".to_owned(), at(5)),
                ("core.web.4242.1700000100".to_owned(), at(9)),
                ("core.db.4242.1700000200".to_owned(), at(10)),
                ("core.web.4242.".to_owned(), at(11)),
            ]
        };
        let core = resolve(
            "/var/crash/core.%e.%p.%t",
            false,
            None,
            &dumped(Path::new("/srv")),
            files,
        );
        assert_eq!(
            core.to_string(),
            "written to /var/crash/core.web.4242.1700000100"
        );
        let core = resolve(
            "/var/crash/%h-%t-core",
            false,
            Some("box"),
            &dumped(Path::new("/srv")),
            |_| vec![("box-17-core".to_owned(), at(1))],
        );
        assert_eq!(core.to_string(), "written to /var/crash/box-17-core");
    }

    #[test]
    fn a_directory_not_known_here_is_not_searched() {
        let core = resolve(
            "/var/crash/%u/core",
            false,
            None,
            &dumped(Path::new("/srv")),
            |_| unreachable!(),
        );
        assert!(matches!(core, CoreFile::Missing { .. }), "{core:?}");
    }
}
