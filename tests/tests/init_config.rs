//! `supervisor init -c CONFIG [-- CMD]`: the daemon as a container's init.
//! As PID 1 of a pid namespace of its own it runs the config's watches,
//! says which exit backends cannot work there (the eBPF records and the
//! proc connector carry the host's pids) and restarts with pidfd, reaps
//! orphans, forwards SIGHUP to the main watch, and on SIGTERM stops the
//! watches in reverse `after` order (the main one with the SIGTERM it
//! got) and exits with the main watch's status. Also: the main watch's
//! own end ends it, the shutdown's one deadline, `forward = "all"`, and a
//! read-only /run (the socket in $TMPDIR, or none).
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
};

use nix::{sys::signal::Signal, unistd::Pid};
use supervisor_tests::{
    poll_until, require_root, supervisor_bin, wait_file_contains, wait_until, WAIT,
};

/// A running init, its log kept.
struct Init {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Init {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting supervisor init");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[init] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn logged(&self, needle: &str) -> bool {
        self.log().iter().any(|l| l.contains(needle))
    }

    fn wait_logged(&self, needle: &str) {
        wait_until(&format!("the init to log {needle:?}"), || {
            self.logged(needle)
        });
    }

    /// Which of the log's lines comes first: the index of each.
    fn position(&self, needle: &str) -> usize {
        let log = self.log();
        log.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {log:#?}"))
    }

    fn wait(&mut self) -> ExitStatus {
        let mut status = None;
        let ended = poll_until(WAIT, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(
            ended,
            "the init did not end within {WAIT:?}: {:#?}",
            self.log()
        );
        status.unwrap()
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid as i32), signal).unwrap();
}

/// The `[daemon]` table of a test's init: its socket and state in the
/// test's folder.
const DAEMON: &str = "[daemon]
socket = \"{dir}/init.sock\"
state_dir = \"{dir}/state\"
log_level = \"info\"
";

/// A config of `watches` under the test's `[daemon]` table.
fn write_watches(dir: &Path, watches: &str) -> std::path::PathBuf {
    write_config(dir, &format!("{DAEMON}{watches}"))
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("init.toml");
    let text = text.replace("{dir}", &dir.display().to_string());
    std::fs::write(&path, text).unwrap();
    path
}

fn init_command(config: &Path, cmd: &[&str]) -> Command {
    let mut command = Command::new(supervisor_bin());
    command.args(["init", "-c"]).arg(config);
    if !cmd.is_empty() {
        command.arg("--").args(cmd);
    }
    command
}

#[test]
fn as_pid_1_it_runs_the_watches_with_pidfd_reaps_forwards_and_stops_them_in_reverse_order() {
    if !require_root("a pid namespace (unshare --pid)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // `web`, the main watch, starts after `db`; it leaves 100 orphans
    // (PID 1's to reap; waited for until no `true` is left, running or
    // a zombie), kills db (which must come back, seen through
    // pidfd in here), then traps HUP and TERM.
    let config = write_watches(
        dir.path(),
        r#"
[[watch]]
name = "db"
start = ["sh", "-c", "echo $$ > {dir}/db.pid; exec sleep 1000"]

[[watch]]
name = "web"
after = ["db"]
main = true
keepalive = false
start = ["sh", "-c", """
while [ ! -s {dir}/db.pid ]; do sleep 0.01; done
for i in $(seq 100); do (/bin/true &); done
n=0; while grep -qs '^Name:.true$' /proc/[0-9]*/status && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
grep -ls '^Name:.true$' /proc/[0-9]*/status | wc -l > {dir}/zombies
first=$(cat {dir}/db.pid); kill -9 $first
n=0; while [ "$(cat {dir}/db.pid)" = "$first" ] && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done
echo "$first $(cat {dir}/db.pid)" > {dir}/db.pids
trap 'echo hup >> {dir}/signals' HUP
trap 'echo term >> {dir}/signals; exit 3' TERM
echo ready > {dir}/ready
while :; do sleep 0.02; done
"""]
"#,
    );
    let mut command = Command::new("unshare");
    command
        // --kill-child: a test that fails leaves no init (nor its
        // watches) behind when unshare is killed.
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(supervisor_bin())
        .args(["init", "-c"])
        .arg(&config);
    let mut init = Init::spawn(command);
    wait_file_contains(&dir.path().join("ready"), "ready");
    init.wait_logged("web moved 'start' to 'up'");
    // The backends that would report host pids were passed over, saying
    // why, for one that works in here.
    for backend in ["ebpf", "netlink"] {
        assert!(
            init.logged(&format!(
                "exit backend {backend} unavailable: this is not the initial pid namespace"
            )),
            "{:#?}",
            init.log()
        );
    }
    assert!(init.logged("exit backend: pidfd"), "{:#?}", init.log());
    let zombies = std::fs::read_to_string(dir.path().join("zombies")).unwrap();
    assert_eq!(zombies.trim(), "0", "orphans left unreaped");
    let pids = std::fs::read_to_string(dir.path().join("db.pids")).unwrap();
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert_ne!(pids[0], pids[1], "db was restarted");

    // The init as the host sees it: unshare's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", init.child.id())).unwrap();
    let pid1: u32 = children.split_whitespace().next().unwrap().parse().unwrap();
    signal(pid1, Signal::SIGHUP);
    wait_file_contains(&dir.path().join("signals"), "hup");
    init.wait_logged("forwarded SIGHUP to web");
    signal(pid1, Signal::SIGTERM);
    let status = init.wait();
    assert_eq!(status.code(), Some(3), "web's exit code, through the init");
    let signals = std::fs::read_to_string(dir.path().join("signals")).unwrap();
    assert_eq!(signals, "hup\nterm\n");
    // web (after db) stopped first, then db.
    assert!(
        init.position("web moved 'stop' to 'unmonitored'")
            < init.position("db moved 'up' to 'stop'")
    );
}

#[test]
fn cmd_is_the_main_watch_and_its_end_is_the_inits_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_watches(
        dir.path(),
        r#"
[[watch]]
name = "side"
start = ["sh", "-c", "echo $$ > {dir}/side.pid; exec sleep 1000"]
"#,
    );
    let script = format!(
        "while [ ! -s {}/side.pid ]; do sleep 0.01; done; exit 4",
        dir.path().display()
    );
    let mut init = Init::spawn(init_command(&config, &["sh", "-c", &script]));
    let status = init.wait();
    assert_eq!(status.code(), Some(4), "{:#?}", init.log());
    assert!(init.logged("its main watch main ended (exited 4"));
    let side: u32 = std::fs::read_to_string(dir.path().join("side.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{side}")).exists(),
        "the side watch was stopped"
    );
    // tini's -e: that code means success.
    let mut command = Command::new(supervisor_bin());
    command
        .args(["init", "-e", "4", "-c"])
        .arg(&config)
        .args(["--", "sh", "-c", "exit 4"]);
    let mut init = Init::spawn(command);
    assert_eq!(init.wait().code(), Some(0));
    // Killed by the SIGTERM forwarded to it: 128+15, as tini says it.
    let mut init = Init::spawn(init_command(&config, &["sleep", "1000"]));
    init.wait_logged("main moved 'start' to 'up'");
    signal(init.child.id(), Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(128 + 15));
}

