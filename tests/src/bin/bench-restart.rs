//! Restart benchmarks for the daemon, printed as Markdown tables (`cargo
//! xtask bench` adds them to BENCHMARKS.md):
//! - kill -9 → the replacement's first instruction (it stamps
//!   CLOCK_MONOTONIC at the top of main), per backend, for a child and for
//!   a self-daemonizing pid_file program, against the floor measured in the
//!   same run: a bare kill → waitpid → spawn loop;
//! - 1,000 watched processes killed at once → all running again, against
//!   a bare loop doing the same;
//! - the daemon's RSS at 1, 100 and 1,000 watches.
use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use supervisor_tests::monotonic_ns;

use anyhow::{bail, Context as _, Result};

fn sibling(name: &str) -> Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found (build the workspace's binaries first)",
            path.display()
        );
    }
    Ok(path)
}

fn kill9(pid: u32) -> Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    Ok(())
}

/// Stamps ("PID NS") that started helpers write to a FIFO.
struct Stamps {
    reader: BufReader<std::fs::File>,
}

impl Stamps {
    fn new(path: &Path) -> Result<Self> {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        // Read-write, so the FIFO never reports end-of-file between writers.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        Ok(Self {
            reader: BufReader::new(file),
        })
    }

    fn next(&mut self) -> Result<(u32, u64)> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let (pid, ns) = line.trim().split_once(' ').context("bad stamp")?;
        Ok((pid.parse()?, ns.parse()?))
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The stamping helper as a child of this process (posix_spawn).
fn spawn_stamper(helper: &Path, fifo: &Path) -> std::io::Result<Child> {
    Command::new(helper)
        .arg("stamp")
        .arg(fifo)
        .stdin(Stdio::null())
        .spawn()
}

/// The floor: this process kills its child, reaps it and spawns the same
/// helper again, nothing else.
fn floor(helper: &Path, fifo: &Path, stamps: &mut Stamps, n: usize) -> Result<Vec<f64>> {
    let spawn = || spawn_stamper(helper, fifo);
    let mut child = spawn()?;
    stamps.next()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(1));
        let t0 = monotonic_ns();
        kill9(child.id())?;
        child.wait()?;
        child = spawn()?;
        let (_, started) = stamps.next()?;
        out.push(started.saturating_sub(t0) as f64 / 1e3);
    }
    kill9(child.id())?;
    child.wait()?;
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The daemon's own CPU while 1,000 watches each have checks every
/// second: a memory and a CPU condition (each reads the cgroup's cpu.stat
/// and cgroup.procs and every member's statm), a TCP health check, an HTTP
/// health check (a new connection and a GET each time). The TCP and HTTP
/// checks all go to one server thread of this process, which answers 200.
fn checks_cpu(
    supervisor: &Path,
    dir: &Path,
    helper: &Path,
    fifo: &Path,
    stamps: &mut Stamps,
) -> Result<String> {
    let count = 1000;
    let window = Duration::from_secs(10);
    let port = serve_http()?;
    let kinds = [
        (
            "memory + CPU conditions",
            2,
            "memory = { above = \"1GB\", every = \"1s\" }\ncpu = { above = \"90%\", every = \"1s\" }\n".to_owned(),
        ),
        (
            "TCP health check",
            1,
            format!("[watch.health]\ntcp = \"127.0.0.1:{port}\"\nevery = \"1s\"\n"),
        ),
        (
            "HTTP health check",
            1,
            format!("[watch.health]\nhttp = \"http://127.0.0.1:{port}/health\"\nevery = \"1s\"\n"),
        ),
    ];
    let mut out = format!(
        "\n## Conditions and health checks\n\n\
         The daemon's own CPU (user + system) over {}s while {count} watches each have the checks \
         named, every second. Health checks go to one server thread of the benchmark's.\n\n\
         | watches | checks each | checks/s | daemon CPU | % of one core |\n|---:|---|---:|---:|---:|\n",
        window.as_secs()
    );
    for (k, (what, per_watch, table)) in kinds.into_iter().enumerate() {
        eprintln!("bench: {count} watches with a {what}");
        let watches: String = (0..count)
            .map(|i| {
                format!(
                    "[[watch]]\nname = \"c{i}\"\nstart = [{helper:?}, \"stamp\", {fifo:?}]\n{table}"
                )
            })
            .collect();
        let daemon = Daemon::start(supervisor, dir, &format!("checks{k}"), "auto", &watches)?;
        for _ in 0..count {
            stamps.next()?;
        }
        // Past the first checks, which start the CPU windows.
        std::thread::sleep(Duration::from_secs(2));
        let before = daemon.cpu_ms()?;
        std::thread::sleep(window);
        let used = daemon.cpu_ms()? - before;
        let share = used / window.as_secs_f64() / 10.0;
        drop(daemon);
        while let Ok(Some(_)) = poll_stamp(stamps) {}
        out += &format!(
            "| {count} | {what} | {} | {used:.0} ms | {share:.2}% |\n",
            per_watch * count
        );
    }
    Ok(out)
}

