//! `supervisor init` as PID 1 of a real container: podman 4.3 from Debian,
//! runc, and a rootfs of busybox-static plus the binary and the libraries
//! it links (no image pulled). Its command's exit status comes back out of
//! `podman run`, `podman kill --signal TERM` reaches the command through
//! the init, and the orphans the command leaves are reaped. And `init -c`
//! on a read-only root, where the socket and state go to $TMPDIR, the
//! backends that would see host pids are passed over, and CMD (the main
//! watch) ends the container with its status.
//!
//! Two things this machine needs, said where they are set: podman's
//! default rlimits (nofile and nproc 1M) are above the hard limits here,
//! where root lacks CAP_SYS_RESOURCE, so a containers.conf of the test's
//! lowers them; and crun refuses the hybrid cgroup layout this machine
//! has, so runc runs the container.
use std::{
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use supervisor_tests::{require_root, supervisor_bin};

struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Option<Self> {
        let tools = ["/usr/bin/podman", "/usr/sbin/runc", "/bin/busybox"];
        if !supervisor_tests::have_files(&tools, "podman, runc and busybox-static")
            || !require_root("podman with a rootfs")
        {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:4096\", \"nproc=1024:1024\"]\n",
        )
        .unwrap();
        let podman = Self { dir };
        podman.rootfs();
        Some(podman)
    }

    fn rootfs_dir(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    /// busybox, `/supervisor` and what it links.
    fn rootfs(&self) {
        let root = self.rootfs_dir();
        for dir in ["bin", "proc", "sys", "dev", "tmp", "etc", "scratch"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "sleep", "echo", "cat", "grep", "seq", "wc", "ls"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::copy(supervisor_bin(), root.join("supervisor")).unwrap();
        let ldd = Command::new("ldd").arg(supervisor_bin()).output().unwrap();
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let to = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(lib, &to).unwrap();
        }
    }

    /// `podman run` of `/supervisor init -- /bin/sh -c SCRIPT`, named `name`.
    fn run(&self, name: &str, script: &str) -> Command {
        self.run_with(
            name,
            &[],
            &["/supervisor", "init", "--", "/bin/sh", "-c", script],
        )
    }

    /// `podman run` of `argv`, named `name`, with `options` of podman's.
    fn run_with(&self, name: &str, options: &[&str], argv: &[&str]) -> Command {
        let mut command = self.podman();
        command
            .args(["run", "--rm", "--name", name])
            .args([
                "--network=none",
                "--cgroup-manager=cgroupfs",
                "--events-backend=file",
            ])
            // A rootfs gets no image's PATH.
            .args(["--env", "PATH=/bin"])
            .args(options)
            .arg("--rootfs")
            .arg(self.rootfs_dir())
            .args(argv);
        command
    }

    fn podman(&self) -> Command {
        let mut command = Command::new("podman");
        command
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .arg("--runtime")
            .arg("runc")
            .arg("--root")
            .arg(self.dir.path().join("storage"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"));
        command
    }
}

impl Drop for Podman {
    /// A test that failed midway leaves no container running: these are
    /// the containers of its own storage only.
    fn drop(&mut self) {
        let _ = self.podman().args(["rm", "--force", "--all"]).output();
    }
}

#[test]
fn in_a_podman_container_init_reaps_forwards_and_exits_as_its_command() {
    let Some(podman) = Podman::new() else {
        return;
    };
    // Exit status through podman.
    let out = podman
        .run("init-exit", "echo hello; exit 3")
        .output()
        .unwrap();
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).as_ref()
        ),
        (Some(3), "hello\n"),
        "{out:?}"
    );
    // Orphans reaped, then SIGTERM from the runtime reaches the command.
    let script = "for i in $(seq 100); do (sleep 0 &); done; \
        n=0; while grep -qs '^State:.Z' /proc/[0-9]*/status && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done; \
        echo zombies $(grep -ls '^State:.Z' /proc/[0-9]*/status | wc -l); echo ppid $PPID; \
        trap 'exit 5' TERM; echo ready; while :; do sleep 0.05; done";
    let mut run = podman
        .run("init-signal", script)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(run.stdout.take().unwrap());
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("ready") {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the container ended early: {lines:?}"
        );
        lines.push(line.trim().to_owned());
    }
    assert_eq!(lines[0], "zombies 0", "{lines:?}");
    assert_eq!(
        lines[1], "ppid 1",
        "the command is PID 1's child: {lines:?}"
    );
    let killed = podman
        .podman()
        .args(["kill", "--signal", "TERM", "init-signal"])
        .output()
        .unwrap();
    assert!(killed.status.success(), "{killed:?}");
    assert_eq!(
        run.wait().unwrap().code(),
        Some(5),
        "the command's exit, through init and podman"
    );
}

#[test]
fn in_a_read_only_podman_container_init_c_runs_the_watches_and_ends_with_cmd() {
    let Some(podman) = Podman::new() else {
        return;
    };
    std::fs::write(
        podman.rootfs_dir().join("etc/app.toml"),
        "[daemon]\nlog_level = \"info\"\n\n[[watch]]\nname = \"side\"\nstart = [\"sleep\", \"1000\"]\n",
    )
    .unwrap();
    // CMD, the main watch, asks the init (through the CLI, which finds the
    // socket in $TMPDIR) how the side watch is, then exits 4.
    let out = podman
        .run_with(
            "init-config",
            &[
                "--read-only",
                "--read-only-tmpfs=false",
                "--tmpfs",
                "/scratch",
                "--env",
                "TMPDIR=/scratch",
            ],
            &[
                "/supervisor",
                "init",
                "-c",
                "/etc/app.toml",
                "--",
                "/bin/sh",
                "-c",
                "/supervisor status side; exit 4",
            ],
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stdout}\n{stderr}");
    let side = stdout
        .lines()
        .find(|l| l.starts_with("side "))
        .unwrap_or_else(|| panic!("no status of side: {stdout}\n{stderr}"));
    assert!(side.contains(" up "), "{side}");
    for said in [
        "the socket is /scratch/supervisor-rs.sock (/run cannot be written)",
        "the state directory is /scratch/supervisor-rs (/var/lib/supervisor cannot be written)",
        "exit backend ebpf unavailable: this is not the initial pid namespace",
        "exit backend netlink unavailable: this is not the initial pid namespace",
        "exit backend: pidfd",
        "its main watch main ended (exited 4",
    ] {
        assert!(stderr.contains(said), "{said:?} in\n{stderr}");
    }
}
