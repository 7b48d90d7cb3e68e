//! Why did it die, and who killed it: each death a watch's process dies is
//! attributed, from what the kernel recorded when the signal was sent
//! (eBPF) or what the supervisor itself did, and says so in `status`, its
//! log and its typed exit. Real senders, real faults, real uids.
use std::os::unix::process::CommandExt as _;

use supervisor::{core_file::CoreFile, protocol::LastExitStatus};
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
    // The shell kills it and exits at once. The daemon is stopped
    // meanwhile, so that the shell is surely gone (and reaped) before the
    // death is read: the kernel program captured it anyway.
    let daemon = nix::unistd::Pid::from_raw(d.pid() as i32);
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let mut shell = std::process::Command::new("/bin/sh");
    shell.args(["-c", &format!("kill -9 {victim}")]);
    shell.uid(65534).gid(65534);
    let sh = shell.spawn().unwrap();
    let sh_pid = sh.id();
    let out = sh.wait_with_output();
    nix::sys::signal::kill(daemon, nix::sys::signal::Signal::SIGCONT).unwrap();
    let out = out.unwrap();
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
start = ["/bin/sh", "-c", "ulimit -c unlimited; exec {helper} null-read {dir}/go-null"]
dir = "{dir}"
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
    assert!(exit.status.core_dumped, "{null}");
    assert_core_where_the_pattern_puts_it(exit, d.dir.path());
    let abort = d.wait_status("abort", "its abort", |s| s.last_exit.is_some());
    assert!(
        abort
            .exit()
            .cause
            .starts_with("aborted (SIGABRT sent by itself)"),
        "{abort}"
    );
}

/// The exit's core is where this host's `core_pattern` puts it: the
/// handler of a pipe, or a file in `dir` (the watch's working directory)
/// that exists.
fn assert_core_where_the_pattern_puts_it(exit: &LastExitStatus, dir: &std::path::Path) {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    match exit.core.as_ref() {
        Some(CoreFile::Piped { handler }) => assert!(
            pattern.starts_with(&format!("|{handler}")),
            "{handler} for {pattern}"
        ),
        Some(CoreFile::File { path }) => {
            let path = std::path::Path::new(path);
            assert!(path.exists(), "{}", path.display());
            if !pattern.starts_with('/') {
                assert_eq!(path.parent(), Some(dir), "{}", path.display());
            }
        }
        other => panic!("core {other:?} for pattern {pattern:?}: {exit:?}"),
    }
}

