//! What a reload would do: given the watches running now and a newly
//! loaded config, which watches are added, which changed (and restart if
//! they run), which are unchanged (left untouched) and which are missing.
//! Pure: no process, no clock, no file; the daemon carries the plan out,
//! and the fuzzer runs it on whatever parses.
use std::collections::HashSet;

use super::WatchConfig;

#[derive(Debug, Default, PartialEq)]
pub struct ReloadPlan {
    /// New watches, in the order the config gives them.
    pub added: Vec<WatchConfig>,
    /// Watches whose config is different now.
    pub changed: Vec<WatchConfig>,
    pub unchanged: Vec<String>,
    /// Names running now that the new config does not have.
    pub missing: Vec<String>,
}

/// Sorts `new` against `current` (every watch the daemon has now).
pub fn plan<'a>(
    current: impl IntoIterator<Item = &'a WatchConfig>,
    new: Vec<WatchConfig>,
) -> ReloadPlan {
    let current: std::collections::HashMap<&str, &WatchConfig> =
        current.into_iter().map(|w| (w.name.as_str(), w)).collect();
    let named: HashSet<String> = new.iter().map(|w| w.name.clone()).collect();
    let mut plan = ReloadPlan::default();
    for config in new {
        match current.get(config.name.as_str()) {
            None => plan.added.push(config),
            Some(old) if **old == config => plan.unchanged.push(config.name),
            Some(_) => plan.changed.push(config),
        }
    }
    let mut missing: Vec<String> = current
        .keys()
        .filter(|n| !named.contains(**n))
        .map(|n| n.to_string())
        .collect();
    missing.sort();
    plan.missing = missing;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(name: &str, argv: &str) -> WatchConfig {
        WatchConfig::for_command(name, vec![argv.into()])
    }

    #[test]
    fn sorts_added_changed_unchanged_and_missing() {
        let now = [watch("a", "x"), watch("b", "x"), watch("c", "x")];
        let plan = plan(
            &now,
            vec![watch("a", "x"), watch("b", "y"), watch("d", "x")],
        );
        assert_eq!(plan.added, vec![watch("d", "x")]);
        assert_eq!(plan.changed, vec![watch("b", "y")]);
        assert_eq!(plan.unchanged, vec!["a".to_owned()]);
        assert_eq!(plan.missing, vec!["c".to_owned()]);
    }
}