/// kill -9 → the replacement's stamp while another watch writes as fast
/// as it can (`yes`) into a log file rotated at 50MB, against the same
/// daemon with no such neighbour, in the same run.
fn beside_chatty(
    supervisor: &Path,
    dir: &Path,
    helper: &Path,
    fifo: &Path,
    stamps: &mut Stamps,
    n: usize,
) -> Result<String> {
    let mut out = format!(
        "\n## Restart latency beside a chatty watch\n\n\
         {n} restarts per row, as above (eBPF backend, a child). In the last row another watch \
         writes 64-byte lines as fast as it can (`yes`) through the daemon into a log file \
         rotated at 50MB with 2 backups; in the row before, the same writer sends its output to \
         /dev/null itself, which costs the machine the same core and the daemon nothing.\n\n\
         | what | p50 µs | p99 µs | max µs | p50 vs alone | p99 vs alone |\n|---|---:|---:|---:|---:|---:|\n"
    );
    let stamper = format!(
        "[[watch]]\nname = \"w\"\nstart = [{helper:?}, \"stamp\", {fifo:?}]\nflapping = {{ starts = 100000 }}\n"
    );
    let chatty = format!(
        "[[watch]]\nname = \"chatty\"\nstart = [\"yes\", \"a line of output, as a chatty service writes it, 64 bytes long.\"]\n\
         stdout = {{ path = {:?}, max_size = \"50MB\", backups = 2 }}\n",
        dir.join("chatty.log")
    );
    // The same writer with its output thrown away by itself: what it costs
    // by taking a core, which no copying of output can avoid.
    let busy =
        "[[watch]]\nname = \"busy\"\nstart = [\"/bin/sh\", \"-c\", \"exec yes > /dev/null\"]\n";
    let mut alone = None;
    for (label, watches) in [
        ("alone", stamper.clone()),
        ("busy", stamper.clone() + busy),
        ("chatty", stamper + &chatty),
    ] {
        eprintln!("bench: supervisor (ebpf), child, {label}, {n} restarts");
        let daemon = Daemon::start(
            supervisor,
            dir,
            &format!("beside-{label}"),
            "ebpf",
            &watches,
        )?;
        let v = through_daemon(&daemon, stamps, n, false)?;
        let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
        let (a50, a99) = *alone.get_or_insert((p50, p99));
        let what = match label {
            "alone" => "supervisor, no other watch",
            "busy" => "beside a watch writing as fast as it can into /dev/null itself",
            _ => "beside the same writing through the daemon into its log file",
        };
        out += &format!(
            "| {what} | {p50:.0} | {p99:.0} | {:.0} | {:.2}× | {:.2}× |\n",
            v[v.len() - 1],
            p50 / a50,
            p99 / a99
        );
        drop(daemon);
        while let Ok(Some(_)) = poll_stamp(stamps) {}
    }
    Ok(out)
}

