//! The reload path on arbitrary text: two configs separated by a NUL byte,
//! the one running and the one loaded over it. Parsing may refuse, never
//! panic; the planner sorts every new watch into exactly one of added,
//! changed and unchanged, and names as missing exactly those it dropped.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (old, new) = text.split_once('\0').unwrap_or(("", text));
    let file = std::path::Path::new("fuzz.toml");
    let (Ok(old), Ok(new)) = (
        supervisor::config::parse(file, old),
        supervisor::config::parse(file, new),
    ) else {
        return;
    };
    let new_names: BTreeSet<String> = new.watches.iter().map(|w| w.name.clone()).collect();
    let old_names: BTreeSet<String> = old.watches.iter().map(|w| w.name.clone()).collect();
    let plan = supervisor::config::reload::plan(&old.watches, new.watches);
    let mut sorted: Vec<String> = plan
        .added
        .iter()
        .chain(&plan.changed)
        .map(|w| w.name.clone())
        .chain(plan.unchanged.iter().cloned())
        .collect();
    sorted.sort();
    assert_eq!(sorted, new_names.iter().cloned().collect::<Vec<_>>());
    let missing: BTreeSet<String> = plan.missing.into_iter().collect();
    assert_eq!(missing, &old_names - &new_names);
    assert!(plan.added.iter().all(|w| !old_names.contains(&w.name)));
});
