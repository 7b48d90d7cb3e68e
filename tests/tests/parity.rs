//! What people bring from supervisord and systemd: resource limits per
//! watch (`LimitNOFILE=` and the rest) and environment files
//! (`EnvironmentFile=`), seen by the real processes through /proc.
use std::collections::HashMap;

use supervisor_tests::{kill9, pid_of, poll_until, wait_file_contains, RunningDaemon, State};

/// `/proc/PID/limits` as name → (soft, hard), e.g. "Max open files".
fn limits_of(pid: u32) -> HashMap<String, (String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Names are padded to 26 columns; the values follow.
            let (name, rest) = line.split_at_checked(26)?;
            let mut values = rest.split_whitespace();
            Some((
                name.trim().to_owned(),
                (values.next()?.to_owned(), values.next()?.to_owned()),
            ))
        })
        .collect()
}

fn environ_of(pid: u32) -> HashMap<String, String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .expect("environ")
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The children of `pid` (its threads' `children` files).
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[test]
fn limits_are_set_in_the_process_and_its_children() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"lim\"\n\
         start = \"/bin/sh -c '/bin/sleep 1000 & wait'\"\n\
         limits = { nofile = [1024, 4096], core = \"unlimited\", nproc = 512, \
         stack = \"4MB\", cpu = \"1h\", memlock = \"4MB\", fsize = \"1GB\" }\n\n\
         [[watch]]\nname = \"plain\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let s = d.wait_status("lim", "up", |s| s.state == State::Up);
    let shell = pid_of(&s);
    let mut child = Vec::new();
    assert!(
        poll_until(std::time::Duration::from_secs(10), || {
            child = children_of(shell);
            !child.is_empty()
        }),
        "the shell's sleep"
    );
    let want = [
        ("Max open files", ("1024", "4096")),
        ("Max core file size", ("unlimited", "unlimited")),
        ("Max processes", ("512", "512")),
        ("Max stack size", ("4194304", "4194304")),
        ("Max cpu time", ("3600", "3600")),
        ("Max locked memory", ("4194304", "4194304")),
        ("Max file size", ("1073741824", "1073741824")),
    ];
    for pid in [shell, child[0]] {
        let limits = limits_of(pid);
        for (name, (soft, hard)) in want {
            assert_eq!(
                limits.get(name),
                Some(&(soft.to_owned(), hard.to_owned())),
                "{name} of pid {pid}: {limits:?}"
            );
        }
    }
    // A watch without `limits` has the daemon's original nofile (the
    // daemon raised its own soft limit), not the daemon's raised one.
    let plain = limits_of(pid_of(
        &d.wait_status("plain", "up", |s| s.state == State::Up),
    ));
    let ours = limits_of(std::process::id());
    assert_eq!(plain["Max open files"], ours["Max open files"]);
}

#[test]
fn a_runtime_dir_is_made_for_the_watchs_user_and_a_symlink_there_is_refused() {
    let name = format!("supervisor-test-{}", std::process::id());
    let run = std::path::PathBuf::from("/run").join(&name);
    let _ = std::fs::remove_dir_all(&run);
    let d = RunningDaemon::start(&format!(
        "[[watch]]\nname = \"app\"\nuid = \"nobody\"\n\
         runtime_dir = [\"{name}/sockets\", \"{name}/other\"]\nruntime_dir_mode = \"2750\"\n\
         start = \"/bin/sh -c 'touch ${{RUNTIME_DIRECTORY%%:*}}/made; exec sleep 1000'\"\n\n\
         [[watch]]\nname = \"planted\"\nautostart = false\nruntime_dir = \"{name}/link\"\n\
         start = \"/bin/sleep 1000\"\n"
    ));
    let s = d.wait_status("app", "up", |s| s.state == State::Up);
    let env = environ_of(pid_of(&s));
    assert_eq!(
        env["RUNTIME_DIRECTORY"],
        format!("{}/sockets:{}/other", run.display(), run.display())
    );
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    for leaf in ["sockets", "other"] {
        let meta = std::fs::metadata(run.join(leaf)).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (nobody.uid.as_raw(), nobody.gid.as_raw())
        );
        assert_eq!(meta.permissions().mode() & 0o7777, 0o2750, "{leaf}");
    }
    // Made as the user: the process could write it.
    wait_file_contains(&run.join("sockets/made"), "");
    assert_eq!(
        std::fs::metadata(run.join("sockets/made")).unwrap().uid(),
        nobody.uid.as_raw()
    );
    // What leads to it is root's, and stays so.
    assert_eq!(std::fs::metadata(&run).unwrap().uid(), 0);
    // A symlink where the directory goes is not followed.
    let target = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(target.path(), run.join("link")).unwrap();
    d.cli(&["start", "planted"]);
    let s = d.wait_status("planted", "its start to fail", |s| s.last_error.is_some());
    let error = s.last_error.unwrap();
    assert!(error.contains("is a symlink"), "{error}");
    assert_eq!(std::fs::metadata(target.path()).unwrap().uid(), 0);
    drop(d);
    std::fs::remove_dir_all(&run).unwrap();
}

