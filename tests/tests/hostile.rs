//! The daemon runs as root; the programs it watches often run as a service
//! user who owns their log and run folders, and other local users share
//! the machine. Each test here is one way such a user tried to make the
//! root daemon write, read, hang or kill for them, and asserts that it
//! does not, while the watches go on untouched.
use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::unistd::{chown, Gid, Group, Uid, User};
use serde_json::Value;
use supervisor_tests::{pid_of, report, supervisor_bin, RunningDaemon, State};

/// The unprivileged service user the watches run as (Debian's `nobody`).
fn service_user() -> (Uid, Gid) {
    let user = User::from_name("nobody").unwrap().expect("user nobody");
    let group = Group::from_name("nogroup").unwrap().expect("group nogroup");
    (user.uid, group.gid)
}

/// A folder the service user owns, reachable by it: the place where it
/// plants what it likes.
struct UserDir {
    root: tempfile::TempDir,
    path: PathBuf,
}

impl UserDir {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = root.path().join("user");
        std::fs::create_dir(&path).unwrap();
        let (uid, gid) = service_user();
        chown(&path, Some(uid), Some(gid)).unwrap();
        Self { root, path }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A symlink the user made.
    fn symlink(&self, name: &str, target: &Path) -> PathBuf {
        let link = self.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(target, &link).unwrap();
        let (uid, gid) = service_user();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(uid),
            Some(gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        link
    }

    fn fifo(&self, name: &str) -> PathBuf {
        let path = self.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        let (uid, gid) = service_user();
        chown(&path, Some(uid), Some(gid)).unwrap();
        path
    }
}

/// A root-only file with a secret in it.
fn secret(dir: &Path) -> PathBuf {
    let path = dir.join("secret");
    std::fs::write(&path, "TOP-SECRET-CONTENTS\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn assert_secret_untouched(path: &Path) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        "TOP-SECRET-CONTENTS\n",
        "the root-only file was written through"
    );
}

fn status_all(d: &RunningDaemon) -> Vec<supervisor_tests::WatchStatus> {
    let out = d.cli(&["status", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("status: {out:?}"))
}

fn quiet(name: &str) -> bool {
    !supervisor_tests::require_root(name)
}

#[test]
fn a_start_that_fails_in_the_child_says_at_which_step_and_on_what() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "nodir"
start = "/bin/sleep 1000"
dir = "/nonexistent/app"

[[watch]]
name = "noexec"
start = "{dir}/not-a-program"
"#,
    );
    std::fs::write(d.dir.path().join("not-a-program"), "not executable").unwrap();
    for (name, expected) in [
        (
            "nodir",
            "changing to its dir /nonexistent/app: No such file or directory".to_owned(),
        ),
        ("noexec", "not-a-program".to_owned()),
    ] {
        let s = d.wait_status(name, "its start to fail", |s| s.last_error.is_some());
        let error = s.last_error.as_deref().unwrap();
        assert!(error.contains(&expected), "{name}: {s}");
    }
}

