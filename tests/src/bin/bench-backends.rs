//! Measures the exit backends and prints Markdown tables (`cargo xtask
//! bench` writes them to BENCHMARKS.md):
//! - detection latency: `kill()` to the exit event in userspace;
//! - CPU time of a `supervisor trace` watching one idle process while an
//!   unrelated load forks and reaps as fast as it can;
//! - a storm of signals between unrelated processes: what the signal
//!   program costs their senders, its own run time, and detection latency
//!   while the storm runs.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use supervisor_tests::monotonic_ns;

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use supervisor::{
    backend::{Backend, BackendKind, Options},
    process::{self, Pid},
};

struct Args {
    kills: usize,
    poll_kills: usize,
    poll_interval: Duration,
    churn: Duration,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        kills: 1000,
        poll_kills: 100,
        poll_interval: Duration::from_millis(10),
        churn: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--kills" => args.kills = value()?.parse()?,
            "--poll-kills" => args.poll_kills = value()?.parse()?,
            "--churn-secs" => args.churn = Duration::from_secs(value()?.parse()?),
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found (build the workspace's binaries first)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `exit-helper` and waits for its `ready`.
fn helper(args: &[&str]) -> Result<(Child, BufReader<std::process::ChildStdout>)> {
    let mut child = Command::new(sibling("exit-helper")?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("exit-helper {args:?} did not start");
    }
    Ok((child, out))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Sorted samples in µs: kill → event in userspace, and where the backend
/// knows when the kernel saw the death, that split into kill → kernel and
/// kernel → userspace.
struct Latencies {
    total: Vec<f64>,
    to_kernel: Vec<f64>,
    to_user: Vec<f64>,
}

async fn latencies(kind: BackendKind, n: usize, options: &Options) -> Result<Latencies> {
    let mut backend = Backend::open(kind, options)?;
    let mut l = Latencies {
        total: Vec::with_capacity(n),
        to_kernel: Vec::new(),
        to_user: Vec::new(),
    };
    for _ in 0..n {
        let (mut child, _stdout) = helper(&["block"])?;
        let id = process::identify(Pid::from_child(&child))?;
        backend.watch(id)?;
        let killed_ns = monotonic_ns();
        kill(id.pid.as_nix(), Signal::SIGKILL)?;
        let event = tokio::time::timeout(Duration::from_secs(10), backend.next_exit())
            .await
            .context("no exit event within 10 s")??;
        let seen_ns = monotonic_ns();
        if event.pid != id.pid {
            bail!("{kind}: got pid {} for {}", event.pid, id.pid);
        }
        child.wait()?;
        l.total.push((seen_ns - killed_ns) as f64 / 1e3);
        if let Some(k) = event.kernel_ns {
            l.to_kernel.push(k.saturating_sub(killed_ns) as f64 / 1e3);
            l.to_user.push(seen_ns.saturating_sub(k) as f64 / 1e3);
        }
    }
    for v in [&mut l.total, &mut l.to_kernel, &mut l.to_user] {
        v.sort_by(f64::total_cmp);
    }
    Ok(l)
}

/// CPU nanoseconds of every thread of `pid` so far.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let schedstat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        total += schedstat
            .split_whitespace()
            .next()
            .unwrap_or("0")
            .parse::<u64>()?;
    }
    Ok(total)
}

struct ChurnResult {
    forks_per_sec: f64,
    cpu_ms: f64,
}

fn churn_cpu(supervisor: &Path, kind: BackendKind, churn: Duration) -> Result<ChurnResult> {
    let (mut idle, _idle_out) = helper(&["block"])?;
    let mut tracer = Command::new(supervisor)
        .args([
            "trace",
            "--backend",
            kind.name(),
            "--pid",
            &idle.id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = BufReader::new(tracer.stderr.take().context("stderr")?);
    let mut line = String::new();
    err.read_line(&mut line)?;
    if !line.starts_with("tracing exits with") {
        bail!("supervisor trace --backend {kind} did not start: {line}");
    }
    let secs = churn.as_secs().max(1).to_string();
    let (mut churner, mut churn_out) = helper(&["churn", &secs])?;
    let before = cpu_ns(tracer.id())?;
    let t0 = Instant::now();
    churner
        .stdin
        .as_mut()
        .context("stdin")?
        .write_all(b"go\n")?;
    let mut count = String::new();
    churn_out.read_line(&mut count)?;
    let wall = t0.elapsed();
    let after = cpu_ns(tracer.id())?;
    churner.wait()?;
    let _ = tracer.kill();
    tracer.wait()?;
    let _ = idle.kill();
    idle.wait()?;
    Ok(ChurnResult {
        forks_per_sec: count.trim().parse::<f64>()? / wall.as_secs_f64(),
        cpu_ms: (after - before) as f64 / 1e6,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let supervisor = sibling("supervisor")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut out = String::new();

    out += &format!(
        "## Detection latency: `kill()` → exit event in userspace\n\n\
         Each sample: a fresh child is watched, SIGKILLed, and timed until the backend yields its \
         exit event; {} kills per backend ({} for poll, at a {:?} interval). The `scheduling = realtime` \
         rows read from a thread in SCHED_FIFO (reset on fork), as `[daemon] scheduling = \"realtime\"` \
         runs the daemon.\n\n\
         | backend | n | p50 µs | p99 µs | max µs | p50 vs ebpf | p99 vs ebpf | kill→kernel p50/p99 µs | kernel→userspace p50/p99 µs |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.kills, args.poll_kills, args.poll_interval
    );
    let mut ebpf_ref: Option<(f64, f64)> = None;
    let mut row = |label: &str, n: usize, result: Result<Latencies>| match result {
        Ok(l) => {
            let v = &l.total;
            let (p50, p99, max) = (percentile(v, 0.5), percentile(v, 0.99), v[v.len() - 1]);
            let reference = *ebpf_ref.get_or_insert((p50, p99));
            let split = |v: &[f64]| {
                if v.is_empty() {
                    "—".to_owned()
                } else {
                    format!("{:.0} / {:.0}", percentile(v, 0.5), percentile(v, 0.99))
                }
            };
            format!(
                "| {label} | {n} | {p50:.0} | {p99:.0} | {max:.0} | {:.2}× | {:.2}× | {} | {} |\n",
                p50 / reference.0,
                p99 / reference.1,
                split(&l.to_kernel),
                split(&l.to_user),
            )
        }
        Err(e) => format!("| {label} | — | unavailable: {e:#} | | | | | | |\n"),
    };
    for kind in BackendKind::AUTO_ORDER {
        let (n, options) = match kind {
            BackendKind::Poll => (
                args.poll_kills,
                Options {
                    poll_interval: args.poll_interval,
                    ..Options::default()
                },
            ),
            _ => (args.kills, Options::default()),
        };
        eprintln!("bench: detection latency, {kind}, {n} kills");
        out += &row(kind.name(), n, rt.block_on(latencies(kind, n, &options)));
    }
    // `[daemon] scheduling = "realtime"`: the reading thread in SCHED_FIFO
    // (reset on fork, so the killed children run normally, as a daemon's).
    for kind in [BackendKind::Ebpf, BackendKind::Netlink] {
        eprintln!(
            "bench: detection latency, {kind} in SCHED_FIFO, {} kills",
            args.kills
        );
        let n = args.kills;
        let result = std::thread::spawn(move || -> Result<Latencies> {
            supervisor::sched::realtime().context("SCHED_FIFO")?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(latencies(kind, n, &Options::default()))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the realtime thread panicked"))
        .and_then(|r| r);
        out += &row(&format!("{kind}, scheduling = realtime"), n, result);
    }

    out += &format!(
        "\n## CPU under unrelated churn\n\n\
         `supervisor trace --pid <one idle process>` per backend while another process forks and \
         reaps children as fast as it can for {:?}. CPU is the tracer's own (user + system, from \
         schedstat); the eBPF program's work is charged to the exiting processes.\n\n\
         | backend | unrelated exits/s | tracer CPU ms | % of one core |\n|---|---:|---:|---:|\n",
        args.churn
    );
    for kind in BackendKind::AUTO_ORDER {
        eprintln!("bench: CPU under churn, {kind}");
        match churn_cpu(&supervisor, kind, args.churn) {
            Ok(r) => {
                out += &format!(
                    "| {kind} | {:.0} | {:.1} | {:.2}% |\n",
                    r.forks_per_sec,
                    r.cpu_ms,
                    r.cpu_ms / 10.0 / args.churn.as_secs_f64()
                )
            }
            Err(e) => out += &format!("| {kind} | — | unavailable: {e:#} | |\n"),
        }
    }
    eprintln!("bench: signal storm");
    out += &match rt.block_on(signal_storm(args.kills)) {
        Ok(storm) => storm,
        Err(e) => format!("\n## Signal storm\n\nunavailable: {e:#}\n"),
    };
    print!("{out}");
    Ok(())
}

/// How long each of `n` `kill(SIGUSR1)`s to `target` takes, sorted, in ns.
fn kill_costs(target: nix::unistd::Pid, n: usize) -> Result<Vec<f64>> {
    let mut costs = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = monotonic_ns();
        kill(target, Signal::SIGUSR1)?;
        costs.push((monotonic_ns() - t0) as f64);
    }
    costs.sort_by(f64::total_cmp);
    Ok(costs)
}

/// `run_time_ns` and `run_cnt` of the loaded eBPF program `name` (with
/// `kernel.bpf_stats_enabled` on).
fn program_stats(name: &str) -> Result<(u64, u64)> {
    use std::os::fd::{AsFd as _, AsRawFd as _};
    for info in aya::programs::loaded_programs() {
        let info = info?;
        if info.name_as_str() != Some(name) {
            continue;
        }
        let fd = info.fd()?;
        let text =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))?;
        let field = |key: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
                .unwrap_or(0)
        };
        return Ok((field("run_time_ns:"), field("run_cnt:")));
    }
    bail!("no loaded program named {name}")
}

/// Sends SIGUSR1 to `target` as fast as it can until `stop`; returns how
/// many it sent.
fn storm(target: nix::unistd::Pid, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> u64 {
    let mut sent = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if kill(target, Signal::SIGUSR1).is_ok() {
            sent += 1;
        }
    }
    sent
}

async fn signal_storm(kills: usize) -> Result<String> {
    use std::sync::{atomic::AtomicBool, Arc};
    const SIGNALS: usize = 200_000;
    let (mut catcher, _out) = helper(&["catch"])?;
    let target = nix::unistd::Pid::from_raw(catcher.id() as i32);
    let without = kill_costs(target, SIGNALS)?;
    let baseline = latencies(BackendKind::Ebpf, kills, &Options::default()).await?;
    // Loaded (and attached) with the backend.
    let backend = Backend::open(BackendKind::Ebpf, &Options::default())?;
    let with = kill_costs(target, SIGNALS)?;
    let stats_file = "/proc/sys/kernel/bpf_stats_enabled";
    let stats_before = std::fs::read_to_string(stats_file).unwrap_or_default();
    std::fs::write(stats_file, "1").context("enabling kernel.bpf_stats_enabled")?;
    let (t0, c0) = program_stats("signal_generate")?;
    kill_costs(target, SIGNALS)?;
    let (t1, c1) = program_stats("signal_generate")?;
    let _ = std::fs::write(stats_file, stats_before.trim());
    drop(backend);
    // Detection latency with the storm on the other core.
    let stop = Arc::new(AtomicBool::new(false));
    let storming = {
        let stop = stop.clone();
        std::thread::spawn(move || storm(target, stop))
    };
    let started = Instant::now();
    let during = latencies(BackendKind::Ebpf, kills, &Options::default()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = storming
        .join()
        .map_err(|_| anyhow::anyhow!("the storm panicked"))?;
    let rate = sent as f64 / started.elapsed().as_secs_f64();
    let during = during?;
    let _ = catcher.kill();
    catcher.wait()?;
    let ns_per_event = if c1 > c0 {
        (t1 - t0) as f64 / (c1 - c0) as f64
    } else {
        0.0
    };
    Ok(format!(
        "\n## Signal storm\n\n\
         The signal program runs in the sender's context for every signal on the host and \
         filters in the kernel (watched targets only). {SIGNALS} `kill(SIGUSR1)`s to an unwatched \
         process that catches it, timed one by one, without and with the program loaded; its own \
         run time from `kernel.bpf_stats_enabled`; then eBPF detection latency (kill → event, {kills} \
         kills) while another thread sends SIGUSR1 as fast as it can, beside the same without the \
         storm.\n\n\
         | storm signals/s | sender `kill()` p50 ns without / with | p99 ns without / with | program ns per signal | detection p50 µs without / during storm | p99 µs without / during |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | {rate:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {ns_per_event:.0} | {:.0} / {:.0} | {:.0} / {:.0} |\n",
        percentile(&without, 0.5),
        percentile(&with, 0.5),
        percentile(&without, 0.99),
        percentile(&with, 0.99),
        percentile(&baseline.total, 0.5),
        percentile(&during.total, 0.5),
        percentile(&baseline.total, 0.99),
        percentile(&during.total, 0.99),
    ))
}
