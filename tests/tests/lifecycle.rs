//! Commands that arrive while a watch is in the middle of something: a
//! restart, a launch that has not written its pid file yet, a stopped
//! (SIGSTOP) process, many clients at once, and a random mix of all of it
//! with kill -9. Each command must be answered, the watch must end where a
//! sequential reading of the commands puts it, and no program may run
//! twice or be left behind.
use supervisor_tests::*;

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.starts_with(" Z"))
    })
}

fn answered_ok(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what}: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A program that, on SIGTERM, exits only once `{dir}/go` exists: its
/// death takes as long as the test wants.
const SLOW_TO_DIE: &str = r#"
[[watch]]
name = "svc"
start = ["/bin/sh", "-c", "trap 'while [ ! -e {dir}/go ]; do sleep 0.01; done; exit 0' TERM; while :; do sleep 1 & wait $!; done"]
"#;

#[test]
fn a_stop_sent_during_a_restart_is_carried_out() {
    let d = RunningDaemon::start(SLOW_TO_DIE);
    let first = pid_of(&d.wait_status("svc", "up", |s| s.state == State::Up));
    let restart = d.cli_background(&["restart", "svc"]);
    d.wait_status("svc", "restarting", |s| s.state == State::Restart);
    let stop = d.cli_background(&["stop", "svc"]);
    d.wait_logged("control: stop svc", 1);
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    answered_ok("stop during a restart", &stop.answer());
    let restart = restart.answer();
    assert!(
        String::from_utf8_lossy(&restart.stderr).contains("stopped"),
        "the restart is told the stop overtook it: {restart:?}"
    );
    let s = d.status("svc");
    assert_eq!(s.state, State::Unmonitored, "{s}");
    assert!(s.pid.is_none(), "{s}");
    assert!(!alive(first));
    assert!(d.cgroup_pids("svc").is_empty(), "nothing was started again");
}

/// A self-daemonizing program whose launcher waits for `{dir}/go`, then
/// leaves behind a daemon that ignores SIGTERM and writes its pid file.
const SLOW_LAUNCH: &str = r#"
[[watch]]
name = "svc"
start = ["/bin/sh", "-c", "while [ ! -e {dir}/go ]; do sleep 0.01; done; (trap '' TERM; exec sleep 1000) & echo $! > {dir}/svc.pid; echo ran >> {dir}/runs"]
pid_file = "{dir}/svc.pid"
autostart = false
stop_timeout = "1s"
"#;

fn pid_in(d: &RunningDaemon) -> u32 {
    std::fs::read_to_string(d.dir.path().join("svc.pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[test]
fn a_stop_while_a_pid_file_program_starts_stops_what_it_leaves_behind() {
    let d = RunningDaemon::start(SLOW_LAUNCH);
    let start = d.cli_background(&["start", "svc"]);
    d.wait_status("svc", "starting", |s| s.state == State::Start);
    let stop = d.cli_background(&["stop", "svc"]);
    d.wait_status("svc", "stopping", |s| s.state == State::Stop);
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    answered_ok("stop during a launch", &stop.answer());
    assert!(!start.answer().status.success(), "the start was overtaken");
    let left = pid_in(&d);
    assert!(
        !alive(left),
        "the daemon the launch left ({left}) ignores SIGTERM, and is killed after stop_timeout"
    );
    assert_eq!(d.status("svc").state, State::Unmonitored);
    assert!(d.cgroup_pids("svc").is_empty());
}

#[test]
fn stop_then_start_during_a_launch_runs_the_program_once_at_a_time() {
    let d = RunningDaemon::start(SLOW_LAUNCH);
    let _start = d.cli_background(&["start", "svc"]);
    d.wait_status("svc", "starting", |s| s.state == State::Start);
    let stop = d.cli_background(&["stop", "svc"]);
    d.wait_status("svc", "stopping", |s| s.state == State::Stop);
    let again = d.cli_background(&["start", "svc"]);
    d.wait_logged("control: start svc", 2);
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    answered_ok("stop", &stop.answer());
    answered_ok("the start after the stop", &again.answer());
    let s = d.status("svc");
    assert_eq!(s.state, State::Up, "{s}");
    assert_eq!(pid_of(&s), pid_in(&d));
    assert_eq!(
        d.cgroup_pids("svc"),
        vec![pid_of(&s) as i32],
        "only the second launch's daemon runs"
    );
    let runs = std::fs::read_to_string(d.dir.path().join("runs")).unwrap();
    assert_eq!(runs.lines().count(), 2, "{runs}");
}

#[test]
fn after_a_failed_start_the_next_start_is_answered_by_its_own_outcome() {
    // The first launch fails (no pid file); the second waits for `go` and
    // then succeeds.
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = ["/bin/sh", "-c", "if [ ! -e {dir}/failed ]; then touch {dir}/failed; exit 1; fi; while [ ! -e {dir}/go ]; do sleep 0.01; done; sleep 1000 & echo $! > {dir}/svc.pid"]
pid_file = "{dir}/svc.pid"
autostart = false
start_grace = "5s"
"#,
    );
    let first = d.cli(&["start", "svc"]);
    assert!(!first.status.success(), "the first launch fails");
    // keepalive retries at once; the operator asks again meanwhile.
    let second = d.cli_background(&["start", "svc"]);
    d.wait_logged("control: start svc", 2);
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    answered_ok(
        "a start answered by the attempt it waited for",
        &second.answer(),
    );
    assert_eq!(d.status("svc").state, State::Up);
}

#[test]
fn thirty_restarts_at_once_are_all_answered_and_leave_one_process() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = ["sleep", "1000"]
"#,
    );
    d.wait_status("svc", "up", |s| s.state == State::Up);
    let clients: Vec<Background> = (0..30)
        .map(|_| d.cli_background(&["restart", "svc"]))
        .collect();
    for client in clients {
        answered_ok("one of 30 restarts", &client.answer());
    }
    let s = d.status("svc");
    assert_eq!(s.state, State::Up, "{s}");
    assert_eq!(d.cgroup_pids("svc"), vec![pid_of(&s) as i32], "{s}");
}

