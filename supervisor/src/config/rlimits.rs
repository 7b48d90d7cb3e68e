//! A watch's `limits` table: `{ nofile = 65536, core = "unlimited",
//! stack = "8MB", cpu = "1h", nproc = [512, 1024] }`. Each value is a
//! number in the resource's unit (bytes, seconds, microseconds or a
//! count), a size or duration where the unit is one, `"unlimited"`, or
//! `[soft, hard]`; one value is both. Checked here against what the
//! kernel will grant, so that a start never fails for it.
use std::collections::BTreeMap;

use crate::rlimit::{show, Resource, Rlimit, Unit, INFINITY};

/// The table as written (names are checked here, to list the known ones).
pub(super) type RawRlimits = BTreeMap<String, toml::Value>;

/// The limits of `raw`, in resource order; or what is wrong, beginning
/// with the limit's name.
pub(super) fn rlimits(raw: RawRlimits) -> Result<Vec<Rlimit>, String> {
    let may_raise = crate::rlimit::may_raise();
    let mut limits = Vec::new();
    for (name, value) in raw {
        let Some(resource) = Resource::ALL.into_iter().find(|r| r.name() == name) else {
            let known: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
            return Err(format!(
                "unknown limit '{name}' (known: {})",
                known.join(", ")
            ));
        };
        let key = |why: String| format!("{name}: {why}");
        let (soft, hard) = match &value {
            toml::Value::Array(pair) => match pair.as_slice() {
                [soft, hard] => (
                    one(resource, soft).map_err(key)?,
                    one(resource, hard).map_err(key)?,
                ),
                _ => {
                    return Err(key(format!(
                        "{value} is not [soft, hard]: give one value or two"
                    )))
                }
            },
            single => {
                let v = one(resource, single).map_err(key)?;
                (v, v)
            }
        };
        if soft > hard {
            return Err(key(format!(
                "soft {} is above hard {}: the soft limit must be at most the hard one",
                show(soft),
                show(hard)
            )));
        }
        let limit = Rlimit {
            resource,
            soft,
            hard,
        };
        if let Some(why) = limit.refused(may_raise) {
            return Err(key(why));
        }
        limits.push(limit);
    }
    limits.sort_by_key(|l| l.resource);
    Ok(limits)
}

/// One value of `resource`, in its unit.
fn one(resource: Resource, value: &toml::Value) -> Result<u64, String> {
    let unit = resource.unit();
    let expected = match unit {
        Unit::Count => "a count",
        Unit::Bytes => "a size (e.g. \"64MB\") or a number of bytes",
        Unit::Seconds => "a duration (e.g. \"1h\") or a number of seconds",
        Unit::Micros => "a duration (e.g. \"500ms\") or a number of microseconds",
    };
    let not = || format!("{value} is not a limit: {expected}, \"unlimited\", or [soft, hard]");
    match value {
        toml::Value::Integer(n) => u64::try_from(*n).map_err(|_| not()),
        toml::Value::String(text) => {
            let text = text.trim();
            if text == "unlimited" || text == "infinity" {
                return Ok(INFINITY);
            }
            let parsed = match unit {
                Unit::Count => text.parse::<u64>().map_err(|_| not()),
                Unit::Bytes => crate::units::parse_size(text),
                Unit::Seconds => crate::units::parse_duration(text).and_then(|d| {
                    if d.subsec_nanos() == 0 {
                        Ok(d.as_secs())
                    } else {
                        Err(format!("{text}: CPU time is limited in whole seconds"))
                    }
                }),
                Unit::Micros => crate::units::parse_duration(text)
                    .map(|d| u64::try_from(d.as_micros()).unwrap_or(INFINITY)),
            }?;
            Ok(parsed)
        }
        _ => Err(not()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Rlimit>, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        rlimits(table.into_iter().collect())
    }

    #[test]
    fn each_unit_reads_its_own_forms() {
        let limits = parse(
            "nofile = [1024, 4096]\ncore = \"unlimited\"\nstack = \"8MB\"\ncpu = \"1h\"\nrttime = \"500ms\"\nfsize = 4096\n",
        )
        .unwrap();
        let find = |r: Resource| *limits.iter().find(|l| l.resource == r).unwrap();
        assert_eq!(
            (find(Resource::Nofile).soft, find(Resource::Nofile).hard),
            (1024, 4096)
        );
        assert_eq!(find(Resource::Core).hard, INFINITY);
        assert_eq!(find(Resource::Stack).soft, 8 * 1024 * 1024);
        assert_eq!(find(Resource::Cpu).soft, 3600);
        assert_eq!(find(Resource::Rttime).soft, 500_000);
        assert_eq!(find(Resource::Fsize).soft, 4096);
    }

    #[test]
    fn bad_values_say_what_is_wanted() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(
            error("nofile = -1\n"),
            "nofile: -1 is not a limit: a count, \"unlimited\", or [soft, hard]"
        );
        assert!(error("nofiles = 1\n").starts_with("unknown limit 'nofiles' (known: cpu, fsize"));
        assert_eq!(
            error("nproc = [10, 5]\n"),
            "nproc: soft 10 is above hard 5: the soft limit must be at most the hard one"
        );
        assert!(error("cpu = \"1.5s\"\n").contains("whole seconds"));
        assert!(error("nofile = [1, 2, 3]\n").contains("is not [soft, hard]"));
        assert!(error("stack = true\n").contains("a size (e.g. \"64MB\")"));
    }
}
