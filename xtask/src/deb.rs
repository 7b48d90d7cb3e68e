//! `cargo xtask deb`: the Debian package `supervisor-rs`, built with plain
//! `dpkg-deb` (on every Debian machine already: nothing to install) from
//! the tree `install --prefix /usr` stages. The config is a conffile, so
//! an edited one survives upgrades and goes only with `--purge`, which
//! also removes the state directory.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::install::{self, InstallArgs, CONFIG_DIR, UNIT};

pub const PACKAGE: &str = "supervisor-rs";

#[derive(clap::Args)]
pub struct DebArgs {
    /// Package this binary instead of building one in release mode.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the .deb (and its staged tree) go.
    #[arg(long, default_value = "target/deb")]
    out: PathBuf,
}

pub fn run(root_dir: &Path, args: DebArgs) -> Result<()> {
    let out = root_dir.join(&args.out);
    let stage = out.join("root");
    let _ = std::fs::remove_dir_all(&stage);
    install::run(
        root_dir,
        InstallArgs {
            prefix: PathBuf::from("/usr"),
            root: stage.clone(),
            binary: args.binary,
            uninstall: false,
        },
    )?;
    // As dh_strip would: the debug info is most of a binary's size.
    let binary = stage.join("usr/bin/supervisor");
    let stripped = Command::new("strip")
        .arg("--strip-debug")
        .arg(&binary)
        .status()
        .context("strip (binutils)")?;
    if !stripped.success() {
        bail!("strip --strip-debug {} failed", binary.display());
    }
    let arch = String::from_utf8(
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .context("dpkg --print-architecture")?
            .stdout,
    )?
    .trim()
    .to_owned();
    let version = env!("CARGO_PKG_VERSION");
    let installed_kb = size(&stage)? / 1024 + 1;
    let debian = stage.join("DEBIAN");
    std::fs::create_dir_all(&debian)?;
    let write = |name: &str, text: String, mode: u32| -> Result<()> {
        let path = debian.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    write(
        "control",
        format!(
            "Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n\
             Maintainer: supervisor developers <supervisor@localhost>\n\
             Depends: libc6 (>= 2.34), libgcc-s1\nSection: admin\nPriority: optional\n\
             Installed-Size: {installed_kb}\n\
             Description: process supervisor told of each death by the kernel\n \
             Keeps processes alive, restarting each the moment the kernel reports its\n \
             exit (eBPF, with netlink, pidfd and poll fallbacks). Runs as\n \
             {UNIT} beside Debian's supervisord.\n"
        ),
        0o644,
    )?;
    write(
        "conffiles",
        format!("/{CONFIG_DIR}/supervisor.toml\n"),
        0o644,
    )?;
    let systemd = "if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi";
    write(
        "postinst",
        format!("#!/bin/sh\nset -e\nif [ \"$1\" = configure ]; then {systemd}; fi\n"),
        0o755,
    )?;
    write(
        "prerm",
        format!(
            "#!/bin/sh\nset -e\nif [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then \
             systemctl stop {UNIT} || true; fi\n"
        ),
        0o755,
    )?;
    write(
        "postrm",
        format!(
            "#!/bin/sh\nset -e\nif [ \"$1\" = purge ]; then rm -rf /var/lib/supervisor; fi\n{systemd}\n"
        ),
        0o755,
    )?;
    let deb = out.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    let status = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&stage)
        .arg(&deb)
        // Its progress to stderr: stdout says only where the package is.
        .stdout(std::io::stderr())
        .status()
        .context("dpkg-deb")?;
    if !status.success() {
        bail!("dpkg-deb --build failed: {status}");
    }
    println!("{}", deb.display());
    Ok(())
}

/// Bytes in the files under `dir`.
fn size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
