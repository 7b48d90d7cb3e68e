//! The `after` graph: in which order watches start, and the cycle that
//! makes an order impossible. One walk, used by the config check (which
//! refuses a cycle) and by the daemon (which starts watches in order).
use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq)]
enum Mark {
    /// On the path being walked: met again, it closes a cycle.
    Grey,
    Done,
}

/// `names` and everything they start after, each after those it starts
/// after (`after(name)` lists them; `None` for a name it does not know,
/// which is taken as having none). `Err` holds a cycle, first name last
/// again: `a`, `b`, `a`.
/// What `name` starts after, as watch names: a base name in `after`
/// (`web`) stands for all its instances (`web@0`, `web@1` ...) among
/// `names`, other than `name` itself.
pub fn expand(name: &str, after: &[String], names: &[&str]) -> Vec<String> {
    after
        .iter()
        .flat_map(|dep| {
            let instances: Vec<String> = names
                .iter()
                .filter(|n| **n != name && crate::protocol::base_name(n) == Some(dep.as_str()))
                .map(|n| n.to_string())
                .collect();
            if instances.is_empty() {
                vec![dep.clone()]
            } else {
                instances
            }
        })
        .collect()
}

pub fn start_order<'a, F>(
    names: impl IntoIterator<Item = &'a str>,
    after: F,
) -> Result<Vec<&'a str>, Vec<&'a str>>
where
    F: Fn(&str) -> Option<&'a [String]>,
{
    let mut marks = HashMap::new();
    let (mut path, mut out) = (Vec::new(), Vec::new());
    for name in names {
        visit(name, &after, &mut marks, &mut path, &mut out)?;
    }
    Ok(out)
}

fn visit<'a, F>(
    name: &'a str,
    after: &F,
    marks: &mut HashMap<&'a str, Mark>,
    path: &mut Vec<&'a str>,
    out: &mut Vec<&'a str>,
) -> Result<(), Vec<&'a str>>
where
    F: Fn(&str) -> Option<&'a [String]>,
{
    match marks.get(name) {
        Some(Mark::Done) => return Ok(()),
        Some(Mark::Grey) => {
            let from = path.iter().position(|p| *p == name).unwrap_or(0);
            let mut cycle = path[from..].to_vec();
            cycle.push(name);
            return Err(cycle);
        }
        None => {}
    }
    marks.insert(name, Mark::Grey);
    path.push(name);
    for dep in after(name).unwrap_or_default() {
        visit(dep.as_str(), after, marks, path, out)?;
    }
    path.pop();
    marks.insert(name, Mark::Done);
    out.push(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, deps)| (n.to_string(), deps.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    #[test]
    fn dependencies_come_first_and_each_once() {
        let g = graph(&[("web", &["db", "cache"]), ("cache", &["db"]), ("db", &[])]);
        let order = start_order(["web", "db"], |n| g.get(n).map(Vec::as_slice)).unwrap();
        assert_eq!(order, ["db", "cache", "web"]);
    }

    #[test]
    fn a_cycle_is_named_in_order() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        let cycle = start_order(["a"], |n| g.get(n).map(Vec::as_slice)).unwrap_err();
        assert_eq!(cycle, ["a", "b", "c", "a"]);
    }
}