#[test]
fn env_files_are_read_at_each_start_under_env() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"app\"\nstart = \"/bin/sleep 1000\"\nautostart = false\n\
         flapping = { starts = 100, within = \"1m\" }\n\
         env_file = [\"{dir}/app.env\", \"-{dir}/absent.env\", \"{dir}/late.env\"]\n\
         env = { OVERRIDE = \"from-env\" }\n",
    );
    let dir = d.config.parent().unwrap().to_owned();
    let app = dir.join("app.env");
    let late = dir.join("late.env");
    // Written after the config was read: read at the start, not before.
    std::fs::write(&late, "LATE=yes\nGREETING=from-late\n").unwrap();
    std::fs::write(
        &app,
        "# the app\nGREETING=hello\nexport SECRET='two words'\nOVERRIDE=from-file\n",
    )
    .unwrap();
    d.cli(&["start", "app"]);
    let s = d.wait_status("app", "up", |s| s.state == State::Up);
    let env = environ_of(pid_of(&s));
    assert_eq!(env["GREETING"], "from-late", "the later file wins");
    assert_eq!(env["SECRET"], "two words");
    assert_eq!(env["LATE"], "yes");
    assert_eq!(env["OVERRIDE"], "from-env", "env wins over the files");
    // An edit applies on the next start, with no reload.
    std::fs::write(&late, "LATE=edited\n").unwrap();
    let (_, s) = d.kill_and_wait_replaced("app");
    let env = environ_of(pid_of(&s));
    assert_eq!(env["LATE"], "edited");
    assert_eq!(env["GREETING"], "hello");
    // A malformed file fails the start, naming file and line, never
    // quoting it; nothing starts with half an environment.
    std::fs::write(&app, "GREETING=hi\n\nsecret-token-without-equals\n").unwrap();
    let old = pid_of(&s);
    kill9(old);
    let s = d.wait_status("app", "its start to fail", |s| {
        s.last_error.is_some() && s.pid.is_none()
    });
    let error = s.last_error.unwrap();
    assert!(
        error.contains(&format!("env_file {}:3: not KEY=value", app.display())),
        "{error}"
    );
    assert!(!error.contains("secret-token"), "{error}");
    // Fixed, the next start takes it.
    std::fs::write(&app, "GREETING=fixed\n").unwrap();
    d.cli(&["start", "app"]);
    let s = d.wait_status("app", "up again", |s| s.state == State::Up);
    let running = pid_of(&s);
    assert_eq!(environ_of(running)["GREETING"], "fixed");
    // Removed: the running process runs on; its next start fails.
    std::fs::remove_file(&app).unwrap();
    assert_eq!(d.status("app").pid, Some(running));
    kill9(running);
    let s = d.wait_status("app", "its start to fail", |s| {
        s.last_error
            .as_deref()
            .is_some_and(|e| e.contains("No such file"))
    });
    assert!(s.last_error.unwrap().contains(&app.display().to_string()));
}

#[test]
fn an_env_file_others_may_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"app\"\nstart = \"/bin/sleep 1000\"\nautostart = false\n\
         env_file = \"{dir}/open.env\"\n",
    );
    let file = d.config.parent().unwrap().join("open.env");
    std::fs::write(&file, "LD_PRELOAD=/tmp/evil.so\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    d.cli(&["start", "app"]);
    let s = d.wait_status("app", "its start to fail", |s| s.last_error.is_some());
    let error = s.last_error.unwrap();
    assert!(error.contains("others may write it (mode 666)"), "{error}");
    assert_eq!(s.pid, None);
}