#[test]
fn log_files_are_opened_as_the_watch_user_never_through_symlinks_or_fifos() {
    if quiet("running watches as another user") {
        return;
    }
    let user = UserDir::new();
    let secret = secret(user.root.path());
    let planted = user.root.path().join("cron.d-x");
    user.symlink("sym.log", &secret);
    user.symlink("new.log", &planted);
    user.fifo("fifo.log");
    let watch = |name: &str, log: &str| {
        format!(
            "[[watch]]\nname = \"{name}\"\nstart = [\"/bin/sh\", \"-c\", \"echo hello from {name}; exec sleep 1000\"]\nuid = \"nobody\"\ngid = \"nogroup\"\nstdout = {:?}\n\n",
            user.join(log)
        )
    };
    let d = RunningDaemon::start(&format!(
        "{}{}{}{}",
        watch("sym", "sym.log"),
        watch("new", "new.log"),
        watch("fifo", "fifo.log"),
        watch("ok", "ok.log")
    ));
    // The FIFO blocked nothing: every watch answers, the good one is up.
    d.wait_status("ok", "up", |s| s.state == State::Up);
    for (name, why) in [
        ("sym", "is a symbolic link"),
        ("new", "is a symbolic link"),
        ("fifo", "not a regular file"),
    ] {
        let s = d.wait_status(name, "a refused log file", |s| s.last_error.is_some());
        let error = s.last_error.as_deref().unwrap();
        assert!(
            error.contains(why) && error.contains(&format!("{name}.log")),
            "{name}: {s}"
        );
    }
    assert_secret_untouched(&secret);
    assert!(
        !planted.exists(),
        "root created a file where a symlink pointed"
    );
    // The good log was created as the user would have: theirs.
    let ok = user.join("ok.log");
    supervisor_tests::wait_file_contains(&ok, "hello from ok");
    assert_eq!(
        std::fs::metadata(&ok).unwrap().uid(),
        service_user().0.as_raw()
    );
    // Swapped for a symlink, then rotated: the reopen refuses it, the
    // process runs on.
    let before = pid_of(&d.status("ok"));
    std::fs::remove_file(&ok).unwrap();
    user.symlink("ok.log", &secret);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::SIGUSR1,
    )
    .unwrap();
    supervisor_tests::wait_until("the reopen to be refused", || {
        d.log()
            .iter()
            .any(|l| l.contains("cannot reopen log file") && l.contains("symbolic link"))
    });
    assert_secret_untouched(&secret);
    let s = d.status("ok");
    assert_eq!((s.state, pid_of(&s)), (State::Up, before));
    // `supervisor log` does not follow it either, nor print the secret.
    let out = d.cli(&["log", "ok", "--no-follow"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
        "{out:?}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("TOP-SECRET"));
    report(
        "hostile watch user: log files",
        "log path swapped for a symlink to a root-only file or to a new path, a FIFO, then a symlink at SIGUSR1 and `log`: refused, nothing written or read through, nothing blocked",
        5,
        0,
        0,
    );
}

#[test]
fn pid_files_cannot_block_exhaust_leak_or_name_another_watch() {
    if quiet("running watches as another user") {
        return;
    }
    let user = UserDir::new();
    let secret = secret(user.root.path());
    let pid_file = user.join("app.pid");
    let d = RunningDaemon::start("[[watch]]\nname = \"db\"\nstart = \"/bin/sleep 1000\"\n");
    let db = pid_of(&d.wait_status("db", "up", |s| s.state == State::Up));
    // Each launch, run as the service user, leaves something hostile where
    // its pid file should be.
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a FIFO",
            format!("mkfifo {0}; exec sleep 1000", pid_file.display()),
            "not a regular file",
        ),
        (
            "a symlink to /dev/zero",
            format!("ln -s /dev/zero {0}; exec sleep 1000", pid_file.display()),
            "is a symbolic link",
        ),
        (
            "a symlink to a root-only file",
            format!(
                "ln -s {1} {0}; exec sleep 1000",
                pid_file.display(),
                secret.display()
            ),
            "is a symbolic link",
        ),
        (
            "another watch's pid",
            format!("echo {db} > {0}; exec sleep 1000", pid_file.display()),
            "not a process this watch started",
        ),
    ];
    for (what, script, expected) in &cases {
        let config = d.write_config(
            "app.toml",
            &format!(
                r#"
[[watch]]
name = "db"
start = "/bin/sleep 1000"

[[watch]]
name = "app"
start = ["/bin/sh", "-c", {script:?}]
uid = "nobody"
gid = "nogroup"
pid_file = {pid_file:?}
start_grace = "500ms"
autostart = false
keepalive = false
"#
            ),
        );
        let out = d.cli(&["load", config.to_str().unwrap()]);
        assert!(out.status.success(), "{out:?}");
        let out = d.cli(&["start", "app"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: accepted");
        assert!(stderr.contains(expected), "{what}: {stderr}");
        assert!(!stderr.contains("TOP-SECRET"), "{what}: quoted: {stderr}");
        // Meanwhile the daemon answered: it was never blocked.
        assert_eq!(d.status("db").state, State::Up);
        let s = d.status("app");
        assert_eq!(s.state, State::Unmonitored, "{what}: {s}");
        // db was never signalled, neither by the refusal nor by a stop.
        let out = d.cli(&["stop", "app"]);
        assert!(out.status.success(), "{out:?}");
        let s = d.status("db");
        assert_eq!((s.state, pid_of(&s)), (State::Up, db), "{what}");
        let _ = std::fs::remove_file(&pid_file);
    }
    let rss = supervisor_tests::rss_kb(d.pid());
    assert!(rss < 100_000, "/dev/zero was read: RSS {rss} kB");
    report(
        "hostile watch user: pid files",
        "pid file is a FIFO, a symlink to /dev/zero, a symlink to a root-only file, another watch's pid: refused without blocking, reading or quoting, and nothing signalled",
        cases.len(),
        0,
        0,
    );
}

/// Starts `supervisor run` on `config` and waits for it to end (it should
/// refuse); returns its stderr.
fn refused_run(config: &Path, extra: &[&str]) -> String {
    let out = Command::new(supervisor_bin())
        .args(["run", "-c"])
        .arg(config)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "it started: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_state_dir_someone_else_controls_is_refused_and_forged_state_is_not_believed() {
    if quiet("chown") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    let write = |state: &Path| {
        std::fs::write(
            &config,
            format!(
                "[daemon]\nsocket = {:?}\nstate_dir = {state:?}\n[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n",
                dir.path().join("s.sock")
            ),
        )
        .unwrap();
    };
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    let (uid, gid) = service_user();
    chown(&theirs, Some(uid), Some(gid)).unwrap();
    write(&theirs);
    let stderr = refused_run(&config, &[]);
    assert!(
        stderr.contains("belongs to uid") && stderr.contains("refusing it"),
        "{stderr}"
    );
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    write(&open);
    let stderr = refused_run(&config, &[]);
    assert!(stderr.contains("writable by others"), "{stderr}");

    // A state file naming a stranger (a process outside the watch's
    // cgroup), and a temp file planted as a symlink.
    let mut stranger = Command::new("/bin/sleep").arg("1000").spawn().unwrap();
    let stat = supervisor::process::stat(supervisor::process::Pid::new(stranger.id()).unwrap())
        .unwrap()
        .unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(
        state.join("state.json"),
        format!(
            r#"{{"version":1,"watches":{{"a":{{"pid":{},"start_ticks":{},"restarts":0,"monitored":true,"last_exit":null}}}}}}"#,
            stranger.id(),
            stat.id.start.ticks()
        ),
    )
    .unwrap();
    let victim = secret(dir.path());
    std::os::unix::fs::symlink(&victim, state.join("state.json.tmp")).unwrap();
    let d = RunningDaemon::start_with(
        &format!("state_dir = {state:?}"),
        "[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let s = d.wait_status("a", "up with its own process", |s| {
        s.state == State::Up && s.pid.is_some()
    });
    assert_ne!(pid_of(&s), stranger.id(), "the stranger was re-adopted");
    d.wait_log_line("refusing the stranger", |l| {
        l.contains("not in the watch's cgroup")
    });
    // The state was written (not through the planted symlink).
    supervisor_tests::wait_until("the state file to name the new process", || {
        std::fs::read_to_string(state.join("state.json"))
            .is_ok_and(|t| t.contains(&format!("\"pid\":{}", pid_of(&s))))
    });
    assert_secret_untouched(&victim);
    assert!(d.cli(&["stop", "a"]).status.success());
    assert!(
        matches!(stranger.try_wait(), Ok(None)),
        "the stranger was signalled"
    );
    let text = std::fs::read_to_string(state.join("state.json")).unwrap();
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert!(text.contains(boot.trim()), "no boot id: {text}");
    drop(d);

    // A state file from another boot names nothing to re-adopt.
    std::fs::write(
        state.join("state.json"),
        format!(
            r#"{{"version":1,"boot_id":"00000000-0000-0000-0000-000000000000","watches":{{"a":{{"pid":{},"start_ticks":{},"restarts":3,"monitored":true,"last_exit":null}}}}}}"#,
            stranger.id(),
            stat.id.start.ticks()
        ),
    )
    .unwrap();
    let d = RunningDaemon::start_with(
        &format!("state_dir = {state:?}"),
        "[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let s = d.wait_status("a", "up", |s| s.state == State::Up && s.pid.is_some());
    assert_ne!(pid_of(&s), stranger.id());
    d.wait_log_line("refusing a pid of an earlier boot", |l| {
        l.contains("before the machine last booted")
    });
    drop(d);
    assert!(matches!(stranger.try_wait(), Ok(None)));
    let _ = stranger.kill();
    let _ = stranger.wait();
    report(
        "hostile local user: state dir",
        "state_dir owned by another user or world-writable (refused), forged state naming a stranger, a planted state.json.tmp symlink, a state file of another boot: nothing re-adopted, clobbered or signalled",
        5,
        0,
        0,
    );
}

/// Of two daemons started at once, one ends (refused) and the other runs:
/// the one running, and what the refused one said.
fn one_is_refused(
    mut a: std::process::Child,
    mut b: std::process::Child,
) -> (std::process::Child, String) {
    supervisor_tests::wait_until("one of two daemons to be refused", || {
        matches!(a.try_wait(), Ok(Some(_))) || matches!(b.try_wait(), Ok(Some(_)))
    });
    let (mut winner, refused) = if matches!(a.try_wait(), Ok(Some(_))) {
        (b, a)
    } else {
        (a, b)
    };
    let out = refused.wait_with_output().unwrap();
    assert!(matches!(winner.try_wait(), Ok(None)), "both ended");
    (winner, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn two_daemons_never_share_a_state_dir_a_socket_or_a_cgroup() {
    if quiet("cgroups") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let helper_log = dir.path().join("runs.log");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {:?}\nstate_dir = {:?}\n[[watch]]\nname = \"once\"\nstart = [\"/bin/sh\", \"-c\", \"echo $$ >> {}; exec sleep 1000\"]\n",
            dir.path().join("s.sock"),
            dir.path().join("state"),
            helper_log.display()
        ),
    )
    .unwrap();
    // Started at the same moment, on the same config.
    let spawn = || {
        Command::new(supervisor_bin())
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (mut winner, stderr) = one_is_refused(spawn(), spawn());
    assert!(stderr.contains("another supervisor"), "{stderr}");
    let cli = |args: &[&str]| {
        Command::new(supervisor_bin())
            .arg("--socket")
            .arg(dir.path().join("s.sock"))
            .args(args)
            .output()
            .unwrap()
    };
    supervisor_tests::wait_until("the watch to be up", || {
        let out = cli(&["status", "once", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains("\"state\": \"up\"")
    });
    let runs = std::fs::read_to_string(&helper_log).unwrap();
    assert_eq!(runs.lines().count(), 1, "run twice: {runs}");
    assert!(cli(&["terminate"]).status.success());
    let _ = winner.wait();

    // Sockets whose names used to give one cgroup: /X/a-b.sock, /X/a/b.sock.
    std::fs::create_dir(dir.path().join("a")).unwrap();
    let one = RunningDaemon::start_with(
        &format!("state_dir = {:?}", dir.path().join("s1")),
        "[[watch]]\nname = \"w\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let two = RunningDaemon::start_with(
        &format!("state_dir = {:?}", dir.path().join("s2")),
        "[[watch]]\nname = \"w\"\nstart = \"/bin/sleep 1000\"\n",
    );
    assert_ne!(one.instance(), two.instance());
    let p1 = pid_of(&one.wait_status("w", "up", |s| s.state == State::Up));
    let p2 = pid_of(&two.wait_status("w", "up", |s| s.state == State::Up));
    let mut one = one;
    one.kill9_and_restart();
    let s = one.wait_status("w", "re-adopted", |s| s.state == State::Up);
    assert_eq!(pid_of(&s), p1);
    assert_eq!(
        pid_of(&two.status("w")),
        p2,
        "the other daemon's process was killed"
    );

    // Two daemons on one socket with state directories of their own,
    // started at once: the socket's lock lets one through.
    let socket = dir.path().join("shared.sock");
    let spawn_on = |state: &str| {
        let config = dir.path().join(format!("{state}.toml"));
        std::fs::write(
            &config,
            format!(
                "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\n[[watch]]\nname = \"x\"\nstart = \"/bin/sleep 1000\"\n",
                dir.path().join(state)
            ),
        )
        .unwrap();
        Command::new(supervisor_bin())
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (mut winner, stderr) = one_is_refused(spawn_on("sa"), spawn_on("sb"));
    assert!(stderr.contains("is in use"), "{stderr}");
    let terminate = Command::new(supervisor_bin())
        .arg("--socket")
        .arg(&socket)
        .arg("terminate")
        .output()
        .unwrap();
    assert!(terminate.status.success(), "{terminate:?}");
    let _ = winner.wait();
    report(
        "two daemons",
        "two daemons started at once on one config (one refused, the watch run once), or on one socket with state dirs of their own (one refused); two daemons whose socket paths used to name one cgroup: each keeps its own",
        3,
        0,
        0,
    );
}

#[test]
fn notify_sockets_cannot_be_squatted_or_flooded() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "slow"
start = ["{helper}", "notify-ready", "1500"]
ready = "notify"
"#,
    );
    let s = d.wait_status("slow", "started", |s| s.pid.is_some());
    let pid = pid_of(&s);
    let name = supervisor_tests::notify_socket_of(pid);
    assert!(
        !name.ends_with("/slow") && name.len() > "supervisor/".len() + 16,
        "a guessable name: {name}"
    );
    // Another local user floods it while the process gets ready.
    use std::os::linux::net::SocketAddrExt as _;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let flooder = std::os::unix::net::UnixDatagram::unbound().unwrap();
    flooder.set_nonblocking(true).unwrap();
    let mut sent = 0;
    for _ in 0..20_000 {
        if flooder.send_to_addr(b"STATUS=flood", &address).is_ok() {
            sent += 1;
        }
    }
    assert!(sent > 100, "sent {sent}");
    let s = d.wait_status("slow", "ready despite the flood", |s| s.state == State::Up);
    assert_eq!(pid_of(&s), pid);
    let refusals = d
        .log()
        .iter()
        .filter(|l| l.contains("ignoring a notify message"))
        .count();
    assert!(refusals <= 40, "{refusals} log lines for a flood of {sent}");
    report(
        "hostile local user: notify socket",
        "the watch's NOTIFY_SOCKET has a random name; 20,000 datagrams flooded at it: the watch still becomes ready, the daemon logs a bounded few lines",
        1,
        0,
        0,
    );
}

#[test]
fn a_squatted_control_socket_is_not_believed_and_loose_configs_are_refused() {
    if quiet("binding as another user") {
        return;
    }
    let user = UserDir::new();
    // Named as a container's init names its socket in $TMPDIR.
    let socket = user.join("supervisor-rs.sock");
    // The fake server runs as the service user.
    let (uid, gid) = service_user();
    let mut fake = Command::new("setpriv")
        .args([
            &format!("--reuid={}", uid.as_raw()),
            &format!("--regid={}", gid.as_raw()),
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            "import socket,sys,os\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen()\nprint('ready',flush=True)\nwhile True:\n  c,_=s.accept(); c.recv(65536); c.sendall(b'{\"ok\":true}\\n'); c.close()",
        ])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(fake.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let out = Command::new(supervisor_bin())
        .arg("--socket")
        .arg(&socket)
        .arg("stop")
        .output()
        .unwrap();
    // Not told where, with that $TMPDIR: the squatter's socket is not
    // taken for the init's fallback.
    let defaulted = Command::new(supervisor_bin())
        .arg("status")
        .env("TMPDIR", user.join(""))
        .env_remove("SUPERVISOR_SOCKET")
        .output()
        .unwrap();
    let _ = fake.kill();
    let _ = fake.wait();
    assert!(!out.status.success(), "believed the squatter: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither root nor you"),
        "{out:?}"
    );
    let said = String::from_utf8_lossy(&defaulted.stderr);
    assert!(
        !said.contains(&socket.display().to_string()) && !said.contains("neither root nor you"),
        "went to the squatter's socket: {defaulted:?}"
    );

    // A config others may write, or a conf.d entry of another user's.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("loose.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {:?}\nstate_dir = {:?}\n[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n",
            dir.path().join("s.sock"),
            dir.path().join("state")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();
    let stderr = refused_run(&config, &["--check-config"]);
    assert!(
        stderr.contains("may be written by others") && stderr.contains("--insecure-config"),
        "{stderr}"
    );
    let ok = Command::new(supervisor_bin())
        .args(["run", "--check-config", "--insecure-config", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    chown(&config, Some(uid), Some(gid)).unwrap();
    let stderr = refused_run(dir.path(), &["--check-config"]);
    assert!(stderr.contains("belongs to uid"), "{stderr}");
    report(
        "hostile local user: control socket, config files",
        "a control socket squatted by another user (client refuses it), a config file others may write, a conf.d entry of another user's (refused without --insecure-config)",
        3,
        0,
        0,
    );
}

#[test]
fn a_dropped_watch_keeps_no_privilege_and_none_of_the_daemons_environment() {
    if quiet("dropping to another user") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // What the daemon's own service manager gave it.
    let d = RunningDaemon::start_wrapped(
        &[
            "env",
            "NOTIFY_SOCKET=@the-daemons-own",
            "LISTEN_FDS=3",
            "INVOCATION_ID=abc",
        ],
        "",
        r#"
[[watch]]
name = "plain"
start = "/bin/sleep 1000"
uid = "nobody"
gid = "nogroup"
"#,
    );
    let pid = pid_of(&d.wait_status("plain", "up", |s| s.state == State::Up));
    supervisor_tests::wait_exec(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for cap in ["CapInh", "CapPrm", "CapEff", "CapAmb"] {
        let line = status.lines().find(|l| l.starts_with(cap)).unwrap();
        assert!(line.ends_with("0000000000000000"), "{line}");
    }
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap();
    assert_eq!(
        groups.split_whitespace().skip(1).collect::<Vec<_>>(),
        vec![service_user().1.as_raw().to_string()]
    );
    // The daemon raised its own fd limit; the watch has the original.
    let limits = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/limits"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(limits(pid), limits(std::process::id()));
    let soft = |line: String| -> u64 { line.split_whitespace().nth(3).unwrap().parse().unwrap() };
    let hard = |line: String| -> u64 { line.split_whitespace().nth(4).unwrap().parse().unwrap() };
    assert!(
        soft(limits(d.pid())) >= hard(limits(std::process::id())),
        "not raised: {}",
        limits(d.pid())
    );
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for leaked in ["NOTIFY_SOCKET", "LISTEN_FDS", "INVOCATION_ID"] {
        assert!(!environ.contains(leaked), "{leaked} leaked: {environ}");
    }
    report(
        "privilege drop: what a watch keeps",
        "a uid-dropped watch: no capabilities, only its user's groups, the daemon's original fd limits, none of the daemon's NOTIFY_SOCKET/LISTEN_*/INVOCATION_ID",
        1,
        0,
        0,
    );
}

#[test]
fn three_hundred_watches_under_a_1024_fd_limit_all_run() {
    if quiet("prlimit") {
        return;
    }
    let watches: String = (0..300)
        .map(|i| format!("[[watch]]\nname = \"w{i}\"\nstart = \"/bin/sleep 1000\"\n\n"))
        .collect();
    let d = RunningDaemon::start_wrapped(&["prlimit", "--nofile=1024:1024", "--"], "", &watches);
    supervisor_tests::wait_until("300 watches up", || {
        status_all(&d)
            .iter()
            .filter(|s| s.state == State::Up)
            .count()
            == 300
    });
    let out = d.cli(&["info", "--json"]);
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    let open = info["fds"]["open"].as_u64().unwrap();
    assert!(open > 300 && open < 1024, "{info}");
    report(
        "fd limit at 1024 with 300 watches",
        "300 watches started under RLIMIT_NOFILE 1024:1024 (which it cannot raise here): cgroup files opened per use, all run",
        1,
        0,
        0,
    );
}

#[test]
fn status_into_a_closed_pipe_ends_quietly() {
    let d = RunningDaemon::start(
        &(0..200)
            .map(|i| format!("[[watch]]\nname = \"w{i}\"\nstart = \"/bin/sleep 1000\"\n\n"))
            .collect::<String>(),
    );
    d.wait_status("w199", "up", |s| s.state == State::Up);
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} status | head -1 >/dev/null",
            supervisor_bin().display(),
            d.socket.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A broken variant of `good`: cut, spliced with garbage, or a value
/// replaced by one that is out of range.
fn mangle(good: &str, dice: &mut supervisor_tests::Dice) -> String {
    const POISON: &[&str] = &[
        "\"99999999999999999999s\"",
        "\"1e400h\"",
        "\"..\"",
        "\".\"",
        "\"a@b\"",
        "99999999999999999999999",
        "-1",
        "[[[",
        "\"\\u0000\"",
        "{ above = \"99999999999999999999GB\" }",
        "\"18446744073709551616MB\"",
        "[1, 2, 3]",
    ];
    let at = |dice: &mut supervisor_tests::Dice, s: &str| {
        let mut i = dice.below(s.len() as u64 + 1) as usize;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match dice.below(4) {
        0 => good[..at(dice, good)].to_owned(),
        1 => {
            let i = at(dice, good);
            let junk = POISON[dice.below(POISON.len() as u64) as usize];
            format!("{}{junk}{}", &good[..i], &good[i..])
        }
        _ => {
            // Some value replaced.
            let lines: Vec<&str> = good.lines().collect();
            let n = dice.below(lines.len() as u64) as usize;
            let junk = POISON[dice.below(POISON.len() as u64) as usize];
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| match l.split_once('=') {
                    Some((key, _)) if i == n => format!("{key}= {junk}"),
                    _ => l.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

#[test]
fn two_hundred_bad_reloads_change_nothing_and_kill_no_daemon() {
    let watches = r#"
[[watch]]
name = "steady"
start = "/bin/sleep 1000"
stop_timeout = "5s"
memory = { above = "500MB", every = "10s" }

[[watch]]
name = "other"
start = ["/bin/sleep", "1000"]
flapping = { starts = 3, within = "1m" }
"#;
    let d = RunningDaemon::start(watches);
    let before: Vec<u32> = ["steady", "other"]
        .iter()
        .map(|n| pid_of(&d.wait_status(n, "up", |s| s.state == State::Up)))
        .collect();
    let good = std::fs::read_to_string(&d.config).unwrap();
    let mut dice = supervisor_tests::Dice::new();
    let mut sent = 0;
    while sent < 200 {
        let bad = mangle(&good, &mut dice);
        // Only files that do not load: one that does would be a real
        // reload.
        if supervisor::config::parse(&d.config, &bad).is_ok() {
            continue;
        }
        std::fs::write(&d.config, &bad).unwrap();
        let said = d.log().iter().filter(|l| l.contains("SIGHUP:")).count();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid() as i32),
            nix::sys::signal::SIGHUP,
        )
        .unwrap();
        supervisor_tests::wait_until("the reload to be refused", || {
            d.log().iter().filter(|l| l.contains("SIGHUP:")).count() > said
        });
        sent += 1;
    }
    let refused = d
        .log()
        .iter()
        .filter(|l| l.contains("SIGHUP:") && l.contains("nothing changed"))
        .count();
    assert_eq!(refused, 200, "{:?}", d.log());
    // And by `load`, a duration that used to panic the parser.
    std::fs::write(
        &d.config,
        good.replace("\"5s\"", "\"99999999999999999999s\""),
    )
    .unwrap();
    let out = d.cli(&["load", d.config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too long"),
        "{out:?}"
    );
    let after: Vec<u32> = ["steady", "other"]
        .iter()
        .map(|n| pid_of(&d.status(n)))
        .collect();
    assert_eq!(before, after, "a bad reload touched a watch");
    report(
        "bad reloads",
        "generated broken configs (cut, spliced with garbage, out-of-range values such as a 10^20 s duration) sent by SIGHUP and load: each refused, the daemon lives, no watch touched",
        201,
        0,
        0,
    );
}

#[test]
fn at_its_fd_limit_the_daemon_refuses_clients_never_a_restart() {
    if quiet("prlimit") {
        return;
    }
    let watches: String = (0..20)
        .map(|i| format!("[[watch]]\nname = \"w{i}\"\nstart = \"/bin/sleep 1000\"\n\n"))
        .collect();
    let d = RunningDaemon::start_wrapped(&["prlimit", "--nofile=128:128", "--"], "", &watches);
    let old = pid_of(&d.wait_status("w7", "up", |s| s.state == State::Up));
    // Far more idle clients than the daemon has fds for.
    let idle: Vec<_> = (0..300)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&d.socket).ok())
        .collect();
    assert!(idle.len() > 100, "{} connected", idle.len());
    supervisor_tests::kill9(old);
    // The socket is full of idle clients: the log says when it is back.
    supervisor_tests::wait_until("w7 to be started again", || {
        d.log().iter().any(|l| {
            l.contains("w7 moved 'start' to 'up'") && !l.contains(&format!("process {old} "))
        })
    });
    drop(idle);
    let s = d.wait_replaced("w7", old);
    assert_eq!(s.state, State::Up);
    let out = d.cli(&["info", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        !d.log().iter().any(|l| l.contains("start failed")),
        "a start failed for want of fds: {:?}",
        d.log()
    );
    report(
        "fd limit: clients at the limit",
        "a daemon at RLIMIT_NOFILE 128 with 300 idle clients connecting: clients past its cap are refused, a killed watch is restarted",
        1,
        0,
        0,
    );
}

#[test]
fn what_a_process_says_reaches_the_terminal_escaped() {
    let d = RunningDaemon::start(
        r#"
[[watch]]
name = "talker"
start = ["/usr/bin/python3", "-c", "import os,socket,time\na=os.environ['NOTIFY_SOCKET']\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.sendto(b'STATUS=\\x1b]0;owned\\x07\\x1b[2Jcleared\\nREADY=1','\\0'+a[1:])\ntime.sleep(1000)"]
ready = "notify"
"#,
    );
    d.wait_status("talker", "ready", |s| s.state == State::Up);
    let out = d.cli(&["status", "talker"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains('\u{1b}'),
        "an escape sequence reached the terminal: {text:?}"
    );
    assert!(text.contains("\\u{1b}[2Jcleared"), "{text}");
}
