//! `instances = N` (supervisord's `numprocs`, systemd's `foo@.service`):
//! one `[[watch]]` becomes N watches, `web@0` … `web@N-1`, each its own
//! process. In a watch with instances, `{instance}` (0 … N-1), `{name}`
//! (`web@2`) and `{8000 + instance}` (a port each) are filled in in
//! `start`, `stop`, `restart`, `env`'s values, `dir`, `stdout`, `stderr`
//! and `pid_file`; `{{` and `}}` are a brace. A watch without instances
//! keeps every brace as written (`awk '{print $1}'`), but `{instance}` or
//! `{name}` there is an error: it would be a mistake.
//!
//! The base name (`web`) names all the instances wherever a watch is
//! named (verbs, `after`, `[[notify]] watches`): see `protocol::names`.
use std::path::PathBuf;

use super::WatchConfig;

/// The most instances one watch may have.
pub const MAX: u32 = 10_000;
/// The most watches a config may have once instances are counted: what
/// `cargo xtask bench` runs (10,000) and twice more, so that a short file
/// cannot ask for millions.
pub const TOTAL: usize = 30_000;

/// The instances of `config`, each with its placeholders filled in; or
/// the key that holds a bad one and why.
pub(super) fn expand(
    config: WatchConfig,
    count: u32,
) -> Result<Vec<WatchConfig>, (&'static str, String)> {
    if count == 0 || count > MAX {
        return Err(("instances", format!("instances = {count}: from 1 to {MAX}")));
    }
    (0..count)
        .map(|instance| {
            let name = format!("{}@{instance}", config.name);
            let mut one = fill_config(&config, |text| fill(text, instance, &name))?;
            one.name = name;
            Ok(one)
        })
        .collect()
}

/// Refuses `{instance}` and `{name}` in a watch without instances.
pub(super) fn refuse_placeholders(config: &WatchConfig) -> Result<(), (&'static str, String)> {
    fill_config(config, |text| {
        if text.contains("{instance") || text.contains("instance}") || text.contains("{name}") {
            Err(
                "uses {instance} or {name}, which only a watch with instances (instances = N) has"
                    .into(),
            )
        } else {
            Ok(text.to_owned())
        }
    })
    .map(|_| ())
}

/// `config` with `fill` applied to each text that may hold placeholders.
fn fill_config(
    config: &WatchConfig,
    fill: impl Fn(&str) -> Result<String, String>,
) -> Result<WatchConfig, (&'static str, String)> {
    let all =
        |key: &'static str, words: &[String]| -> Result<Vec<String>, (&'static str, String)> {
            words
                .iter()
                .map(|w| fill(w).map_err(|e| (key, e)))
                .collect()
        };
    let path = |key: &'static str,
                path: &Option<PathBuf>|
     -> Result<Option<PathBuf>, (&'static str, String)> {
        path.as_ref()
            .map(|p| {
                fill(&p.to_string_lossy())
                    .map(PathBuf::from)
                    .map_err(|e| (key, e))
            })
            .transpose()
    };
    let argv = all("start", &config.argv)?;
    let stop = config.stop.as_deref().map(|s| all("stop", s)).transpose()?;
    let restart = config
        .restart
        .as_deref()
        .map(|r| all("restart", r))
        .transpose()?;
    let mut env = config.env.clone();
    for value in env.values_mut() {
        *value = fill(value).map_err(|e| ("env", e))?;
    }
    Ok(WatchConfig {
        argv,
        stop,
        restart,
        env,
        dir: path("dir", &config.dir)?,
        stdout: path("stdout", &config.stdout)?,
        stderr: path("stderr", &config.stderr)?,
        pid_file: path("pid_file", &config.pid_file)?,
        ..config.clone()
    })
}