/// Whether this test process (root, as the daemon) has CAP_SYS_RESOURCE,
/// which containers and some VMs take away.
fn may_raise() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(hex.trim(), 16).unwrap() & (1 << 24) != 0
}

#[test]
fn a_hard_limit_the_kernel_would_refuse_is_a_config_error() {
    let d = RunningDaemon::start("[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n");
    let limit = |name: &str, value: &str| {
        let file = d.write_config(
            &format!("{name}.toml"),
            &format!(
                "[[watch]]\nname = \"b\"\nstart = \"/bin/true\"\nlimits = {{ {name} = {value} }}\n"
            ),
        );
        d.cli(&["load", &file.display().to_string()])
    };
    // Above fs.nr_open: refused even with CAP_SYS_RESOURCE.
    let out = limit("nofile", "2000000000");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert!(
        said.contains(
            "nofile.toml:10: watch[0].limits: nofile: 2000000000 is above the kernel's fs.nr_open"
        ),
        "{said}"
    );
    let own = limits_of(std::process::id())["Max locked memory"].1.clone();
    let out = limit("memlock", "\"64GB\"");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    if may_raise() || own == "unlimited" {
        assert!(out.status.success(), "{said}");
    } else {
        assert!(
            said.contains(&format!("memlock: 68719476736 is above the daemon's own hard limit ({own}), which only a process with CAP_SYS_RESOURCE may raise")),
            "{said}"
        );
    }
    assert_eq!(d.status("a").state, State::Up, "a bad load changes nothing");
}

/// A watch whose helper pings its watchdog (1s) until `{dir}/go`
/// exists, then does `action`; its log and the go file.
fn watchdog(action: &str) -> (RunningDaemon, std::path::PathBuf, std::path::PathBuf) {
    let d = RunningDaemon::start(&format!(
        "[[watch]]\nname = \"dog\"\nstart = [\"{{helper}}\", \"watchdog\", \"{{dir}}/go\", \"{action}\"]\n\
         watchdog = \"1s\"\nstdout = \"{{dir}}/dog.log\"\nstop_timeout = \"2s\"\n"
    ));
    let dir = d.config.parent().unwrap().to_owned();
    (d, dir.join("dog.log"), dir.join("go"))
}

#[test]
fn a_process_that_stops_pinging_its_watchdog_is_hung_and_restarted() {
    let (d, log, go) = watchdog("hang");
    let s = d.wait_status("dog", "up", |s| s.state == State::Up);
    let pid = pid_of(&s);
    let env = environ_of(pid);
    assert_eq!(env["WATCHDOG_USEC"], "1000000");
    assert!(env["NOTIFY_SOCKET"].starts_with("@supervisor/"), "{env:?}");
    // Six pings a quarter of a second apart: well past the timeout, and
    // the process is still the same one.
    wait_file_contains(&log, "ping 6\n");
    assert_eq!(d.status("dog").pid, Some(pid));
    assert_eq!(d.status("dog").restarts, 0);
    std::fs::write(&go, "").unwrap();
    let s = d.wait_replaced("dog", pid);
    let exit = s.last_exit.expect("the hung process's exit");
    assert_eq!(exit.pid, pid);
    assert_eq!(exit.status.signal.as_deref(), Some("SIGABRT"));
    assert!(
        exit.cause.ends_with(": hung: no WATCHDOG=1 for 1s"),
        "{}",
        exit.cause
    );
    d.wait_logged("hung: no WATCHDOG=1 for 1s; sending SIGABRT", 1);
}

