//! What the end-to-end tests share: the helper process, the real binary,
//! and the rule for kernel backends that cannot run (fail under CI, skip
//! loudly elsewhere).
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

pub mod bench;

pub use supervisor::protocol::{
    ConditionStatus, HealthStatus, LastExitStatus, ProbeStatus, State, WatchStatus,
};
use supervisor::{
    backend::{Backend, BackendKind, Options},
    exit::ExitEvent,
    process::{self, Pid, ProcessId},
};

/// CLOCK_MONOTONIC in nanoseconds: the clock the kernel stamps exits with.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The one bounded wait every other is built on: looks at `done` every
/// few milliseconds until it holds (true) or `limit` is over (false). For
/// conditions no event announces (a file a process writes, a process
/// appearing, a state the daemon reports when asked).
pub fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits, at most `WAIT`, until `done` holds; fails naming `what`.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_within(WAIT, what, done);
}

/// Waits, at most `limit` (for what takes longer than `WAIT`: thousands
/// of watches), until `done` holds; fails naming `what`.
pub fn wait_within(limit: Duration, what: &str, done: impl FnMut() -> bool) {
    assert!(
        poll_until(limit, done),
        "{what} did not happen within {limit:?}"
    );
}

/// Waits until `path` exists and contains `text`.
pub fn wait_file_contains(path: &std::path::Path, text: &str) {
    wait_until(&format!("{} containing {text:?}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|t| t.contains(text))
    });
}

/// How long any awaited event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether every one of `files` (what Debian packages install) is there.
/// CI installs them (`cargo xtask test`, naming `packages`), so there a
/// missing one fails the test; elsewhere it is skipped with a loud note.
pub fn have_files(files: &[&str], packages: &str) -> bool {
    let missing: Vec<&str> = files
        .iter()
        .copied()
        .filter(|f| !std::path::Path::new(f).exists())
        .collect();
    assert!(
        missing.is_empty() || !in_ci(),
        "{missing:?} missing (cargo xtask test installs {packages})"
    );
    if !missing.is_empty() {
        eprintln!("\n!!! SKIPPED: {missing:?} missing (install {packages})\n");
    }
    missing.is_empty()
}

/// Opens `kind` for a test. Under CI a backend that cannot open fails the
/// test with its reason; elsewhere the test is skipped with a loud note.
pub fn open_backend_with(kind: BackendKind, options: &Options) -> Option<Backend> {
    match Backend::open(kind, options) {
        Ok(b) => Some(b),
        Err(e) if in_ci() || kind == BackendKind::Pidfd || kind == BackendKind::Poll => {
            panic!("backend {kind} cannot run here: {e:#}")
        }
        Err(e) => {
            eprintln!("\n!!! SKIPPED: backend {kind} cannot run here: {e:#}\n!!! (under CI=true this fails)\n");
            None
        }
    }
}

/// Like `open_backend_with`, for tests that need root (pid reuse, ...).
pub fn require_root(what: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if in_ci() {
        panic!("{what} needs root, and CI runs as root");
    }
    eprintln!("\n!!! SKIPPED: {what} needs root\n");
    false
}

/// Forces `pid` to be handed to the next fork (root only), retrying when
/// another fork on the machine takes it first.
pub fn spawn_with_pid(pid: Pid) -> Helper {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid.get() - 1).to_string())
            .expect("writing ns_last_pid");
        let h = Helper::spawn(&["block"]);
        if h.pid() == pid {
            return h;
        }
    }
    panic!("could not get pid {pid} reused in 200 tries");
}