/// What a child setting its own `oom_score_adj` costs a restart: it does
/// under a daemon that lowered its own (-1000, where it may), to give its
/// watch 0 back. Here a watch asking for 500 makes the same open and write
/// whatever the daemon may do; the two daemons take turns, so that both
/// see the same noise.
fn oom_cost(
    supervisor: &Path,
    dir: &Path,
    helper: &Path,
    fifo: &Path,
    stamps: &mut Stamps,
    n: usize,
) -> Result<String> {
    const TURNS: usize = 4;
    let watch = |extra: &str| {
        format!("[[watch]]\nname = \"w\"\nstart = [{helper:?}, \"stamp\", {fifo:?}]\nflapping = {{ starts = 100000 }}\n{extra}")
    };
    let mut inherit = Vec::new();
    let mut write = Vec::new();
    for turn in 0..TURNS {
        for (label, extra, into) in [
            ("inherit", "", &mut inherit),
            ("write", "oom_score_adj = 500\n", &mut write),
        ] {
            eprintln!(
                "bench: oom_score_adj, {label}, turn {turn}, {} restarts",
                n / TURNS
            );
            let daemon = Daemon::start(
                supervisor,
                dir,
                &format!("oom-{label}-{turn}"),
                "ebpf",
                &watch(extra),
            )?;
            into.extend(through_daemon(&daemon, stamps, n / TURNS, false)?);
            drop(daemon);
            while let Ok(Some(_)) = poll_stamp(stamps) {}
        }
    }
    inherit.sort_by(f64::total_cmp);
    write.sort_by(f64::total_cmp);
    let (i50, i99) = (percentile(&inherit, 0.5), percentile(&inherit, 0.99));
    let (w50, w99) = (percentile(&write, 0.5), percentile(&write, 0.99));
    Ok(format!(
        "\n## Restart latency with the child setting its oom_score_adj\n\n\
         {n} restarts per row (eBPF backend, a child), in {TURNS} turns each. In the second row \
         the child opens /proc/self/oom_score_adj and writes its watch's value before its exec, \
         as every child does under a daemon that lowered its own.\n\n\
         | what | p50 µs | p99 µs | p50 vs inherited | p99 vs inherited |\n|---|---:|---:|---:|---:|\n\
         | inherits the daemon's value | {i50:.0} | {i99:.0} | 1.00× | 1.00× |\n\
         | writes its own | {w50:.0} | {w99:.0} | {:.2}× | {:.2}× |\n",
        w50 / i50,
        w99 / i99
    ))
}

/// Every watch killed at once, for 1, 100 and 1,000 watches, against the
/// floor measured just before each.
fn mass(
    supervisor: &Path,
    dir: &Path,
    helper: &Path,
    fifo: &Path,
    stamps: &mut Stamps,
) -> Result<String> {
    let mut out = "\n## Mass failure and memory\n\n\
             Every watch runs the stamping helper; all are SIGKILLed at once and the clock stops at \
             the last replacement's stamp. CPU is the daemon's own (user + system) over that time. \
             The floor: as many children of one bare process, killed at once, each reaped and \
             spawned again in turn.\n\n\
             | watches | all killed → all running again | floor | vs floor | daemon CPU | daemon RSS |\n\
             |---:|---:|---:|---:|---:|---:|\n"
        .to_owned();
    for count in [1usize, 100, 1000] {
        eprintln!("bench: floor, {count} children");
        let floor = mass_floor(helper, fifo, stamps, count)?;
        eprintln!("bench: {count} watches");
        let watches: String = (0..count)
            .map(|i| format!("[[watch]]\nname = \"s{i}\"\nstart = [{helper:?}, \"stamp\", {fifo:?}]\nflapping = {{ starts = 100000 }}\n"))
            .collect();
        let daemon = Daemon::start(supervisor, dir, &format!("mass{count}"), "auto", &watches)?;
        let pids = (0..count)
            .map(|_| stamps.next().map(|(pid, _)| pid))
            .collect::<Result<Vec<u32>>>()?;
        let rss = daemon.rss_kb();
        let cpu = daemon.cpu_ms()?;
        let t0 = monotonic_ns();
        for &pid in &pids {
            kill9(pid)?;
        }
        let mut last = t0;
        for _ in 0..count {
            match poll_stamp_within(stamps, Duration::from_secs(30))? {
                Some((_, started)) => last = last.max(started),
                None => bail!("not every watch came back within 30 s"),
            }
        }
        let cpu = daemon.cpu_ms()? - cpu;
        let took = (last - t0) as f64 / 1e6;
        out += &format!(
            "| {count} | {took:.1} ms | {floor:.1} ms | {:.2}× | {cpu:.0} ms | {:.1} MB |\n",
            took / floor,
            rss as f64 / 1024.0
        );
        drop(daemon);
        while let Ok(Some(_)) = poll_stamp(stamps) {}
    }
    Ok(out)
}

