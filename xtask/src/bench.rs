//! `cargo xtask bench`: runs the benchmark binaries in release mode, prints
//! their tables and writes them, with the machine they ran on, to
//! BENCHMARKS.md.
use std::{path::Path, process::Command};

use anyhow::{bail, Context as _, Result};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Kills per backend for the latency table.
    #[arg(long, default_value_t = 1000)]
    kills: usize,
    /// Restarts per row of the restart table.
    #[arg(long, default_value_t = 500)]
    restarts: usize,
    /// Seconds of unrelated churn per backend.
    #[arg(long, default_value_t = 5)]
    churn_secs: u64,
    /// Watches of the scale table (launch, status and restarts under load).
    #[arg(long, default_value_t = 10_000)]
    scale_watches: usize,
    /// Leave the peers out (they are installed from Debian).
    #[arg(long)]
    no_peers: bool,
    /// Print only; leave BENCHMARKS.md alone.
    #[arg(long)]
    no_write: bool,
}

/// Runs the benchmark binary `bin` (release build) with `args`; returns the
/// Markdown it prints.
fn table(root: &Path, bin: &str, args: &[String]) -> Result<String> {
    let out = Command::new(root.join("target/release").join(bin))
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!("{bin} failed: {}", out.status);
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// The peers, from Debian, for the side-by-side rows.
fn install_peers() -> Result<()> {
    let have = |cmd: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {cmd}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if [
        "god",
        "supervisord",
        "supervise",
        "runsv",
        "s6-supervise",
        "tini",
    ]
    .iter()
    .all(|cmd| have(cmd))
    {
        return Ok(());
    }
    eprintln!(
        "xtask bench: installing the peers (ruby-god, supervisor, daemontools, runit, s6, tini) from Debian"
    );
    crate::run(Command::new("apt-get").arg("update").arg("-q"))?;
    crate::run(
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-q",
                "ruby-god",
                "supervisor",
                "daemontools",
                "runit",
                "s6",
                "tini",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub fn run(root: &Path, args: BenchArgs) -> Result<()> {
    let mut tables = table(
        root,
        "bench-backends",
        &[
            "--kills".to_owned(),
            args.kills.to_string(),
            "--churn-secs".to_owned(),
            args.churn_secs.to_string(),
        ],
    )?;
    if !args.no_peers {
        install_peers()?;
    }
    let with_peers = |mut bin_args: Vec<String>| {
        if !args.no_peers {
            bin_args.push("--peers".to_owned());
        }
        bin_args
    };
    let restart_args = with_peers(vec![args.restarts.to_string()]);
    for (bin, bin_args) in [
        ("bench-restart", restart_args),
        ("bench-scale", vec![args.scale_watches.to_string()]),
        ("bench-scrape", vec!["1000".to_owned()]),
        ("bench-logs", vec!["300".to_owned()]),
        ("bench-init", with_peers(vec!["20".to_owned()])),
    ] {
        tables.push('\n');
        tables.push_str(&table(root, bin, &bin_args)?);
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let doc = format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (rerun it to refresh). These machines are noisy: compare \
         rows measured in the same run, not across runs.\n\n\
         Machine: {cpu}, {cores} cores, kernel {}.\n\n{tables}",
        kernel.trim()
    );
    println!("{tables}");
    if !args.no_write {
        std::fs::write(root.join("BENCHMARKS.md"), doc).context("writing BENCHMARKS.md")?;
        println!("wrote BENCHMARKS.md");
    }
    Ok(())
}
