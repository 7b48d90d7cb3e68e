//! `supervisor import` on real files: Debian's supervisord.conf (with a
//! conf.d of programs), and the units Debian's nginx, memcached and redis
//! packages ship. Each result loads (`run --check-config`), and the
//! imported nginx, memcached, redis and programs run under the daemon.
use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use supervisor_tests::{
    ask_tcp, free_port, kill9, pid_of, poll_until, supervisor_bin, wait_file_contains,
    RunningDaemon, State,
};

fn import(file: &Path, json: bool) -> Output {
    let mut command = Command::new(supervisor_bin());
    command.arg("import").arg(file);
    if json {
        command.arg("--json");
    }
    command.output().expect("running supervisor import")
}

/// `run --check-config` on `toml`, written into `dir`.
fn check_config(dir: &Path, toml: &str) -> Output {
    let file = dir.join("imported.toml");
    std::fs::write(&file, toml).unwrap();
    Command::new(supervisor_bin())
        .args(["run", "--check-config", "-c"])
        .arg(&file)
        .output()
        .unwrap()
}

/// The files Debian's packages ship.
fn have(files: &[&str]) -> bool {
    supervisor_tests::have_files(files, "supervisor, nginx, memcached, redis-server")
}

/// The line `needle` is on in `text`, counting from 1.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(needle))
        .expect(needle)
        + 1
}

#[test]
fn debians_supervisord_conf_with_its_includes_imports_and_runs() {
    const DEBIAN: &str = "/etc/supervisor/supervisord.conf";
    if !have(&[DEBIAN]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    // Debian's own file, its include pointed at a conf.d of our programs.
    let debian = std::fs::read_to_string(DEBIAN).unwrap();
    let main = dir.path().join("supervisord.conf");
    std::fs::write(
        &main,
        debian.replace("/etc/supervisor/conf.d", &conf_d.display().to_string()),
    )
    .unwrap();
    let base = free_port();
    let helper = supervisor_tests::built_binary("exit-helper");
    let web = format!(
        "[program:web]\ncommand={} http %(process_num)d\nnumprocs=2\nnumprocs_start={base}\n\
         process_name=%(program_name)s_%(process_num)02d\nautorestart=true\nstopsignal=TERM\n\
         stopwaitsecs=5\nstdout_logfile=%(here)s/web-%(process_num)d.log\nstdout_logfile_maxbytes=1MB\n\n\
         [program:quiet]\ncommand=/bin/sleep 1000\nautorestart=unexpected\nexitcodes=0,3\n\
         startretries=2\nstartsecs=1\n\n[group:shop]\nprograms=web,quiet\n",
        helper.display()
    );
    std::fs::write(conf_d.join("web.conf"), &web).unwrap();
    let out = import(&main, true);
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["watches"], serde_json::json!(["web", "quiet"]));
    let skipped = report["skipped"].as_array().unwrap();
    let said = |file: &Path, line: usize, what: &str| {
        skipped.iter().any(|s| {
            s["file"] == file.display().to_string()
                && s["line"] == line
                && s["what"].as_str().unwrap().starts_with(what)
        })
    };
    for section in [
        "[unix_http_server]",
        "[supervisord]",
        "[rpcinterface:supervisor]",
        "[supervisorctl]",
    ] {
        let line = line_of(&debian, section);
        assert!(
            said(&main, line, section),
            "{section} at {main:?}:{line} in {skipped:?}"
        );
    }
    let toml = report["toml"].as_str().unwrap();
    let checked = check_config(dir.path(), toml);
    assert!(checked.status.success(), "{checked:?}\n{toml}");
    assert!(
        toml.contains(&format!(
            "start = \"{} http {{{base} + instance}}\"",
            helper.display()
        )),
        "{toml}"
    );
    assert!(
        toml.contains("keepalive = \"on-failure\"\nsuccess_codes = [0, 3]"),
        "{toml}"
    );
    // And it runs: two HTTP servers on base and base + 1, in group shop.
    let d = RunningDaemon::start(toml);
    for i in 0..2u16 {
        let s = d.wait_status(&format!("web@{i}"), "up", |s| s.state == State::Up);
        assert_eq!(s.group.as_deref(), Some("shop"));
        assert!(
            poll_until(std::time::Duration::from_secs(10), || {
                ask_tcp(base + i, b"GET / HTTP/1.0\r\n\r\n").contains(" 200 ")
            }),
            "web@{i} on {}",
            base + i
        );
    }
    assert_eq!(d.status("quiet").group.as_deref(), Some("shop"));
}

