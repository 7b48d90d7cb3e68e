//! Conditions beyond death, end to end: real processes that use too much
//! memory or CPU, the real daemon measuring their whole process tree.
use supervisor_tests::{pid_of, RunningDaemon, State, StatusExt};

#[test]
fn memory_above_its_limit_gets_a_watch_restarted() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "hog"
start = ["{helper}", "hog", "64"]
memory = { above = "32MB", every = "200ms", times = [2, 3] }

[[watch]]
name = "small"
start = "/bin/sleep 1000"
memory = { above = "32MB", every = "200ms", times = [2, 3] }
"#,
    );
    let small = pid_of(&d.wait_status("small", "up", |s| s.state == State::Up));
    let first = pid_of(&d.wait_status("hog", "up", |s| s.state == State::Up));
    let s = d.wait_replaced("hog", first);
    assert!(s.restarts >= 1, "{s}");
    let log = d.log();
    assert!(
        log.iter().any(|l| l.contains("hog: memory")
            && l.contains("above 32.0MB in 2 of the last 3 checks")
            && l.contains("restarting it")),
        "the restart says why: {log:?}"
    );
    let s = d.status("hog");
    assert!(
        s.events
            .iter()
            .any(|e| e.what.starts_with("condition: memory")),
        "the condition is among the recent events: {s}"
    );
    let s = d.wait_status("small", "measured", |s| {
        s.conditions.first().is_some_and(|c| c.last_value.is_some())
    });
    assert_eq!((pid_of(&s), s.restarts), (small, 0), "{s}");
    assert!(
        s.condition(0)
            .last_value
            .is_some_and(|v| v < 32.0 * 1024.0 * 1024.0),
        "{s}"
    );
    supervisor_tests::report(
        "memory condition",
        "a watch holding 64MB under a 32MB limit (2 of 3 checks): restarted; a small one beside it never",
        1,
        0,
        0,
    );
}

#[test]
fn cpu_over_a_window_is_caught_and_idle_processes_are_not() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "burner"
start = ["{helper}", "burn", "600000"]
cpu = { above = "50%", every = "300ms", times = [2, 2], action = "stop" }

[[watch]]
name = "noted"
start = ["{helper}", "burn", "600000"]
cpu = { above = "50%", every = "300ms", times = [2, 2], action = "notify" }

[[watch]]
name = "idle"
start = "/bin/sleep 1000"
cpu = { above = "50%", every = "300ms", times = [1, 1] }
"#,
    );
    let idle = pid_of(&d.wait_status("idle", "up", |s| s.state == State::Up));
    let noted = pid_of(&d.wait_status("noted", "up", |s| s.state == State::Up));
    let s = d.wait_status("burner", "stopped by its CPU condition", |s| {
        s.state == State::Unmonitored
    });
    assert_eq!(s.condition(0).fired, 1, "{s}");
    let s = d.wait_status("noted", "noted", |s| {
        s.conditions.first().is_some_and(|c| c.fired >= 1)
    });
    assert_eq!(
        (pid_of(&s), s.state),
        (noted, State::Up),
        "notify only: {s}"
    );
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.contains("burner: CPU") && l.contains("above 50% in 2 of the last 2")),
        "{log:?}"
    );
    let s = d.status("idle");
    assert_eq!((pid_of(&s), s.restarts), (idle, 0), "{s}");
    assert_eq!(s.condition(0).fired, 0, "{s}");
    assert!(
        s.condition(0).last_value.is_some_and(|v| v < 50.0),
        "an idle process measures low: {s}"
    );
    supervisor_tests::report(
        "CPU condition",
        "a process burning a core under a 50% limit (2 of 2 checks over 300 ms windows): stopped, or only noted; an idle long-running one never",
        1,
        0,
        0,
    );
}

/// The start time, in clock ticks since boot, of a running process.
fn started(pid: u32) -> u64 {
    supervisor::process::identify(supervisor::process::Pid::new(pid).unwrap())
        .unwrap()
        .start
        .ticks()
}

#[test]
fn after_orders_starts_at_boot_and_for_a_group() {
    // "api" sorts first, and "db" takes 300 ms to be up (its pid file):
    // only `after` makes api wait.
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "api"
group = "app"
after = ["db"]
start = "/bin/sleep 1000"

[[watch]]
name = "db"
group = "app"
start = ["/bin/sh", "-c", "sleep 0.3; (setsid sh -c 'echo $$ > {dir}/db.pid; exec sleep 1000' &)"]
pid_file = "{dir}/db.pid"
"#,
    );
    for round in ["at boot", "on `start app`"] {
        let api = pid_of(&d.wait_status("api", "up", |s| s.state == State::Up));
        let db = pid_of(&d.wait_status("db", "up", |s| s.state == State::Up));
        assert!(
            started(api) >= started(db),
            "{round}: api (tick {}) started before db (tick {}) was up",
            started(api),
            started(db)
        );
        if round == "at boot" {
            assert!(d.cli(&["stop", "app"]).status.success());
            assert!(d.cli(&["start", "app"]).status.success());
        }
    }
    assert!(
        d.log()
            .iter()
            .any(|l| l.contains("api: waiting for db to be up")),
        "{:?}",
        d.log()
    );
}

#[test]
fn after_orders_watches_added_by_a_reload() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "old"
start = "/bin/sleep 1000"
"#,
    );
    d.wait_status("old", "up", |s| s.state == State::Up);
    // "api" comes first in the file and sorts first; "cache" is ready only
    // on READY=1, 300 ms after it starts.
    let new = d.write_config(
        "more.toml",
        r#"
[[watch]]
name = "old"
start = "/bin/sleep 1000"

[[watch]]
name = "api"
after = ["cache"]
start = "/bin/sleep 1000"

[[watch]]
name = "cache"
start = ["{helper}", "notify-ready", "300"]
ready = "notify"
"#,
    );
    let out = d.cli(&["load", new.to_str().expect("utf-8 path")]);
    assert!(out.status.success(), "{out:?}");
    d.wait_status("api", "up", |s| s.state == State::Up);
    d.assert_logged_in_order("cache moved 'start' to 'up'", "api moved 'start' to 'up'");
}
