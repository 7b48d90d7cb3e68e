//! `daemonizes = true`: programs that fork into the background and write
//! no pid file the supervisor is told of are followed through what their
//! launch leaves in the watch's cgroup: `memcached -d`, nginx with
//! `daemon on` (its master, not its workers), and a double fork whose
//! intermediate lingers. The followed process's death is a death like any
//! other; `stop` leaves nothing; a launch that fails or leaves nothing is
//! a failed start. Without cgroups, fork tracking finds it the same way.
use supervisor_tests::{ask_tcp, free_port, kill9, pid_of, poll_until, RunningDaemon, State, WAIT};

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn ppid(pid: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("PPid:\t")
                .and_then(|p| p.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn have(program: &str) -> bool {
    supervisor_tests::have_files(&[program], "nginx and memcached")
}

#[test]
fn a_double_fork_is_followed_to_the_process_that_stays() {
    // The launch exits 0 at once; what it started lingers 5 ms, then
    // starts the daemon in a session of its own and exits too.
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"forks\"\ndaemonizes = true\n\
         start = \"/bin/sh -c '(/bin/sh -c \\\"sleep 0.005; setsid sleep 1000 &\\\" &); exit 0'\"\n",
    );
    let s = d.wait_status("forks", "up", |s| s.state == State::Up);
    let pid = pid_of(&s);
    assert_eq!(
        comm(pid),
        "sleep",
        "the process that stays, not the intermediate"
    );
    assert_eq!(ppid(pid), d.pid(), "reparented to the supervisor");
    d.wait_logged(
        &format!("forks: following pid {pid}, the one process the launch left"),
        1,
    );
    // Its death is a death: a new launch, a new daemon.
    let (_, s) = d.kill_and_wait_replaced("forks");
    assert_eq!(comm(pid_of(&s)), "sleep");
    // A stop leaves nothing in its cgroup.
    d.cli(&["stop", "forks"]);
    assert!(poll_until(WAIT, || d.cgroup_pids("forks").is_empty()));
}

#[test]
fn with_fork_tracking_a_double_fork_is_followed_too() {
    let d = RunningDaemon::start_with(
        "tracking = \"fork\"",
        "[[watch]]\nname = \"forks\"\ndaemonizes = true\n\
         start = \"/bin/sh -c '(/bin/sh -c \\\"sleep 0.005; setsid sleep 1000 &\\\" &); exit 0'\"\n",
    );
    assert_eq!(
        supervisor_tests::info_of(&d.socket).unwrap().tracking,
        "fork"
    );
    let s = d.wait_status("forks", "up", |s| s.state == State::Up);
    let pid = pid_of(&s);
    assert_eq!(comm(pid), "sleep", "the process that stays");
    assert_eq!(ppid(pid), d.pid(), "reparented to the supervisor");
    d.wait_logged(
        &format!("forks: following pid {pid}, the one process the launch left"),
        1,
    );
    let (_, s) = d.kill_and_wait_replaced("forks");
    let pid = pid_of(&s);
    assert_eq!(comm(pid), "sleep");
    // A stop leaves nothing of what fork tracking saw.
    d.cli(&["stop", "forks"]);
    assert!(poll_until(WAIT, || !std::path::Path::new(&format!(
        "/proc/{pid}"
    ))
    .exists()
        || comm(pid).is_empty()));
}

#[test]
fn memcached_d_is_followed_without_a_pid_file() {
    if !have("/usr/bin/memcached") {
        return;
    }
    let port = free_port();
    let d = RunningDaemon::start(&format!(
        "[[watch]]\nname = \"cache\"\ndaemonizes = true\n\
         start = \"/usr/bin/memcached -d -u memcache -l 127.0.0.1 -p {port} -U 0\"\n"
    ));
    let s = d.wait_status("cache", "up", |s| s.state == State::Up);
    assert_eq!(comm(pid_of(&s)), "memcached");
    let version = |_: &()| ask_tcp(port, b"version\r\n").starts_with("VERSION ");
    assert!(poll_until(WAIT, || version(&())), "memcached answers");
    let (old, s) = d.kill_and_wait_replaced("cache");
    assert_ne!(pid_of(&s), old);
    assert!(poll_until(WAIT, || version(&())), "memcached answers again");
    d.cli(&["stop", "cache"]);
    assert!(poll_until(WAIT, || d.cgroup_pids("cache").is_empty()));
}

#[test]
fn nginx_with_daemon_on_is_followed_through_its_master() {
    if !have("/usr/sbin/nginx") {
        return;
    }
    let port = free_port();
    // Its pid file goes to the test's folder, and the supervisor is not
    // told of it: what it follows, it finds.
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"web\"\ndaemonizes = true\nautostart = false\n\
         start = \"/usr/sbin/nginx -c {dir}/nginx.conf\"\n",
    );
    let dir = d.config.parent().unwrap().to_owned();
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "daemon on; master_process on; worker_processes 2;\n\
             pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    d.cli(&["start", "web"]);
    let s = d.wait_status("web", "up", |s| s.state == State::Up);
    let master = pid_of(&s);
    let written: u32 = std::fs::read_to_string(dir.join("nginx.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(master, written, "the master, as nginx itself says");
    let get = |_: &()| ask_tcp(port, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200");
    assert!(poll_until(WAIT, || get(&())), "nginx answers");
    // kill -9 of the master: its workers go with it, a new master serves.
    kill9(master);
    d.wait_replaced("web", master);
    assert!(poll_until(WAIT, || get(&())), "nginx answers again");
    d.cli(&["stop", "web"]);
    assert!(poll_until(WAIT, || d.cgroup_pids("web").is_empty()));
}

#[test]
fn a_launch_that_fails_or_leaves_nothing_is_a_failed_start() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"fails\"\ndaemonizes = true\nkeepalive = false\nstart = \"/bin/sh -c 'exit 3'\"\n\n\
         [[watch]]\nname = \"nothing\"\ndaemonizes = true\nkeepalive = false\nstart = \"/bin/true\"\n\n\
         [[watch]]\nname = \"stays\"\ndaemonizes = true\nkeepalive = false\nstart_grace = \"300ms\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let error = |name: &str| {
        d.wait_status(name, "its start to fail", |s| s.last_error.is_some())
            .last_error
            .unwrap()
    };
    let fails = error("fails");
    assert!(fails.contains("the launch exited 3"), "{fails}");
    let nothing = error("nothing");
    assert!(nothing.contains("left nothing running"), "{nothing}");
    let stays = error("stays");
    assert!(stays.contains("did not exit within start_grace"), "{stays}");
    // What a failed launch left is not left running unwatched.
    assert!(poll_until(WAIT, || d.cgroup_pids("stays").is_empty()));
}
