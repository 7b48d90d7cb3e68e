//! Where things are in a config file's text, for errors found after
//! parsing (a duplicate name, an unknown `after`): the line of a table or of
//! a key in it. Knows nothing of what the keys mean.

/// Where `[[watch]]` tables and `[daemon]` start, for errors found after
/// parsing. Each header's tables are found in one pass over the file, the
/// first time that header is asked for: looking a key up costs its table,
/// not the file (a config of 20,000 watches was quadratic before).
pub(super) struct Spans<'a> {
    pub(super) text: &'a str,
    /// For each header asked for: the line number (0-based) and byte
    /// offset of each line that starts such a table.
    pub(super) tables: std::cell::RefCell<std::collections::HashMap<String, std::rc::Rc<Tables>>>,
}

/// The line number (0-based) and byte offset of each table's header line.
type Tables = Vec<(usize, usize)>;

impl Spans<'_> {
    fn tables(&self, header: &str) -> std::rc::Rc<Tables> {
        if let Some(found) = self.tables.borrow().get(header) {
            return found.clone();
        }
        let mut found = Vec::new();
        let mut offset = 0;
        for (n, line) in self.text.split_inclusive('\n').enumerate() {
            if line.trim_start().starts_with(header) {
                found.push((n, offset));
            }
            offset += line.len();
        }
        let found = std::rc::Rc::new(found);
        self.tables
            .borrow_mut()
            .insert(header.to_owned(), found.clone());
        found
    }

    pub(super) fn key_line(&self, index: usize, key: &str) -> Option<usize> {
        self.table_key_line("[[watch]]", index, key)
    }

    /// The line of `key` (its first dotted part) in the `index`th table
    /// under `header` (as `key = ` or as its own `[table.key]`), else the
    /// line of the table's header.
    pub(super) fn table_key_line(&self, header: &str, index: usize, key: &str) -> Option<usize> {
        let (start, offset) = *self.tables(header).get(index)?;
        let first = key.split('.').next().unwrap_or(key);
        let table = header.trim_matches(|c| c == '[' || c == ']');
        let subtable = format!("[{table}.{first}]");
        self.text[offset..]
            .lines()
            .enumerate()
            .skip(1)
            .take_while(|(_, l)| !l.trim_start().starts_with("[["))
            .find(|(_, l)| {
                let l = l.trim_start();
                l.starts_with(&subtable)
                    || l.strip_prefix(first)
                        .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
            .map_or(Some(start + 1), |(n, _)| Some(start + n + 1))
    }

    pub(super) fn line_of(&self, header: &str) -> Option<usize> {
        self.tables(header).first().map(|(n, _)| n + 1)
    }
}
