//! Faults a production supervisor meets, injected for real, each with what
//! "nothing lost" means asserted: no watch left down, no process run twice,
//! none left behind, nothing signalled that the watch does not own.
//!
//! Each test reports a row for RELIABILITY.md (`cargo xtask reliability`,
//! which also raises the repeat counts through
//! `SUPERVISOR_RELIABILITY_SCALE`); CI runs the everyday counts.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use supervisor_tests::{
    cmdline, pid_of, processes_running, repeat, report, supervisor_bin, wait_within, Dice,
    RunningDaemon, State, StatusExt, WatchStatus,
};

/// Every watch's status, by `status --json`.
fn all_status(d: &RunningDaemon) -> Vec<WatchStatus> {
    all_status_at(&d.socket)
}

/// The pids in the cgroup `pid` is in (itself included).
fn cgroup_mates(pid: u32) -> Vec<u32> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return vec![pid];
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4))?
        })
        .expect("a cgroup2 mount");
    let mut mates: Vec<u32> = std::fs::read_to_string(format!("{mount}{path}/cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    mates.sort();
    mates
}

fn schedstat_ms(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    text.split_whitespace()
        .next()
        .unwrap()
        .parse::<f64>()
        .unwrap()
        / 1e6
}

#[test]
fn a_daemon_killed_mid_action_leaves_no_duplicate_and_no_orphan() {
    if !supervisor_tests::require_root("cgroups and the kernel backends") {
        return;
    }
    let times = repeat(20);
    let mut dice = Dice::new();
    let marker = 4_100_000 + std::process::id() % 100_000;
    let a = format!("/bin/sleep {marker}");
    let mut d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "a"
start = "{a}"
stop_timeout = "300ms"

[[watch]]
name = "b"
start = ["{{helper}}", "daemonize", "{{dir}}/b.pid"]
pid_file = "{{dir}}/b.pid"
stop_timeout = "300ms"
"#
    ));
    let config = d.config.display().to_string();
    let b = cmdline_of_b(&d);
    let actions: [&[&str]; 6] = [
        &["restart", "a"],
        &["stop", "a"],
        &["restart", "b"],
        &["stop"],
        &["restart"],
        &["load", &config],
    ];
    d.wait_status("a", "up", |s| s.state == State::Up);
    d.wait_status("b", "up", |s| s.state == State::Up);
    for i in 0..times {
        let action = actions[dice.below(actions.len() as u64) as usize];
        let mut cli = Command::new(supervisor_bin())
            .arg("--socket")
            .arg(&d.socket)
            .args(action)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("running the CLI");
        // Where the fault lands: anywhere in the first 20 ms of the action.
        std::thread::sleep(Duration::from_micros(dice.below(20_000)));
        d.kill9_and_restart();
        let _ = cli.wait();

        let state = d.dir.path().join("state.json");
        let text = std::fs::read_to_string(&state).expect("the state file is there");
        assert!(
            serde_json::from_str::<Value>(&text).is_ok(),
            "round {i} ({action:?}): corrupt state file: {text}"
        );
        assert!(
            !d.dir.path().join("state.json.corrupt").exists(),
            "round {i}: a state file was set aside"
        );
        // Whatever the operator said last, both are wanted up now.
        let out = d.cli(&["start"]);
        assert!(
            out.status.success(),
            "round {i} ({action:?}): start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pa = pid_of(&d.wait_status("a", "up", |s| s.state == State::Up));
        let pb = pid_of(&d.wait_status("b", "up", |s| s.state == State::Up));
        supervisor_tests::wait_exec(pa);
        assert_eq!(
            processes_running(&a),
            vec![pa],
            "round {i} ({action:?}): watch a runs once"
        );
        supervisor_tests::wait_until("b's launcher to be gone", || {
            processes_running(&b).len() == 1
        });
        assert_eq!(
            processes_running(&b),
            vec![pb],
            "round {i} ({action:?}): watch b runs once"
        );
        assert_eq!(
            cgroup_mates(pa),
            vec![pa],
            "round {i} ({action:?}): nothing else in a's cgroup"
        );
        assert_eq!(
            cgroup_mates(pb),
            vec![pb],
            "round {i} ({action:?}): nothing else in b's cgroup"
        );
    }
    report(
        "daemon SIGKILLed mid-action",
        "SIGKILL 0–20 ms into a random restart, stop, start-all or reload of a child and a pid_file daemon; daemon started again",
        times,
        0,
        0,
    );
}

