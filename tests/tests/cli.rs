//! The real `supervisor` binary: `check` and `trace` end to end, and the
//! errors an operator gets for bad arguments.
use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    thread,
};

use serde_json::Value;
use supervisor_tests::{in_ci, supervisor_bin, Helper, WAIT};

fn supervisor(args: &[&str]) -> std::process::Output {
    Command::new(supervisor_bin())
        .args(args)
        .env_remove("SUPERVISOR_BACKEND")
        .output()
        .expect("running supervisor")
}

#[test]
fn check_selects_a_backend_and_proves_it() {
    let out = supervisor(&["check", "--json"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("check --json printed {text:?}: {e}"));
    assert!(out.status.success(), "check failed: {text}");
    assert_eq!(report["passed"], true);
    if in_ci() {
        assert_eq!(
            report["selected"], "ebpf",
            "CI machines must run the eBPF backend: {text}"
        );
    }
    for backend in report["backends"].as_array().unwrap() {
        if backend["available"] == true {
            assert_eq!(backend["self_test"]["passed"], true, "{backend}");
            assert_eq!(
                backend["self_test"]["latencies_us"]
                    .as_array()
                    .unwrap()
                    .len(),
                3
            );
        } else {
            assert!(
                backend["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{backend}"
            );
        }
    }
}

#[test]
fn check_text_names_the_selected_backend() {
    let out = supervisor(&["check", "--backend", "pidfd"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("pidfd    available   self-test passed: exit seen"),
        "{text}"
    );
    assert!(
        text.contains("selected: pidfd (self-test passed)"),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        2,
        "only the forced backend is probed: {text}"
    );
}

#[test]
fn check_forced_kernel_backends() {
    for backend in ["ebpf", "netlink"] {
        let out = supervisor(&["check", "--backend", backend, "--json"]);
        let text = String::from_utf8_lossy(&out.stdout);
        let report: Value = serde_json::from_str(&text).expect("json");
        if !out.status.success() && !in_ci() {
            eprintln!("\n!!! SKIPPED: {backend} cannot run here: {text}\n");
            continue;
        }
        assert!(out.status.success(), "check --backend {backend}: {text}");
        assert_eq!(report["selected"], backend);
    }
}

/// Runs `supervisor trace ARGS`, waits until it is tracing, runs `act`,
/// and returns the JSON lines it printed until `done` says stop.
fn trace(args: &[&str], act: impl FnOnce(), done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut child = Command::new(supervisor_bin())
        .arg("trace")
        .arg("--json")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning supervisor trace");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    if !banner.starts_with("tracing exits") {
        let _ = child.kill();
        panic!("trace {args:?} did not start: {banner}");
    }
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    act();
    let mut lines = Vec::new();
    loop {
        let line = rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| {
                panic!("trace {args:?}: expected exit not printed within {WAIT:?}; got {lines:?}")
            })
            .expect("reading trace output");
        let value: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        let stop = done(&value);
        lines.push(value);
        if stop {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

#[test]
fn trace_pid_reports_decoded_status_per_backend() {
    for backend in ["ebpf", "netlink", "pidfd", "poll"] {
        let mut h = Helper::spawn(&["exit", "3"]);
        let pid = h.pid().to_string();
        let poll = ["--poll-interval", "20ms"];
        let mut args = vec!["--backend", backend, "--pid", &pid];
        args.extend(poll);
        let lines = trace(&args, || h.go(), |_| true);
        let event = &lines[0];
        assert_eq!(event["pid"].to_string(), pid, "{backend}: {event}");
        // Not our child: pidfd and poll cannot know the status.
        let expected = match backend {
            "ebpf" | "netlink" => "exited 3",
            _ => "exit status unknown",
        };
        assert_eq!(event["status"]["text"], expected, "{backend}: {event}");
    }
}

#[test]
fn trace_everything_shows_comm_ppid_and_signal() {
    for backend in ["ebpf", "netlink"] {
        let mut h = Helper::spawn(&["block"]);
        let pid = h.pid().get() as u64;
        let lines = trace(
            &["--backend", backend],
            || h.kill(nix::sys::signal::Signal::SIGTERM),
            |v| v["pid"] == pid,
        );
        let event = lines.last().unwrap();
        assert_eq!(
            event["status"]["text"], "killed by SIGTERM",
            "{backend}: {event}"
        );
        assert_eq!(event["status"]["signal"], "SIGTERM");
        assert_eq!(event["ppid"], std::process::id(), "{backend}: {event}");
        assert_eq!(event["comm"], "exit-helper", "{backend}: {event}");
    }
}

#[test]
fn trace_signals_shows_each_signal_to_a_traced_process_with_its_sender_before_the_exit() {
    let h = Helper::spawn(&["block"]);
    let mut bystander = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = h.pid().get();
    let kill = |signal: &str, target: u32| {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{signal} {target}")])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let lines = trace(
        &["--backend", "ebpf", "--signals", "--pid", &pid.to_string()],
        || {
            // Not traced: the kernel drops it.
            kill("USR1", bystander.id());
            // Never fatal by default: not recorded.
            kill("CHLD", pid);
            kill("HUP", pid);
        },
        |v| v["kind"] == "exit",
    );
    let _ = bystander.wait();
    assert_eq!(lines.len(), 2, "one signal, then the exit: {lines:?}");
    let (signal, exit) = (&lines[0], &lines[1]);
    assert_eq!(signal["kind"], "signal", "{signal}");
    assert_eq!(signal["pid"], pid, "{signal}");
    assert_eq!(signal["comm"], "exit-helper", "{signal}");
    assert_eq!(signal["signal"], "SIGHUP", "{signal}");
    assert_eq!(signal["group"], true, "{signal}");
    assert_eq!(signal["origin"]["code"], "SI_USER", "{signal}");
    let sender = &signal["origin"]["sender"];
    assert_eq!(sender["comm"], "sh", "{signal}");
    assert_eq!(sender["parent_pid"], std::process::id(), "{signal}");
    assert_eq!(exit["status"]["text"], "killed by SIGHUP", "{exit}");
    assert_eq!(exit["origin"]["sender"]["pid"], sender["pid"], "{exit}");
}

#[test]
fn trace_table_is_human_readable() {
    let mut h = Helper::spawn(&["exit", "9"]);
    let pid = h.pid().to_string();
    let mut child = Command::new(supervisor_bin())
        .args(["trace", "--backend", "ebpf", "--pid", &pid])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    if !banner.starts_with("tracing exits with") {
        let _ = child.wait();
        assert!(!in_ci(), "trace --backend ebpf failed: {banner}");
        eprintln!("\n!!! SKIPPED: ebpf unavailable: {banner}\n");
        return;
    }
    h.go();
    // With --pid, trace ends once every given process has exited.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("TIME"), "{text}");
    let row = lines.next().expect("one exit row");
    assert!(
        row.contains(&pid) && row.contains("exit-helper") && row.ends_with("exited 9"),
        "{row}"
    );
}

#[test]
fn bad_arguments_get_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["trace", "--pid", "abc"], "'abc' is not a process id"),
        (&["trace", "--pid", "0"], "'0' is not a process id"),
        (
            &["trace", "--backend", "bogus"],
            "invalid value 'bogus' for '--backend",
        ),
        (
            &["check", "--poll-interval", "5 parsecs"],
            "'parsecs' in '5 parsecs' is not a time unit",
        ),
        (
            &["trace", "--backend", "pidfd"],
            "pidfd can only watch given processes",
        ),
        (
            &["trace", "--backend", "netlink", "--signals"],
            "--signals needs the eBPF backend with its signal program, and netlink is in use",
        ),
        (
            &["trace", "--backend", "poll", "--pid", "999999999"],
            "--pid 999999999: no process with pid 999999999",
        ),
    ];
    for (args, expected) in cases {
        let out = supervisor(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn unprivileged_check_falls_back_and_says_why() {
    if !supervisor_tests::require_root("switching to user nobody") {
        return;
    }
    use std::os::unix::{fs::PermissionsExt as _, process::CommandExt as _};
    // A copy nobody can reach, whatever the permissions of the checkout.
    let dir = std::env::temp_dir().join(format!("supervisor-unpriv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("supervisor");
    std::fs::copy(supervisor_bin(), &bin).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.args(["check", "--json"]).current_dir(&dir);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let nobody = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[nobody])?;
            nix::unistd::setgid(nobody)?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(
        out.status.success(),
        "an unprivileged user still gets a working backend: {text}"
    );
    assert_ne!(report["selected"], "ebpf");
    let ebpf = &report["backends"][0];
    assert_eq!(ebpf["backend"], "ebpf");
    assert_eq!(ebpf["available"], false);
    let reason = ebpf["reason"].as_str().unwrap();
    assert!(
        reason.contains("root") || reason.contains("CAP_"),
        "reason names the privilege: {reason}"
    );
}
