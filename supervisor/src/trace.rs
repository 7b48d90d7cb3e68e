//! `supervisor trace`: exits as they happen, like exitsnoop, and with
//! `--signals` the signals that could end them as they are sent, like
//! killsnoop: the first thing an operator tries, and the pipeline's
//! end-to-end check.
use std::{io::Write as _, process::ExitCode};

use anyhow::{bail, Context as _, Result};
use serde::Serialize;

use crate::{
    backend::{ebpf::SignalTap, Backend, Options, Scope},
    cli::TraceArgs,
    exit::ExitEvent,
    origin::SentSignal,
    process,
};

/// One line of `--json`: an exit, or a signal sent.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line<'a> {
    Exit(&'a ExitEvent),
    Signal(&'a SentSignal),
}

pub async fn run(args: TraceArgs) -> Result<ExitCode> {
    let options = Options {
        scope: if args.pids.is_empty() {
            Scope::All
        } else {
            Scope::Watched
        },
        poll_interval: args.backend.poll_interval,
        report_signals: args.signals,
        ..Options::default()
    };
    let mut backend = Backend::open_chosen(args.backend.backend.into(), &options)?;
    let mut signals = backend.take_signals();
    if args.signals && signals.is_none() {
        bail!(
            "--signals needs the eBPF backend with its signal program, and {} is in use",
            backend.kind()
        );
    }
    for &pid in &args.pids {
        let id = process::identify(pid).with_context(|| format!("--pid {pid}"))?;
        backend.watch(id)?;
    }
    let mut remaining = (!args.pids.is_empty()).then_some(args.pids.len());
    let what = if args.signals {
        "exits and signals"
    } else {
        "exits"
    };
    eprintln!("tracing {what} with {} (Ctrl-C to stop)", backend.kind());
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<15} {:>7} {:>7} {:<16} STATUS",
            "TIME", "PID", "PPID", "COMM"
        )?;
        out.flush()?;
    }
    let mut seen = 0u64;
    loop {
        if args.count.is_some_and(|c| seen >= c) || remaining == Some(0) {
            return Ok(ExitCode::SUCCESS);
        }
        let text = tokio::select! {
            // A signal is sent before the death it causes, and is printed
            // before it (the last exit ends a `--pid` trace).
            biased;
            Some(signal) = next_signal(&mut signals) => {
                let signal = signal?;
                if args.json {
                    serde_json::to_string(&Line::Signal(&signal))?
                } else {
                    signal_line(&signal)
                }
            }
            event = backend.next_exit() => {
                let event = event?;
                seen += 1;
                remaining = remaining.map(|r| r.saturating_sub(1));
                if args.json {
                    serde_json::to_string(&Line::Exit(&event))?
                } else {
                    line(&event)
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        writeln!(out, "{text}")?;
        out.flush()?;
    }
}

fn now_text(at: std::time::SystemTime) -> String {
    jiff::Zoned::try_from(at)
        .map(|z| z.strftime("%H:%M:%S%.6f").to_string())
        .unwrap_or_else(|_| "?".into())
}

async fn next_signal(tap: &mut Option<SignalTap>) -> Option<Result<SentSignal>> {
    match tap {
        Some(tap) => Some(tap.next().await),
        None => std::future::pending().await,
    }
}

/// A signal's row: its sender where the table has the exit's status.
fn signal_line(signal: &SentSignal) -> String {
    let time = now_text(std::time::SystemTime::now());
    format!(
        "{time:<15} {:>7} {:>7} {:<16} signal {}",
        signal.pid,
        "-",
        signal.comm,
        signal.describe()
    )
}

fn line(event: &ExitEvent) -> String {
    let time = now_text(event.seen_at);
    let ppid = event.ppid.map_or("?".into(), |p| p.to_string());
    let comm = event.comm.as_deref().unwrap_or("?");
    let status = match (&event.origin, event.status) {
        (Some(origin), crate::exit::ExitStatus::Killed { core_dumped, .. }) => {
            origin.describe(event.pid, core_dumped)
        }
        _ => event.status.to_string(),
    };
    format!("{time:<15} {:>7} {ppid:>7} {comm:<16} {status}", event.pid)
}