#[test]
fn debians_nginx_memcached_and_redis_units_import_and_run() {
    let units = [
        "/lib/systemd/system/nginx.service",
        "/lib/systemd/system/memcached.service",
        "/lib/systemd/system/redis-server.service",
    ];
    if !have(&units) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut running = String::new();
    for unit in units {
        let out = import(Path::new(unit), false);
        let toml = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            toml.starts_with("# Imported by `supervisor import` from"),
            "{toml}"
        );
        let mut toml = toml;
        if unit.contains("redis") {
            // Its LimitNOFILE=65535 loads where the daemon may raise its
            // hard limit; elsewhere import says why it does not, and the
            // limit is lowered to the daemon's own, as an operator would.
            let checked = check_config(dir.path(), &toml);
            assert_eq!(out.status.success(), checked.status.success(), "{stderr}");
            assert!(toml.contains("ready = \"notify\""), "{toml}");
            assert!(toml.contains("runtime_dir = [\"redis\"]"), "{toml}");
            assert!(toml.contains("runtime_dir_mode = \"2755\""), "{toml}");
            if !out.status.success() {
                assert!(
                    stderr.contains("watch[0].limits: nofile: 65535"),
                    "{stderr}"
                );
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: getrlimit writes the struct it is given.
                assert_eq!(
                    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
                    0
                );
                let hard = limit.rlim_max;
                toml = toml.replace(
                    "limits = { nofile = 65535 }",
                    &format!("limits = {{ nofile = {hard} }}"),
                );
                let checked = check_config(dir.path(), &toml);
                assert!(checked.status.success(), "{checked:?}\n{toml}");
                running.push_str(&toml);
                continue;
            }
        }
        assert!(out.status.success(), "{unit}: {stderr}\n{toml}");
        let checked = check_config(dir.path(), &toml);
        assert!(checked.status.success(), "{unit}: {checked:?}\n{toml}");
        running.push_str(&toml);
    }
    assert!(
        running.contains("pid_file = \"/run/nginx.pid\""),
        "{running}"
    );
    assert!(
        running.contains("ExecStartPre=/usr/sbin/nginx -t"),
        "{running}"
    );
    let d = RunningDaemon::start(&running);
    {
        // Up once it said READY=1 (Type=notify), as user redis, in the
        // /run/redis made for it.
        d.wait_status("redis-server", "up", |s| s.state == State::Up);
        assert!(
            poll_until(std::time::Duration::from_secs(10), || {
                ask_tcp(6379, b"PING\r\n").starts_with("+PONG")
            }),
            "redis answers"
        );
        let run = std::fs::metadata("/run/redis").unwrap();
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let redis = nix::unistd::User::from_name("redis").unwrap().unwrap();
        assert_eq!(run.uid(), redis.uid.as_raw());
        assert_eq!(run.permissions().mode() & 0o7777, 0o2755);
        wait_file_contains(Path::new("/run/redis/redis-server.pid"), "\n");
    }
    d.wait_status("memcached", "up", |s| s.state == State::Up);
    assert!(
        poll_until(std::time::Duration::from_secs(10), || {
            ask_tcp(11211, b"version\r\n").starts_with("VERSION ")
        }),
        "memcached answers"
    );
    let s = d.wait_status("nginx", "up", |s| s.state == State::Up);
    let http = |_: &()| ask_tcp(80, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200");
    assert!(
        poll_until(std::time::Duration::from_secs(10), || http(&())),
        "nginx answers"
    );
    // The master it followed through its pid file dies: a new one serves.
    let master = pid_of(&s);
    kill9(master);
    d.wait_replaced("nginx", master);
    assert!(
        poll_until(std::time::Duration::from_secs(10), || http(&())),
        "nginx again"
    );
}

#[test]
fn a_template_unit_becomes_instances_and_a_bad_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("worker@.service");
    std::fs::write(
        &unit,
        "[Service]\nExecStart=/bin/sleep 100%i\nRestart=on-failure\nRestartSec=2\nLimitNOFILE=1024:2048\nWatchdogSec=30\nOOMScoreAdjust=200\n",
    )
    .unwrap();
    let out = import(&unit, false);
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "name = \"worker\"",
        "instances = 1",
        "start = \"/bin/sleep 100{instance}\"",
        "keepalive = \"on-failure\"",
        "restart_delay = \"2000ms\"",
        "limits = { nofile = [1024, 2048] }",
        "watchdog = \"30000ms\"",
        "oom_score_adj = 200",
    ] {
        assert!(toml.contains(line), "{line} in\n{toml}");
    }
    assert!(
        toml.contains("a template: set instances to how many"),
        "{toml}"
    );
    let bad: PathBuf = dir.path().join("bad.conf");
    std::fs::write(&bad, "[program:x]\ncommand=/bin/true\nthis is not a key\n").unwrap();
    let out = import(&bad, false);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:3: not 'key = value'", bad.display())),
        "{stderr}"
    );
}
