//! `supervisor events`: the event stream as it comes, one line (or one
//! JSON object) each, until the daemon ends it or Ctrl-C. Rendering only:
//! the daemon's side is `events`.
use std::{io::Write as _, path::Path, process::ExitCode};

use anyhow::{bail, Context as _, Result};
use tokio::io::AsyncBufReadExt as _;

use crate::{
    cli::EventsArgs,
    client::printable,
    control,
    protocol::{EventKind, Request, StreamEvent},
};

pub async fn run(socket: &Path, args: EventsArgs) -> Result<ExitCode> {
    let request = Request::Events {
        target: args.target.clone(),
        since_secs: args.since.map(|d| d.as_secs_f64()),
    };
    // Held whole: its write half open, or the daemon ends the stream.
    let mut exchange = control::exchange(socket, &request).await?;
    if !exchange.response.ok {
        bail!("{}", exchange.response.error.take().unwrap_or_default());
    }
    let read = &mut exchange.read;
    let mut out = std::io::stdout().lock();
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::select! {
            n = read.read_line(&mut line) => n.context("reading the event stream")?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        if n == 0 {
            return Ok(ExitCode::SUCCESS);
        }
        if args.json {
            out.write_all(line.as_bytes())?;
        } else {
            let event: StreamEvent = serde_json::from_str(&line)
                .with_context(|| format!("bad line from the supervisor: {line}"))?;
            writeln!(out, "{}", text(&event))?;
        }
        out.flush()?;
    }
}

/// `12:04:05.123  web        exit   process 4242 killed by SIGKILL ...`.
fn text(event: &StreamEvent) -> String {
    let time = jiff::Timestamp::from_microsecond((event.at * 1e6) as i64)
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_default();
    let kind = match event.kind {
        EventKind::Event => "event",
        EventKind::Exit => "exit",
        EventKind::Check => "check",
        EventKind::Notification => "notify",
        EventKind::Stream => "--",
    };
    format!(
        "{time}  {:<12} {kind:<6} {}",
        printable(&event.watch),
        printable(&event.text)
    )
}