fn cmdline_of_b(d: &RunningDaemon) -> String {
    let pid = pid_of(&d.wait_status("b", "up", |s| s.state == State::Up));
    cmdline(pid)
}

#[test]
fn mass_death_again_and_again_loses_nothing() {
    // A thousand when soaking (`cargo xtask reliability`), fewer in CI.
    let (count, rounds) = if repeat(1) > 1 {
        (1000, repeat(1))
    } else {
        (200, 3)
    };
    let base = 4_200_000 + (std::process::id() % 10_000) * 1_000;
    let watches: String = (0..count)
        .map(|i| {
            format!(
                "[[watch]]\nname = \"m{i}\"\nstart = \"/bin/sleep {}\"\nflapping = {{ starts = 1000 }}\n",
                base + i
            )
        })
        .collect();
    let d = RunningDaemon::start(&watches);
    let wait_all_up = |old: &[u32]| -> Vec<u32> {
        let mut pids = Vec::new();
        wait_within(
            Duration::from_secs(30),
            &format!("all {count} watches up again"),
            || {
                pids = all_status(&d)
                    .iter()
                    .filter(|s| s.state == State::Up)
                    .filter_map(|s| s.pid)
                    .filter(|p| !old.contains(p))
                    .collect();
                pids.len() == count as usize
            },
        );
        pids
    };
    let mut pids = wait_all_up(&[]);
    for round in 0..rounds {
        for &pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pids = wait_all_up(&pids);
        pids.iter()
            .for_each(|&pid| supervisor_tests::wait_exec(pid));
        for i in 0..count {
            let running = processes_running(&format!("/bin/sleep {}", base + i));
            assert_eq!(running.len(), 1, "round {round}: m{i} runs {running:?}");
        }
    }
    report(
        "mass death",
        &format!("all {count} watched processes SIGKILLed at once"),
        rounds,
        0,
        0,
    );
}

#[test]
fn a_fork_bomb_is_stopped_whole() {
    let marker = 4_300_000 + std::process::id() % 100_000;
    // Each shell forks two more, ten levels deep: about 2,000 processes,
    // some of them in sessions of their own.
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "bomb"
start = ["/bin/sh", "-c", "f() {{ if [ $1 -gt 0 ]; then f $(($1-1)) & setsid sh -c \"sleep {marker}\" & f $(($1-1)) & fi; sleep {marker}; }}; f 9"]
stop_timeout = "500ms"
"#
    ));
    d.wait_status("bomb", "up", |s| s.state == State::Up);
    let sleeper = format!("sleep {marker}");
    supervisor_tests::wait_until("the bomb to go off", || {
        processes_running(&sleeper).len() >= 500
    });
    let out = d.cli(&["stop", "bomb"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let left = processes_running(&sleeper);
    assert!(
        left.is_empty(),
        "stop left {} of the bomb's processes",
        left.len()
    );
    let rss_kb = supervisor_tests::rss_kb(d.pid());
    assert!(
        rss_kb < 64 * 1024,
        "the daemon grew to {rss_kb} kB following the bomb"
    );
    report(
        "fork bomb",
        "a watch forking ~2,000 processes (some in new sessions), then stopped: none left, daemon RSS bounded",
        1,
        0,
        0,
    );
}

#[test]
fn a_tight_crash_loop_backs_off_and_costs_the_daemon_little() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "crasher"
start = "/bin/false"
"#,
    );
    // Measured between two held-back starts (each logged as flapping, and
    // read from the daemon's stderr, not asked of it, which would cost it
    // CPU): the daemon's CPU time over that stretch of wall-clock time.
    let flapping = "crasher is flapping";
    d.wait_logged(flapping, 1);
    let seen = d.log().iter().filter(|l| l.contains(flapping)).count();
    let before = schedstat_ms(d.pid());
    let started = Instant::now();
    wait_within(Duration::from_secs(30), "two more held-back starts", || {
        d.log().iter().filter(|l| l.contains(flapping)).count() >= seen + 2
    });
    let used = schedstat_ms(d.pid()) - before;
    let elapsed = started.elapsed();
    let share = used / elapsed.as_secs_f64() / 10.0;
    let s = d.status("crasher");
    assert!(s.backoff_secs.is_some(), "still backing off: {s}");
    assert!(
        share < 5.0,
        "the daemon used {share:.1}% of a core ({used:.1} ms in {elapsed:?}) while a watch crash-looped"
    );
    report(
        "crash loop",
        "a watch whose program exits at once, forever (backoff bounds it; daemon CPU < 5%)",
        1,
        0,
        0,
    );
}