#[test]
fn a_stopped_process_is_continued_so_that_it_sees_its_stop_signal() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = ["sleep", "1000"]
stop_timeout = "5s"
"#,
    );
    let pid = pid_of(&d.wait_status("svc", "up", |s| s.state == State::Up));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    answered_ok("stop of a stopped process", &d.cli(&["stop", "svc"]));
    let s = d.status("svc");
    assert_eq!(
        s.exit().status.text,
        "killed by SIGTERM",
        "the stop signal, not the SIGKILL after stop_timeout: {s}"
    );
}

/// What a sequential reading of the commands says the watch ends in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expected {
    Up,
    Unmonitored,
}

#[test]
fn random_commands_and_kills_end_where_a_sequential_reading_says() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "svc"
start = ["sleep", "1000"]
stop_timeout = "2s"
flapping = { starts = 1000, within = "1s" }
"#,
    );
    d.wait_status("svc", "up", |s| s.state == State::Up);
    let mut dice = Dice::new();
    let mut expected = Expected::Up;
    let mut clients = Vec::new();
    let mut sent = std::collections::HashMap::<&str, usize>::new();
    let config = d.config.display().to_string();
    for step in 0..repeat(40) {
        let verb = ["start", "stop", "restart", "kill", "load"][dice.below(5) as usize];
        if verb == "kill" {
            if let Some(pid) = d.status("svc").pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            continue;
        }
        let args: Vec<&str> = match verb {
            "load" => vec!["load", &config],
            _ => vec![verb, "svc"],
        };
        eprintln!("step {step}: {args:?}");
        clients.push((verb, d.cli_background(&args)));
        // The next command is sent once this one has arrived: that is the
        // order a sequential reading follows.
        let count = sent.entry(verb).or_default();
        *count += 1;
        let needle = match verb {
            "load" => "control: load".to_owned(),
            _ => format!("control: {verb} svc"),
        };
        d.wait_logged(&needle, *count);
        expected = match verb {
            "start" | "restart" => Expected::Up,
            "stop" => Expected::Unmonitored,
            _ => expected,
        };
        // Now and then, wait for every answer so far.
        if dice.below(4) == 0 {
            for (verb, client) in clients.drain(..) {
                let out = client.answer();
                if verb == "load" {
                    answered_ok("load", &out);
                }
            }
        }
    }
    for (verb, client) in clients.drain(..) {
        let out = client.answer();
        if verb == "load" {
            answered_ok("load", &out);
        }
    }
    let s = d.wait_status("svc", &format!("{expected:?}"), |s| match expected {
        Expected::Up => s.state == State::Up,
        Expected::Unmonitored => s.state == State::Unmonitored,
    });
    let pids = d.cgroup_pids("svc");
    match expected {
        Expected::Up => assert_eq!(pids, vec![pid_of(&s) as i32], "{s}"),
        Expected::Unmonitored => assert!(pids.is_empty(), "{pids:?} left behind: {s}"),
    }
}

