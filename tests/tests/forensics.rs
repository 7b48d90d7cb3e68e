//! Why did it die, and who killed it: each death a watch's process dies is
//! attributed, from what the kernel recorded when the signal was sent
//! (eBPF) or what the supervisor itself did, and says so in `status`, its
//! log and its typed exit. Real senders, real faults, real uids.
use std::os::unix::process::CommandExt as _;

use supervisor_tests::{pid_of, RunningDaemon, State, StatusExt};

/// A daemon running one watch, `s`, a sleep run as `nobody`.
fn sleeper_as_nobody(daemon: &str) -> RunningDaemon {
    RunningDaemon::start_with(
        daemon,
        r#"
[[watch]]
name = "s"
start = "/bin/sleep 1000"
uid = "nobody"
"#,
    )
}

/// This test binary's comm, as the kernel truncates it.
fn own_comm() -> String {
    std::fs::read_to_string("/proc/self/comm")
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_kill_from_another_users_shell_names_the_shell_its_uid_and_parent() {
    let d = sleeper_as_nobody("");
    let victim = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    // The shell kills it and exits at once: it is gone long before the
    // death is read, and the kernel program captured it anyway.
    let mut shell = std::process::Command::new("/bin/sh");
    shell.args(["-c", &format!("kill -9 {victim}")]);
    shell.uid(65534).gid(65534);
    let sh = shell.spawn().unwrap();
    let sh_pid = sh.id();
    let out = sh.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let s = d.wait_replaced("s", victim);
    let exit = s.exit();
    let expected = format!(
        "killed by SIGKILL from pid {sh_pid} (sh, uid 65534, parent {} {})",
        own_comm(),
        std::process::id()
    );
    assert!(exit.cause.starts_with(&expected), "{s}");
    assert!(exit.cause.contains(" after "), "{s}");
    let origin = exit.origin.as_ref().expect("an origin");
    assert_eq!(origin.code, "SI_USER", "{s}");
    let sender = origin.sender.as_ref().expect("a sender");
    assert_eq!((sender.pid, sender.uid), (sh_pid, 65534), "{s}");
    assert_eq!(sender.cmdline, None, "the shell is gone: {s}");
    assert_eq!(exit.status.text, "killed by SIGKILL", "{s}");
    d.wait_log_line("the death in the log", |l| {
        l.contains(&format!("process {victim} exited: {expected}"))
    });
}

#[test]
fn a_kill_from_a_thread_names_the_senders_process_and_a_live_sender_its_command_line() {
    let d = sleeper_as_nobody("");
    let victim = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    let tid = std::thread::spawn(move || {
        // SAFETY: plain syscalls with valid arguments.
        unsafe {
            assert_eq!(libc::kill(victim as i32, libc::SIGKILL), 0);
            libc::gettid() as u32
        }
    })
    .join()
    .unwrap();
    let s = d.wait_replaced("s", victim);
    let sender = s
        .exit()
        .origin
        .as_ref()
        .and_then(|o| o.sender.as_ref())
        .unwrap_or_else(|| panic!("no sender: {s}"));
    assert_eq!(
        sender.pid,
        std::process::id(),
        "the tgid, not the thread: {s}"
    );
    assert_eq!(sender.tid, tid, "{s}");
    assert_ne!(sender.tid, sender.pid, "{s}");
    let cmdline = sender.cmdline.as_deref().unwrap_or_else(|| panic!("{s}"));
    let me = std::env::args().next().unwrap();
    assert!(cmdline.starts_with(&me), "{cmdline:?} vs {me:?}");
}

#[test]
fn the_supervisors_own_stops_say_why() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "polite"
start = "/bin/sleep 1000"

[[watch]]
name = "stubborn"
start = ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"]
stop_timeout = "300ms"
"#,
    );
    for name in ["polite", "stubborn"] {
        d.wait_status(name, "up", |s| s.state == State::Up);
        let out = d.cli(&["stop", name]);
        assert!(out.status.success(), "{out:?}");
    }
    let polite = d.status("polite");
    let cause = &polite.exit().cause;
    assert!(
        cause.starts_with("stopped by the supervisor after ")
            && cause.contains(": `stop` requested by uid 0, pid ")
            && cause.ends_with(" over the control socket"),
        "{polite}"
    );
    let stubborn = d.status("stubborn");
    let cause = &stubborn.exit().cause;
    assert!(
        cause.starts_with("killed by the supervisor after ")
            && cause
                .contains(": did not stop within stop_timeout 300ms (`stop` requested by uid 0"),
        "{stubborn}"
    );
    assert_eq!(
        stubborn.exit().status.text,
        "killed by SIGKILL",
        "{stubborn}"
    );
}

#[test]
fn a_fault_says_where_and_an_abort_says_it_was_self_sent() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "null"
start = ["{helper}", "null-read", "{dir}/go-null"]
keepalive = false

[[watch]]
name = "abort"
start = ["/bin/sh", "-c", "while [ ! -e {dir}/go-abort ]; do sleep 0.01; done; kill -ABRT $$"]
keepalive = false
"#,
    );
    for name in ["null", "abort"] {
        d.wait_status(name, "up", |s| s.state == State::Up);
        std::fs::write(d.dir.path().join(format!("go-{name}")), "").unwrap();
    }
    let null = d.wait_status("null", "its fault", |s| s.last_exit.is_some());
    let exit = null.exit();
    assert!(
        exit.cause
            .starts_with("killed by SIGSEGV: address 0x0 not mapped"),
        "{null}"
    );
    let origin = exit.origin.as_ref().expect("origin");
    assert_eq!(origin.code, "SEGV_MAPERR", "{null}");
    assert_eq!(origin.addr.as_deref(), Some("0x0"), "{null}");
    assert_eq!(origin.sender, None, "a fault has no sender: {null}");
    let abort = d.wait_status("abort", "its abort", |s| s.last_exit.is_some());
    assert!(
        abort
            .exit()
            .cause
            .starts_with("aborted (SIGABRT sent by itself)"),
        "{abort}"
    );
}

#[test]
fn the_netlink_backend_says_it_cannot_see_senders() {
    let d = sleeper_as_nobody("backend = \"netlink\"");
    let (victim, s) = d.kill_and_wait_replaced("s");
    let exit = s.exit();
    assert_eq!(exit.pid, victim);
    assert!(
        exit.cause.starts_with(
            "killed by SIGKILL (sender unknown: the netlink backend cannot see senders)"
        ),
        "{s}"
    );
    assert_eq!(exit.origin, None, "{s}");
}
