//! `supervisor init` beside tini as a container's PID 1, printed as a
//! Markdown table (`cargo xtask bench` adds it to BENCHMARKS.md). Each
//! init runs under `unshare --pid --fork --mount-proc` with this program
//! as its CMD (`__cmd`), which measures from inside:
//! - reaping: 1,000 orphans (their parents gone, so the kernel gives them
//!   to PID 1) wait on a pipe, the pipe is closed, and the time until the
//!   last of them is reaped (its /proc entry gone) is one sample;
//! - forwarding: this driver sends SIGUSR1 to the init, CMD takes it with
//!   sigwaitinfo, and the CLOCK_MONOTONIC readings on both sides give the
//!   latency.
//!
//! `bench-init [ROUNDS] [--peers]`: tini's row needs `--peers` (xtask
//! installs it from Debian) or /usr/bin/tini.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::fd::AsRawFd as _,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{SigSet, Signal};
use supervisor_tests::{bench::median_p99, monotonic_ns};

const ORPHANS: usize = 1000;
const SIGNALS: usize = 1000;
/// Reaping times (ms) and forwarding latencies (µs).
type Samples = (Vec<f64>, Vec<f64>);

/// Each init runs this many times, in turns with the others.
const TURNS: usize = 4;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("__cmd") {
        let rounds = args.get(1).context("rounds")?.parse()?;
        return cmd(rounds);
    }
    let rounds: usize = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(20), |a| a.parse())
        .context("rounds")?;
    let peers = args.iter().any(|a| a == "--peers");
    let me = std::env::current_exe()?;
    let supervisor = me.with_file_name("supervisor");
    let mut inits = vec![(
        "`supervisor init --`".to_owned(),
        vec![supervisor.display().to_string(), "init".into(), "--".into()],
    )];
    let tini = Path::new("/usr/bin/tini");
    if peers && !tini.exists() {
        bail!("--peers: /usr/bin/tini is not installed (apt-get install tini)");
    }
    if tini.exists() {
        inits.push((
            "tini 0.19 (`tini --`)".to_owned(),
            vec![tini.display().to_string(), "--".into()],
        ));
    }
    // In turns, so that a slow moment of the machine is shared.
    let mut rows: Vec<(&String, Samples)> = inits
        .iter()
        .map(|(label, _)| (label, Default::default()))
        .collect();
    for turn in 0..TURNS {
        for ((label, init), (_, (reap, forward))) in inits.iter().zip(rows.iter_mut()) {
            eprintln!("bench: {label}, turn {}/{TURNS}", turn + 1);
            let (r, f) = under(init, &me, rounds.div_ceil(TURNS))?;
            reap.extend(r);
            forward.extend(f);
        }
    }
    println!("## A container's init: reaping orphans and forwarding signals\n");
    println!(
        "Each init is PID 1 of a pid namespace (`unshare --pid --fork --mount-proc`), {TURNS} \
         times in turns with the other, in the same run. Reaping: {ORPHANS} orphans exit at \
         once, timed until the last is reaped ({} rounds). Forwarding: SIGUSR1 sent to the \
         init until its command takes it ({} signals, one at a time).\n",
        rounds.div_ceil(TURNS) * TURNS,
        SIGNALS / TURNS * TURNS
    );
    println!("| init | reap {ORPHANS} p50 ms | p99 ms | forward p50 µs | p99 µs | reap p50 vs supervisor | forward p50 vs supervisor |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let (base_reap, base_forward) = {
        let (reap, forward) = &rows[0].1;
        (median_p99(reap.clone()).0, median_p99(forward.clone()).0)
    };
    for (label, (reap, forward)) in rows {
        let (r50, r99) = median_p99(reap);
        let (f50, f99) = median_p99(forward);
        println!(
            "| {label} | {r50:.2} | {r99:.2} | {f50:.0} | {f99:.0} | {:.2}× | {:.2}× |",
            r50 / base_reap,
            f50 / base_forward
        );
    }
    Ok(())
}

/// Runs `init` with this program as its command; the reaping samples (ms)
/// and the forwarding ones (µs).
fn under(init: &[String], me: &Path, rounds: usize) -> Result<Samples> {
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .args(init)
        .arg(me)
        .args(["__cmd", &rounds.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .context("unshare (needs root)")?;
    let mut out = BufReader::new(unshare.stdout.take().context("stdout")?);
    let mut reap = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            bail!("the command ended early: {:?}", unshare.wait()?);
        }
        match line.trim().split_once(' ') {
            Some(("reap", ms)) => reap.push(ms.parse()?),
            None if line.trim() == "ready" => break,
            _ => bail!("unexpected {line:?}"),
        }
    }
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))?;
    let pid: i32 = children
        .split_whitespace()
        .next()
        .context("unshare has no child")?
        .parse()?;
    let pid = nix::unistd::Pid::from_raw(pid);
    let mut forward = Vec::new();
    for _ in 0..SIGNALS / TURNS {
        let sent = monotonic_ns();
        nix::sys::signal::kill(pid, Signal::SIGUSR1)?;
        line.clear();
        out.read_line(&mut line)?;
        let taken: u64 = line.trim().parse().with_context(|| format!("{line:?}"))?;
        forward.push((taken.saturating_sub(sent)) as f64 / 1e3);
    }
    let status = unshare.wait()?;
    if !status.success() {
        bail!("the init ended with {status:?}");
    }
    Ok((reap, forward))
}

/// The command under the init (single-threaded, so that it may fork).
fn cmd(rounds: usize) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    for _ in 0..rounds {
        let ms = reap_round()?;
        writeln!(stdout, "reap {ms}")?;
    }
    let mut usr1 = SigSet::empty();
    usr1.add(Signal::SIGUSR1);
    usr1.thread_block()?;
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    for _ in 0..SIGNALS / TURNS {
        usr1.wait()?;
        writeln!(stdout, "{}", monotonic_ns())?;
        stdout.flush()?;
    }
    Ok(())
}

/// Makes ORPHANS orphans waiting on a pipe, closes it, and times until
/// the init reaped the last one; in ms.
fn reap_round() -> Result<f64> {
    let (read, write) = nix::unistd::pipe()?;
    for _ in 0..ORPHANS {
        // SAFETY: this program is single-threaded here; the children only
        // call async-signal-safe functions before _exit.
        match unsafe { libc::fork() } {
            -1 => bail!("fork: {}", std::io::Error::last_os_error()),
            0 => unsafe {
                if libc::fork() == 0 {
                    // The orphan: waits for the pipe to close.
                    libc::close(write.as_raw_fd());
                    let mut byte = 0u8;
                    libc::read(read.as_raw_fd(), (&mut byte as *mut u8).cast(), 1);
                    libc::_exit(0);
                }
                libc::_exit(0);
            },
            parent_of_orphan => {
                nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(parent_of_orphan), None)?;
            }
        }
    }
    drop(read);
    let children = orphans_of_init()?;
    if children.len() < ORPHANS {
        bail!("{} orphans, not {ORPHANS}", children.len());
    }
    let started = Instant::now();
    drop(write);
    let mut left = children;
    while !left.is_empty() {
        left.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The processes whose parent is PID 1, other than this one.
fn orphans_of_init() -> Result<Vec<i32>> {
    let me = std::process::id() as i32;
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid == Some(1) && pid != me {
            pids.push(pid);
        }
    }
    Ok(pids)
}