/// A server thread on 127.0.0.1 that accepts every connection and answers
/// any request with 200 (a TCP check just connects); returns its port.
fn serve_http() -> Result<u16> {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            if let Ok(n @ 1..) = stream.read(&mut buf) {
                if buf[..n].starts_with(b"GET") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    Ok(port)
}

/// The floor for mass failure: `count` children of this process killed
/// at once, each reaped and spawned again in turn; milliseconds until the
/// last replacement stamped.
fn mass_floor(helper: &Path, fifo: &Path, stamps: &mut Stamps, count: usize) -> Result<f64> {
    let spawn = || spawn_stamper(helper, fifo);
    let mut children = (0..count)
        .map(|_| spawn())
        .collect::<std::io::Result<Vec<_>>>()?;
    for _ in 0..count {
        stamps.next()?;
    }
    let t0 = monotonic_ns();
    for child in &children {
        kill9(child.id())?;
    }
    for child in &mut children {
        child.wait()?;
        *child = spawn()?;
    }
    let mut last = t0;
    for _ in 0..count {
        last = last.max(stamps.next()?.1);
    }
    for child in &mut children {
        kill9(child.id())?;
        child.wait()?;
    }
    Ok((last - t0) as f64 / 1e6)
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    supervisor: PathBuf,
}

impl Daemon {
    fn start(
        supervisor: &Path,
        dir: &Path,
        label: &str,
        backend: &str,
        watches: &str,
    ) -> Result<Self> {
        let socket = dir.join(format!("{label}.sock"));
        let state = dir.join(format!("state-{label}"));
        let config = dir.join(format!("{label}.toml"));
        std::fs::write(
            &config,
            format!("[daemon]\nsocket = {socket:?}\nstate_dir = {state:?}\nbackend = \"{backend}\"\nlog_level = \"warn\"\n\n{watches}"),
        )?;
        let mut child = Command::new(supervisor)
            .args(["run", "-c"])
            .arg(&config)
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = BufReader::new(child.stderr.take().context("stderr")?);
        let mut line = String::new();
        let mut said = String::new();
        loop {
            line.clear();
            if err.read_line(&mut line)? == 0 {
                bail!("supervisor ({backend}) did not start: {said}");
            }
            said.push_str(&line);
            if line.starts_with("supervisor running") {
                break;
            }
        }
        // Keep draining so the daemon never blocks on a full pipe.
        std::thread::spawn(move || for _ in err.lines() {});
        Ok(Self {
            child,
            socket,
            supervisor: supervisor.to_owned(),
        })
    }

    fn status(&self) -> Result<serde_json::Value> {
        let out = Command::new(&self.supervisor)
            .arg("--socket")
            .arg(&self.socket)
            .args(["status", "--json"])
            .output()?;
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    /// The daemon's CPU time so far (user + system), from schedstat.
    fn cpu_ms(&self) -> Result<f64> {
        let schedstat = std::fs::read_to_string(format!("/proc/{}/schedstat", self.child.id()))?;
        let ns: u64 = schedstat
            .split_whitespace()
            .next()
            .context("empty schedstat")?
            .parse()?;
        Ok(ns as f64 / 1e6)
    }

    fn rss_kb(&self) -> u64 {
        supervisor_tests::rss_kb(self.child.id())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new(&self.supervisor)
            .arg("--socket")
            .arg(&self.socket)
            .arg("terminate")
            .output();
        let _ = self.child.wait();
    }
}

/// kill -9 → replacement stamps, `n` times, through a running daemon.
/// Each kill waits until the daemon follows the new process (a pid_file
/// program is followed only once its pid file is read).
fn through_daemon(
    daemon: &Daemon,
    stamps: &mut Stamps,
    n: usize,
    pid_file: bool,
) -> Result<Vec<f64>> {
    let (mut pid, _) = stamps.next()?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // A child is followed from its spawn; asking would only add load.
        if pid_file {
            wait_followed(daemon, pid)?;
        }
        std::thread::sleep(Duration::from_millis(1));
        let t0 = monotonic_ns();
        kill9(pid)?;
        let (next, started) = stamps.next()?;
        out.push(started.saturating_sub(t0) as f64 / 1e3);
        pid = next;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn main() -> Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(500), |a| a.parse())?;
    let supervisor = sibling("supervisor")?;
    let helper = sibling("exit-helper")?;
    let dir = tempfile::tempdir()?;
    let fifo = dir.path().join("stamps");
    let mut stamps = Stamps::new(&fifo)?;
    let mut out = String::new();
    // `bench-restart N checks` measures only the checks' CPU, `... mass`
    // only mass failure.
    match std::env::args().nth(2).as_deref() {
        Some("checks") => {
            print!(
                "{}",
                checks_cpu(&supervisor, dir.path(), &helper, &fifo, &mut stamps)?
            );
            return Ok(());
        }
        Some("chatty") => {
            print!(
                "{}",
                beside_chatty(&supervisor, dir.path(), &helper, &fifo, &mut stamps, n)?
            );
            return Ok(());
        }
        Some("oom") => {
            print!(
                "{}",
                oom_cost(&supervisor, dir.path(), &helper, &fifo, &mut stamps, n)?
            );
            return Ok(());
        }
        Some("mass") => {
            print!(
                "{}",
                mass(&supervisor, dir.path(), &helper, &fifo, &mut stamps)?
            );
            return Ok(());
        }
        _ => {}
    }

    out += &format!(
        "## Restart latency: kill -9 → the replacement's first instruction\n\n\
         {n} restarts per row. The replacement stamps CLOCK_MONOTONIC at the top of `main`. \
         The floor is a bare loop in one process: kill its child, reap it, spawn the same helper.\n\n\
         | what | p50 µs | p99 µs | max µs | p50 vs floor | p99 vs floor |\n|---|---:|---:|---:|---:|---:|\n"
    );
    eprintln!("bench: floor, {n} restarts");
    let base = floor(&helper, &fifo, &mut stamps, n)?;
    let (f50, f99) = (percentile(&base, 0.5), percentile(&base, 0.99));
    let row = |what: &str, v: &[f64]| {
        let (p50, p99) = (percentile(v, 0.5), percentile(v, 0.99));
        format!(
            "| {what} | {p50:.0} | {p99:.0} | {:.0} | {:.2}× | {:.2}× |\n",
            v[v.len() - 1],
            p50 / f50,
            p99 / f99
        )
    };
    out += &row("floor (kill → waitpid → spawn)", &base);
    for backend in ["ebpf", "netlink", "pidfd"] {
        for daemonized in [false, true] {
            let what = if daemonized {
                "pid_file daemon"
            } else {
                "child"
            };
            eprintln!("bench: supervisor ({backend}), {what}, {n} restarts");
            let watch = if daemonized {
                format!(
                    "[[watch]]\nname = \"w\"\nstart = [{helper:?}, \"daemonize-stamp\", {:?}, {fifo:?}]\npid_file = {:?}\nflapping = {{ starts = 100000 }}\n",
                    dir.path().join("w.pid"),
                    dir.path().join("w.pid"),
                )
            } else {
                format!("[[watch]]\nname = \"w\"\nstart = [{helper:?}, \"stamp\", {fifo:?}]\nflapping = {{ starts = 100000 }}\n")
            };
            let label = format!("{backend}-{what}").replace([' ', '_'], "-");
            let daemon = Daemon::start(&supervisor, dir.path(), &label, backend, &watch);
            let daemon = match daemon {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("bench: {backend}: {e:#}");
                    continue;
                }
            };
            let v = through_daemon(&daemon, &mut stamps, n, daemonized)?;
            out += &row(&format!("supervisor, {backend}, {what}"), &v);
            drop(daemon);
            // The last replacement's stamp, written as it was stopped.
            while let Ok(Some(_)) = poll_stamp(&mut stamps) {}
        }
    }

    if std::env::args().any(|a| a == "--peers") {
        for peer in [
            Peer::God,
            Peer::Supervisord,
            Peer::Daemontools,
            Peer::Runit,
            Peer::S6,
        ] {
            let samples = peer.samples(n);
            eprintln!("bench: {}, {samples} restarts", peer.name());
            match peer_restarts(peer, dir.path(), &helper, &fifo, &mut stamps, samples) {
                Ok((v, lost)) if !v.is_empty() => {
                    let what = format!(
                        "{}{}",
                        peer.name(),
                        if lost > 0 {
                            format!(" ({lost} of {samples} restarts LOST)")
                        } else {
                            String::new()
                        }
                    );
                    out += &row(&what, &v);
                }
                Ok((_, lost)) => {
                    out += &format!("| {} | lost all {lost} restarts | | | | |\n", peer.name())
                }
                Err(e) => out += &format!("| {} | could not run: {e:#} | | | | |\n", peer.name()),
            }
        }
    }

    out += &beside_chatty(&supervisor, dir.path(), &helper, &fifo, &mut stamps, n)?;
    out += &oom_cost(&supervisor, dir.path(), &helper, &fifo, &mut stamps, n)?;
    out += &mass(&supervisor, dir.path(), &helper, &fifo, &mut stamps)?;
    out += &checks_cpu(&supervisor, dir.path(), &helper, &fifo, &mut stamps)?;
    print!("{out}");
    Ok(())
}

