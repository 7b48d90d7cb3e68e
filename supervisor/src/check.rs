//! `supervisor check`: which exit backends work here, which one `auto`
//! picks, and a live proof: spawn a throwaway process, kill it, and time
//! how long the backend takes to report the death.
use std::{
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use nix::sys::signal::{kill, Signal};
use serde::Serialize;

use crate::{
    backend::{Backend, BackendKind, Options},
    cli::CheckArgs,
    exit::ExitStatus,
    process::{self, Pid},
};

const ROUNDS: usize = 3;

#[derive(Serialize)]
struct Report {
    backends: Vec<BackendReport>,
    /// The backend `auto` (or `--backend`) selects.
    selected: Option<BackendKind>,
    passed: bool,
}

#[derive(Serialize)]
struct BackendReport {
    backend: BackendKind,
    available: bool,
    reason: Option<String>,
    self_test: Option<SelfTest>,
}

#[derive(Serialize)]
struct SelfTest {
    passed: bool,
    /// kill() to exit event in userspace, one per round.
    latencies_us: Vec<f64>,
    error: Option<String>,
}

pub async fn run(args: CheckArgs) -> Result<ExitCode> {
    let options = Options {
        poll_interval: args.backend.poll_interval,
        ..Options::default()
    };
    let kinds = crate::backend::BackendChoice::from(args.backend.backend).candidates();
    let mut report = Report {
        backends: Vec::new(),
        selected: None,
        passed: false,
    };
    for kind in kinds {
        let entry = match Backend::open(kind, &options) {
            Err(e) => BackendReport {
                backend: kind,
                available: false,
                reason: Some(format!("{e:#}")),
                self_test: None,
            },
            Ok(mut backend) => {
                let wait = options.poll_interval + Duration::from_secs(5);
                let test = self_test(&mut backend, wait).await;
                if report.selected.is_none() {
                    report.selected = Some(kind);
                    report.passed = test.passed;
                }
                BackendReport {
                    backend: kind,
                    available: true,
                    reason: None,
                    self_test: Some(test),
                }
            }
        };
        report.backends.push(entry);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_text(report: &Report) {
    for b in &report.backends {
        let state = if b.available {
            "available"
        } else {
            "unavailable"
        };
        print!("{:<8} {:<12}", b.backend.name(), state);
        match (&b.reason, &b.self_test) {
            (Some(reason), _) => println!("{reason}"),
            (None, Some(t)) if t.passed => println!(
                "self-test passed: exit seen {} after kill (median of {})",
                format_us(median(&t.latencies_us)),
                t.latencies_us.len()
            ),
            (None, Some(t)) => println!(
                "self-test FAILED: {}",
                t.error.as_deref().unwrap_or("unknown error")
            ),
            (None, None) => println!(),
        }
    }
    match report.selected {
        Some(kind) => println!(
            "selected: {kind} (self-test {})",
            if report.passed { "passed" } else { "FAILED" }
        ),
        None => println!("selected: none: no exit backend can run here"),
    }
}

fn format_us(us: f64) -> String {
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

async fn self_test(backend: &mut Backend, wait: Duration) -> SelfTest {
    let mut latencies = Vec::new();
    for _ in 0..ROUNDS {
        match kill_and_time(backend, wait).await {
            Ok(latency) => latencies.push(latency.as_secs_f64() * 1e6),
            Err(e) => {
                return SelfTest {
                    passed: false,
                    latencies_us: latencies,
                    error: Some(format!("{e:#}")),
                }
            }
        }
    }
    SelfTest {
        passed: true,
        latencies_us: latencies,
        error: None,
    }
}

/// One round: spawn, watch, SIGKILL, await the event, reap.
async fn kill_and_time(backend: &mut Backend, wait: Duration) -> Result<Duration> {
    let exe = std::env::current_exe().context("finding our own executable")?;
    let mut child = Command::new(exe)
        .arg("__self-test-child")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .context("spawning a throwaway process")?;
    let pid = Pid::from_child(&child);
    let result = async {
        let id = process::identify(pid)?;
        backend.watch(id)?;
        let killed_at = Instant::now();
        kill(pid.as_nix(), Signal::SIGKILL).context("killing the throwaway process")?;
        let event = tokio::time::timeout(wait, backend.next_exit())
            .await
            .with_context(|| format!("no exit event within {wait:?} of killing pid {pid}"))??;
        let latency = killed_at.elapsed();
        if event.pid != pid {
            bail!("reported pid {} instead of the killed {pid}", event.pid);
        }
        let expected = ExitStatus::Killed {
            signal: libc::SIGKILL,
            core_dumped: false,
        };
        if event.status != expected && event.status != ExitStatus::Unknown {
            bail!(
                "reported '{}' for a process killed by SIGKILL",
                event.status
            );
        }
        Ok(latency)
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The throwaway process: waits to be killed, and exits on its own after a
/// minute so a crashed `check` leaves nothing behind.
pub fn self_test_child() -> ! {
    std::thread::sleep(Duration::from_secs(60));
    std::process::exit(0)
}
