//! `supervisor why NAME`: a watch's exit history as a narrative, newest
//! first, from the typed status (each exit's cause, sender or kernel
//! reason, how long it ran, what it printed last). Rendering only: the
//! daemon keeps the history, `client` the socket.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::{
    cli::WhyArgs,
    client::printable,
    control,
    protocol::{LastExitStatus, Request, WatchStatus},
};

/// What `why --json` prints for each watch.
#[derive(Serialize)]
struct History<'a> {
    name: &'a str,
    /// Newest first.
    exits: Vec<&'a LastExitStatus>,
}

pub async fn run(socket: &Path, args: WhyArgs) -> Result<ExitCode> {
    let response = control::request(
        socket,
        &Request::Status {
            target: Some(args.target),
        },
    )
    .await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    if args.json {
        let all: Vec<History> = response
            .watches
            .iter()
            .map(|w| History {
                name: &w.name,
                exits: newest(w, args.count),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(ExitCode::SUCCESS);
    }
    for (i, w) in response.watches.iter().enumerate() {
        if i > 0 {
            println!();
        }
        let exits = newest(w, args.count);
        if exits.is_empty() {
            println!("{}: no exit yet", w.name);
            continue;
        }
        println!(
            "{}: the last {} of {} exit(s) kept, newest first",
            w.name,
            exits.len(),
            w.exits.len()
        );
        for exit in exits {
            println!();
            for line in narrative(exit) {
                println!("{}", printable(&line));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn newest(w: &WatchStatus, count: usize) -> Vec<&LastExitStatus> {
    w.exits.iter().rev().take(count).collect()
}

/// The lines that tell one exit.
fn narrative(exit: &LastExitStatus) -> Vec<String> {
    let when = jiff::Timestamp::from_microsecond((exit.at * 1e6) as i64)
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    let cause = if exit.cause.is_empty() {
        &exit.status.text
    } else {
        &exit.cause
    };
    let mut lines = vec![
        format!("{when}  process {}", exit.pid),
        format!("  {cause}"),
        format!("  status  {}", exit.status.text),
    ];
    if let Some(origin) = &exit.origin {
        let mut signal = format!(
            "  signal  {} ({})",
            exit.status.signal.as_deref().unwrap_or("?"),
            origin.code
        );
        if let Some(addr) = &origin.addr {
            signal.push_str(&format!(" at {addr}"));
        }
        lines.push(signal);
        if let Some(sender) = &origin.sender {
            let parent = match (&sender.parent_comm, sender.parent_pid) {
                (Some(comm), Some(pid)) => format!(", parent {comm} {pid}"),
                _ => String::new(),
            };
            lines.push(format!(
                "  sender  pid {} (thread {}), {}, uid {}{parent}",
                sender.pid, sender.tid, sender.comm, sender.uid
            ));
            lines.push(match &sender.cmdline {
                Some(cmdline) => format!("          still running: {cmdline}"),
                None => "          no longer running when the death was read".to_owned(),
            });
        }
    }
    if let Some(core) = &exit.core {
        lines.push(format!("  core    {core}"));
    }
    if let (Some(rss), Some(cpu)) = (exit.peak_rss, exit.cpu_secs) {
        lines.push(format!(
            "  used    peak RSS {}, CPU {cpu:.2}s",
            crate::units::short_size(rss)
        ));
    }
    if let Some(oom) = &exit.oom {
        let size = crate::units::short_size;
        let mut line = match (oom.anon_rss, oom.file_rss, oom.shmem_rss) {
            (Some(anon), Some(file), Some(shmem)) => format!(
                "  oom     anon RSS {}, file RSS {}, shmem {}",
                size(anon),
                size(file),
                size(shmem)
            ),
            _ => "  oom     counted by its cgroup (what the OOM killer saw is known to the eBPF backend only)".to_owned(),
        };
        match oom.cgroup_limit {
            Some(limit) => line.push_str(&format!("; its memory_max {} reached", size(limit))),
            None => line.push_str("; the host ran out of memory"),
        }
        if let (Some(pid), Some(comm)) = (oom.trigger_pid, &oom.trigger_comm) {
            line.push_str(&format!(", allocating: pid {pid} ({comm})"));
        }
        lines.push(line);
    }
    for (stream, tail) in [("stdout", &exit.stdout), ("stderr", &exit.stderr)] {
        for (i, line) in tail.iter().enumerate() {
            let label = if i == 0 { stream } else { "" };
            lines.push(format!("  {label:<6}  {line}"));
        }
    }
    lines
}
