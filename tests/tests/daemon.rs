//! The daemon end to end: the real binary on real config files, real
//! processes, real signals.
use std::{
    io::{Read as _, Write as _},
    os::unix::net::UnixStream,
    time::Instant,
};

use supervisor_tests::{
    cmdline, group_members, pid_of, processes_running, RunningDaemon, State, StatusExt,
};

/// A daemon running one watch, `s`, a sleep.
fn one_sleeper() -> RunningDaemon {
    RunningDaemon::start(
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    )
}

fn kill(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).expect("kill");
}

#[test]
fn keepalive_restarts_a_killed_loop() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "looper"
start = "/bin/sh -c 'while :; do sleep 1; done'"
"#,
    );
    let first = d.wait_status("looper", "up", |s| s.state == State::Up);
    let old = pid_of(&first);
    kill(old, nix::sys::signal::Signal::SIGKILL);
    let second = d.wait_status("looper", "a new process", |s| {
        s.state == State::Up && s.pid != first.pid
    });
    assert_eq!(second.restarts, 1, "{second}");
    assert_eq!(second.exit().status.text, "killed by SIGKILL", "{second}");
    assert_eq!(second.exit().pid, old, "{second}");
    assert!(
        group_members(old).is_empty(),
        "the old group's `sleep` was left behind"
    );
    let log = d.log().join("\n");
    assert!(
        log.contains(&format!(
            "looper moved 'up' to 'start': process {old} exited: killed by SIGKILL"
        )),
        "{log}"
    );
    let table = String::from_utf8_lossy(&d.cli(&["status"]).stdout).to_string();
    assert!(
        table.contains("looper") && table.contains("killed by SIGKILL"),
        "{table}"
    );
    // The same line among the watch's recent events, with its time, and
    // who killed it: this test.
    let s = d.status("looper");
    let said = format!(
        "moved 'up' to 'start': process {old} exited: killed by SIGKILL from pid {} (",
        std::process::id()
    );
    assert!(
        s.events
            .iter()
            .any(|e| e.at > 0.0 && e.what.starts_with(&said)),
        "{s}"
    );
}

#[test]
fn each_watch_keeps_its_recent_exits_through_a_restart_of_the_daemon() {
    use nix::sys::signal::Signal::{SIGINT, SIGKILL, SIGTERM};
    let mut d = one_sleeper();
    let mut killed = Vec::new();
    for signal in [SIGKILL, SIGTERM, SIGINT] {
        let up = d.wait_status("s", "up", |s| s.state == State::Up);
        let pid = pid_of(&up);
        kill(pid, signal);
        d.wait_replaced("s", pid);
        killed.push((pid, format!("killed by {signal:?}")));
    }
    let s = d.status("s");
    let exits: Vec<(u32, String)> = s
        .exits
        .iter()
        .map(|e| (e.pid, e.status.text.clone()))
        .collect();
    assert_eq!(exits, killed, "oldest first: {s}");
    assert_eq!(s.last_exit.as_ref(), s.exits.last(), "{s}");
    let shown = String::from_utf8_lossy(&d.cli(&["status", "s"]).stdout).to_string();
    for (pid, text) in &killed {
        assert!(
            shown.contains(&format!(
                "(pid {pid}): {text} from pid {} (",
                std::process::id()
            )),
            "each exit under the row, with its cause: {shown}"
        );
    }
    // The history is kept beside the state file.
    d.kill9_and_restart();
    let s = d.wait_status("s", "re-adopted", |s| s.state == State::Up);
    let after: Vec<(u32, String)> = s
        .exits
        .iter()
        .map(|e| (e.pid, e.status.text.clone()))
        .collect();
    assert_eq!(after, killed, "{s}");
}

#[test]
fn stop_escalates_and_leaves_no_descendant() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "stubborn"
# Ignores SIGTERM, and so do the children it starts.
start = "/bin/sh -c 'trap \"\" TERM; sleep 1000 & sleep 1000 & while :; do sleep 1; done'"
stop_timeout = "300ms"
"#,
    );
    let up = d.wait_status("stubborn", "up with its children", |s| {
        s.state == State::Up && s.pid.is_some_and(|p| group_members(p).len() >= 3)
    });
    let pid = pid_of(&up);
    let t0 = Instant::now();
    let out = d.cli(&["stop", "stubborn"]);
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `stop` answers when the stop is done, and no sooner than the timeout.
    assert!(took.as_millis() >= 300, "stop returned after {took:?}");
    let after = d.status("stubborn");
    assert_eq!(after.state, State::Unmonitored, "{after}");
    assert_eq!(after.exit().status.text, "killed by SIGKILL", "{after}");
    assert_eq!(
        group_members(pid),
        Vec::<u32>::new(),
        "processes left in group {pid}"
    );
    let code = d.cli(&["status", "stubborn"]).status.code();
    assert_eq!(code, Some(1), "status of an unmonitored watch exits 1");
}