/// `text` with the blanks inside each placeholder taken out, so that a
/// command line split into words keeps `{8000 + instance}` one word.
pub(super) fn squeeze(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push_str("{{");
            rest = after;
            continue;
        }
        let Some(end) = tail.find('}') else {
            break;
        };
        let inside: String = tail[1..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let placeholder = inside == "instance"
            || inside == "name"
            || inside
                .strip_suffix("+instance")
                .or_else(|| inside.strip_prefix("instance+"))
                .is_some_and(|n| n.parse::<u64>().is_ok());
        if placeholder {
            out.push('{');
            out.push_str(&inside);
            out.push('}');
        } else {
            out.push_str(&tail[..=end]);
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `text` with its placeholders filled in for `instance`, named `name`.
fn fill(text: &str, instance: u32, name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("{{").or_else(|| tail.strip_prefix("}}")) {
            out.push_str(&tail[..1]);
            rest = after;
            continue;
        }
        if let Some(after) = tail.strip_prefix('}') {
            out.push('}');
            rest = after;
            continue;
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "'{text}' opens a brace it does not close (write {{{{ for a brace)"
            ));
        };
        let inside: String = tail[1..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let value = match inside.as_str() {
            "instance" => instance.to_string(),
            "name" => name.to_owned(),
            sum => {
                let base = sum
                    .strip_suffix("+instance")
                    .or_else(|| sum.strip_prefix("instance+"));
                match base.and_then(|b| b.parse::<u64>().ok()) {
                    Some(base) => (base + u64::from(instance)).to_string(),
                    None => {
                        return Err(format!(
                            "unknown placeholder {{{}}} in '{text}' (known: {{instance}}, {{name}}, {{8000 + instance}}; write {{{{ for a brace)",
                            &tail[1..end]
                        ))
                    }
                }
            }
        };
        out.push_str(&value);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_braces_escape() {
        let f = |t: &str| fill(t, 2, "web@2");
        assert_eq!(
            f("--port {8000 + instance} --id {instance}").unwrap(),
            "--port 8002 --id 2"
        );
        assert_eq!(f("{instance+10}/{name}.log").unwrap(), "12/web@2.log");
        assert_eq!(f("awk '{{print $1}}'").unwrap(), "awk '{print $1}'");
        assert_eq!(f("a } b").unwrap(), "a } b");
        assert!(f("awk '{print $1}'")
            .unwrap_err()
            .starts_with("unknown placeholder {print $1}"));
        assert!(f("x {instance").unwrap_err().contains("does not close"));
        assert_eq!(
            squeeze("serve --port { 8000 + instance } awk '{{print $1}}' '{print $2}'"),
            "serve --port {8000+instance} awk '{{print $1}}' '{print $2}'"
        );
    }

    #[test]
    fn a_watch_becomes_its_instances_and_only_they_may_use_placeholders() {
        let mut config =
            WatchConfig::for_command("web", vec!["serve".into(), "{8000 + instance}".into()]);
        config.stdout = Some("/var/log/{name}.log".into());
        config.env.insert("ID".into(), "{instance}".into());
        let all = expand(config.clone(), 3).unwrap();
        assert_eq!(
            all.iter().map(|w| w.name.as_str()).collect::<Vec<_>>(),
            ["web@0", "web@1", "web@2"]
        );
        assert_eq!(all[1].argv, ["serve", "8001"]);
        assert_eq!(
            all[2].stdout.as_deref(),
            Some(std::path::Path::new("/var/log/web@2.log"))
        );
        assert_eq!(all[0].env["ID"], "0");
        assert_eq!(expand(config.clone(), 0).unwrap_err().0, "instances");
        assert_eq!(refuse_placeholders(&config).unwrap_err().0, "start");
        let awk = WatchConfig::for_command("a", vec!["awk".into(), "{print $1}".into()]);
        assert_eq!(refuse_placeholders(&awk), Ok(()));
        assert!(crate::protocol::names("web", "web@2", None));
        assert!(!crate::protocol::names("we", "web@2", None));
    }
}
