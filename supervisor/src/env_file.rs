//! Environment files (`env_file`), systemd's `EnvironmentFile=` format:
//! `KEY=value` lines, `#` and `;` comments, an `export ` before the key
//! tolerated, single quotes taken verbatim, double quotes with the shell's
//! escapes, a backslash at the end of a line continuing it. Read at each
//! start, so that an edit applies on the next restart without a reload.
//!
//! Stricter than systemd in one way: a line that is not an assignment (no
//! `=`, or a key that is not a name) is an error naming the file and line
//! rather than ignored, and an error never quotes the line, which may hold
//! a secret. Owns the parsing and the reading; the spawner decides where
//! the values go.
use std::{io::Read as _, path::PathBuf};

/// Larger files are refused: an environment is kilobytes.
const MAX_SIZE: u64 = 1024 * 1024;

/// One `env_file` entry: `"-/etc/app/env"` is optional.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFile {
    pub path: PathBuf,
    pub optional: bool,
}

impl EnvFile {
    /// From its config form: an absolute path, `-` first if it may be
    /// absent.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (optional, path) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(format!(
                "'{text}' is not an absolute path (an env file is named in full, '-' first if it may be absent)"
            ));
        }
        if path.is_dir() {
            return Err(format!(
                "{} is a directory, not an env file",
                path.display()
            ));
        }
        Ok(Self { path, optional })
    }

    /// Its variables, in order; none if it is optional and absent. The
    /// file must be a regular file owned by root, the daemon's user or
    /// `owner` (the watch's user), that nobody else may write: whoever
    /// may write it sets what the process runs with (`LD_PRELOAD`).
    pub fn read(&self, owner: Option<u32>) -> Result<Vec<(String, String)>, String> {
        use std::os::unix::fs::MetadataExt as _;
        let path = self.path.display();
        let mut file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.optional => {
                return Ok(Vec::new())
            }
            Err(e) => return Err(format!("env_file {path}: {e}")),
        };
        let meta = file
            .metadata()
            .map_err(|e| format!("env_file {path}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("env_file {path}: not a regular file"));
        }
        let own = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != own && Some(meta.uid()) != owner {
            return Err(format!(
                "env_file {path}: belongs to uid {}, who would set this process's environment",
                meta.uid()
            ));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!(
                "env_file {path}: others may write it (mode {:o}), and so set this process's environment",
                meta.mode() & 0o7777
            ));
        }
        if meta.len() > MAX_SIZE {
            return Err(format!(
                "env_file {path}: {} bytes, more than the {MAX_SIZE} an environment file may have",
                meta.len()
            ));
        }
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| format!("env_file {path}: {e}"))?;
        parse(&text).map_err(|e| format!("env_file {path}:{}: {}", e.line, e.what))
    }
}

/// Where a file is not an environment file, and what is wrong (never the
/// text itself).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub what: &'static str,
}