#[test]
fn instant_exits_are_restarted_then_backed_off() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "crasher"
start = ["/bin/sh", "-c", "exit 3"]
flapping = { starts = 3, within = "60s", max_backoff = "30s" }
"#,
    );
    let s = d.wait_status("crasher", "flapping backoff", |s| s.backoff_secs.is_some());
    assert_eq!(s.state, State::Start, "{s}");
    assert!(s.restarts >= 3, "{s}");
    assert_eq!(s.exit().status.text, "exited 3", "{s}");
    assert!(d.log().iter().any(|l| l.contains("crasher is flapping")));
    // A stop cuts the backoff short.
    let out = d.cli(&["stop", "crasher"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.status("crasher").state, State::Unmonitored);
}

#[test]
fn commands_target_groups_and_answer_when_done() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "a"
group = "g"
start = "/bin/sleep 1000"

[[watch]]
name = "b"
group = "g"
start = "/bin/sleep 1000"
autostart = false
"#,
    );
    d.wait_status("a", "up", |s| s.state == State::Up);
    assert_eq!(d.status("b").state, State::Unmonitored);
    let out = d.cli(&["start", "g"]);
    assert!(out.status.success());
    // `start` answered: both are up now, without waiting.
    assert_eq!(d.status("b").state, State::Up);
    let a_pid = d.status("a").pid;
    assert!(d.cli(&["restart", "a"]).status.success());
    let a = d.status("a");
    assert_eq!(a.state, State::Up);
    assert_ne!(a.pid, a_pid, "restart started a new process");
    assert_eq!(a.restarts, 1);
    assert_eq!(
        d.cli(&["status"]).status.code(),
        Some(0),
        "all up: status exits 0"
    );
    let out = d.cli(&["stop", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no watch or group named 'nope'"));
}

#[test]
fn quit_leaves_processes_running_terminate_stops_them() {
    let mut d = one_sleeper();
    let pid = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    assert!(d.cli(&["quit"]).status.success());
    assert!(d.wait_exit().success());
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "quit must leave the process running"
    );
    kill(pid, nix::sys::signal::Signal::SIGKILL);

    let mut d = one_sleeper();
    let pid = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    assert!(d.cli(&["terminate"]).status.success());
    assert!(d.wait_exit().success());
    assert!(group_members(pid).is_empty(), "terminate stops everything");
}

#[test]
fn bad_control_requests_get_errors_and_change_nothing() {
    let d = one_sleeper();
    let pid = d.wait_status("s", "up", |s| s.state == State::Up).pid;
    let ask = |bytes: &[u8]| {
        let mut stream = UnixStream::connect(&d.socket).expect("connect");
        stream.write_all(bytes).expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    };
    assert!(ask(b"this is not json\n").contains("bad request"));
    assert!(ask(b"{\"cmd\":\"format-disk\"}\n").contains("bad request"));
    assert!(
        ask(b"{\"cmd\":\"command\",\"command\":\"stop\",\"target\":\"s\",\"extra\":1}\n")
            .contains("bad request")
    );
    let mut huge = vec![b'x'; 100 * 1024];
    huge.push(b'\n');
    assert!(ask(&huge).contains("longer than"));
    let after = d.status("s");
    assert_eq!(after.state, State::Up);
    assert_eq!(after.pid, pid, "nothing was touched");
    supervisor_tests::report("hostile control requests", "malformed, oversized, truncated and unknown requests on the control socket: errors, nothing changed", 1, 0, 0);
}