fn wait_followed(daemon: &Daemon, pid: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon.status()?[0]["pid"].as_u64() != Some(pid as u64) {
        if Instant::now() > deadline {
            bail!("the daemon never followed pid {pid}");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Peer {
    God,
    Supervisord,
    Daemontools,
    Runit,
    S6,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Self::God => "god 0.13 (event mode)",
            Self::Supervisord => "supervisord 4.2",
            Self::Daemontools => "daemontools 0.76 (supervise)",
            Self::Runit => "runit 2.1 (runsv)",
            Self::S6 => "s6 2.11 (s6-supervise, with readiness)",
        }
    }

    /// Fewer samples where each takes a second: supervisord polls once a
    /// second, and the others hold back the restart of a process that ran
    /// for less than one.
    fn samples(self, n: usize) -> usize {
        match self {
            Self::God => n.min(200),
            Self::Supervisord => n.min(20),
            Self::Daemontools | Self::Runit | Self::S6 => n.min(30),
        }
    }

    /// How long the replacement runs before it is killed: long enough to
    /// be registered, and for the throttled ones past their one second.
    fn settle(self) -> Duration {
        match self {
            Self::God | Self::Supervisord => Duration::from_millis(100),
            Self::Daemontools | Self::Runit | Self::S6 => Duration::from_millis(1100),
        }
    }
}

/// Runs a peer on the stamping helper; returns its restart latencies and
/// how many restarts never came (10 s without a stamp).
fn peer_restarts(
    peer: Peer,
    dir: &Path,
    helper: &Path,
    fifo: &Path,
    stamps: &mut Stamps,
    n: usize,
) -> Result<(Vec<f64>, usize)> {
    let home = dir.join(match peer {
        Peer::God => "god",
        Peer::Supervisord => "supervisord",
        Peer::Daemontools => "daemontools",
        Peer::Runit => "runit",
        Peer::S6 => "s6",
    });
    std::fs::create_dir_all(home.join("pids"))?;
    // A service folder for the supervise-style peers: `run` is the helper
    // itself (no shell), which stamps to the `stamp-fifo` beside it.
    let service = home.join("service");
    std::fs::create_dir_all(&service)?;
    std::os::unix::fs::symlink(helper, service.join("run"))?;
    std::os::unix::fs::symlink(fifo, service.join("stamp-fifo"))?;
    if matches!(peer, Peer::S6) {
        // Readiness: s6 restarts at once only a service that said it was
        // ready (else it waits a second).
        std::fs::write(service.join("notification-fd"), "3\n")?;
    }
    let supervise = |program: &str| {
        Command::new(program)
            .arg(&service)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))
    };
    let mut child = match peer {
        Peer::God => {
            let config = home.join("stamp.god");
            // The repair Debian's god needs on Ruby 3.1 (see shared/PEERS.md).
            std::fs::write(
                &config,
                format!(
                    "require 'timeout'\n\
                     class God::System::SlashProcPoller\n  def self.readable?(path); Timeout.timeout(1) {{ File.read(path) }}; rescue Timeout::Error; false; end\nend\n\
                     God.pid_file_directory = '{pids}'\n\
                     God.watch do |w|\n  w.name = 'stamp'\n  w.start = '{helper} stamp {fifo}'\n  w.keepalive\nend\n",
                    pids = home.join("pids").display(),
                    helper = helper.display(),
                    fifo = fifo.display()
                ),
            )?;
            Command::new("god")
                .args(["-D", "-c"])
                .arg(&config)
                .arg("-l")
                .arg(home.join("god.log"))
                .arg("-P")
                .arg(home.join("god.pid"))
                .args(["--no-syslog", "--log-level", "info", "-p", "17999"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting god (apt-get install ruby-god)")?
        }
        Peer::Supervisord => {
            let config = home.join("supervisord.conf");
            std::fs::write(
                &config,
                format!(
                    "[unix_http_server]\nfile={h}/s.sock\n[supervisord]\nlogfile={h}/supervisord.log\npidfile={h}/supervisord.pid\nnodaemon=true\n\
                     [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
                     [program:stamp]\ncommand={helper} stamp {fifo}\nautorestart=true\nstartsecs=0\nstartretries=100000\n",
                    h = home.display(),
                    helper = helper.display(),
                    fifo = fifo.display()
                ),
            )?;
            Command::new("supervisord")
                .args(["-n", "-c"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting supervisord (apt-get install supervisor)")?
        }
        Peer::Daemontools => supervise("supervise")?,
        Peer::Runit => supervise("runsv")?,
        Peer::S6 => supervise("s6-supervise")?,
    };
    let mut last = None;
    let result = (|| -> Result<(Vec<f64>, usize)> {
        let Some((mut pid, _)) = poll_stamp_within(stamps, Duration::from_secs(30))? else {
            bail!("{} never started the helper", peer.name());
        };
        let (mut out, mut lost) = (Vec::new(), 0);
        last = Some(pid);
        for _ in 0..n {
            std::thread::sleep(peer.settle());
            let t0 = monotonic_ns();
            kill9(pid)?;
            match poll_stamp_within(stamps, Duration::from_secs(10))? {
                Some((next, started)) => {
                    out.push(started.saturating_sub(t0) as f64 / 1e3);
                    pid = next;
                    last = Some(pid);
                }
                None => {
                    lost += 1;
                    break;
                }
            }
        }
        out.sort_by(f64::total_cmp);
        Ok((out, lost))
    })();
    let _ = child.kill();
    let _ = child.wait();
    if let Some(pid) = last {
        let _ = kill9(pid);
    }
    // What the peer started lives on without it.
    let _ = Command::new("pkill")
        .args(["-KILL", "-f"])
        .arg(format!("{} stamp", helper.display()))
        .status();
    while let Ok(Some(_)) = poll_stamp(stamps) {}
    result
}

fn poll_stamp_within(stamps: &mut Stamps, limit: Duration) -> Result<Option<(u32, u64)>> {
    use std::os::fd::AsFd as _;
    if !stamps.reader.buffer().is_empty() {
        return stamps.next().map(Some);
    }
    let mut fds = [nix::poll::PollFd::new(
        stamps.reader.get_ref().as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms))? == 0 {
        return Ok(None);
    }
    stamps.next().map(Some)
}

fn poll_stamp(stamps: &mut Stamps) -> Result<Option<(u32, u64)>> {
    poll_stamp_within(stamps, Duration::from_millis(200))
}
