//! `cargo xtask install`: the one binary (its eBPF object inside), the
//! systemd unit, a default config if there is none, the man pages and the
//! completions for bash, zsh and fish, under a prefix (and a staging root,
//! as DESTDIR is for make). `--uninstall` takes away what it installed and
//! leaves the config, which is the operator's.
//!
//! The names live beside Debian's supervisord, which owns the `supervisor`
//! package, `/etc/supervisor/`, `supervisor.service` and `supervisor.1`:
//! here the unit is `supervisor-rs.service`, the config `/etc/supervisor-rs/`
//! and the man pages are in section 8 (`supervisor.8`, `supervisor-run.8`...).
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Where the binary, man pages and completions go.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// A staging directory everything goes under (a package's tree).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Install this binary instead of building one in release mode.
    #[arg(long)]
    pub binary: Option<PathBuf>,
    /// Take away what install put there (not the config).
    #[arg(long)]
    pub uninstall: bool,
}

pub const UNIT: &str = "supervisor-rs.service";
pub const CONFIG_DIR: &str = "etc/supervisor-rs";

/// Every path install writes, under `root`.
struct Layout {
    binary: PathBuf,
    unit: PathBuf,
    config: PathBuf,
    man: PathBuf,
    bash: PathBuf,
    zsh: PathBuf,
    fish: PathBuf,
}

impl Layout {
    fn new(root: &Path, prefix: &Path) -> Self {
        let under = |path: &Path| root.join(path.strip_prefix("/").unwrap_or(path));
        let prefixed = |rest: &str| under(&prefix.join(rest));
        // A package's units are the distribution's; a local install's, the
        // administrator's.
        let units = if prefix == Path::new("/usr") {
            "lib/systemd/system"
        } else {
            "etc/systemd/system"
        };
        Self {
            binary: prefixed("bin/supervisor"),
            unit: root.join(units).join(UNIT),
            config: root.join(CONFIG_DIR).join("supervisor.toml"),
            man: prefixed("share/man/man8"),
            bash: prefixed("share/bash-completion/completions/supervisor"),
            zsh: prefixed("share/zsh/site-functions/_supervisor"),
            fish: prefixed("share/fish/vendor_completions.d/supervisor.fish"),
        }
    }
}

pub fn run(root_dir: &Path, args: InstallArgs) -> Result<()> {
    let layout = Layout::new(&args.root, &args.prefix);
    let binary = match (&args.binary, args.uninstall) {
        (Some(binary), _) => binary.clone(),
        (None, true) => PathBuf::new(),
        (None, false) => {
            crate::setup::run()?;
            crate::cargo(&["build", "--release", "-p", "supervisor"])?;
            root_dir.join("target/release/supervisor")
        }
    };
    if args.uninstall {
        return uninstall(&layout, &args);
    }
    if !binary.exists() {
        bail!("{} does not exist", binary.display());
    }
    let put = |from: &Path, to: &Path, mode: u32| -> Result<()> {
        std::fs::create_dir_all(to.parent().expect("a file's folder"))?;
        // Through a new file and a rename: a running binary is replaced,
        // not written over.
        let staged = to.with_extension("xtask-new");
        std::fs::copy(from, &staged)
            .with_context(|| format!("copying {} to {}", from.display(), staged.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, to).with_context(|| format!("installing {}", to.display()))?;
        eprintln!("xtask install: {}", to.display());
        Ok(())
    };
    put(&binary, &layout.binary, 0o755)?;
    let bindir = args.prefix.join("bin");
    let unit = std::fs::read_to_string(root_dir.join("contrib/systemd").join(UNIT))?
        .replace("@BINDIR@", &bindir.display().to_string());
    let staged = std::env::temp_dir().join(format!("xtask-{}-{UNIT}", std::process::id()));
    std::fs::write(&staged, unit)?;
    put(&staged, &layout.unit, 0o644)?;
    std::fs::remove_file(&staged)?;
    if layout.config.exists() {
        eprintln!(
            "xtask install: {} is there already: left as it is",
            layout.config.display()
        );
    } else {
        put(
            &root_dir.join("contrib/etc/supervisor.toml"),
            &layout.config,
            0o644,
        )?;
    }
    let pages = tempfile_dir("man")?;
    run_binary(&binary, &["__man-pages".as_ref(), pages.as_os_str()])?;
    for page in std::fs::read_dir(&pages)? {
        let page = page?.path();
        put(
            &page,
            &layout.man.join(page.file_name().expect("a name")),
            0o644,
        )?;
    }
    std::fs::remove_dir_all(&pages)?;
    for (shell, to) in [
        ("bash", &layout.bash),
        ("zsh", &layout.zsh),
        ("fish", &layout.fish),
    ] {
        let script = Command::new(&binary)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("{} completions {shell}", binary.display()))?;
        if !script.status.success() {
            bail!("{} completions {shell} failed", binary.display());
        }
        let staged = std::env::temp_dir().join(format!("xtask-{}-{shell}", std::process::id()));
        std::fs::write(&staged, script.stdout)?;
        put(&staged, to, 0o644)?;
        std::fs::remove_file(&staged)?;
    }
    if args.root == Path::new("/") && Path::new("/run/systemd/system").exists() {
        eprintln!("xtask install: now `systemctl daemon-reload && systemctl enable --now {UNIT}`");
    }
    Ok(())
}

fn uninstall(layout: &Layout, args: &InstallArgs) -> Result<()> {
    let mut gone = vec![
        layout.binary.clone(),
        layout.unit.clone(),
        layout.bash.clone(),
        layout.zsh.clone(),
        layout.fish.clone(),
    ];
    if let Ok(pages) = std::fs::read_dir(&layout.man) {
        for page in pages {
            let page = page?.path();
            let name = page.file_name().map(|n| n.to_string_lossy().into_owned());
            if name.is_some_and(|n| {
                n == "supervisor.8" || (n.starts_with("supervisor-") && n.ends_with(".8"))
            }) {
                gone.push(page);
            }
        }
    }
    for path in gone {
        match std::fs::remove_file(&path) {
            Ok(()) => eprintln!("xtask install: removed {}", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
    eprintln!(
        "xtask install: {} is left (the config is yours; remove it by hand)",
        args.root.join(CONFIG_DIR).display()
    );
    Ok(())
}

fn tempfile_dir(what: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("xtask-{}-{what}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn run_binary(binary: &Path, args: &[&std::ffi::OsStr]) -> Result<()> {
    let status = Command::new(binary)
        .args(args)
        .status()
        .with_context(|| format!("running {}", binary.display()))?;
    if !status.success() {
        bail!("{} {args:?} failed: {status}", binary.display());
    }
    Ok(())
}