#[test]
fn on_the_netlink_backend_a_fault_says_what_it_can_and_where_its_core_is() {
    let d = RunningDaemon::start_with(
        "backend = \"netlink\"",
        r#"
[[watch]]
name = "null"
start = ["/bin/sh", "-c", "ulimit -c unlimited; exec {helper} null-read {dir}/go"]
dir = "{dir}"
keepalive = false
"#,
    );
    d.wait_status("null", "up", |s| s.state == State::Up);
    std::fs::write(d.dir.path().join("go"), "").unwrap();
    let s = d.wait_status("null", "its fault", |s| s.last_exit.is_some());
    let exit = s.exit();
    assert_eq!(exit.status.text, "killed by SIGSEGV (core dumped)", "{s}");
    assert!(
        exit.cause.starts_with(
            "killed by SIGSEGV (core dumped) (sender unknown: the netlink backend cannot see senders)"
        ),
        "the address is unknown here, and never guessed: {s}"
    );
    assert_core_where_the_pattern_puts_it(exit, d.dir.path());
    let why = String::from_utf8_lossy(&d.cli(&["why", "null"]).stdout).to_string();
    assert!(why.contains("  core    "), "{why}");
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

#[test]
fn what_it_printed_last_and_its_history_outlive_the_daemon() {
    let mut d = RunningDaemon::start(
        r#"
[[watch]]
name = "chatty"
start = ["/bin/sh", "-c", "for i in $(seq 1 30); do echo out $i; echo err $i >&2; done; printf 'no newline'; exec sleep 1000"]
stdout = "{dir}/chatty.out"
stderr = "{dir}/chatty.err"
"#,
    );
    let err = d.dir.path().join("chatty.err");
    supervisor_tests::wait_file_contains(&err, "err 30");
    let (victim, _) = d.kill_and_wait_replaced("chatty");
    let s = d.status("chatty");
    let exit = s.exit();
    assert_eq!(exit.pid, victim);
    let expected: Vec<String> = (11..=30).map(|i| format!("err {i}")).collect();
    assert_eq!(exit.stderr, expected, "the last 20 lines of stderr: {s}");
    assert_eq!(
        exit.stdout.last().map(String::as_str),
        Some("no newline"),
        "{s}"
    );
    assert_eq!(exit.stdout.len(), 20, "{s}");
    assert!(
        exit.peak_rss.is_some_and(|b| b > 100_000),
        "what it used: {s}"
    );
    assert!(exit.cpu_secs.is_some(), "{s}");
    let why =
        |d: &RunningDaemon| String::from_utf8_lossy(&d.cli(&["why", "chatty"]).stdout).to_string();
    let before = why(&d);
    assert!(before.contains(&format!("process {victim}")), "{before}");
    assert!(
        before.contains("  stderr  err 11") && before.contains("          err 30"),
        "{before}"
    );
    assert!(before.contains("killed by SIGKILL from pid "), "{before}");
    // The daemon dies and comes back: the history is still there.
    d.kill9_and_restart();
    d.wait_status("chatty", "re-adopted", |s| s.state == State::Up);
    let after = why(&d);
    assert!(
        after.contains(&format!("process {victim}")) && after.contains("err 30"),
        "{after}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&d.cli(&["why", "chatty", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["exits"][0]["pid"], victim, "{json}");
    assert_eq!(json[0]["exits"][0]["stderr"][19], "err 30", "{json}");
}

#[test]
fn a_webhook_and_a_hook_hear_the_cause_the_sender_and_the_last_lines() {
    let receiver = supervisor_tests::WebhookReceiver::start(false);
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "app"
start = ["/bin/sh", "-c", "echo 'about to go' >&2; exec sleep 1000"]
stderr = "{{dir}}/app.err"

[[notify]]
events = ["exited"]
webhook = "{url}"
command = ["/bin/sh", "-c", "env | grep ^SUPERVISOR_ | sort > {{dir}}/hook.$SUPERVISOR_PID"]
"#,
        url = receiver.url
    ));
    supervisor_tests::wait_file_contains(&d.dir.path().join("app.err"), "about to go");
    let (old, _) = d.kill_and_wait_replaced("app");
    let doc = receiver.wait_for("app exited", |doc| doc["pid"] == old);
    let me = std::process::id();
    assert!(
        doc["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with(&format!("killed by SIGKILL from pid {me} ("))),
        "{doc}"
    );
    assert_eq!(doc["origin"]["code"], "SI_USER", "{doc}");
    assert_eq!(doc["origin"]["sender"]["pid"], me, "{doc}");
    assert_eq!(doc["stderr"][0], "about to go", "{doc}");
    let hook = d.dir.path().join(format!("hook.{old}"));
    supervisor_tests::wait_file_contains(&hook, "SUPERVISOR_TIME=");
    let env = std::fs::read_to_string(&hook).unwrap();
    for line in [
        format!("SUPERVISOR_SENDER_PID={me}"),
        "SUPERVISOR_SENDER_UID=0".to_owned(),
        "SUPERVISOR_SIGNAL_CODE=SI_USER".to_owned(),
        "SUPERVISOR_STDERR=about to go".to_owned(),
        "SUPERVISOR_EXIT_CORE_DUMPED=false".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line:?} not in {env}");
    }
    assert!(
        env.lines().any(|l| l.starts_with(&format!(
            "SUPERVISOR_CAUSE=killed by SIGKILL from pid {me} ("
        ))),
        "{env}"
    );
}

/// A daemon (with `daemon` keys) whose watch `hog` allocates past its
/// `memory_max` of 64MB, and its status once that has ended it.
fn hog_killed_at_its_limit(daemon: &str) -> (RunningDaemon, supervisor::protocol::WatchStatus) {
    let d = RunningDaemon::start_with(
        daemon,
        r#"
[[watch]]
name = "hog"
start = ["{helper}", "hog", "200"]
memory_max = "64MB"
keepalive = false
"#,
    );
    let s = d.wait_status("hog", "its OOM kill", |s| s.last_exit.is_some());
    (d, s)
}

#[test]
fn a_process_past_its_memory_max_is_killed_by_the_oom_killer_and_says_so() {
    let (d, s) = hog_killed_at_its_limit("");
    let exit = s.exit();
    assert!(
        exit.cause
            .starts_with("killed by the OOM killer: cgroup memory limit 64.0MB reached (anon RSS "),
        "{s}"
    );
    let oom = exit
        .oom
        .as_ref()
        .unwrap_or_else(|| panic!("no OOM record: {s}"));
    assert_eq!(oom.cgroup_limit, Some(64 << 20), "{s}");
    let rss = oom.anon_rss.expect("the OOM killer's view");
    assert!(rss > 32 << 20 && rss <= 64 << 20, "{s}");
    assert_eq!(exit.status.text, "killed by SIGKILL", "{s}");
    assert_eq!(
        exit.origin.as_ref().map(|o| o.code.as_str()),
        Some("SI_KERNEL"),
        "never a sender: {s}"
    );
    assert_eq!(
        exit.origin.as_ref().and_then(|o| o.sender.as_ref()),
        None,
        "{s}"
    );
    assert_eq!(s.memory_max, Some(64 << 20), "shown in status: {s}");
    let shown = String::from_utf8_lossy(&d.cli(&["status", "hog"]).stdout).to_string();
    assert!(shown.contains("limits  memory_max 64.0MB"), "{shown}");
}

#[test]
fn on_the_netlink_backend_an_oom_kill_is_told_by_the_cgroups_counter() {
    let (d, s) = hog_killed_at_its_limit("backend = \"netlink\"");
    let exit = s.exit();
    assert!(
        exit.cause.starts_with(
            "killed by the OOM killer: cgroup memory limit 64.0MB reached (counted by its cgroup)"
        ),
        "{s}"
    );
    let oom = exit.oom.as_ref().expect("an OOM report");
    assert_eq!(oom.cgroup_limit, Some(64 << 20), "{s}");
    assert_eq!(oom.anon_rss, None, "not seen here, never guessed: {s}");
    let why = String::from_utf8_lossy(&d.cli(&["why", "hog"]).stdout).to_string();
    assert!(why.contains("  oom     counted by its cgroup"), "{why}");
}

#[test]
fn a_fork_refused_by_pids_max_kills_nothing_and_its_exit_says_so() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "forky"
start = ["/bin/sh", "-c", "for i in 1 2 3 4 5; do sleep 1000 & done; wait"]
pids_max = 3
keepalive = false
"#,
    );
    let s = d.wait_status("forky", "its exit", |s| s.last_exit.is_some());
    let exit = s.exit();
    assert!(
        exit.status.code.is_some(),
        "it exited, nobody killed it: {s}"
    );
    assert!(exit.cause.contains("; pids_max 3 refused "), "{s}");
}

