//! `cargo xtask lint`'s layering checks on the `supervisor` crate: no two
//! top-level modules import each other, directly or around a circle, and
//! only the CLI (`cli.rs`, `main.rs`) knows clap. Reads the sources as text:
//! `crate::name` anywhere outside comments and the unit tests counts as an
//! import of module `name`.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

use anyhow::{bail, Context as _, Result};

/// Files allowed to name clap.
const CLAP_ALLOWED: [&str; 2] = ["cli.rs", "main.rs"];

pub fn check(src: &Path) -> Result<()> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut clap_users = Vec::new();
    for file in rust_files(src)? {
        let relative = file.strip_prefix(src).expect("under src");
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        let code = without_tests(&without_comments(&text));
        let name = relative.to_string_lossy().replace('\\', "/");
        if code.contains("clap::") && !CLAP_ALLOWED.contains(&name.as_str()) {
            clap_users.push(name.clone());
        }
        let module = top_module(&name);
        if module == "lib" || module == "main" {
            continue;
        }
        let imports = graph.entry(module.clone()).or_default();
        for target in crate_references(&code) {
            if target != module && target != "self" {
                imports.insert(target);
            }
        }
    }
    let cycles = cycles(&graph);
    let mut problems = Vec::new();
    for cycle in &cycles {
        let edges: Vec<String> = cycle
            .iter()
            .flat_map(|from| {
                graph[from]
                    .iter()
                    .filter(|to| cycle.contains(*to))
                    .map(move |to| format!("{from} -> {to}"))
            })
            .collect();
        problems.push(format!(
            "modules import each other in a circle: {}",
            edges.join(", ")
        ));
    }
    for file in &clap_users {
        problems.push(format!(
            "{file} names clap: only {} may (the CLI is the only layer that knows it)",
            CLAP_ALLOWED.join(" and ")
        ));
    }
    if !problems.is_empty() {
        bail!("layering of supervisor/src:\n  {}", problems.join("\n  "));
    }
    println!(
        "layers: {} modules, no import cycle, clap only in the CLI",
        graph.len()
    );
    Ok(())
}

fn rust_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            files.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// `config/mod.rs` and `config/spans.rs` are `config`; `watch.rs` is `watch`.
fn top_module(relative: &str) -> String {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first).to_owned()
}

fn without_comments(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(i) if !line[..i].contains('"') => &line[..i],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The file up to its unit tests, which may reach anywhere.
fn without_tests(code: &str) -> String {
    match code.find("#[cfg(test)]") {
        Some(i) => code[..i].to_owned(),
        None => code.to_owned(),
    }
}

/// The modules `code` names through `crate::`, including each first
/// segment of a `use crate::{a, b::c}` group.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for item in top_level_items(&group[..end]) {
                let first: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !first.is_empty() {
                    found.insert(first);
                }
            }
            rest = &group[end..];
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn matching_brace(text: &str) -> usize {
    let mut depth = 0;
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return i,
            '}' => depth -= 1,
            _ => {}
        }
    }
    text.len()
}

fn top_level_items(group: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&group[start..]);
    items
}

/// The strongly connected components of more than one module (Tarjan).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<BTreeSet<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<BTreeSet<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, node: &'a str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = BTreeSet::new();
                while let Some(top) = self.stack.pop() {
                    component.insert(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_circle_and_reads_use_groups() {
        let code = "use crate::{a::{X, Y}, b, self};\nfn f() { crate::c::g(); }";
        let refs: Vec<String> = crate_references(code).into_iter().collect();
        assert_eq!(refs, ["a", "b", "c", "self"]);
        let mut graph = BTreeMap::new();
        graph.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
        graph.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
        graph.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
        graph.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
        assert_eq!(cycles(&graph).len(), 1);
        assert_eq!(cycles(&graph)[0].len(), 3);
    }
}