#[test]
fn watchdog_trigger_and_watchdog_usec_do_what_systemd_says() {
    let (d, log, go) = watchdog("trigger");
    let pid = pid_of(&d.wait_status("dog", "up", |s| s.state == State::Up));
    wait_file_contains(&log, "ping 1\n");
    std::fs::write(&go, "").unwrap();
    let s = d.wait_replaced("dog", pid);
    let cause = s.last_exit.unwrap().cause;
    assert!(
        cause.ends_with(": hung: it sent WATCHDOG=trigger"),
        "{cause}"
    );

    let (d, log, go) = watchdog("usec:3000000");
    let pid = pid_of(&d.wait_status("dog", "up", |s| s.state == State::Up));
    wait_file_contains(&log, "ping 1\n");
    std::fs::write(&go, "").unwrap();
    wait_file_contains(&log, "usec:3000000\n");
    let s = d.wait_replaced("dog", pid);
    let exit = s.last_exit.unwrap();
    assert!(
        exit.cause.ends_with(": hung: no WATCHDOG=1 for 3s"),
        "{}",
        exit.cause
    );
    assert!(exit.lifetime_secs.unwrap() >= 3.0, "{exit:?}");
}

/// A port `p` with `p..p+count` all free now.
fn free_ports(count: u16) -> u16 {
    for _ in 0..100 {
        let base = supervisor_tests::free_port();
        if base.checked_add(count).is_none() {
            continue;
        }
        let all: Vec<_> = (base..base + count)
            .map(|p| std::net::TcpListener::bind(("127.0.0.1", p)))
            .collect();
        if all.iter().all(Result::is_ok) {
            return base;
        }
    }
    panic!("no {count} free ports in a row");
}

