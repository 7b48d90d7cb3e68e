//! `supervisor trace`: exits as they happen, like exitsnoop: the first
//! thing an operator tries, and the pipeline's end-to-end check.
use std::{io::Write as _, process::ExitCode};

use anyhow::{Context as _, Result};

use crate::{
    backend::{Backend, Options, Scope},
    cli::TraceArgs,
    exit::ExitEvent,
    process,
};

pub async fn run(args: TraceArgs) -> Result<ExitCode> {
    let options = Options {
        scope: if args.pids.is_empty() {
            Scope::All
        } else {
            Scope::Watched
        },
        poll_interval: args.backend.poll_interval,
        ..Options::default()
    };
    let mut backend = Backend::open_chosen(args.backend.backend.into(), &options)?;
    for &pid in &args.pids {
        let id = process::identify(pid).with_context(|| format!("--pid {pid}"))?;
        backend.watch(id)?;
    }
    let mut remaining = (!args.pids.is_empty()).then_some(args.pids.len());
    eprintln!("tracing exits with {} (Ctrl-C to stop)", backend.kind());
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
        let event = tokio::select! {
            event = backend.next_exit() => event?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        seen += 1;
        remaining = remaining.map(|r| r.saturating_sub(1));
        if args.json {
            writeln!(out, "{}", serde_json::to_string(&event)?)?;
        } else {
            writeln!(out, "{}", line(&event))?;
        }
        out.flush()?;
    }
}

fn line(event: &ExitEvent) -> String {
    let time = jiff::Zoned::try_from(event.seen_at)
        .map(|z| z.strftime("%H:%M:%S%.6f").to_string())
        .unwrap_or_else(|_| "?".into());
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