#[test]
fn a_main_watch_ends_supervisor_run_too() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[daemon]
socket = "{dir}/run.sock"
state_dir = "{dir}/state"

[[watch]]
name = "job"
main = true
keepalive = false
start = ["sh", "-c", "sleep 0.2; exit 5"]
"#,
    );
    let mut command = Command::new(supervisor_bin());
    command.args(["run", "-c"]).arg(&config);
    let mut run = Init::spawn(command);
    assert_eq!(run.wait().code(), Some(5));
}

#[test]
fn a_shutdown_past_its_deadline_kills_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_watches(
        dir.path(),
        r#"
[init]
stop_timeout = "300ms"

[[watch]]
name = "stubborn"
stop_timeout = "60s"
start = ["sh", "-c", "trap '' TERM; echo ready > {dir}/ready; while :; do sleep 0.02; done"]
"#,
    );
    let mut init = Init::spawn(init_command(&config, &[]));
    wait_file_contains(&dir.path().join("ready"), "ready");
    signal(init.child.id(), Signal::SIGTERM);
    // Well before stubborn's own 60 s.
    let status = init.wait();
    assert_eq!(status.code(), Some(0), "no main watch: 0");
    assert!(
        init.logged("the shutdown's deadline passed: killing what is left of stubborn"),
        "{:#?}",
        init.log()
    );
}