#[test]
fn other_users_are_refused() {
    if !supervisor_tests::require_root("switching to user nobody") {
        return;
    }
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
    let d = one_sleeper();
    // Let nobody reach the socket file, so the daemon's own check decides.
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let bin = d.dir.path().join("supervisor-copy");
    std::fs::copy(supervisor_tests::supervisor_bin(), &bin).unwrap();
    let mut cmd = std::process::Command::new(&bin);
    cmd.arg("--socket").arg(&d.socket).args(["stop", "s"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setgroups(&[nix::unistd::Gid::from_raw(65534)])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("permission denied: uid 65534"), "{stderr}");
    assert_eq!(
        d.status("s").state,
        State::Up,
        "the refused stop did nothing"
    );
    supervisor_tests::report(
        "another user",
        "a non-root user connecting to the control socket: refused (SO_PEERCRED)",
        1,
        0,
        0,
    );
}

#[test]
fn socket_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = RunningDaemon::start("");
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn bad_configs_are_rejected_with_file_line_and_key() {
    // The whole table is config::bad's unit tests; these few go through
    // the binary, to show the errors reach the operator as they are.
    let cases: &[(&str, &str)] = &[
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nbogus = 1\n",
            ":4:1: watch[0].bogus: unknown field `bogus`",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nautostart = \"yes\"\n",
            ":4:13: watch[0].autostart: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "[[watch]]\nname = \"a\"\nstart = \"x\"\nstop_timeout = \"10x\"\n",
            ":4:16: watch[0].stop_timeout: 'x' in '10x' is not a time unit (use ms, s, m or h)",
        ),
        (
            "[[notify]]\nwebhook = \"ftp://example.com/\"\n",
            ":2: notify[0].webhook: 'ftp://example.com/': an http:// or https:// URL with a host",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(supervisor_tests::supervisor_bin())
            .args(["run", "--check-config", "-c"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{text}");
        let expected = format!("{}{expected}", path.display());
        assert!(
            stderr.contains(&expected),
            "for:\n{text}\nexpected {expected:?}\ngot {stderr:?}"
        );
    }
    supervisor_tests::report("malformed config files", "bad files through the binary (unknown key, wrong type, bad duration, bad webhook; the full 33-case table is config::bad's unit tests): exact error with file, line, column and key; nothing started", cases.len(), 0, 0);
}

#[test]
fn a_restarted_daemon_readopts_instead_of_duplicating() {
    let marker = format!("readopt-{}", std::process::id());
    let script = format!("while :; do sleep 1; done # {marker}");
    let mut d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "looper"
start = ["/bin/sh", "-c", "{script}"]
"#
    ));
    let cmdline = format!("/bin/sh -c {script}");
    let first = pid_of(&d.wait_status("looper", "up", |s| s.state == State::Up));
    kill(first, nix::sys::signal::Signal::SIGKILL);
    let second = pid_of(&d.wait_status("looper", "restarted", |s| {
        s.state == State::Up && s.pid != Some(first)
    }));

    d.kill9_and_restart();
    let s = d.wait_status("looper", "re-adopted", |s| s.state == State::Up);
    assert_eq!(pid_of(&s), second, "the running process is re-adopted: {s}");
    assert_eq!(s.restarts, 1, "restart count kept: {s}");
    assert_eq!(s.exit().status.text, "killed by SIGKILL", "{s}");
    assert_eq!(
        processes_running(&cmdline),
        vec![second],
        "no duplicate started"
    );
    d.wait_logged(&format!("re-adopted running process {second}"), 1);

    // Not the new daemon's child, still kept alive, status still decoded.
    kill(second, nix::sys::signal::Signal::SIGKILL);
    let s = d.wait_status("looper", "restarted by the new daemon", |s| {
        s.state == State::Up && s.pid != Some(second)
    });
    assert_eq!(s.restarts, 2, "{s}");
    assert_eq!(s.exit().pid, second);
    let third = pid_of(&s);
    supervisor_tests::wait_exec(third);
    assert_eq!(processes_running(&cmdline), vec![third]);

    // Dies while no daemon runs: started again, counted.
    d.kill9_and_restart_with(|| kill(third, nix::sys::signal::Signal::SIGKILL));
    let s = d.wait_status("looper", "started after dying unwatched", |s| {
        s.state == State::Up && s.pid != Some(third)
    });
    assert_eq!(s.restarts, 3, "{s}");
    assert_eq!(s.exit().status.text, "exit status unknown", "{s}");
    supervisor_tests::wait_exec(pid_of(&s));
    assert_eq!(processes_running(&cmdline).len(), 1);
    supervisor_tests::report("daemon SIGKILLed, then started again", "the daemon SIGKILLed, a watched process killed meanwhile: survivors re-adopted, the dead one restarted, counts kept", 1, 0, 0);
}

#[test]
fn a_corrupt_state_file_is_set_aside() {
    let mut d = one_sleeper();
    let first = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    let state = d.dir.path().join("state.json");
    d.kill9_and_restart_with(|| {
        std::fs::write(&state, b"{\"version\": 1, \"watches\": {\"s\": {\"pid\": ").unwrap();
        kill(first, nix::sys::signal::Signal::SIGKILL);
    });
    let s = d.wait_status("s", "up", |s| s.state == State::Up);
    assert_ne!(pid_of(&s), first);
    assert!(d.dir.path().join("state.json.corrupt").exists());
    d.wait_logged("is corrupt", 1);
    supervisor_tests::report(
        "corrupt state file",
        "garbage in the state file: set aside and reported; the daemon starts",
        1,
        0,
        0,
    );
}

fn pid_file_daemon_is_followed_and_restarted(backend: &str) {
    let d = RunningDaemon::start_with(
        &format!("backend = \"{backend}\""),
        r#"
[[watch]]
name = "forker"
start = ["{helper}", "daemonize", "{dir}/forker.pid"]
pid_file = "{dir}/forker.pid"
"#,
    );
    let pid_file = d.dir.path().join("forker.pid");
    let read_pid = || {
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    let s = d.wait_status("forker", "up", |s| s.state == State::Up);
    let first = pid_of(&s);
    assert_eq!(
        first,
        read_pid(),
        "follows the pid in the file, not the launcher"
    );
    let stat = supervisor::process::stat(supervisor::process::Pid::new(first).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(
        stat.ppid.map(|p| p.get()),
        Some(d.pid()),
        "reparented to the subreaper"
    );

    kill(first, nix::sys::signal::Signal::SIGKILL);
    let s = d.wait_status("forker", "restarted", |s| {
        s.state == State::Up && s.pid != Some(first)
    });
    assert_eq!(pid_of(&s), read_pid());
    assert_eq!(s.restarts, 1, "{s}");
    assert_eq!(s.exit().status.text, "killed by SIGKILL", "{s}");
    assert_eq!(s.exit().pid, first);
}

#[test]
fn pid_file_daemon_with_ebpf() {
    pid_file_daemon_is_followed_and_restarted("ebpf");
}

#[test]
fn pid_file_daemon_with_netlink() {
    pid_file_daemon_is_followed_and_restarted("netlink");
}

#[test]
fn lying_pid_files_are_refused() {
    let me = std::process::id().to_string();
    for (text, expected) in [
        ("1", "names pid 1"),
        // What a pid file holds is never quoted back.
        ("garbage", "holds something other than a pid"),
        (me.as_str(), "not a process this watch started"),
        ("4000000", "names pid 4000000"),
    ] {
        let d = RunningDaemon::start(&format!(
            r#"
[[watch]]
name = "liar"
start = ["{{helper}}", "write-pid-file", "{{dir}}/liar.pid", "{text}"]
pid_file = "{{dir}}/liar.pid"
start_grace = "300ms"
keepalive = false
autostart = false
"#
        ));
        let out = d.cli(&["start", "liar"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "a pid file saying {text:?} was accepted"
        );
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        let s = d.status("liar");
        assert_eq!(s.state, State::Unmonitored, "{s}");
        assert!(s.pid.is_none());
    }
    // Nobody was signalled: the test process (named by one pid file) lives.
    supervisor_tests::report("lying pid files", "pid files naming pid 1, a process not started by the watch, a dead pid, or garbage: refused, nothing signalled", 1, 0, 0);
}

#[test]
fn hot_reload_adds_changes_removes_and_refuses_bad_files() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "a"
start = "/bin/sleep 1001"
[[watch]]
name = "b"
start = "/bin/sleep 1002"
[[watch]]
name = "c"
start = "/bin/sleep 1003"
"#,
    );
    let up = |n: &str| pid_of(&d.wait_status(n, "up", |s| s.state == State::Up));
    let (a, b, c) = (up("a"), up("b"), up("c"));

    let bad = d.write_config(
        "bad.toml",
        "[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1\"\nstop_signal = \"NOPE\"\n",
    );
    let out = d.cli(&["load", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.toml:") && stderr.contains("stop_signal"),
        "{stderr}"
    );
    assert_eq!(
        (up("a"), up("b"), up("c")),
        (a, b, c),
        "a bad file changes nothing"
    );

    let new = d.write_config(
        "new.toml",
        r#"
[[watch]]
name = "a"
start = "/bin/sleep 1001"
[[watch]]
name = "b"
start = "/bin/sleep 2002"
[[watch]]
name = "d"
start = "/bin/sleep 1004"
"#,
    );
    let out = d.cli(&["load", new.to_str().unwrap(), "--missing", "remove"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: supervisor::protocol::LoadSummary = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            &summary.added[..],
            &summary.changed[..],
            &summary.unchanged[..],
            &summary.missing[..]
        ),
        (
            &["d".to_owned()][..],
            &["b".into()][..],
            &["a".into()][..],
            &["c".into()][..]
        )
    );

    assert_eq!(up("a"), a, "an unchanged watch keeps running untouched");
    let b2 = pid_of(&d.wait_status("b", "restarted with its new command", |s| {
        s.state == State::Up && s.pid != Some(b)
    }));
    assert_eq!(cmdline(b2), "/bin/sleep 2002");
    let d_pid = up("d");
    let out = d.cli(&["status", "c"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no watch or group named 'c'"));
    assert!(
        group_members(c).is_empty(),
        "the removed watch's process was stopped"
    );

    // `signal` reaches the process; keepalive brings it back.
    assert!(d.cli(&["signal", "d", "USR1"]).status.success());
    let s = d.wait_status("d", "restarted after SIGUSR1", |s| {
        s.restarts == 1 && s.state == State::Up
    });
    assert_eq!(s.exit().status.text, "killed by SIGUSR1");
    let out = d.cli(&["signal", "d", "SIGWHAT"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal 'SIGWHAT'"));

    // `remove` stops and forgets.
    let d_pid2 = up("d");
    assert_ne!(d_pid2, d_pid);
    assert!(d.cli(&["remove", "d"]).status.success());
    assert!(group_members(d_pid2).is_empty());
    assert!(!d.cli(&["status", "d"]).status.success());
}

#[test]
fn sighup_reloads_the_same_file() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "a"
start = "/bin/sleep 1001"
"#,
    );
    let a = pid_of(&d.wait_status("a", "up", |s| s.state == State::Up));
    d.write_config(
        "supervisor.toml",
        r#"
[[watch]]
name = "a"
start = "/bin/sleep 1001"
[[watch]]
name = "e"
start = "/bin/sleep 1005"
"#,
    );
    kill(d.pid(), nix::sys::signal::Signal::SIGHUP);
    // The reload is parsed off the loop: `e` exists once it is applied.
    d.wait_logged("SIGHUP: reloaded", 1);
    d.wait_status("e", "started by the reload", |s| s.state == State::Up);
    assert_eq!(pid_of(&d.status("a")), a);
}

#[test]
fn the_example_configs_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    for example in ["examples/simple.toml", "examples/app.toml"] {
        let out = std::process::Command::new(supervisor_tests::supervisor_bin())
            .args(["run", "--check-config", "-c"])
            .arg(root.join(example))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{example}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn pgid_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

#[test]
fn descendants_that_left_the_group_die_with_their_watch_cgroup() {
    let cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .contains(" - cgroup2 ");
    if !cgroup2 {
        assert!(!supervisor_tests::in_ci(), "CI machines have cgroup2");
        eprintln!("\n!!! SKIPPED: no cgroup2 here\n");
        return;
    }
    descendants_that_left_the_group_die_with_their_watch("cgroup", 0);
}

/// Where there is no cgroup v2, fork tracking does the same.
#[test]
fn descendants_that_left_the_group_die_with_their_watch_forks() {
    if !supervisor_tests::require_root("the proc connector") {
        return;
    }
    descendants_that_left_the_group_die_with_their_watch("fork", 1);
}

fn descendants_that_left_the_group_die_with_their_watch(tracking: &str, n: u32) {
    // A worker in a session of its own, as a daemonizing server leaves.
    let marker = 3_000_000 + std::process::id() % 100_000 * 2 + n;
    let worker = format!("/bin/sleep {marker}");
    let d = RunningDaemon::start_with(
        &format!("tracking = \"{tracking}\""),
        &format!(
            r#"
[[watch]]
name = "master"
start = ["/bin/sh", "-c", "setsid {worker} & while :; do sleep 1; done"]
stop_timeout = "500ms"
"#
        ),
    );
    let wait_worker = |not: Option<u32>| {
        let mut found = Vec::new();
        supervisor_tests::wait_until("the worker running, once", || {
            found = processes_running(&worker)
                .into_iter()
                .filter(|p| Some(*p) != not)
                .collect();
            found.len() == 1
        });
        found[0]
    };
    let master = pid_of(&d.wait_status("master", "up", |s| s.state == State::Up));
    let first_worker = wait_worker(None);
    assert_ne!(
        pgid_of(first_worker),
        Some(master),
        "the worker left the master's group"
    );

    kill(master, nix::sys::signal::Signal::SIGKILL);
    d.wait_status("master", "restarted", |s| {
        s.state == State::Up && s.pid != Some(master)
    });
    let second_worker = wait_worker(Some(first_worker));
    assert!(
        !std::path::Path::new(&format!("/proc/{first_worker}")).exists()
            || std::fs::read_to_string(format!("/proc/{first_worker}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "the dead master's worker was left running"
    );
    assert_eq!(
        processes_running(&worker),
        vec![second_worker],
        "exactly one worker after the restart"
    );

    assert!(d.cli(&["stop", "master"]).status.success());
    assert!(
        processes_running(&worker).is_empty(),
        "stop left the escaped worker running"
    );
    supervisor_tests::report(
        &format!("escape from the process group ({tracking} tracking)"),
        "a worker in a session of its own outliving its SIGKILLed master: killed before the restart and at stop",
        1,
        0,
        0,
    );
}

#[test]
fn stop_and_restart_commands_replace_signals() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = ["/bin/sh", "-c", "echo $$ > {dir}/svc.pid; trap 'echo reloaded >> {dir}/reloads' HUP; while :; do sleep 0.05; done"]
stop = ["/bin/sh", "-c", "kill -USR2 $(cat {dir}/svc.pid)"]
restart = ["/bin/sh", "-c", "kill -HUP $(cat {dir}/svc.pid)"]
"#,
    );
    let pid = pid_of(&d.wait_status("svc", "up", |s| s.state == State::Up));
    let pid_file = d.dir.path().join("svc.pid");
    supervisor_tests::wait_until("the service writing its pid", || {
        std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid.to_string())
    });

    // The restart command reloads in place: same process, counted.
    assert!(d.cli(&["restart", "svc"]).status.success());
    let s = d.status("svc");
    assert_eq!((s.state, pid_of(&s)), (State::Up, pid), "{s}");
    assert_eq!(s.restarts, 1);
    let reloads = d.dir.path().join("reloads");
    supervisor_tests::wait_file_contains(&reloads, "reloaded");

    // The stop command is what stops it, not the stop signal.
    assert!(d.cli(&["stop", "svc"]).status.success());
    let s = d.status("svc");
    assert_eq!(s.state, State::Unmonitored);
    assert_eq!(s.exit().status.text, "killed by SIGUSR2", "{s}");
}

#[test]
fn stop_and_restart_commands_that_hang_are_cut_off_by_their_grace() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = "/bin/sleep 1000"
stop = ["/bin/sh", "-c", "echo $$ > {dir}/stopper.pid; exec sleep 1000"]
stop_grace = "300ms"
restart = ["/bin/sh", "-c", "echo $$ > {dir}/restarter.pid; exec sleep 1000"]
restart_grace = "300ms"
"#,
    );
    let first = pid_of(&d.wait_status("svc", "up", |s| s.state == State::Up));

    // The restart command never finishes: after restart_grace it is
    // killed and the process replaced the plain way.
    let started = Instant::now();
    assert!(d.cli(&["restart", "svc"]).status.success());
    let s = d.wait_status("svc", "a new process", |s| {
        s.state == State::Up && s.pid.is_some_and(|p| p != first)
    });
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "replaced before restart_grace ran out: {s}"
    );
    let restarter = std::fs::read_to_string(d.dir.path().join("restarter.pid")).unwrap();
    supervisor_tests::wait_until("the hung restart command to be killed", || {
        !std::path::Path::new(&format!("/proc/{}", restarter.trim())).exists()
    });
    // Stopped the plain way: with the stop command, which hangs in turn
    // until stop_grace, then the stop signal.
    assert_eq!(s.exit().status.text, "killed by SIGTERM", "{s}");

    // The stop command never ends the process: after stop_grace the stop
    // signal does.
    let second = pid_of(&s);
    assert!(d.cli(&["stop", "svc"]).status.success());
    let s = d.status("svc");
    assert_eq!(s.state, State::Unmonitored, "{s}");
    assert_eq!(s.exit().pid, second, "{s}");
    assert_eq!(s.exit().status.text, "killed by SIGTERM", "{s}");
    let stopper = std::fs::read_to_string(d.dir.path().join("stopper.pid")).unwrap();
    supervisor_tests::wait_until("the hung stop command to be killed", || {
        !std::path::Path::new(&format!("/proc/{}", stopper.trim())).exists()
    });
}

#[test]
fn output_goes_to_log_files_that_sigusr1_reopens() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "talker"
start = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo out-$i; echo err-$i >&2; sleep 0.02; done"]
stdout = "{dir}/talker.log"
stderr = "{dir}/talker.log"
"#,
    );
    d.wait_status("talker", "up", |s| s.state == State::Up);
    let log = d.dir.path().join("talker.log");
    supervisor_tests::wait_file_contains(&log, "out-3");
    supervisor_tests::wait_file_contains(&log, "err-3");

    let out = d.cli(&["log", "talker", "-n", "2", "--no-follow"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(
        text.lines()
            .all(|l| l.starts_with("out-") || l.starts_with("err-")),
        "{text}"
    );

    // Rotation: the file moves away, SIGUSR1, a new file fills.
    let rotated = d.dir.path().join("talker.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    kill(d.pid(), nix::sys::signal::Signal::SIGUSR1);
    supervisor_tests::wait_file_contains(&log, "out-");
    let s = d.status("talker");
    assert_eq!(
        s.restarts, 0,
        "rotating the log did not touch the process: {s}"
    );
}

#[test]
fn watches_run_as_their_user_with_their_environment_only() {
    if !supervisor_tests::require_root("dropping to another user") {
        return;
    }
    assert!(
        std::env::var_os("HOME").is_some(),
        "the daemon inherits HOME from the test"
    );
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "who"
start = ["/bin/sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) umask=$(umask) env=$FOO leak=$HOME path=$PATH; exec sleep 1000"]
uid = "nobody"
gid = "nogroup"
umask = "027"
clear_env = true
env = { FOO = "bar", PATH = "/usr/bin:/bin" }
stdout = "{dir}/who.log"
"#,
    );
    d.wait_status("who", "up", |s| s.state == State::Up);
    let log = d.dir.path().join("who.log");
    supervisor_tests::wait_file_contains(&log, "uid=");
    let line = std::fs::read_to_string(&log).unwrap();
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert!(
        line.contains(&format!("uid={} gid={}", nobody.uid, nogroup.gid)),
        "{line}"
    );
    assert!(
        line.contains(&format!("groups={}", nogroup.gid)),
        "only its own groups: {line}"
    );
    assert!(line.contains("umask=0027"), "{line}");
    assert!(
        line.contains("env=bar leak= path=/usr/bin:/bin"),
        "clear_env left the daemon's environment out: {line}"
    );
    supervisor_tests::report("privilege drop", "a watch with uid/gid/umask/clear_env: runs as that user with only its groups and environment", 1, 0, 0);
}

#[test]
fn daemonize_returns_once_serving_and_reports_failures() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("d.sock");
    let config = dir.path().join("d.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\n\n[[watch]]\nname = \"s\"\nstart = \"/bin/sleep 1000\"\n",
            dir.path()
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(supervisor_tests::supervisor_bin())
            .args(["run", "--daemonize", "-c"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap()
    };
    let cli = |args: &[&str]| {
        std::process::Command::new(supervisor_tests::supervisor_bin())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Returned only once serving: the socket answers at once.
    let status = cli(&["status", "--json"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let watches: Vec<supervisor_tests::WatchStatus> =
        serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(watches[0].state, State::Up);
    assert!(
        dir.path().join("supervisor.log").exists(),
        "the log went to the state dir"
    );

    // A second daemon on the same socket fails, and says so in the foreground.
    let out = run(&[
        "--log-file",
        dir.path().join("second.log").to_str().unwrap(),
    ]);
    // It stops at the state directory's lock, before detaching, and says
    // who holds it.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another supervisor (pid") && stderr.contains("is running on state_dir"),
        "{stderr}"
    );

    assert!(cli(&["terminate"]).status.success());
}

#[test]
fn started_processes_get_stdio_and_no_fd_of_the_daemon() {
    // Twenty watches: the daemon holds a pidfd and cgroup files for each.
    let watches: String = (0..20)
        .map(|i| {
            format!("[[watch]]\nname = \"s{i}\"\nstart = \"/bin/sleep 1000\"\nstdout = \"{{dir}}/s{i}.log\"\n")
        })
        .collect();
    let d = RunningDaemon::start(&watches);
    for i in 0..20 {
        let name = format!("s{i}");
        let pid = pid_of(&d.wait_status(&name, "up", |s| s.state == State::Up));
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("reading the process's fds")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        assert_eq!(fds, ["0", "1", "2"], "{name} (pid {pid}) has other fds");
        let stdout = std::fs::read_link(format!("/proc/{pid}/fd/1")).unwrap();
        assert!(
            stdout.to_string_lossy().starts_with("pipe:"),
            "{name}'s stdout goes to its log through the daemon: {}",
            stdout.display()
        );
        let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).unwrap();
        assert_eq!(stdin, std::path::Path::new("/dev/null"));
    }
}

/// The scheduling policy of `pid` (field 41 of /proc/PID/stat).
fn policy(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_comm = stat.rsplit_once(')').expect("comm").1;
    after_comm
        .split_whitespace()
        .nth(38)
        .expect("policy")
        .parse()
        .expect("a number")
}

#[test]
fn a_realtime_daemon_starts_normal_processes() {
    let d = RunningDaemon::start_with(
        "scheduling = \"realtime\"",
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    );
    let s = d.wait_status("s", "up", |s| s.state == State::Up);
    assert_eq!(
        policy(d.pid()),
        libc::SCHED_FIFO as u32,
        "the daemon runs in SCHED_FIFO"
    );
    assert_eq!(
        policy(pid_of(&s)),
        libc::SCHED_OTHER as u32,
        "its process does not"
    );
}

/// Whether this process has CAP_SYS_RESOURCE (bit 24 of CapEff), without
/// which no process may lower its `oom_score_adj` below where it started.
fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << 24) != 0
}

fn oom_score_adj(pid: u32) -> i32 {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_daemon_protects_itself_from_the_oom_killer_and_its_watches_do_not_inherit_that() {
    // Started at 300 (a raise, which any process may make), so that what
    // the watches have is theirs whether or not the daemon may lower its
    // own here (this project's machines' root lacks CAP_SYS_RESOURCE).
    let d = RunningDaemon::start_wrapped(
        &[
            "sh",
            "-c",
            "echo 300 > /proc/self/oom_score_adj && exec \"$@\"",
            "sh",
        ],
        "",
        r#"
[[watch]]
name = "plain"
start = "/bin/sleep 1000"

[[watch]]
name = "chosen"
start = "/bin/sleep 1000"
oom_score_adj = 500
"#,
    );
    let oom = supervisor_tests::info_of(&d.socket)
        .unwrap()
        .oom_score_adj
        .expect("oom_score_adj in info");
    assert_eq!(oom.wanted, -1000);
    let info = String::from_utf8(d.cli(&["info"]).stdout).unwrap();
    if has_cap_sys_resource() {
        assert_eq!((oom.now, oom.error.as_deref()), (-1000, None));
        assert!(
            info.contains("oom         score adj -1000: the OOM killer never picks the daemon"),
            "{info}"
        );
    } else {
        assert_eq!(oom.now, 300);
        let error = oom.error.unwrap();
        assert!(
            error.ends_with("lowering it needs CAP_SYS_RESOURCE"),
            "{error}"
        );
        assert!(
            info.contains(&format!("oom         score adj 300, not -1000: {error}")),
            "{info}"
        );
        d.wait_logged("oom_score_adj: cannot set -1000", 1);
    }
    assert_eq!(oom_score_adj(d.pid()), i32::from(oom.now));
    assert_eq!(oom_score_adj(pid_of(&d.status("plain"))), 0);
    assert_eq!(oom_score_adj(pid_of(&d.status("chosen"))), 500);
    // Restarted, the watch sets its own again.
    let (_, after) = d.kill_and_wait_replaced("chosen");
    assert_eq!(oom_score_adj(pid_of(&after)), 500);
}

#[test]
fn a_watch_may_not_go_below_what_the_daemon_may_give_it() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "low"
start = "/bin/sleep 1000"
oom_score_adj = -500
"#,
    );
    if has_cap_sys_resource() {
        assert_eq!(oom_score_adj(pid_of(&d.status("low"))), -500);
        return;
    }
    let line = d.wait_log_line("the start that failed", |l| {
        l.contains("setting its oom_score_adj to -500: Permission denied")
            && l.contains("lower than the daemon started with needs CAP_SYS_RESOURCE")
    });
    assert!(line.contains("low"), "{line}");
}

#[test]
fn terminate_stops_in_reverse_after_order_and_the_next_daemon_starts_what_ran() {
    let mut d = RunningDaemon::start(
        r#"
[[watch]]
name = "db"
start = "/bin/sleep 1000"

[[watch]]
name = "web"
after = ["db"]
start = "/bin/sleep 1000"

[[watch]]
name = "idle"
start = "/bin/sleep 1000"
"#,
    );
    d.wait_status("web", "up", |s| s.state == State::Up);
    assert!(d.cli(&["stop", "idle"]).status.success());
    assert!(d.cli(&["terminate"]).status.success());
    assert!(d.wait_exit().success());
    // web starts after db: it is stopped, and gone, before db is told to.
    d.assert_logged_in_order(
        "web moved 'stop' to 'unmonitored'",
        "db moved 'up' to 'stop'",
    );
    // The terminate's stops were not an operator's: what ran runs again;
    // what the operator stopped stays stopped.
    d.start_again();
    d.wait_status("db", "up", |s| s.state == State::Up);
    d.wait_status("web", "up", |s| s.state == State::Up);
    assert_eq!(d.status("idle").state, State::Unmonitored);
}