/// A running `exit-helper`.
pub struct Helper {
    pub child: Child,
    pub id: ProcessId,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    /// Starts the helper with `args` and waits for it to say it is ready.
    pub fn spawn(args: &[&str]) -> Self {
        let mut child = Command::new(built_binary("exit-helper"))
            .args(args)
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning exit-helper");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let id = process::identify(Pid::from_child(&child)).expect("helper runs");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("reading helper stdout");
        assert_eq!(line.trim(), "ready", "exit-helper {args:?} did not start");
        Self {
            child,
            id,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> Pid {
        self.id.pid
    }

    /// Tells the helper to do what it was started for.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(b"go\n").expect("writing to helper");
        stdin.flush().expect("flushing helper stdin");
    }

    pub fn kill(&mut self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(self.pid().as_nix(), signal).expect("kill");
    }

    /// Waits (bounded) until the main thread has exited: the process is a
    /// zombie, or lives on in its other threads.
    pub fn wait_main_thread_exited(&mut self) {
        let pid = self.pid();
        wait_until(&format!("the main thread of {pid} to exit"), || {
            process::stat(pid)
                .expect("stat")
                .expect("process exists")
                .has_exited()
        });
    }

    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("reading helper stdout");
        line
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The next exit event, or a test failure naming what was awaited.
pub async fn next_exit(backend: &mut Backend, what: &str) -> ExitEvent {
    match tokio::time::timeout(WAIT, backend.next_exit()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!(
            "backend {} failed while waiting for {what}: {e:#}",
            backend.kind()
        ),
        Err(_) => panic!(
            "no exit event for {what} within {WAIT:?} ({} backend)",
            backend.kind()
        ),
    }
}

/// Proves nothing else is queued: watches a fresh process, kills it, and
/// asserts that the next event is that one.
pub async fn assert_nothing_before_sentinel(backend: &mut Backend, context: &str) {
    let mut sentinel = Helper::spawn(&["block"]);
    backend.watch(sentinel.id).expect("watch sentinel");
    sentinel.kill(nix::sys::signal::Signal::SIGKILL);
    let event = next_exit(backend, "the sentinel").await;
    assert_eq!(
        event.pid,
        sentinel.pid(),
        "{context}: expected only the sentinel's exit, got {event:?}"
    );
}

/// What `info` says of the daemon on `socket`, if one answers there.
pub fn info_of(socket: &std::path::Path) -> Option<supervisor::protocol::DaemonInfo> {
    let request = supervisor::protocol::Request::Info;
    match block_on(supervisor::control::request(socket, &request))
        .ok()?
        .summary?
    {
        supervisor::protocol::Summary::Info(info) => Some(*info),
        _ => None,
    }
}

/// A current-thread tokio runtime for one test.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The `supervisor` binary under test: `SUPERVISOR_BIN`, else the one
/// cargo built next to this test.
pub fn supervisor_bin() -> PathBuf {
    match std::env::var_os("SUPERVISOR_BIN") {
        Some(path) => path.into(),
        None => built_binary("supervisor"),
    }
}

/// A binary of this workspace, built into the same target/<profile> folder
/// as the running test (target/<profile>/deps/<test>).
pub fn built_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().expect("current_exe");
    let candidate = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("test binary lives in target/<profile>/deps");
    assert!(
        candidate.exists(),
        "{} not found: build the workspace first (`cargo xtask test` does)",
        candidate.display()
    );
    candidate
}

/// A `supervisor run` on a config of the test's, with its own socket.
pub struct RunningDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// The `[daemon]` table every config of this daemon starts with.
    header: String,
    /// What the daemon is run through.
    wrapper: Vec<String>,
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RunningDaemon {
    /// Writes `watches` (TOML `[[watch]]` tables) under a `[daemon]` table
    /// of its own, starts the daemon and waits until it serves its socket.
    pub fn start(watches: &str) -> Self {
        Self::start_with("", watches)
    }

    /// Like `start`, with more `[daemon]` keys. In `watches`, `{dir}` is
    /// the daemon's temporary folder and `{helper}` the exit-helper.
    pub fn start_with(daemon: &str, watches: &str) -> Self {
        Self::start_wrapped(&[], daemon, watches)
    }

    /// Like `start_with`, the daemon run through `wrapper` (a command that
    /// runs its arguments, e.g. `setpriv ... --`).
    pub fn start_wrapped(wrapper: &[&str], daemon: &str, watches: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("supervisor.sock");
        let config = dir.path().join("supervisor.toml");
        // The test's folder holds the state unless `daemon` says otherwise.
        let state_dir = if daemon.contains("state_dir") {
            String::new()
        } else {
            format!("state_dir = {:?}\n", dir.path())
        };
        let header =
            format!("[daemon]\nsocket = {socket:?}\n{state_dir}log_level = \"info\"\n{daemon}\n\n");
        std::fs::write(&config, Self::expand(&header, dir.path(), watches))
            .expect("writing config");
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        let (child, log) = Self::launch(&wrapper, &config, &socket);
        Self {
            wrapper,
            dir,
            socket,
            config,
            header,
            child,
            log,
        }
    }

    fn expand(header: &str, dir: &std::path::Path, watches: &str) -> String {
        format!("{header}{watches}")
            .replace("{dir}", &dir.display().to_string())
            .replace(
                "{helper}",
                &built_binary("exit-helper").display().to_string(),
            )
    }

    /// Writes another config with the same `[daemon]` table; returns its path.
    pub fn write_config(&self, file: &str, watches: &str) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, Self::expand(&self.header, self.dir.path(), watches))
            .expect("writing config");
        path
    }

    /// SIGKILLs the daemon (its processes live on) and starts a new one on
    /// the same config and state.
    pub fn kill9_and_restart(&mut self) {
        self.kill9_and_restart_with(|| ());
    }

    /// Like `kill9_and_restart`, doing `meanwhile` while no daemon runs.
    pub fn kill9_and_restart_with(&mut self, meanwhile: impl FnOnce()) {
        self.child.kill().expect("SIGKILL the daemon");
        self.child.wait().expect("reap the daemon");
        meanwhile();
        let (child, log) = Self::launch(&self.wrapper, &self.config, &self.socket);
        self.child = child;
        self.log = log;
    }

    /// Starts the daemon and waits until its socket says it is up, with
    /// every watch of the config started (`info`'s `starting` is 0).
    fn launch(
        wrapper: &[String],
        config: &std::path::Path,
        socket: &std::path::Path,
    ) -> (Child, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(supervisor_bin());
                command
            }
            None => Command::new(supervisor_bin()),
        };
        // A socket a killed daemon left would refuse connections until the
        // new one binds; one that answers is ours.
        let mut child = command
            .args(["run", "-c"])
            .arg(config)
            .env_remove("SUPERVISOR_SOCKET")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning supervisor run");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[daemon] {line}");
                sink.lock().expect("log").push(line);
            }
        });
        let mut exited = None;
        let up = poll_until(WAIT, || {
            exited = child.try_wait().ok().flatten();
            exited.is_some() || info_of(socket).is_some_and(|i| i.starting == 0)
        });
        if !up || exited.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the daemon did not come up within {WAIT:?} (exited: {exited:?}): {:?}",
                log.lock().unwrap()
            );
        }
        (child, log)
    }

    /// Runs `supervisor --socket <ours> ARGS`.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(supervisor_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("running supervisor")
    }

    /// Starts `supervisor --socket <ours> ARGS` without waiting for it
    /// (a command that answers only once its action is done).
    pub fn cli_background(&self, args: &[&str]) -> Background {
        let child = Command::new(supervisor_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running supervisor");
        Background {
            what: args.join(" "),
            child: Some(child),
        }
    }

    /// Waits (bounded) until the daemon has logged `count` lines holding
    /// `needle` (e.g. that a request arrived).
    pub fn wait_logged(&self, needle: &str, count: usize) {
        wait_until(&format!("{count} log line(s) with {needle:?}"), || {
            self.log().iter().filter(|l| l.contains(needle)).count() >= count
        });
    }

    /// Waits (bounded) for a log line that `matches` (`what` says which,
    /// if it does not come); returns it.
    pub fn wait_log_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        let came = poll_until(WAIT, || {
            found = self.log().into_iter().find(|l| matches(l));
            found.is_some()
        });
        assert!(came, "no log line {what} within {WAIT:?}: {:?}", self.log());
        found.expect("found")
    }

    /// The processes in watch `name`'s cgroup now.
    pub fn cgroup_pids(&self, name: &str) -> Vec<i32> {
        let procs = self
            .cgroup_dir()
            .expect("a cgroup2 mount")
            .join(name)
            .join("cgroup.procs");
        std::fs::read_to_string(&procs)
            .unwrap_or_else(|e| panic!("{}: {e}", procs.display()))
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The folder of this daemon's cgroups.
    fn cgroup_dir(&self) -> Option<PathBuf> {
        let mount = supervisor::cgroup::mount().ok()?;
        Some(supervisor::cgroup::instance_dir(&mount, &self.instance()))
    }

    /// `status --json` of one watch, as the CLI prints it.
    pub fn status_json(&self, name: &str) -> serde_json::Value {
        let out = self.cli(&["status", "--json", name]);
        let text = String::from_utf8_lossy(&out.stdout);
        let all: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "status --json {name}: {e}: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        all[0].clone()
    }

    /// `status --json` of one watch, read as the protocol's type (a field
    /// renamed on one side fails here).
    pub fn status(&self, name: &str) -> WatchStatus {
        let json = self.status_json(name);
        serde_json::from_value(json.clone()).unwrap_or_else(|e| {
            panic!("status --json {name} does not decode as a WatchStatus: {e}: {json}")
        })
    }

    /// Polls `status` (bounded) until `done` holds; returns that status.
    pub fn wait_status(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&WatchStatus) -> bool,
    ) -> WatchStatus {
        let mut last = None;
        let reached = poll_until(WAIT, || {
            let status = self.status(name);
            let done = done(&status);
            last = Some(status);
            done
        });
        let last = last.expect("polled once");
        assert!(
            reached,
            "{name}: {what} did not happen within {WAIT:?}; last status {last}"
        );
        last
    }

    /// Waits (bounded) until `name` runs a process other than `old`.
    pub fn wait_replaced(&self, name: &str, old: u32) -> WatchStatus {
        self.wait_status(name, &format!("a process in place of {old}"), |s| {
            s.state == State::Up && s.pid.is_some_and(|p| p != old)
        })
    }

    /// SIGKILLs `name`'s process (once it is up) and waits for its
    /// replacement; returns the killed pid and the new status.
    pub fn kill_and_wait_replaced(&self, name: &str) -> (u32, WatchStatus) {
        let up = self.wait_status(name, "up", |s| s.state == State::Up);
        let old = pid_of(&up);
        kill9(old);
        (old, self.wait_replaced(name, old))
    }

    /// The daemon's own pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// Asserts that the daemon logged a line containing `first` before
    /// one containing `then`; returns the line with `first`.
    pub fn assert_logged_in_order(&self, first: &str, then: &str) -> String {
        let log = self.log();
        let position = |needle: &str| {
            log.iter()
                .position(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("{needle:?} not in the log: {log:?}"))
        };
        let (a, b) = (position(first), position(then));
        assert!(a < b, "{then:?} was logged before {first:?}: {log:?}");
        log[a].clone()
    }

    /// Starts a new daemon on the same config and state, once this one
    /// has exited (`wait_exit`).
    pub fn start_again(&mut self) {
        let (child, log) = Self::launch(&self.wrapper, &self.config, &self.socket);
        self.child = child;
        self.log = log;
    }

    /// Waits for the daemon to exit on its own (after quit or terminate).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        wait_until("the daemon to exit", || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }
}

