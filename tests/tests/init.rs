//! `supervisor init -- CMD`, the container init, against the behaviours
//! tini's own tests check: orphaned zombies reaped as PID 1 (in a pid
//! namespace of its own) and as a subreaper elsewhere, signals forwarded
//! to CMD or its process group (`-g`), CMD's exit status passed through
//! with 128+N for a signal, an exit code remapped to 0 (`-e`), and a
//! parent-death signal (`-p`).
use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Child, Command, Stdio},
};

use nix::{sys::signal::Signal, unistd::Pid};
use supervisor_tests::{kill9, require_root, supervisor_bin, wait_file_contains, wait_until};

fn init(args: &[&str]) -> Command {
    let mut command = Command::new(supervisor_bin());
    command.arg("init").args(args);
    command
}

/// Runs it to its end: (exit code, stdout, stderr).
fn exit_of(mut command: Command) -> (i32, String, String) {
    let out = command.output().expect("running supervisor init");
    (
        out.status.code().expect("an exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Started with its stdin and stdout piped; returns it once CMD printed
/// `ready`.
fn started(mut command: Command) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting supervisor init");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, out)
}

/// Gone, or a zombie nobody reaped yet (its parent is not ours to see).
fn ended(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_or(true, |s| s.lines().any(|l| l.starts_with("State:\tZ")))
}

fn gone(pid: i32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn ppid_of(pid: i32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("PPid:\t").map(|p| p.trim().parse().unwrap()))
        .unwrap()
}

fn signal(pid: i32, signal: Signal) {
    nix::sys::signal::kill(Pid::from_raw(pid), signal).unwrap();
}

#[test]
fn the_exit_status_passes_through_with_128_plus_n_for_a_signal() {
    assert_eq!(exit_of(init(&["--", "sh", "-c", "exit 3"])).0, 3);
    assert_eq!(
        exit_of(init(&["--", "sh", "-c", "kill -TERM $$"])).0,
        128 + 15
    );
    assert_eq!(
        exit_of(init(&["--", "sh", "-c", "kill -KILL $$"])).0,
        128 + 9
    );
    // -e: a code that means success to whoever runs the container.
    assert_eq!(exit_of(init(&["-e", "3", "--", "sh", "-c", "exit 3"])).0, 0);
    assert_eq!(exit_of(init(&["-e", "3", "--", "sh", "-c", "exit 4"])).0, 4);
    // Output and input are CMD's own.
    let (code, out, _) = exit_of(init(&["--", "echo", "hello"]));
    assert_eq!((code, out.as_str()), (0, "hello\n"));
    let (code, _, err) = exit_of(init(&["--", "/nonexistent/program"]));
    assert_eq!(code, 1);
    assert!(err.contains("cannot run \"/nonexistent/program\""), "{err}");
    let (code, _, err) = exit_of(init(&[]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("<CMD>"), "{err}");
}

#[test]
fn as_pid_1_it_reaps_a_hundred_orphans_and_forwards_sigterm() {
    if !require_root("a pid namespace (unshare --pid)") {
        return;
    }
    // CMD leaves 100 orphans, which the kernel gives to PID 1; it waits
    // (bounded) until no zombie is left, then for SIGTERM, which it
    // answers with exit code 3.
    let script = "for i in $(seq 100); do (sleep 0 &); done; \
        n=0; while grep -qs '^State:.Z' /proc/[0-9]*/status && [ $n -lt 500 ]; do n=$((n+1)); sleep 0.01; done; \
        grep -ls '^State:.Z' /proc/[0-9]*/status | wc -l >&2; \
        trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--kill-child", "--mount-proc"])
        .arg(supervisor_bin())
        .args(["init", "--", "sh", "-c", script])
        .stderr(Stdio::piped());
    let (mut unshare, _out) = started(command);
    let mut zombies = String::new();
    BufReader::new(unshare.stderr.take().unwrap())
        .read_line(&mut zombies)
        .unwrap();
    assert_eq!(zombies.trim(), "0", "zombies left after the orphans exited");
    // The init, as the host sees it: unshare's child.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let init: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    signal(init, Signal::SIGTERM);
    let status = unshare.wait().unwrap();
    assert_eq!(status.code(), Some(3), "CMD's exit code, through init");
}

#[test]
fn elsewhere_it_is_the_subreaper_of_what_cmd_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orphan");
    let script = format!(
        "(sleep 1000 & echo $! > {}); echo ready; read line",
        file.display()
    );
    let (mut child, _out) = started(init(&["--", "sh", "-c", &script]));
    wait_file_contains(&file, "\n");
    let orphan: i32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        ppid_of(orphan),
        child.id() as i32,
        "the orphan is the init's"
    );
    kill9(orphan as u32);
    wait_until("the init to reap the orphan", || gone(orphan));
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn signals_go_to_cmd_alone_or_with_g_to_its_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    for group in [false, true] {
        let file = dir.path().join(format!("worker-{group}"));
        let script = format!(
            "sleep 1000 & echo $! > {}; echo ready; wait",
            file.display()
        );
        let mut args = vec!["--", "sh", "-c", &script];
        if group {
            args.insert(0, "-g");
        }
        let (mut child, _out) = started(init(&args));
        wait_file_contains(&file, "\n");
        let worker: i32 = std::fs::read_to_string(&file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        signal(child.id() as i32, Signal::SIGTERM);
        assert_eq!(child.wait().unwrap().code(), Some(128 + 15), "-g: {group}");
        if group {
            wait_until("the worker to get SIGTERM too", || ended(worker));
        } else {
            assert!(!ended(worker), "only CMD gets it without -g");
            kill9(worker as u32);
        }
    }
}

#[test]
fn with_p_the_death_of_its_parent_is_a_signal_it_forwards() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cmd");
    // Its parent, a shell, waits for a line on stdin, then dies.
    let script = format!(
        "{:?} init -p SIGTERM -- sh -c 'echo $$ > {}; exec sleep 1000' & echo $!; read line",
        supervisor_bin(),
        file.display()
    );
    let mut parent = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(parent.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let init: i32 = line.trim().parse().unwrap();
    wait_file_contains(&file, "\n");
    let cmd: i32 = std::fs::read_to_string(&file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_until("CMD to be sleep", || {
        std::fs::read_to_string(format!("/proc/{cmd}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    parent.stdin.take().unwrap().write_all(b"die\n").unwrap();
    parent.wait().unwrap();
    wait_until("CMD to get the forwarded SIGTERM", || ended(cmd));
    wait_until("the init to end with it", || ended(init));
}
