//! Project tasks: `cargo xtask setup|build|run|test|lint|bench|reliability|install|deb|fuzz`.
//!
//! Every task that builds first runs `setup`, which installs what the eBPF
//! build needs and is missing (nightly `rust-src`, `bpf-linker` built
//! against rustc's own LLVM), once and idempotently, saying what it does.
mod bench;
mod deb;
mod fuzz;
mod install;
mod layers;
mod reliability;
mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces the eBPF build needs.
    Setup,
    /// Build everything in release mode.
    Build,
    /// Build, prove the exit backend (`supervisor check`), then run the
    /// daemon on examples/simple.toml; with arguments, `supervisor ARGS`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the whole test suite (needs root for the kernel backends).
    Test {
        /// Extra arguments for `cargo test`, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// cargo fmt --check and cargo clippy --all-targets, warnings denied.
    Lint,
    /// Measure the backends and write BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Run the fault-injection suite with higher counts and write
    /// RELIABILITY.md.
    Reliability(reliability::ReliabilityArgs),
    /// Install the binary, the systemd unit (supervisor-rs.service), a
    /// default config, man pages and completions; --uninstall removes them.
    Install(install::InstallArgs),
    /// Build the Debian package supervisor-rs (dpkg-deb) into target/deb.
    Deb(deb::DebArgs),
    /// Fuzz the config loader and the control-protocol decoder for a
    /// bounded time (cargo-fuzz, nightly).
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    setup::put_cargo_bin_on_path();
    match cli.task {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::run()?;
            cargo(&["build", "--release", "--bins"])
        }
        Task::Run { args } => {
            setup::run()?;
            cargo(&["build", "--release", "-p", "supervisor"])?;
            if !nix_is_root() {
                eprintln!("xtask: not root: the eBPF and netlink backends will refuse to load");
            }
            let supervisor = root.join("target/release/supervisor");
            if !args.is_empty() {
                return run(Command::new(&supervisor).args(&args));
            }
            run(Command::new(&supervisor).arg("check"))?;
            eprintln!("xtask: starting the daemon on examples/simple.toml (Ctrl-C stops it and its watches)");
            run(Command::new(&supervisor).args(["run", "-c", "examples/simple.toml"]))
        }
        Task::Test { args } => {
            setup::run()?;
            setup::test_packages()?;
            if !nix_is_root() {
                eprintln!("xtask: not root: kernel backend tests will be skipped (and fail under CI=true)");
            }
            // The end-to-end tests run the real binary, which `cargo test`
            // does not build for another package.
            cargo(&["build", "-p", "supervisor"])?;
            let mut test = vec!["test"];
            if !args.is_empty() {
                test.push("--");
                test.extend(args.iter().map(String::as_str));
            }
            cargo(&test)
        }
        Task::Lint => {
            setup::run()?;
            cargo(&["fmt", "--all", "--check"])?;
            layers::check(&root.join("supervisor/src"))?;
            // Type-checking needs no kernel object: building it here
            // (minutes) would be thrown away, as `test` builds its own.
            let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            run(Command::new(cargo_bin)
                .args(["clippy", "--all-targets", "--", "-D", "warnings"])
                .env("AYA_BUILD_SKIP", "1"))
        }
        Task::Bench(args) => {
            setup::run()?;
            cargo(&[
                "build",
                "--release",
                "-p",
                "supervisor",
                "-p",
                "supervisor-tests",
                "--bins",
            ])?;
            bench::run(&root, args)
        }
        Task::Reliability(args) => {
            setup::run()?;
            reliability::run(&root, args)
        }
        Task::Install(args) => install::run(&root, args),
        Task::Deb(args) => deb::run(&root, args),
        Task::Fuzz(args) => {
            setup::run()?;
            fuzz::run(args)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

pub fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