/// A tmpfs of 64 KiB mounted for the test, filled up, unmounted at the end.
struct FullDisk {
    path: std::path::PathBuf,
}

impl FullDisk {
    fn new(path: std::path::PathBuf) -> Self {
        std::fs::create_dir_all(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a small tmpfs at {}", path.display());
        let mut filler = std::fs::File::create(path.join("filler")).unwrap();
        use std::io::Write as _;
        while filler.write_all(&[0u8; 4096]).is_ok() {}
        Self { path }
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_costs_no_process_and_no_daemon() {
    if !supervisor_tests::require_root("mounting a tmpfs") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let full = FullDisk::new(dir.path().join("full"));
    let d = RunningDaemon::start_with(
        &format!("state_dir = {:?}", full.path.join("state")),
        &format!(
            r#"
[[watch]]
name = "talker"
start = ["/bin/sh", "-c", "while :; do echo spam; sleep 0.01; done"]
stdout = {:?}

[[watch]]
name = "nowhere"
start = "/bin/sleep 1000"
stdout = "/proc/no-such-dir/out.log"
"#,
            full.path.join("talker.log")
        ),
    );
    let talker = pid_of(&d.wait_status("talker", "up", |s| s.state == State::Up));
    supervisor_tests::wait_until("the daemon to say the log cannot be written", || {
        d.log().iter().any(|l| l.contains("talker.log"))
    });
    // The state file cannot be written either: said, and nothing else.
    supervisor_tests::wait_until("the daemon to say the state cannot be written", || {
        d.log()
            .iter()
            .any(|l| l.contains("cannot write state file"))
    });
    let s = d.status("talker");
    assert_eq!((s.state, pid_of(&s)), (State::Up, talker), "{s}");
    assert_eq!(s.restarts, 0, "{s}");
    let s = d.wait_status("nowhere", "a clear reason", |s| s.last_error.is_some());
    assert!(
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("/proc/no-such-dir/out.log")),
        "the reason names the file: {s}"
    );
    report(
        "disk trouble",
        "log file and state dir on a full filesystem; a log file that cannot be created",
        1,
        0,
        0,
    );
}

#[test]
fn without_bpf_privileges_the_daemon_falls_back_and_says_why() {
    if !supervisor_tests::require_root("dropping capabilities") {
        return;
    }
    let d = RunningDaemon::start_wrapped(
        &[
            "setpriv",
            "--bounding-set",
            "-bpf,-sys_admin,-perfmon",
            "--inh-caps",
            "-bpf,-sys_admin,-perfmon",
            "--",
        ],
        "",
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    );
    d.wait_log_line("saying why eBPF is refused", |l| {
        l.contains("exit backend ebpf unavailable") && l.contains("ermi")
    });
    d.wait_log_line("saying it falls back to netlink", |l| {
        l.contains("watching exits with netlink")
    });
    d.kill_and_wait_replaced("s");
    report(
        "backend refused",
        "daemon started without CAP_BPF/CAP_SYS_ADMIN/CAP_PERFMON: falls back to netlink, says why, restarts as before",
        1,
        0,
        0,
    );
}

/// `info --json` of the daemon.
fn info(d: &RunningDaemon) -> supervisor::protocol::DaemonInfo {
    let out = d.cli(&["info", "--json"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("info --json: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

fn exit_storm(backend: &str, n: u32) {
    let count = 200;
    let base = 4_400_000 + (std::process::id() % 1_000) * 2_000 + n * 1_000;
    let watches: String = (0..count)
        .map(|i| {
            format!(
                "[[watch]]\nname = \"w{i}\"\nstart = \"/bin/sleep {}\"\nflapping = {{ starts = 1000 }}\n",
                base + i
            )
        })
        .collect();
    let d = RunningDaemon::start_with(
        &format!("backend = \"{backend}\"\nring_buffer = \"4KB\"\nnetlink_buffer = \"4KB\""),
        &watches,
    );
    assert_eq!(info(&d).backend, backend);
    let up = |old: &[u32]| -> Vec<u32> {
        all_status(&d)
            .iter()
            .filter(|s| s.state == State::Up)
            .filter_map(|s| s.pid)
            .filter(|p| !old.contains(p))
            .collect()
    };
    supervisor_tests::wait_until("every watch up", || up(&[]).len() == count as usize);
    let pids = up(&[]);
    // Unrelated processes coming and going as fast as they can, on both
    // cores, while every watched process is killed at once.
    let mut churners: Vec<supervisor_tests::Helper> = (0..2)
        .map(|_| supervisor_tests::Helper::spawn(&["churn", "3"]))
        .collect();
    for churner in &mut churners {
        churner.go();
    }
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    wait_within(
        Duration::from_secs(30),
        &format!("{backend}: all {count} watches back"),
        || up(&pids).len() == count as usize,
    );
    up(&pids).into_iter().for_each(supervisor_tests::wait_exec);
    for i in 0..count {
        let running = processes_running(&format!("/bin/sleep {}", base + i));
        assert_eq!(running.len(), 1, "{backend}: w{i} runs {running:?}");
    }
    let counters = info(&d).counters;
    assert!(
        counters.dropped > 0 && counters.resyncs > 0,
        "{backend}: the storm was meant to overflow the buffer: {counters:?}"
    );
    let text = String::from_utf8_lossy(&d.cli(&["status"]).stdout).into_owned();
    assert!(
        text.contains("lost and recovered"),
        "status says what was lost: {text}"
    );
    report(
        &format!("exit storm ({backend})"),
        &format!(
            "{count} watched processes SIGKILLed at once amid thousands of unrelated exits a second, 4KB buffers: {} records dropped, recovered by {} re-check(s)",
            counters.dropped, counters.resyncs
        ),
        1,
        0,
        0,
    );
}

#[test]
fn an_exit_storm_overflowing_the_ring_buffer_loses_no_watched_exit() {
    if !supervisor_tests::require_root("the kernel backends") {
        return;
    }
    exit_storm("ebpf", 0);
}

#[test]
fn an_exit_storm_overflowing_the_netlink_socket_loses_no_watched_exit() {
    if !supervisor_tests::require_root("the kernel backends") {
        return;
    }
    exit_storm("netlink", 1);
}

#[test]
fn idle_slow_and_truncated_clients_hold_up_nobody() {
    use std::io::{Read as _, Write as _};
    use std::os::unix::net::UnixStream;
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    );
    let pid = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    // Fifty clients that start a request and never finish it.
    let idle: Vec<UnixStream> = (0..50)
        .map(|_| {
            let mut c = UnixStream::connect(&d.socket).expect("connect");
            c.write_all(b"{\"cmd\":").expect("write");
            c
        })
        .collect();
    // One that drips a request a byte at a time, slower than allowed.
    let socket = d.socket.clone();
    let drip = std::thread::spawn(move || {
        let mut c = UnixStream::connect(&socket).expect("connect");
        for byte in b"{\"cmd\":\"status\",\"target\":null}\n" {
            if c.write_all(&[*byte]).is_err() {
                return "cut off";
            }
            std::thread::sleep(Duration::from_millis(400));
        }
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        if answer.is_empty() {
            "cut off"
        } else {
            "answered"
        }
    });
    // One that sends half a request and hangs up.
    let mut truncated = UnixStream::connect(&d.socket).expect("connect");
    truncated.write_all(b"{\"cmd\":\"sto").expect("write");
    truncated
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    let mut answer = String::new();
    let _ = truncated.read_to_string(&mut answer);
    assert!(
        !answer.contains("\"ok\":true"),
        "half a request is not a request: {answer}"
    );

    // Meanwhile everyone else is served at once, and nothing changed.
    let s = d.status("s");
    assert!(
        !drip.is_finished(),
        "status had to wait for the dripping client"
    );
    assert_eq!((s.state, pid_of(&s)), (State::Up, pid), "{s}");
    assert_eq!(
        drip.join().unwrap(),
        "cut off",
        "a request may take 5 s at most"
    );
    drop(idle);
    let s = d.status("s");
    assert_eq!((s.state, pid_of(&s)), (State::Up, pid), "{s}");
    report(
        "slow and idle clients",
        "50 clients idle mid-request, one dripping a byte every 400 ms, one hanging up mid-request: others served at once, the slow one cut off after 5 s, nothing changed",
        1,
        0,
        0,
    );
}

fn backend_dies(backend: &str) {
    // The debug build's fault hook: the first exit event is swallowed and
    // the backend fails instead.
    let mut d = RunningDaemon::start_wrapped(
        &["env", "SUPERVISOR_FAULT_BACKEND=1"],
        &format!("backend = \"{backend}\""),
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    );
    let first = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    // Re-adopted by a new daemon, the process is no child of the daemon:
    // no SIGCHLD, only the backend, can tell of its death.
    d.kill9_and_restart();
    let s = d.wait_status("s", "re-adopted", |s| s.state == State::Up);
    assert_eq!(pid_of(&s), first, "re-adopted, not restarted: {s}");
    supervisor_tests::kill9(first);
    let s = d.wait_replaced("s", first);
    assert_eq!(s.restarts, 1, "{s}");
    assert_eq!(s.exit().pid, first, "{s}");
    let info = info(&d);
    assert_eq!(info.backend_failures, 1, "{info:?}");
    assert_eq!(info.backend, backend, "re-attached: {info:?}");
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("exit backend {backend} failed"))),
        "the failure is logged: {log:?}"
    );
    report(
        &format!("backend dies ({backend})"),
        "the backend fails with a watched exit in flight (debug-build fault hook): opened again, every process re-checked, the lost exit restarted",
        1,
        0,
        0,
    );
}

#[test]
fn a_dying_ebpf_backend_is_reopened_and_misses_nothing() {
    if !supervisor_tests::require_root("the kernel backends") {
        return;
    }
    backend_dies("ebpf");
}

#[test]
fn a_dying_netlink_backend_is_reopened_and_misses_nothing() {
    if !supervisor_tests::require_root("the kernel backends") {
        return;
    }
    backend_dies("netlink");
}

#[test]
fn a_reused_pid_is_never_adopted_or_signalled() {
    if !supervisor_tests::require_root("ns_last_pid") {
        return;
    }
    let marker = 4_500_000 + std::process::id() % 100_000;
    let mut d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "s"
start = "/bin/sleep {marker}"
"#
    ));
    let first = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    // While no daemon runs, the process dies and a stranger gets its pid:
    // the state file now names the stranger's pid.
    let mut stranger = None;
    d.kill9_and_restart_with(|| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        supervisor_tests::wait_until("the killed process to be reaped", || {
            !std::path::Path::new(&format!("/proc/{first}")).exists()
        });
        stranger = Some(supervisor_tests::spawn_with_pid(
            supervisor::process::Pid::new(first).unwrap(),
        ));
    });
    let mut stranger = stranger.unwrap();
    let s = d.wait_replaced("s", first);
    assert_eq!(s.restarts, 1, "counted as a death: {s}");
    assert!(
        supervisor::process::is_alive(stranger.id, &Default::default()),
        "the stranger holding the old pid was left alone"
    );
    assert_ne!(
        cgroup_mates(first),
        cgroup_mates(pid_of(&s)),
        "the stranger was not put in the watch's cgroup"
    );
    // Stopping the watch does not touch the stranger either.
    assert!(d.cli(&["stop", "s"]).status.success());
    assert!(
        supervisor::process::is_alive(stranger.id, &Default::default()),
        "stop left the stranger alone"
    );
    stranger.kill(nix::sys::signal::Signal::SIGKILL);
    report(
        "pid reuse (daemon restart)",
        "the state file names a pid that a stranger now holds (ns_last_pid) when the daemon starts again: not adopted, not signalled, the watch started afresh",
        1,
        0,
        0,
    );
}