/// The assignments of `text`, in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, Malformed> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    loop {
        // The start of a line: blanks, then a comment, an assignment, or
        // nothing.
        while matches!(chars.peek(), Some(' ' | '\t' | '\r')) {
            chars.next();
        }
        let start = line;
        match chars.peek() {
            None => return Ok(out),
            Some('\n') => {
                chars.next();
                line += 1;
                continue;
            }
            Some('#' | ';') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
                continue;
            }
            Some(_) => {}
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == '\n' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key = key.trim_end();
        let key = key.strip_prefix("export ").map_or(key, str::trim_start);
        if chars.next() != Some('=') {
            return Err(Malformed {
                line: start,
                what: "not KEY=value",
            });
        }
        if !is_name(key) {
            return Err(Malformed {
                line: start,
                what: "the name before '=' is not a variable name (letters, digits and _, not first a digit)",
            });
        }
        let value = value(&mut chars, &mut line).map_err(|what| Malformed { line: start, what })?;
        out.push((key.to_owned(), value));
    }
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The value after `=`, up to the end of its (last) line, which it takes.
fn value(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: &mut usize,
) -> Result<String, &'static str> {
    while matches!(chars.peek(), Some(' ' | '\t')) {
        chars.next();
    }
    let mut value = String::new();
    match chars.peek() {
        Some('\'') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a single quote is not closed"),
                    Some('\'') => break,
                    Some(c) => {
                        if c == '\n' {
                            *line += 1;
                        }
                        value.push(c);
                    }
                }
            }
            rest_of_line(chars, line)?;
        }
        Some('"') => {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("a double quote is not closed"),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        None => return Err("a double quote is not closed"),
                        Some('\n') => *line += 1,
                        Some(c @ ('"' | '\\' | '`' | '$')) => value.push(c),
                        Some(c) => {
                            value.push('\\');
                            value.push(c);
                        }
                    },
                    Some(c) => {
                        if c == '\n' {
                            *line += 1;
                        }
                        value.push(c);
                    }
                }
            }
            rest_of_line(chars, line)?;
        }
        _ => {
            // Unquoted: up to the end of the line, a backslash keeping the
            // next character (a newline: the line goes on).
            loop {
                match chars.next() {
                    None => break,
                    Some('\n') => {
                        *line += 1;
                        break;
                    }
                    Some('\\') => match chars.next() {
                        None => break,
                        Some('\n') => *line += 1,
                        Some(c) => value.push(c),
                    },
                    Some(c) => value.push(c),
                }
            }
            let kept = value.trim_end_matches([' ', '\t', '\r']).len();
            value.truncate(kept);
        }
    }
    Ok(value)
}

/// After a closing quote: only blanks (or a comment) up to the newline.
fn rest_of_line(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    line: &mut usize,
) -> Result<(), &'static str> {
    while matches!(chars.peek(), Some(' ' | '\t' | '\r')) {
        chars.next();
    }
    match chars.next() {
        None => Ok(()),
        Some('\n') => {
            *line += 1;
            Ok(())
        }
        Some(_) => Err("text after the closing quote"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn reads_what_systemd_reads() {
        let text = "# a comment\n; another\n\nA=1\n  export B = two words  \nC='single $X \\n kept'\nD=\"dq \\\"esc\\\" \\$HOME \\n\"\nE=con\\\ntinued\nF=\nG=\"multi\nline\"\nH=a=b\n";
        assert_eq!(
            vars(text),
            vec![
                pair("A", "1"),
                pair("B", "two words"),
                pair("C", "single $X \\n kept"),
                pair("D", "dq \"esc\" $HOME \\n"),
                pair("E", "continued"),
                pair("F", ""),
                pair("G", "multi\nline"),
                pair("H", "a=b"),
            ]
        );
    }

    #[test]
    fn malformed_lines_are_named_by_number_and_never_quoted() {
        assert_eq!(
            parse("A=1\n\nsecret-without-equals\n"),
            Err(Malformed {
                line: 3,
                what: "not KEY=value"
            })
        );
        assert_eq!(parse("1A=x\n").unwrap_err().line, 1);
        assert_eq!(
            parse("A=\"open\nB=2\n").unwrap_err().what,
            "a double quote is not closed"
        );
        assert_eq!(
            parse("A='x' y\n").unwrap_err().what,
            "text after the closing quote"
        );
        let error = parse("A=1\nB=\"x\ny\"\nC D=1\n").unwrap_err();
        assert_eq!(error.line, 4, "lines inside a quoted value count");
    }

    #[test]
    fn entries_are_absolute_and_a_dash_makes_one_optional() {
        assert_eq!(
            EnvFile::parse("-/nonexistent/env").unwrap(),
            EnvFile {
                path: "/nonexistent/env".into(),
                optional: true
            }
        );
        assert!(EnvFile::parse("env")
            .unwrap_err()
            .contains("not an absolute path"));
        assert!(EnvFile::parse("/tmp")
            .unwrap_err()
            .contains("is a directory"));
        assert_eq!(
            EnvFile::parse("-/nonexistent/env").unwrap().read(None),
            Ok(Vec::new())
        );
        assert!(EnvFile::parse("/nonexistent/env")
            .unwrap()
            .read(None)
            .unwrap_err()
            .starts_with("env_file /nonexistent/env: No such file"));
    }
}
