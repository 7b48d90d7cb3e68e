//! `cargo xtask install`: into a staging root (what a package is built
//! from) and into the real paths beside Debian's supervisord, whose files
//! it must not touch. The unit passes `systemd-analyze verify`, the man
//! pages render with `man -l`, bash completes the verbs, and
//! `--uninstall` takes away all of it but the config. `cargo xtask deb`:
//! the package installs with `dpkg -i` beside supervisord and `dpkg
//! --purge` leaves nothing.
use std::{
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use supervisor_tests::{built_binary, in_ci, supervisor_bin};

/// The tests that write the real /etc/supervisor-rs take turns.
static REAL_PATHS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn xtask(args: &[&str]) -> std::process::Output {
    xtask_task("install", args)
}

fn xtask_task(task: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(built_binary("xtask"))
        .arg(task)
        .args(args)
        .arg("--binary")
        .arg(supervisor_bin())
        .output()
        .expect("running xtask install");
    assert!(out.status.success(), "xtask {task} {args:?}: {out:?}");
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// What bash offers after `supervisor WORD`.
fn bash_completes(script: &Path, word: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; COMP_WORDS=(supervisor {word}); COMP_CWORD=1; _supervisor supervisor {word} supervisor; echo \"${{COMPREPLY[*]}}\"",
            script.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn tools() -> bool {
    supervisor_tests::have_files(
        &["/usr/bin/systemd-analyze", "/usr/bin/man", "/usr/bin/bash"],
        "systemd and man-db",
    )
}

#[test]
fn into_a_staging_root_everything_lands_where_it_belongs_and_uninstall_takes_it_away() {
    if !tools() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let stage = root.path().display().to_string();
    xtask(&["--root", &stage, "--prefix", "/usr"]);
    let at = |rest: &str| root.path().join(rest);
    assert_eq!(mode(&at("usr/bin/supervisor")), 0o755);
    // /usr: a package's, so the unit goes with the distribution's.
    let unit = std::fs::read_to_string(at("lib/systemd/system/supervisor-rs.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/supervisor run -c /etc/supervisor-rs"),
        "{unit}"
    );
    assert!(
        unit.contains("Type=notify") && unit.contains("Delegate=yes"),
        "{unit}"
    );
    let config = at("etc/supervisor-rs/supervisor.toml");
    assert_eq!(mode(&config), 0o644);
    let man = at("usr/share/man/man8");
    for page in [
        "supervisor.8",
        "supervisor-run.8",
        "supervisor-status.8",
        "supervisor-init.8",
    ] {
        assert_eq!(mode(&man.join(page)), 0o644, "{page}");
    }
    let rendered = Command::new("man")
        .arg("-l")
        .arg(man.join("supervisor-run.8"))
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .output()
        .unwrap();
    let rendered = String::from_utf8_lossy(&rendered.stdout);
    assert!(
        rendered.contains("supervisor-run") && rendered.contains("--check-config"),
        "{rendered}"
    );
    let bash = at("usr/share/bash-completion/completions/supervisor");
    assert_eq!(bash_completes(&bash, "st"), "status start stop");
    assert!(bash_completes(&bash, "im").contains("import"));
    for shell in [
        "usr/share/zsh/site-functions/_supervisor",
        "usr/share/fish/vendor_completions.d/supervisor.fish",
    ] {
        assert!(
            std::fs::read_to_string(at(shell))
                .unwrap()
                .contains("supervisor"),
            "{shell}"
        );
    }
    // Installed again over an edited config: the config is the operator's.
    std::fs::write(&config, "[daemon]\nlog_level = \"debug\"\n").unwrap();
    xtask(&["--root", &stage, "--prefix", "/usr"]);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "[daemon]\nlog_level = \"debug\"\n"
    );
    xtask(&["--root", &stage, "--prefix", "/usr", "--uninstall"]);
    let left: Vec<PathBuf> = walk(root.path());
    assert_eq!(left, vec![config], "all but the config is gone");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn into_the_real_paths_beside_debians_supervisord_touching_none_of_its_files() {
    if !tools() || !supervisor_tests::require_root("installing into /usr/local and /etc") {
        return;
    }
    let debian = [
        "/etc/supervisor/supervisord.conf",
        "/lib/systemd/system/supervisor.service",
        "/usr/bin/supervisord",
        "/usr/share/man/man1/supervisor.1.gz",
    ];
    if !supervisor_tests::have_files(&debian, "supervisor") {
        return;
    }
    let _turn = REAL_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    let before: Vec<Vec<u8>> = debian.iter().map(|f| std::fs::read(f).unwrap()).collect();
    let had_config = Path::new("/etc/supervisor-rs").exists();
    xtask(&[]);
    let verified = Command::new("systemd-analyze")
        .args(["verify", "/etc/systemd/system/supervisor-rs.service"])
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{verified:?}"
    );
    let manpage = |section: &str| {
        let out = Command::new("man")
            .args(["-w", section, "supervisor"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(
        manpage("8").ends_with("man8/supervisor.8"),
        "{}",
        manpage("8")
    );
    assert_eq!(
        manpage("1"),
        "/usr/share/man/man1/supervisor.1.gz",
        "Debian's stays section 1's"
    );
    let checked = Command::new("/usr/local/bin/supervisor")
        .args(["run", "--check-config", "-c", "/etc/supervisor-rs"])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "the default config loads: {checked:?}"
    );
    xtask(&["--uninstall"]);
    for gone in [
        "/usr/local/bin/supervisor",
        "/etc/systemd/system/supervisor-rs.service",
        "/usr/local/share/man/man8/supervisor.8",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is still there");
    }
    let after: Vec<Vec<u8>> = debian.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(before == after, "Debian's supervisord files changed");
    if !had_config {
        std::fs::remove_dir_all("/etc/supervisor-rs").unwrap();
    }
}

#[test]
fn the_deb_installs_beside_debians_supervisord_and_purges_to_nothing() {
    if !tools() || !supervisor_tests::require_root("dpkg -i") {
        return;
    }
    let have_supervisord = Path::new("/usr/bin/supervisord").exists();
    assert!(
        have_supervisord || !in_ci(),
        "cargo xtask test installs Debian's supervisor"
    );
    let _turn = REAL_PATHS.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let built = xtask_task("deb", &["--out", &out.path().display().to_string()]);
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    assert!(
        deb.ends_with(".deb") && !deb.contains('\n'),
        "stdout is the package's path alone: {deb:?}"
    );
    let dpkg = |args: &[&str]| {
        let out = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap();
        assert!(out.status.success(), "dpkg {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    dpkg(&["-i", &deb]);
    assert!(dpkg(&["-s", "supervisor-rs"]).contains("Status: install ok installed"));
    let files = dpkg(&["-L", "supervisor-rs"]);
    for file in [
        "/usr/bin/supervisor",
        "/lib/systemd/system/supervisor-rs.service",
        "/etc/supervisor-rs/supervisor.toml",
        "/usr/share/man/man8/supervisor-run.8",
        "/usr/share/bash-completion/completions/supervisor",
    ] {
        assert!(files.lines().any(|l| l == file), "{file} in\n{files}");
        assert!(Path::new(file).exists(), "{file}");
    }
    let verified = Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/supervisor-rs.service"])
        .output()
        .unwrap();
    assert!(
        verified.status.success() && verified.stderr.is_empty(),
        "{verified:?}"
    );
    let check = Command::new("/usr/bin/supervisor")
        .args(["check", "--backend", "ebpf"])
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "the packaged binary has its eBPF object: {check:?}"
    );
    if have_supervisord {
        assert!(dpkg(&["-s", "supervisor"]).contains("Status: install ok installed"));
    }
    dpkg(&["--purge", "supervisor-rs"]);
    for gone in [
        "/usr/bin/supervisor",
        "/lib/systemd/system/supervisor-rs.service",
        "/etc/supervisor-rs",
    ] {
        assert!(
            !Path::new(gone).exists(),
            "{gone} is still there after --purge"
        );
    }
    if have_supervisord {
        assert!(Path::new("/etc/supervisor/supervisord.conf").exists());
    }
}
