//! The CLI verbs that talk to a running daemon over its control socket.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{
    cli::{StatusArgs, TargetArgs},
    control::{self, Missing, Request},
    watch::Command,
};

pub async fn command(socket: &Path, command: Command, args: TargetArgs) -> Result<ExitCode> {
    let response = control::request(
        socket,
        &Request::Command {
            command,
            target: args.target,
        },
    )
    .await?;
    match response.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => bail!("{e}"),
    }
}

pub async fn simple(socket: &Path, request: Request) -> Result<ExitCode> {
    let response = control::request(socket, &request).await?;
    match response.error {
        None => Ok(ExitCode::SUCCESS),
        Some(e) => bail!("{e}"),
    }
}

/// Checks the file here first (a bad one is reported with its location and
/// never sent), then has the daemon load it.
pub async fn load(socket: &Path, path: PathBuf, missing: Missing) -> Result<ExitCode> {
    crate::config::load(&path)?;
    let path = std::fs::canonicalize(&path)?;
    let response = control::request(socket, &Request::Load { path, missing }).await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    if let Some(summary) = response.summary {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(socket: &Path, args: StatusArgs) -> Result<ExitCode> {
    let response = control::request(
        socket,
        &Request::Status {
            target: args.target,
        },
    )
    .await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&response.watches)?);
    } else {
        println!(
            "{:<16} {:<12} {:>7} {:>9} {:>8}  LAST EXIT",
            "NAME", "STATE", "PID", "UPTIME", "RESTARTS"
        );
        for w in &response.watches {
            println!("{}", row(w));
        }
    }
    let states: Vec<&str> = response
        .watches
        .iter()
        .filter_map(|w| w["state"].as_str())
        .collect();
    // As god's: 0 up, 1 unmonitored, 2 anything else.
    Ok(if states.iter().all(|s| *s == "up") {
        ExitCode::SUCCESS
    } else if states.iter().all(|s| *s == "unmonitored") {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    })
}

fn row(w: &Value) -> String {
    let pid = w["pid"].as_u64().map_or("-".into(), |p| p.to_string());
    let uptime = w["uptime_secs"]
        .as_f64()
        .map_or("-".into(), |s| short_duration(Duration::from_secs_f64(s)));
    let mut last = match &w["last_exit"] {
        Value::Null => "-".to_owned(),
        exit => {
            let at = exit["at"]
                .as_f64()
                .and_then(|t| jiff::Timestamp::from_microsecond((t * 1e6) as i64).ok())
                .map(|t| {
                    t.to_zoned(jiff::tz::TimeZone::system())
                        .strftime("%H:%M:%S")
                        .to_string()
                })
                .unwrap_or_default();
            format!(
                "{} at {at} (pid {})",
                exit["status"]["text"].as_str().unwrap_or("?"),
                exit["pid"]
            )
        }
    };
    if let Some(backoff) = w["backoff_secs"].as_f64() {
        last.push_str(&format!("; flapping, backoff {backoff:.0}s"));
    }
    if let Some(error) = w["last_error"].as_str() {
        last.push_str(&format!("; start failed: {error}"));
    }
    format!(
        "{:<16} {:<12} {:>7} {:>9} {:>8}  {last}",
        w["name"].as_str().unwrap_or("?"),
        w["state"].as_str().unwrap_or("?"),
        pid,
        uptime,
        w["restarts"],
    )
}

fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        3600..86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}
