//! `cargo xtask fuzz`: runs each cargo-fuzz target (the config loader, the
//! control-protocol decoder, the reload path: two configs parsed and
//! planned one over the other) for a bounded time, from the seeds in
//! `fuzz/corpus/<target>`; new inputs go to a scratch folder, crashes to
//! `fuzz/artifacts`. Installs cargo-fuzz (nightly) if it is missing.
use std::process::Command;

use anyhow::{Context as _, Result};

const TARGETS: [&str; 3] = ["config", "control", "reload"];
const CARGO_FUZZ_VERSION: &str = "0.13.2";

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Optimize less (opt-level 1): a shorter build for CI's short run,
    /// which is mostly build. (Unoptimized, `cargo fuzz --dev`, the
    /// targets run too slowly to replay even the seed corpus in 15 s.)
    #[arg(long)]
    quick: bool,
}

pub fn run(args: FuzzArgs) -> Result<()> {
    let have = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("xtask fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION} (once)");
        crate::run(Command::new("cargo").args([
            "+nightly",
            "install",
            "--locked",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
        ]))?;
    }
    let scratch = tempfile_dir()?;
    for target in TARGETS {
        let found = scratch.join(target);
        std::fs::create_dir_all(&found)?;
        eprintln!("xtask fuzz: {target} for {} s", args.seconds);
        let mut fuzz = Command::new("cargo");
        fuzz.args(["+nightly", "fuzz", "run", target]);
        if args.quick {
            fuzz.env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1");
        }
        crate::run(
            fuzz.arg(&found)
                .arg(format!("corpus/{target}"))
                .arg("--")
                .arg(format!("-max_total_time={}", args.seconds))
                // The targets parse configs and requests: no kernel
                // program in them, so none is built (minutes of the run).
                .env("AYA_BUILD_SKIP", "1")
                .current_dir("fuzz"),
        )
        .with_context(|| format!("fuzz target {target} found a failure (see fuzz/artifacts)"))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("supervisor-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