/// A file of `pid`'s cgroup in the v1 hierarchy of `controller` (this
/// host's kind: memory, cpu and pids are v1 here).
fn v1_cgroup_file(pid: u32, controller: &str, file: &str) -> String {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let (hierarchy, path) = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, names, path) = (parts.next()?, parts.next()?, parts.next()?);
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| (names.to_owned(), path.to_owned()))
        })
        .unwrap_or_else(|| panic!("no v1 {controller} cgroup in {cgroups}"));
    let file = format!("/sys/fs/cgroup/{hierarchy}{path}/{file}");
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn memory_limit_of(pid: u32) -> u64 {
    v1_cgroup_file(pid, "memory", "memory.limit_in_bytes")
        .trim()
        .parse()
        .unwrap()
}

fn host_has_v1(controller: &str) -> bool {
    std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .any(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|n| n.split(',').any(|n| n == controller))
        })
}

#[test]
fn a_cpu_max_throttles_a_busy_loop_and_a_load_changes_it_in_place() {
    assert!(
        host_has_v1("cpu"),
        "this test is written for a v1 cpu controller"
    );
    let watch = |max: &str| {
        format!(
            "[[watch]]\nname = \"spin\"\nstart = [\"/bin/sh\", \"-c\", \"while :; do :; done\"]\ncpu_max = \"{max}\"\n"
        )
    };
    let d = RunningDaemon::start(&watch("10%"));
    let s = d.wait_status("spin", "up", |s| s.state == State::Up);
    let pid = pid_of(&s);
    assert_eq!(s.cpu_max_percent, Some(10.0), "{s}");
    assert_eq!(
        v1_cgroup_file(pid, "cpu", "cpu.cfs_quota_us").trim(),
        "10000"
    );
    assert_eq!(
        v1_cgroup_file(pid, "cpu", "cpu.cfs_period_us").trim(),
        "100000"
    );
    let throttled = || {
        v1_cgroup_file(pid, "cpu", "cpu.stat")
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled ")?.parse::<u64>().ok())
            .expect("nr_throttled in cpu.stat")
    };
    supervisor_tests::wait_until("the kernel to throttle the loop", || throttled() > 0);
    let shown = String::from_utf8_lossy(&d.cli(&["status", "spin"]).stdout).to_string();
    assert!(shown.contains("limits  cpu_max 10%"), "{shown}");

    let more = d.write_config("more.toml", &watch("25%"));
    let out = d.cli(&["load", more.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let s = d.status("spin");
    assert_eq!((pid_of(&s), s.restarts), (pid, 0), "not restarted: {s}");
    assert_eq!(
        v1_cgroup_file(pid, "cpu", "cpu.cfs_quota_us").trim(),
        "25000"
    );
}

#[test]
fn a_memory_high_the_host_cannot_honour_fails_the_start_naming_the_key() {
    assert!(
        host_has_v1("memory"),
        "this test is written for a v1 memory controller"
    );
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"soft\"\nstart = \"/bin/sleep 1000\"\nmemory_high = \"64MB\"\n",
    );
    let s = d.wait_status("soft", "its start to fail", |s| s.last_error.is_some());
    let error = s.last_error.as_deref().unwrap();
    assert!(
        error.contains("memory_high: the memory controller is in cgroup v1 on this host, which has no memory.high"),
        "{s}"
    );
    assert_eq!(s.pid, None, "nothing started with half its limits: {s}");
}

#[test]
fn a_load_that_changes_only_a_limits_value_sets_it_in_place() {
    let watch = |max: &str| {
        format!("[[watch]]\nname = \"s\"\nstart = \"/bin/sleep 1000\"\nmemory_max = \"{max}\"\n")
    };
    let d = RunningDaemon::start(&watch("64MB"));
    let pid = pid_of(&d.wait_status("s", "up", |s| s.state == State::Up));
    assert_eq!(memory_limit_of(pid), 64 << 20, "joined before its exec");
    let bigger = d.write_config("bigger.toml", &watch("128MB"));
    let out = d.cli(&["load", bigger.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let summary: supervisor::protocol::LoadSummary =
        serde_json::from_slice(&out.stdout).expect("the load's summary");
    assert_eq!(summary.limits_changed, ["s"], "{summary:?}");
    assert!(summary.changed.is_empty(), "{summary:?}");
    let s = d.status("s");
    assert_eq!((pid_of(&s), s.restarts), (pid, 0), "not restarted: {s}");
    assert_eq!(s.memory_max, Some(128 << 20), "{s}");
    assert_eq!(memory_limit_of(pid), 128 << 20);
}