/// Whether 127.0.0.1:`port` answers HTTP with 200.
fn answers(port: u16) -> bool {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.write_all(b"GET / HTTP/1.0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
}

#[test]
fn instances_run_one_process_each_and_a_reload_changes_only_the_difference() {
    let base = free_ports(5);
    let web = |count: u32| {
        format!(
            "[[watch]]\nname = \"web\"\ninstances = {count}\ngroup = \"front\"\n\
             start = [\"{{helper}}\", \"http\", \"{{{base} + instance}}\"]\n\
             env = {{ ME = \"{{name}}\" }}\n\n\
             [[watch]]\nname = \"client\"\nstart = \"/bin/sleep 1000\"\nafter = [\"web\"]\n"
        )
    };
    let d = RunningDaemon::start(&web(3));
    for i in 0..3 {
        let s = d.wait_status(&format!("web@{i}"), "up", |s| s.state == State::Up);
        assert_eq!(s.group.as_deref(), Some("front"));
        assert_eq!(environ_of(pid_of(&s))["ME"], format!("web@{i}"));
        assert!(
            poll_until(std::time::Duration::from_secs(10), || answers(base + i)),
            "web@{i} answers on {}",
            base + i
        );
    }
    // The base name names them all; the client started after all three.
    assert_eq!(names_of(&d, "web"), ["web@0", "web@1", "web@2"]);
    d.wait_status("client", "up", |s| s.state == State::Up);
    d.assert_logged_in_order(
        "web@2 moved 'start' to 'up'",
        "client moved 'start' to 'up'",
    );
    let out = d.cli(&["stop", "web@1"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(d.status("web@1").state, State::Unmonitored);
    assert!(!answers(base + 1));
    assert!(answers(base) && answers(base + 2));
    // Five: exactly two more start; the stopped one stays stopped.
    let five = d.write_config("five.toml", &web(5));
    let out = d.cli(&["load", &five.display().to_string()]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load's JSON");
    assert_eq!(
        summary["added"],
        serde_json::json!(["web@3", "web@4"]),
        "{summary}"
    );
    assert_eq!(summary["changed"], serde_json::json!([]), "{summary}");
    assert_eq!(
        summary["unchanged"].as_array().map(Vec::len),
        Some(4),
        "{summary}"
    );
    for i in 3..5 {
        d.wait_status(&format!("web@{i}"), "up", |s| s.state == State::Up);
        assert!(poll_until(std::time::Duration::from_secs(10), || answers(
            base + i
        )));
    }
    assert_eq!(d.status("web@1").state, State::Unmonitored);
    // Two: the three beyond are stopped and removed, whatever --missing.
    let kept = pid_of(&d.status("web@0"));
    let two = d.write_config("two.toml", &web(2));
    let out = d.cli(&["load", &two.display().to_string()]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("load's JSON");
    assert_eq!(
        summary["dropped"],
        serde_json::json!(["web@2", "web@3", "web@4"]),
        "{summary}"
    );
    assert_eq!(summary["missing"], serde_json::json!([]), "{summary}");
    supervisor_tests::wait_until("the dropped instances to go", || {
        names_of(&d, "web") == ["web@0", "web@1"]
    });
    assert!(!answers(base + 4));
    assert_eq!(d.status("web@0").pid, Some(kept), "web@0 untouched");
}

/// The watches `status TARGET` shows, by name.
fn names_of(d: &RunningDaemon, target: &str) -> Vec<String> {
    let out = d.cli(&["status", "--json", target]);
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json");
    all.as_array()
        .expect("an array")
        .iter()
        .map(|w| w["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn on_failure_restarts_a_failure_after_restart_delay_and_not_a_success() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"job\"\nkeepalive = \"on-failure\"\nsuccess_codes = [0, 3]\n\
         restart_delay = \"1s\"\nautostart = false\n\
         start = \"/bin/sh -c 'read code < {dir}/code; exit $code'\"\n",
    );
    let code = d.config.parent().unwrap().join("code");
    std::fs::write(&code, "1\n").unwrap();
    d.cli(&["start", "job"]);
    // Exit 1, a failure: started again, a second later.
    let s = d.wait_status("job", "a failure's restart", |s| {
        s.restarts >= 1 && s.exits.len() >= 2
    });
    let (first, second) = (&s.exits[0], &s.exits[1]);
    assert_eq!(first.status.code, Some(1));
    let restarted_at = second.at - second.lifetime_secs.expect("its lifetime");
    assert!(
        restarted_at - first.at >= 1.0,
        "restart_delay: {} s between the death and the next start",
        restarted_at - first.at
    );
    // Exit 3, a success here: not started again.
    std::fs::write(&code, "3\n").unwrap();
    let s = d.wait_status("job", "a clean end", |s| s.state == State::Unmonitored);
    assert_eq!(s.last_exit.expect("its exit").status.code, Some(3));
    d.wait_logged("not started again (keepalive = \"on-failure\")", 1);
}

#[test]
fn stderr_with_stdout_keeps_their_order_and_timestamps_say_when_each_line_came() {
    let before = jiff::Timestamp::now();
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"chatty\"\nstdout = \"{dir}/out.log\"\nstderr = \"&stdout\"\n\
         timestamps = true\n\
         start = \"/bin/sh -c 'for i in 1 2 3 4 5; do echo out-$i; echo err-$i >&2; done; \
         printf half-; sleep 0.3; echo line; exec sleep 1000'\"\n",
    );
    let log = d.config.parent().unwrap().join("out.log");
    wait_file_contains(&log, "half-line\n");
    let after = jiff::Timestamp::now();
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(jiff::Timestamp, &str)> = text
        .lines()
        .map(|l| {
            let (stamp, rest) = l.split_once(' ').expect("a stamp, then the line");
            assert_eq!(stamp.len(), "2026-12-02T02:40:00.123456Z".len(), "{l}");
            (stamp.parse().expect("an RFC 3339 stamp"), rest)
        })
        .collect();
    let words: Vec<&str> = lines.iter().map(|(_, w)| *w).collect();
    assert_eq!(
        words,
        [
            "out-1",
            "err-1",
            "out-2",
            "err-2",
            "out-3",
            "err-3",
            "out-4",
            "err-4",
            "out-5",
            "err-5",
            "half-line"
        ],
        "one pipe keeps the order; a line written in two parts is one line"
    );
    for pair in lines.windows(2) {
        assert!(pair[0].0 <= pair[1].0, "monotonic: {text}");
    }
    assert!(
        lines[0].0 >= before && lines.last().unwrap().0 <= after,
        "{text}"
    );
    // The half line is stamped when it began, not 0.3 s later when it
    // ended.
    let began = lines[10].0.as_microsecond() - lines[9].0.as_microsecond();
    assert!(began < 250_000, "{began} µs after err-5: {text}");
    let s = d.status("chatty");
    assert_eq!(s.stdout, s.stderr, "stderr is shown at stdout's path");
}

/// `PATH` and its rotated `PATH.n` that exist, newest first.
fn rotated(path: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut all = vec![path.to_owned()];
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        let file = std::path::PathBuf::from(name);
        if !file.exists() {
            break;
        }
        all.push(file);
    }
    all
}

#[test]
fn rotation_by_size_keeps_every_line_once_and_whole_and_only_its_backups() {
    // 400,000 numbered lines of 64 bytes: 25 MB through the daemon.
    const LINES: usize = 400_000;
    let d = RunningDaemon::start(&format!(
        "[[watch]]\nname = \"chatty\"\nkeepalive = false\n\
         stdout = {{ path = \"{{dir}}/out.log\", max_size = \"1MB\", backups = 40 }}\n\
         start = [\"/usr/bin/awk\", \"BEGIN {{ for (i = 0; i < {LINES}; i++) printf \\\"line %08d %s\\\\n\\\", i, \\\"abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklm\\\" }}\"]\n\n\
         [[watch]]\nname = \"few\"\nkeepalive = false\n\
         stdout = {{ path = \"{{dir}}/few.log\", max_size = \"64KB\", backups = 2 }}\n\
         start = [\"/usr/bin/awk\", \"BEGIN {{ for (i = 0; i < 100000; i++) print i }}\"]\n"
    ));
    let dir = d.config.parent().unwrap().to_owned();
    d.wait_status("chatty", "its end", |s| {
        s.state == State::Unmonitored && s.last_exit.is_some()
    });
    d.wait_status("few", "its end", |s| {
        s.state == State::Unmonitored && s.last_exit.is_some()
    });
    // The process is seen gone before the daemon's writer has written all
    // it left (the writes are off the loop); its last line comes last.
    wait_file_contains(&dir.join("out.log"), &format!("line {:08} ", LINES - 1));
    wait_file_contains(&dir.join("few.log"), "99999\n");
    let files = rotated(&dir.join("out.log"));
    assert!(files.len() > 20, "{} files", files.len());
    let mut seen = vec![false; LINES];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.len() as u64 <= 1024 * 1024,
            "{file:?}: {} bytes",
            text.len()
        );
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{file:?} ends mid-line"
        );
        for line in text.lines() {
            assert_eq!(line.len(), 63, "a whole line: {line:?} in {file:?}");
            let n: usize = line[5..13].parse().unwrap();
            assert!(!seen[n], "line {n} twice");
            seen[n] = true;
        }
    }
    assert!(seen.iter().all(|s| *s), "every line is somewhere");
    // Two backups only: few.log, few.log.1, few.log.2.
    let few = rotated(&dir.join("few.log"));
    assert_eq!(few.len(), 3, "{few:?}");
    assert!(!dir.join("few.log.3").exists());
    let s = d.status("chatty");
    assert_eq!(s.stdout, Some(dir.join("out.log")), "status shows the path");
}

#[test]
fn log_follows_a_file_across_its_rotations_missing_no_line() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"chatty\"\nkeepalive = false\n\
         stdout = { path = \"{dir}/out.log\", max_size = \"4KB\", backups = 200 }\n\
         start = \"/bin/sh -c 'echo ready; while [ ! -e {dir}/go ]; do sleep 0.01; done; \
         i=0; while [ $i -lt 5000 ]; do echo line-$i; i=$((i+1)); done; exec sleep 1000'\"\n",
    );
    let dir = d.config.parent().unwrap().to_owned();
    let log = dir.join("out.log");
    wait_file_contains(&log, "ready\n");
    let seen = dir.join("followed.txt");
    let mut follower = std::process::Command::new(supervisor_tests::supervisor_bin())
        .arg("--socket")
        .arg(&d.socket)
        .args(["log", "chatty", "-n", "1"])
        .stdout(std::fs::File::create(&seen).unwrap())
        .spawn()
        .unwrap();
    // It has the file open once it has printed its last line.
    wait_file_contains(&seen, "ready\n");
    std::fs::write(dir.join("go"), "").unwrap();
    wait_file_contains(&seen, "line-4999\n");
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(rotated(&log).len() > 5, "it was rotated many times");
    let text = std::fs::read_to_string(&seen).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let want: Vec<String> = std::iter::once("ready".to_owned())
        .chain((0..5000).map(|i| format!("line-{i}")))
        .collect();
    assert_eq!(lines, want, "every line once, in order");
}