impl Drop for RunningDaemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Bounded: a test that failed may have left the daemon unable
            // to finish a stop.
            if let Ok(mut terminate) = Command::new(supervisor_bin())
                .arg("--socket")
                .arg(&self.socket)
                .arg("terminate")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                poll_until(WAIT, || !matches!(terminate.try_wait(), Ok(None)));
                let _ = terminate.kill();
                let _ = terminate.wait();
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        // Cgroups a test's daemon left (after quit, or a SIGKILL) go too;
        // rmdir only ever removes empty ones.
        let Some(dir) = self.cgroup_dir() else {
            return;
        };
        for name in self.cgroup_watches() {
            let cgroup = dir.join(name);
            let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
            // rmdir only ever removes an empty cgroup: wait until the
            // kill has emptied it (the kernel says so in cgroup.events).
            poll_until(WAIT, || {
                !std::fs::read_to_string(cgroup.join("cgroup.events"))
                    .is_ok_and(|e| e.contains("populated 1"))
            });
            let _ = std::fs::remove_dir(&cgroup);
        }
        let _ = std::fs::remove_dir(&dir);
    }
}

impl RunningDaemon {
    /// The daemon's instance id (its cgroup folder, its sockets' names),
    /// as its state directory keeps it.
    pub fn instance(&self) -> String {
        let state_dir = std::fs::read_to_string(&self.config)
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let value = l.trim().strip_prefix("state_dir")?.trim_start();
                Some(value.strip_prefix('=')?.trim().trim_matches('"').to_owned())
            })
            .map_or_else(|| self.dir.path().to_path_buf(), PathBuf::from);
        supervisor::state::instance_of(&state_dir)
            .unwrap_or_else(|| supervisor::cgroup::instance_name(&self.socket))
    }

    fn cgroup_watches(&self) -> Vec<String> {
        std::fs::read_to_string(&self.config)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("name = \"")?
                    .strip_suffix('"')
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// A CLI command running in the background; dropping it kills it.
pub struct Background {
    what: String,
    child: Option<Child>,
}

impl Background {
    /// Waits (bounded) for the command's answer.
    pub fn answer(mut self) -> std::process::Output {
        let child = self.child.take().expect("not yet waited for");
        let pid = child.id();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(WAIT) {
            Ok(output) => output.expect("output"),
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                panic!("`{}` was not answered within {WAIT:?}", self.what);
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The abstract name (without `@`) of the `NOTIFY_SOCKET` process `pid`
/// was given, from its environment.
pub fn notify_socket_of(pid: u32) -> String {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("reading environ");
    environ
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"NOTIFY_SOCKET=@"))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .unwrap_or_else(|| panic!("process {pid} has no abstract NOTIFY_SOCKET"))
}

/// Every process whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = s.rsplit_once(')')?.1.to_owned();
                    let fields: Vec<&str> = rest.split_whitespace().collect();
                    // state ppid pgrp: pgrp is the third after the comm.
                    Some(fields.get(2)?.parse::<u32>().ok()? == pgid && fields[0] != "Z")
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Processes whose command line is exactly `needle` (as /proc shows it).
pub fn processes_running(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| cmdline(pid) == needle)
        .collect()
}

/// The pid in a watch's `status --json`.
pub fn pid_of(status: &WatchStatus) -> u32 {
    status.pid.unwrap_or_else(|| panic!("no pid in {status}"))
}

/// What tests read of a status and know is there (it fails, showing the
/// status, if it is not).
pub trait StatusExt {
    /// The last process's exit.
    fn exit(&self) -> &LastExitStatus;
    /// The health check.
    fn health(&self) -> &HealthStatus;
    /// The health check's last probe, if there was one yet.
    fn last_probe(&self) -> Option<&ProbeStatus>;
    /// The health check's last probe.
    fn probe(&self) -> &ProbeStatus;
    /// The watch's `i`th condition.
    fn condition(&self, i: usize) -> &ConditionStatus;
    /// Whether one of its recent events says `what`.
    fn has_event(&self, what: &str) -> bool;
}

impl StatusExt for WatchStatus {
    fn exit(&self) -> &LastExitStatus {
        self.last_exit
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no last exit in {self}", self.name))
    }

    fn health(&self) -> &HealthStatus {
        self.health
            .as_ref()
            .unwrap_or_else(|| panic!("{}: no health check in {self}", self.name))
    }

    fn last_probe(&self) -> Option<&ProbeStatus> {
        self.health.as_ref()?.last.as_ref()
    }

    fn probe(&self) -> &ProbeStatus {
        self.last_probe()
            .unwrap_or_else(|| panic!("{}: no probe yet in {self}", self.name))
    }

    fn condition(&self, i: usize) -> &ConditionStatus {
        self.conditions
            .get(i)
            .unwrap_or_else(|| panic!("{}: no condition {i} in {self}", self.name))
    }

    fn has_event(&self, what: &str) -> bool {
        self.events.iter().any(|e| e.what.contains(what))
    }
}

/// SIGKILLs `pid`, which must exist.
pub fn kill9(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill -9 {pid}: {e}"));
}

/// The resident memory of `pid`, in kB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

/// Waits (bounded) until `pid` shows its command line: a process the
/// daemon just started may still be inside its exec, with none yet.
pub fn wait_exec(pid: u32) {
    wait_until(&format!("process {pid} to finish its exec"), || {
        !cmdline(pid).is_empty()
    });
}

/// A process's command line, arguments joined by spaces ("" if gone).
pub fn cmdline(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .replace('\0', " ")
        .trim()
        .to_owned()
}

/// One row of RELIABILITY.md, appended as a JSON line to the file named by
/// `SUPERVISOR_RELIABILITY_REPORT` (`cargo xtask reliability` sets it):
/// what was injected, how many times, and how many processes were lost or
/// wrongly signalled, adopted or duplicated (both must be 0; the test has
/// asserted so before it reports).
pub fn report(fault: &str, injected: &str, times: usize, lost: usize, wrong: usize) {
    let Some(path) = std::env::var_os("SUPERVISOR_RELIABILITY_REPORT") else {
        return;
    };
    let line = serde_json::json!({
        "fault": fault,
        "injected": injected,
        "times": times,
        "lost": lost,
        "wrong": wrong,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("opening the reliability report");
    use std::io::Write as _;
    writeln!(file, "{line}").expect("writing the reliability report");
}

/// How many times to inject a fault: `everyday` (what CI runs), times
/// `SUPERVISOR_RELIABILITY_SCALE` (`cargo xtask reliability --scale N`).
pub fn repeat(everyday: usize) -> usize {
    let scale: usize = std::env::var("SUPERVISOR_RELIABILITY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    everyday * scale.max(1)
}

/// A small deterministic generator for where faults land; the seed is
/// printed so that a failing run can be repeated (`SUPERVISOR_SEED`).
pub struct Dice(u64);

impl Dice {
    pub fn new() -> Self {
        let seed = std::env::var("SUPERVISOR_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| monotonic_ns() | 1);
        eprintln!("dice seed: SUPERVISOR_SEED={seed}");
        Self(seed)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

impl Default for Dice {
    fn default() -> Self {
        Self::new()
    }
}

/// A TCP port on 127.0.0.1 for a test server to take, kept for this test
/// process alone: taken from below the kernel's ephemeral range (so no
/// `bind(0)` anywhere is handed it) and claimed with a lock file that the
/// test processes running in parallel respect. Binding port 0 and dropping
/// the listener would leave it to whoever binds next.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd as _;
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let dir = std::env::temp_dir().join("supervisor-test-ports");
    std::fs::create_dir_all(&dir).expect("port lock folder");
    const FIRST: u16 = 20_000;
    const COUNT: u16 = 12_000;
    let start = (std::process::id() as u64 * 7919 + monotonic_ns() / 1000) % COUNT as u64;
    for i in 0..COUNT {
        let port = FIRST + ((start + i as u64) % COUNT as u64) as u16;
        let Ok(lock) = std::fs::File::create(dir.join(port.to_string())) else {
            continue;
        };
        // SAFETY: flock on a file this function owns.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().expect("held ports").push(lock);
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + COUNT);
}

/// A webhook receiver on 127.0.0.1: keeps the JSON body of every POST,
/// and answers 200 — or, `hanging`, never answers at all.
pub struct WebhookReceiver {
    pub url: String,
    documents: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl WebhookReceiver {
    pub fn start(hanging: bool) -> Self {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a port");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let documents = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (docs, count) = (documents.clone(), connections.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if hanging {
                    held.push(stream);
                    continue;
                }
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let body = loop {
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break data[end + 4..end + 4 + length].to_vec();
                        }
                    }
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break Vec::new(),
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                };
                if let Ok(doc) = serde_json::from_slice(&body) {
                    docs.lock().expect("documents").push(doc);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Self {
            url,
            documents,
            connections,
        }
    }

    /// Waits (bounded) for a document that `matches`; returns it.
    pub fn wait_for(
        &self,
        what: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut found = None;
        wait_until(&format!("a webhook document: {what}"), || {
            found = self
                .documents
                .lock()
                .expect("documents")
                .iter()
                .find(|d| matches(d))
                .cloned();
            found.is_some()
        });
        found.expect("found")
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Sends `request` to 127.0.0.1:`port` and returns the first bytes of the
/// answer (up to 512), or "" when nothing listens there.
pub fn ask_tcp(port: u16, request: &[u8]) -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(request);
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
