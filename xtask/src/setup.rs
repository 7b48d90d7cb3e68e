//! Installs what building the eBPF program needs, when it is missing:
//! the nightly toolchain's `rust-src` (for `-Z build-std=core`) and
//! `bpf-linker`, built against the LLVM that nightly rustc itself ships so
//! the two agree on LLVM's version (see ../shared/TOOLCHAIN.md).
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context as _, Result};

use crate::run as run_command;

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

/// `cargo install` puts bpf-linker in ~/.cargo/bin; make sure the eBPF
/// build (a child of this process) finds it even when PATH lacks it.
pub fn put_cargo_bin_on_path() {
    let Some(bin) = cargo_home().map(|h| h.join("bin")) else {
        return;
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if !std::env::split_paths(&path).any(|p| p == bin) {
        let mut paths: Vec<PathBuf> = vec![bin];
        paths.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(paths) {
            // SAFETY: single-threaded at this point; nothing reads the
            // environment concurrently.
            unsafe { std::env::set_var("PATH", joined) };
        }
    }
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly() -> Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        return Ok(());
    }
    eprintln!("xtask setup: installing the nightly toolchain (the eBPF program needs it)");
    run_command(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))
}

fn ensure_rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        "nightly",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask setup: adding rust-src to nightly (for -Z build-std=core)");
    run_command(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn ensure_bpf_linker() -> Result<()> {
    if let Ok(version) = output(Command::new("bpf-linker").arg("--version")) {
        if version.contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
        eprintln!(
            "xtask setup: found {}, want bpf-linker {BPF_LINKER_VERSION}",
            version.trim()
        );
    }
    let sysroot = output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    // The shared LLVM that nightly rustc links, e.g.
    // libLLVM-22-rust-1.97.0-nightly.so: its name is derived, not assumed.
    let llvm = std::fs::read_dir(&lib_dir)
        .with_context(|| format!("listing {}", lib_dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_prefix("libLLVM-")
                .and_then(|rest| rest.strip_suffix(".so"))
                .map(|rest| format!("LLVM-{rest}"))
        })
        .with_context(|| format!("no libLLVM-*.so in {}", lib_dir.display()))?;
    let major = llvm
        .trim_start_matches("LLVM-")
        .split(['-', '.'])
        .next()
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "xtask setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's own {llvm} (a minute or two, once)"
    );
    let rustflags = format!(
        "-L native={dir} -l dylib={llvm} -C link-arg=-Wl,-rpath,{dir}",
        dir = lib_dir.display()
    );
    run_command(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major},no-llvm-linking")])
            .env("RUSTFLAGS", rustflags),
    )
}

/// The Debian packages the end-to-end tests run for real, by a command
/// each provides: installed once, before the tests (which run in parallel
/// threads, and would collide on apt's lock).
/// What the end-to-end tests run, by a file each package installs: a
/// real Prometheus, headless Chromium driven by Selenium (Debian's
/// python3, not a pyenv one), tmux for `supervisor top`, and the real
/// files `supervisor import` reads: Debian's supervisord.conf and the
/// units of nginx, memcached and redis, which the tests then run.
const TEST_PACKAGES: [(&str, &str); 14] = [
    ("/usr/bin/promtool", "prometheus"),
    ("/usr/bin/chromium", "chromium"),
    ("/usr/bin/chromedriver", "chromium-driver"),
    (
        "/usr/lib/python3/dist-packages/selenium",
        "python3-selenium",
    ),
    ("/usr/bin/tmux", "tmux"),
    ("/etc/supervisor/supervisord.conf", "supervisor"),
    ("/usr/sbin/nginx", "nginx"),
    ("/usr/bin/memcached", "memcached"),
    ("/usr/bin/redis-server", "redis-server"),
    // The install test: `systemd-analyze verify` on the unit, `man -l`.
    ("/usr/bin/systemd-analyze", "systemd"),
    ("/usr/bin/man", "man-db"),
    // `init` as PID 1 of a real container (runc: crun refuses hybrid
    // cgroup hosts), on a busybox rootfs.
    ("/usr/bin/podman", "podman"),
    ("/usr/sbin/runc", "runc"),
    ("/bin/busybox", "busybox-static"),
];

pub fn test_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .filter(|(file, _)| !std::path::Path::new(file).exists())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask setup: installing {} from Debian for the tests",
        missing.join(", ")
    );
    // No service is started by the install (a prometheus on :9090): the
    // tests start their own.
    let policy = std::path::Path::new("/usr/sbin/policy-rc.d");
    let made_policy = !policy.exists();
    if made_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let installed = run_command(Command::new("apt-get").args(["update", "-q"])).and_then(|()| {
        run_command(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    });
    if made_policy {
        let _ = std::fs::remove_file(policy);
    }
    installed
}
