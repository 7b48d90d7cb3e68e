//! The two INI dialects `import` reads, into sections of keys with the
//! line each was on: supervisord's (Python's ConfigParser: `key = value`
//! or `key: value`, continuation lines indented, ` ;` starting an inline
//! comment, keys in any case) and systemd's unit files (`Key=Value`, a
//! trailing `\` continuing a line, a key given again kept again). Pure:
//! text in, sections out.

/// One `[section]` and its keys, in file order.
#[derive(Debug, Default)]
pub struct Section {
    pub name: String,
    pub line: usize,
    /// (key, value, line), a key repeated as often as it was written.
    pub keys: Vec<(String, String, usize)>,
}

impl Section {
    /// The last value of `key`, with its line.
    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.keys
            .iter()
            .rev()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, l)| (v.as_str(), *l))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Supervisord,
    Systemd,
}

/// The sections of `text`, or the line that is neither a section, a key
/// nor a comment.
pub fn parse(text: &str, dialect: Dialect) -> Result<Vec<Section>, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).peekable();
    while let Some((number, raw)) = lines.next() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err((
                    number,
                    format!("'{trimmed}' opens a section it does not close"),
                ));
            };
            sections.push(Section {
                name: name.trim().to_owned(),
                line: number,
                keys: Vec::new(),
            });
            continue;
        }
        if dialect == Dialect::Supervisord && raw.starts_with([' ', '\t']) {
            // A continuation of the last value.
            if let Some((_, value, _)) = sections.last_mut().and_then(|s| s.keys.last_mut()) {
                value.push('\n');
                value.push_str(&strip_inline_comment(trimmed));
                continue;
            }
        }
        let split = match dialect {
            Dialect::Supervisord => trimmed.find(['=', ':']),
            Dialect::Systemd => trimmed.find('='),
        };
        let Some(at) = split else {
            return Err((number, "not 'key = value', a [section] or a comment".into()));
        };
        let Some(section) = sections.last_mut() else {
            return Err((number, "a key before any [section]".into()));
        };
        let key = trimmed[..at].trim();
        let mut value = trimmed[at + 1..].trim().to_owned();
        let key = match dialect {
            Dialect::Supervisord => {
                value = strip_inline_comment(&value);
                key.to_lowercase()
            }
            Dialect::Systemd => {
                while value.ends_with('\\') {
                    value.pop();
                    match lines.next() {
                        Some((_, more)) => {
                            value.truncate(value.trim_end().len());
                            value.push(' ');
                            value.push_str(more.trim());
                        }
                        None => break,
                    }
                }
                key.to_owned()
            }
        };
        section.keys.push((key, value.trim().to_owned(), number));
    }
    Ok(sections)
}

/// A value less its ` ; comment` (ConfigParser's inline comments need
/// whitespace before the `;`).
fn strip_inline_comment(value: &str) -> String {
    match value.find(" ;").or_else(|| value.find("\t;")) {
        Some(at) => value[..at].trim_end().to_owned(),
        None => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisord_keys_continuations_and_comments() {
        let text = "; top\n[program:web]\nCommand = /usr/bin/web --port 80 ; the server\nenvironment = A=\"1\",\n  B=\"2\"\nuser: www\n";
        let s = parse(text, Dialect::Supervisord).unwrap();
        assert_eq!(s[0].name, "program:web");
        assert_eq!(s[0].get("command"), Some(("/usr/bin/web --port 80", 3)));
        assert_eq!(s[0].get("environment").unwrap().0, "A=\"1\",\nB=\"2\"");
        assert_eq!(s[0].get("user"), Some(("www", 6)));
        assert_eq!(parse("key = 1\n", Dialect::Supervisord).unwrap_err().0, 1);
        assert_eq!(parse("[x\n", Dialect::Supervisord).unwrap_err().0, 1);
    }

    #[test]
    fn systemd_lists_and_continuations() {
        let text = "[Service]\nEnvironment=A=1\nEnvironment=B=2\nExecStartPre=/bin/a\nExecStartPre=\nExecStartPre=/bin/b\nExecStart=/usr/bin/x \\\n  --flag\n";
        let s = parse(text, Dialect::Systemd).unwrap();
        assert_eq!(
            s[0].keys
                .iter()
                .filter(|(k, _, _)| k == "Environment")
                .count(),
            2
        );
        assert_eq!(s[0].get("ExecStartPre"), Some(("/bin/b", 6)));
        assert_eq!(s[0].get("ExecStart").unwrap().0, "/usr/bin/x --flag");
    }
}
