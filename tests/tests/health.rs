//! Health checks and readiness, end to end: real servers on 127.0.0.1,
//! real sd_notify messages, the real daemon probing and acting.
use supervisor_tests::{free_port, pid_of, RunningDaemon, State, StatusExt};

#[test]
fn a_server_whose_http_check_starts_failing_is_restarted_and_a_healthy_one_is_not() {
    let (web, steady) = (free_port(), free_port());
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "web"
start = ["{{helper}}", "http", "{web}"]
ready = "health"

[watch.health]
http = "http://127.0.0.1:{web}/healthz"
every = "200ms"
timeout = "150ms"
times = [2, 3]

[[watch]]
name = "steady"
start = ["{{helper}}", "http", "{steady}"]

[watch.health]
tcp = "127.0.0.1:{steady}"
every = "200ms"
times = [1, 1]
"#
    ));
    let s = d.wait_status("web", "up on its health check", |s| s.state == State::Up);
    let first = pid_of(&s);
    let steady_pid = pid_of(&d.wait_status("steady", "up", |s| s.state == State::Up));
    let s = d.wait_status("web", "a passing check in status", |s| {
        s.last_probe().is_some_and(|l| l.ok)
    });
    assert_eq!(s.probe().message, "HTTP 200", "{s}");
    assert!(s.probe().latency >= 0.0, "{s}");
    assert_eq!(s.ready, "health", "{s}");

    // The server starts answering 503.
    let out = d.cli(&["signal", "web", "USR1"]);
    assert!(out.status.success(), "{out:?}");
    let s = d.wait_replaced("web", first);
    assert!(s.restarts >= 1, "{s}");
    let log = d.log();
    assert!(
        log.iter().any(|l| l.contains(&format!(
            "web: health check (http GET http://127.0.0.1:{web}/healthz) failed 2 of the last 3 checks: HTTP 503 (expected 200-399)"
        )) && l.contains("restarting it")),
        "the restart says why: {log:?}"
    );
    // The new process is up only once its own check passed.
    assert!(
        log.iter().any(|l| l.contains("web moved 'start' to 'up'")
            && l.contains("is ready (health check passed: HTTP 200)")),
        "{log:?}"
    );
    let s = d.status("steady");
    assert_eq!((pid_of(&s), s.restarts), (steady_pid, 0), "{s}");
    assert_eq!(s.health().failures, 0, "{s}");
    assert_eq!(s.probe().message, "connected", "{s}");
}

#[test]
fn an_exec_check_decides_by_exit_status_and_notify_only_restarts_nothing() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "disk"
start = "/bin/sleep 1000"

[watch.health]
exec = ["/bin/sh", "-c", "test -e {dir}/healthy && echo OK || { echo CRITICAL - no flag; exit 2; }"]
every = "150ms"
times = [2, 2]
action = "notify"
"#,
    );
    let flag = d.dir.path().join("healthy");
    std::fs::write(&flag, "").expect("flag");
    let s = d.wait_status("disk", "a passing exec check", |s| {
        s.last_probe().is_some_and(|l| l.ok)
    });
    let pid = pid_of(&s);
    assert_eq!(s.probe().message, "exited 0: OK", "{s}");
    std::fs::remove_file(&flag).expect("remove flag");
    let s = d.wait_status("disk", "the check fired", |s| {
        s.health.as_ref().is_some_and(|h| h.fired == 1)
    });
    assert_eq!(s.probe().message, "exited 2: CRITICAL - no flag", "{s}");
    assert_eq!((pid_of(&s), s.restarts), (pid, 0), "{s}");
    assert!(
        s.events
            .iter()
            .any(|e| e.what.starts_with("condition: health check (exec /bin/sh")),
        "{s}"
    );
}

#[test]
fn a_check_that_hangs_is_cut_off_at_its_timeout() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "stuck"
start = "/bin/sleep 1000"

[watch.health]
exec = ["/bin/sleep", "1001"]
every = "300ms"
timeout = "200ms"
times = [1, 1]
action = "notify"
"#,
    );
    let s = d.wait_status("stuck", "a timed-out check", |s| {
        s.health.as_ref().is_some_and(|h| h.fired == 1)
    });
    let message = s.probe().message.as_str();
    assert!(message.starts_with("no answer within"), "{s}");
    // Killed, not left behind: a moment with no check running (its own
    // argument, so that other tests' sleeps do not count).
    supervisor_tests::wait_until("the hung check to be gone", || {
        supervisor_tests::processes_running("sleep 1001").is_empty()
    });
}

