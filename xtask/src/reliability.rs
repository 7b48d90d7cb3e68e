//! `cargo xtask reliability`: runs the whole test suite with every fault
//! test repeated `--scale` times its everyday count, collects the rows the
//! tests report (what was injected, how often, what was lost or wrongly
//! signalled) and writes them to RELIABILITY.md.
use std::{collections::BTreeMap, path::Path};

use anyhow::{bail, Context as _, Result};

#[derive(clap::Args)]
pub struct ReliabilityArgs {
    /// Repeat each injected fault this many times its everyday (CI) count.
    #[arg(long, default_value_t = 5)]
    scale: usize,
    /// Print only; leave RELIABILITY.md alone.
    #[arg(long)]
    no_write: bool,
}

pub fn run(root: &Path, args: ReliabilityArgs) -> Result<()> {
    let report = root.join("target/reliability.jsonl");
    let _ = std::fs::remove_file(&report);
    crate::cargo(&["build", "-p", "supervisor"])?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tests = crate::run(
        std::process::Command::new(cargo)
            .args(["test", "-p", "supervisor-tests"])
            .env("SUPERVISOR_RELIABILITY_REPORT", &report)
            .env("SUPERVISOR_RELIABILITY_SCALE", args.scale.to_string()),
    );
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    let mut rows: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for line in text.lines() {
        let row: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("a report line: {line}"))?;
        // A fault reported by several runs of a test (one per backend
        // variant, say) is one row with the counts added up.
        let key = row["fault"].as_str().unwrap_or("?").to_owned();
        match rows.get_mut(&key) {
            Some(seen) => {
                for field in ["times", "lost", "wrong"] {
                    let sum = seen[field].as_u64().unwrap_or(0) + row[field].as_u64().unwrap_or(0);
                    seen[field] = sum.into();
                }
            }
            None => {
                rows.insert(key, row);
            }
        }
    }
    let mut out = String::from(
        "# Reliability\n\n\
         Written by `cargo xtask reliability` (rerun it to refresh; `--scale N` repeats each \
         injected fault N times its everyday count, which is what CI runs). Every row is a test \
         of `tests/` that injects the fault for real and asserts that nothing was lost (no watch \
         left down, no exit missed) and nothing wrongly signalled, adopted or run twice; a row \
         appears only if its test passed.\n\n",
    );
    out += &format!(
        "Machine: {}, kernel {}. Test run: {}.\n\n",
        cpu_summary(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        if tests.is_ok() {
            "every test passed"
        } else {
            "SOME TESTS FAILED (their rows are missing)"
        }
    );
    out += "| fault or input | what was injected | times | lost | wrongly signalled |\n\
            |---|---|---:|---:|---:|\n";
    for row in rows.values() {
        out += &format!(
            "| {} | {} | {} | {} | {} |\n",
            row["fault"].as_str().unwrap_or("?"),
            row["injected"].as_str().unwrap_or("?"),
            row["times"],
            row["lost"],
            row["wrong"]
        );
    }
    print!("{out}");
    if !args.no_write {
        std::fs::write(root.join("RELIABILITY.md"), &out).context("writing RELIABILITY.md")?;
        eprintln!("wrote RELIABILITY.md");
    }
    if tests.is_err() {
        bail!("some reliability tests failed");
    }
    Ok(())
}

fn cpu_summary() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    format!("{model}, {cores} cores")
}