#[test]
fn forward_all_sends_every_watch_the_signals_and_the_shutdowns_signal_replaces_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let watch = |name: &str| {
        format!(
            r#"
[[watch]]
name = "{name}"
stop_signal = "INT"
start = ["sh", "-c", "trap 'echo usr2 >> {{dir}}/{name}' USR2; trap 'echo term >> {{dir}}/{name}; exit 0' TERM; trap 'echo int >> {{dir}}/{name}; exit 0' INT; echo ready > {{dir}}/{name}.ready; while :; do sleep 0.02; done"]
"#
        )
    };
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[daemon]
socket = "{{dir}}/init.sock"
state_dir = "{{dir}}/state"
log_level = "info"

[init]
forward = "all"
{}{}"#,
            watch("a"),
            watch("b")
        ),
    );
    let mut init = Init::spawn(init_command(&config, &[]));
    for name in ["a", "b"] {
        wait_file_contains(&dir.path().join(format!("{name}.ready")), "ready");
        // Known to the init too (its start may come back from a spawner
        // thread after the process runs).
        init.wait_logged(&format!("{name} moved 'start' to 'up'"));
    }
    signal(init.child.id(), Signal::SIGUSR2);
    for name in ["a", "b"] {
        wait_file_contains(&dir.path().join(name), "usr2");
    }
    signal(init.child.id(), Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(0));
    for name in ["a", "b"] {
        // SIGTERM, as the init got it, not their stop_signal SIGINT.
        assert_eq!(
            std::fs::read_to_string(dir.path().join(name)).unwrap(),
            "usr2\nterm\n"
        );
    }
}

#[test]
fn with_run_read_only_the_socket_goes_to_tmpdir_and_with_that_too_it_runs_without_one() {
    if !require_root("a mount namespace (unshare --mount)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    // No socket in the config: the default, /run/supervisor-rs.sock.
    let config = write_config(
        dir.path(),
        r#"
[daemon]
state_dir = "{dir}/state"
log_level = "info"

[[watch]]
name = "app"
start = ["sh", "-c", "echo ready > {dir}/ready; exec sleep 1000"]
"#,
    );
    let in_read_only_run = |tmpdir: &Path| {
        let mut command = Command::new("unshare");
        command
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!(
                "mount -t tmpfs -o ro tmpfs /run && mount -t tmpfs -o ro tmpfs {ro} && exec \"$@\"",
                ro = ro.display()
            ))
            .arg("sh")
            .arg(supervisor_bin())
            .args(["init", "-c"])
            .arg(&config)
            .env("TMPDIR", tmpdir);
        command
    };
    let mut init = Init::spawn(in_read_only_run(&tmp));
    wait_file_contains(&dir.path().join("ready"), "ready");
    let socket = tmp.join("supervisor-rs.sock");
    init.wait_logged(&format!(
        "the socket is {} (/run cannot be written)",
        socket.display()
    ));
    let status = Command::new(supervisor_bin())
        .arg("--socket")
        .arg(&socket)
        .args(["status", "app"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    signal(init.child.id(), Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(0));

    // $TMPDIR read-only as well: no control socket, and the init runs on.
    std::fs::remove_file(dir.path().join("ready")).unwrap();
    let mut init = Init::spawn(in_read_only_run(&ro));
    wait_file_contains(&dir.path().join("ready"), "ready");
    init.wait_logged("no control socket (");
    init.wait_logged("running without one, the CLI cannot reach this init");
    signal(init.child.id(), Signal::SIGTERM);
    assert_eq!(init.wait().code(), Some(0));
}

#[test]
fn a_second_main_watch_and_cmd_beside_a_main_watch_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        r#"
[[watch]]
name = "a"
start = "true"
main = true

[[watch]]
name = "b"
start = "true"
main = true
"#,
    );
    let out = init_command(&config, &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:10: watch[1].main: a second main watch: 'a' is main already",
            config.display()
        )),
        "{stderr}"
    );
    let config = write_config(
        dir.path(),
        "[[watch]]\nname = \"a\"\nstart = \"true\"\nmain = true\n",
    );
    let out = init_command(&config, &["true"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("watch 'a' is main = true, and CMD would be a second main watch"),
        "{stderr}"
    );
}