#[test]
fn notify_readiness_holds_a_dependent_until_ready_1() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "api"
after = ["db"]
start = "/bin/sleep 1000"

[[watch]]
name = "db"
start = ["{helper}", "notify-ready", "400"]
ready = "notify"
"#,
    );
    let db = d.wait_status("db", "up on READY=1", |s| s.state == State::Up);
    assert_eq!(db.said.as_deref(), Some("warming up"), "{db}");
    d.wait_status("api", "up", |s| s.state == State::Up);
    let ready = d.assert_logged_in_order("db moved 'start' to 'up'", "api moved 'start' to 'up'");
    assert!(ready.contains("(READY=1)"), "{ready}");
}

#[test]
fn a_process_never_ready_fails_its_start_and_a_strangers_ready_1_is_not_believed() {
    use std::os::linux::net::SocketAddrExt as _;
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "mute"
start = "/bin/sleep 1000"
ready = "notify"
start_grace = "1s"
"#,
    );
    let s = d.wait_status("mute", "started, waiting for READY=1", |s| {
        s.state == State::Start && s.pid.is_some()
    });
    let first = pid_of(&s);
    // This test process is no process of the watch's.
    let name = supervisor_tests::notify_socket_of(first);
    let address =
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("address");
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.send_to_addr(b"READY=1", &address))
        .expect("sending READY=1");
    supervisor_tests::wait_until("the stranger's message to be refused", || {
        d.log()
            .iter()
            .any(|l| l.contains("mute: ignoring a notify message from process"))
    });
    let s = d.wait_status("mute", "a start that failed for want of READY=1", |s| {
        s.restarts >= 1
    });
    assert_ne!(s.state, State::Up, "never ready, never up: {s}");
    let log = d.log();
    assert!(
        log.iter().any(|l| l.contains(&format!(
            "mute: start failed: process {first} was not ready within 1s"
        ))),
        "{log:?}"
    );
    let out = d.cli(&["stop", "mute"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.status("mute").state, State::Unmonitored);
    supervisor_tests::report(
        "stranger's READY=1",
        "READY=1 sent to a watch's NOTIFY_SOCKET by a process that is not the watch's: ignored, the watch stays in start",
        1,
        0,
        0,
    );
}

#[test]
fn a_process_re_adopted_before_it_was_ready_waits_for_ready_1_again() {
    let mut d = RunningDaemon::start(
        r#"
[[watch]]
name = "db"
start = ["{helper}", "notify-ready-on", "{dir}/go"]
ready = "notify"
"#,
    );
    let s = d.wait_status("db", "started, waiting for READY=1", |s| {
        s.state == State::Start && s.pid.is_some()
    });
    let pid = pid_of(&s);
    // The state file must name it before the daemon dies.
    supervisor_tests::wait_file_contains(&d.dir.path().join("state.json"), &pid.to_string());
    d.kill9_and_restart();
    let s = d.status("db");
    assert_eq!((s.state, pid_of(&s)), (State::Start, pid), "{s}");
    // READY=1 from the same process, to the same socket name, once the
    // new daemon serves it.
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    let s = d.wait_status("db", "up on READY=1", |s| s.state == State::Up);
    assert_eq!((pid_of(&s), s.restarts), (pid, 0), "{s}");
    let log = d.log();
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("re-adopted running process {pid}, not yet ready"))),
        "{log:?}"
    );
}

#[test]
fn https_checks_verify_certificates_unless_told_not_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("running openssl (in the base system)");
    assert!(made.status.success(), "{made:?}");
    let (strict, lenient) = (free_port(), free_port());
    let server = |port: u16| {
        format!(
            "start = [\"openssl\", \"s_server\", \"-quiet\", \"-www\", \"-accept\", \"{port}\", \"-cert\", {cert:?}, \"-key\", {key:?}]"
        )
    };
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "strict"
{}

[watch.health]
http = "https://127.0.0.1:{strict}/"
every = "200ms"
times = [1, 1]
action = "notify"

[[watch]]
name = "lenient"
{}
ready = "health"

[watch.health]
http = "https://127.0.0.1:{lenient}/"
tls_verify = false
every = "200ms"
times = [1, 1]
action = "notify"
"#,
        server(strict),
        server(lenient)
    ));
    let s = d.wait_status("lenient", "up on its HTTPS check", |s| s.state == State::Up);
    assert_eq!(s.probe().message, "HTTP 200", "{s}");
    let s = d.wait_status("strict", "a certificate refused", |s| {
        s.health.as_ref().is_some_and(|h| h.fired >= 1)
    });
    let message = s.probe().message.as_str();
    assert!(message.contains("certificate"), "{s}");
}