#[test]
fn what_the_daemon_writes_is_private_and_watches_do_not_share_environments() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = RunningDaemon::start_with(
        "state_dir = \"{dir}/state\"",
        r#"
[[watch]]
name = "with-secret"
start = ["/bin/sh", "-c", "echo secret=$SECRET; exec sleep 1000"]
env = { SECRET = "hunter2" }
stdout = "{dir}/with-secret.log"

[[watch]]
name = "without"
start = ["/bin/sh", "-c", "echo secret=$SECRET; exec sleep 1000"]
stdout = "{dir}/without.log"
"#,
    );
    d.wait_status("with-secret", "up", |s| s.state == State::Up);
    d.wait_status("without", "up", |s| s.state == State::Up);
    let dir = d.dir.path();
    supervisor_tests::wait_file_contains(&dir.join("with-secret.log"), "secret=hunter2");
    supervisor_tests::wait_file_contains(&dir.join("without.log"), "secret=");
    let without = std::fs::read_to_string(dir.join("without.log")).unwrap();
    assert!(
        !without.contains("hunter2"),
        "another watch's env leaked: {without}"
    );
    supervisor_tests::wait_until("the state file", || dir.join("state/state.json").exists());
    let mode = |p: &str| std::fs::metadata(dir.join(p)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("state"), 0o700, "state dir");
    assert_eq!(mode("state/state.json"), 0o600, "state file");
    assert_eq!(mode("with-secret.log"), 0o600, "log file");
    assert_eq!(mode("supervisor.sock"), 0o600, "control socket");
    report(
        "file permissions and environments",
        "state dir 0700, state file, logs and socket 0600; one watch's env never seen by another",
        1,
        0,
        0,
    );
}