/// The state file as the daemon of the previous release wrote it
/// (`tests/fixtures/state-v1.json`, with the live process filled in), and
/// as a newer daemon might write it: both re-adopt the running process.
#[test]
fn a_state_file_of_another_version_costs_no_running_process() {
    let fixture = include_str!("../fixtures/state-v1.json");
    for newer in [false, true] {
        let mut d = RunningDaemon::start(
            r#"
[[watch]]
name = "svc"
start = ["sleep", "1000"]

[[watch]]
name = "crashed"
start = ["sh", "-c", "exit 3"]
keepalive = false
autostart = false
"#,
        );
        let pid = pid_of(&d.wait_status("svc", "up", |s| s.state == State::Up));
        let state = d.dir.path().join("state.json");
        d.kill9_and_restart_with(|| {
            let current: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
            let svc = &current["watches"]["svc"];
            let mut text = fixture
                .replace("{boot_id}", current["boot_id"].as_str().unwrap())
                .replace("{pid}", &svc["pid"].to_string())
                .replace("{start_ticks}", &svc["start_ticks"].to_string());
            if newer {
                // A later version, with fields this daemon does not know.
                text = text.replace("\"version\":1", "\"version\":7").replace(
                    "\"ready\":true}}}",
                    "\"ready\":true,\"cause\":{\"x\":1}}},\"future\":[1]}",
                );
            }
            std::fs::write(&state, text).unwrap();
        });
        let s = d.wait_status("svc", "re-adopted", |s| s.state == State::Up);
        assert_eq!(pid_of(&s), pid, "newer: {newer}: {s}");
        assert_eq!(s.restarts, 7, "counts come from the file: {s}");
        let crashed = d.status("crashed");
        assert_eq!(crashed.exit().status.text, "exited 3", "{crashed}");
    }
}

/// Starts are carried out by two spawner threads at once, each pointing
/// its own fd slots at its child's log pipes: forty watches started
/// together, then all killed at once and started again together, each
/// write only to their own log, and have only fds 0-2.
#[test]
fn starts_made_at_once_never_cross_their_output() {
    let n = 40;
    let watches: String = (0..n)
        .map(|i| {
            format!(
                "[[watch]]\nname = \"w{i}\"\nstart = [\"/bin/sh\", \"-c\", \"echo w{i}; exec sleep 1000\"]\nstdout = \"{{dir}}/w{i}.log\"\n"
            )
        })
        .collect();
    let d = RunningDaemon::start(&watches);
    let log = |i: usize| d.dir.path().join(format!("w{i}.log"));
    let first: Vec<u32> = (0..n)
        .map(|i| pid_of(&d.wait_status(&format!("w{i}"), "up", |s| s.state == State::Up)))
        .collect();
    for &pid in &first {
        kill9(pid);
    }
    for (i, &old) in first.iter().enumerate() {
        let pid = pid_of(&d.wait_replaced(&format!("w{i}"), old));
        wait_until(&format!("w{i} to have written twice"), || {
            std::fs::read_to_string(log(i)).is_ok_and(|t| t.lines().count() >= 2)
        });
        let text = std::fs::read_to_string(log(i)).unwrap();
        assert!(
            text.lines().all(|l| l == format!("w{i}")),
            "w{i}'s log holds another's output: {text:?}"
        );
        let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        fds.sort();
        assert_eq!(fds, ["0", "1", "2"], "w{i} (pid {pid}) has other fds");
    }
}

/// A process can exit before the loop hears from the spawner thread that
/// started it, and be reaped first: its exact status is kept for it.
#[test]
fn a_process_that_dies_at_once_is_told_with_its_exact_status() {
    let n = 30;
    let watches: String = (0..n)
        .map(|i| {
            format!("[[watch]]\nname = \"q{i}\"\nstart = [\"/bin/sh\", \"-c\", \"exit 7\"]\nkeepalive = false\n")
        })
        .collect();
    let d = RunningDaemon::start(&watches);
    for i in 0..n {
        let s = d.wait_status(&format!("q{i}"), "given up", |s| {
            s.state == State::Unmonitored && s.last_exit.is_some()
        });
        assert_eq!(s.exit().status.code, Some(7), "{s}");
    }
}
