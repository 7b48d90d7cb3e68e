//! What a reload would do: given the watches running now and a newly
//! loaded config, which watches are added, which changed (and restart if
//! they run), which changed only the values of their kernel-enforced
//! limits (set again in place, no restart), which are unchanged (left
//! untouched) and which are missing.
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
    /// Watches whose config differs only in the values of the limits it
    /// has (`memory_max = "64MB"` → `"128MB"`): the kernel takes new
    /// values in place. A limit added or removed needs a new cgroup, and
    /// so a restart (`changed`).
    pub relimited: Vec<WatchConfig>,
    pub unchanged: Vec<String>,
    /// Names running now that the new config does not have.
    pub missing: Vec<String>,
    /// Instances (`web@4`) the new config does not have while it still
    /// has the watch (`web`, with fewer instances or none): not missing,
    /// but the difference, to be stopped and removed.
    pub dropped: Vec<String>,
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
            Some(old) if only_limit_values_differ(old, &config) => plan.relimited.push(config),
            Some(_) => plan.changed.push(config),
        }
    }
    let mut missing: Vec<String> = current
        .keys()
        .filter(|n| !named.contains(**n))
        .map(|n| n.to_string())
        .collect();
    missing.sort();
    let kept = |name: &str| {
        crate::protocol::base_name(name).is_some_and(|base| {
            named.contains(base)
                || named
                    .iter()
                    .any(|n| crate::protocol::base_name(n) == Some(base))
        })
    };
    (plan.dropped, plan.missing) = missing.into_iter().partition(|n| kept(n));
    plan
}

fn only_limit_values_differ(old: &WatchConfig, new: &WatchConfig) -> bool {
    let (a, b) = (old.limits, new.limits);
    a.same_keys(&b)
        && *old
            == WatchConfig {
                limits: a,
                ..new.clone()
            }
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

    #[test]
    fn fewer_instances_drop_the_difference_and_a_gone_watch_is_missing() {
        let now = [
            watch("q@0", "x"),
            watch("q@1", "x"),
            watch("q@2", "x"),
            watch("r@0", "x"),
        ];
        let plan = plan(&now, vec![watch("q@0", "x"), watch("q@1", "x")]);
        assert_eq!(plan.dropped, vec!["q@2".to_owned()]);
        assert_eq!(plan.missing, vec!["r@0".to_owned()]);
        assert_eq!(plan.unchanged, vec!["q@0".to_owned(), "q@1".to_owned()]);
        let plan = super::plan(&now[..1], vec![watch("q", "x")]);
        assert_eq!(plan.dropped, vec!["q@0".to_owned()]);
    }

    #[test]
    fn a_new_value_of_a_limit_needs_no_restart_a_new_limit_does() {
        let limited = |memory: u64, pids: Option<u64>| {
            let mut w = watch("a", "x");
            w.limits.memory_max = Some(memory);
            w.limits.pids_max = pids;
            w
        };
        let now = [limited(64 << 20, None)];
        let plan = plan(&now, vec![limited(128 << 20, None)]);
        assert_eq!(plan.relimited, vec![limited(128 << 20, None)]);
        assert!(plan.changed.is_empty());
        let plan = super::plan(&now, vec![limited(128 << 20, Some(10))]);
        assert_eq!(plan.changed, vec![limited(128 << 20, Some(10))]);
        assert!(plan.relimited.is_empty());
    }
}