#[test]
fn without_tracefs_the_daemon_mounts_it_and_uses_ebpf() {
    if !supervisor_tests::require_root("mount namespaces") {
        return;
    }
    // A mount namespace of the daemon's own in which tracefs is not
    // mounted (the host's stays as it is).
    let d = RunningDaemon::start_wrapped(
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug/tracing 2>/dev/null; \
             ! grep -q ' tracefs ' /proc/self/mounts || exit 99; exec \"$0\" \"$@\"",
        ],
        "backend = \"ebpf\"",
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
"#,
    );
    assert_eq!(info(&d).backend, "ebpf");
    d.kill_and_wait_replaced("s");
    report(
        "tracefs not mounted",
        "daemon started where tracefs is not mounted: mounts it, loads eBPF, restarts as before",
        1,
        0,
        0,
    );
}

#[test]
fn ten_thousand_watches_start_while_the_daemon_answers() {
    // 2,000 every day; 10,000 when soaking (`cargo xtask reliability`).
    let n = repeat(2000).min(10_000);
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    let config = dir.path().join("many.toml");
    let mut text = format!(
        "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\nlog_level = \"warn\"\n\n",
        dir.path().join("state")
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\nstart = [\"/bin/sleep\", \"1000\"]\n\n"
        ));
    }
    std::fs::write(&config, text).unwrap();
    /// Kills the daemon (and, with it gone, nothing restarts its watches)
    /// if the test fails half-way.
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut daemon = Daemon(
        Command::new(supervisor_bin())
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cli = |args: &[&str]| {
        Command::new(supervisor_bin())
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .unwrap()
    };
    supervisor_tests::wait_until("info to answer", || cli(&["info"]).status.success());
    // Answered while the starts go on: the last watch to start (in name
    // order) is not up yet.
    let last = (0..n).map(|i| format!("w{i}")).max().unwrap();
    let out = cli(&["status", &last, "--json"]);
    let s: Vec<WatchStatus> = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(
        s[0].state,
        State::Up,
        "info answered only after every start"
    );
    let up = |name: &str| {
        let out = cli(&["status", name, "--json"]);
        serde_json::from_slice::<Vec<WatchStatus>>(&out.stdout)
            .ok()
            .filter(|s| s[0].state == State::Up)
            .map(|s| pid_of(&s[0]))
    };
    wait_within(Duration::from_secs(300), &format!("{n} watches up"), || {
        all_status_at(&socket)
            .iter()
            .filter(|s| s.state == State::Up)
            .count()
            == n
    });
    let old = up("w1").unwrap();
    supervisor_tests::kill9(old);
    supervisor_tests::wait_until("w1 to run again", || up("w1").is_some_and(|p| p != old));
    assert!(cli(&["terminate"]).status.success());
    let _ = daemon.0.wait();
    report(
        "10,000 watches",
        &format!("{n} watches (10,000 when soaking) started at once: the daemon answers while they start, all come up, a killed one is restarted, terminate stops all"),
        1,
        0,
        0,
    );
}

fn all_status_at(socket: &std::path::Path) -> Vec<WatchStatus> {
    let out = Command::new(supervisor_bin())
        .arg("--socket")
        .arg(socket)
        .args(["status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
