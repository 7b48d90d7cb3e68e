//! The CLI verbs that talk to a running daemon over its control socket.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
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

pub async fn info(socket: &Path, json: bool) -> Result<ExitCode> {
    let response = control::request(socket, &Request::Info).await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    let info = response.summary.unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("daemon pid  {}", info["pid"]);
        println!("config      {}", info["config"].as_str().unwrap_or("?"));
        println!("watches     {}", info["watches"]);
        println!("tracking    {}", info["tracking"].as_str().unwrap_or("?"));
        println!("{}", backend_line(&info));
        let n = &info["notifications"];
        println!(
            "notices     {} webhook(s) delivered, {} failed, {} dropped; {} hook(s) failed, {} waiting",
            n["webhooks_delivered"], n["webhooks_failed"], n["dropped"], n["hooks_failed"], n["hooks_waiting"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "exits       ebpf: 1234 delivered, none lost" (or how many were lost
/// and recovered by re-checking every process).
fn backend_line(info: &Value) -> String {
    let c = &info["counters"];
    let lost = match c["dropped"].as_u64().unwrap_or(0) {
        0 => "none lost".to_owned(),
        n => format!(
            "{n} lost and recovered by {} re-check(s) of every watched process",
            c["resyncs"]
        ),
    };
    format!(
        "exits       {}: {} delivered, {lost}",
        info["backend"].as_str().unwrap_or("?"),
        c["delivered"]
    )
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

/// Shows the end of a watch's log files and follows them as they grow
/// (reopening a file that was rotated away).
pub async fn log(socket: &Path, name: &str, lines: usize, follow: bool) -> Result<ExitCode> {
    let response = control::request(
        socket,
        &Request::Status {
            target: Some(name.to_owned()),
        },
    )
    .await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    let watch = response.watches.first().context("no such watch")?;
    let mut paths: Vec<PathBuf> = ["stdout", "stderr"]
        .iter()
        .filter_map(|k| watch[*k].as_str().map(PathBuf::from))
        .collect();
    paths.dedup();
    if paths.is_empty() {
        bail!("{name} has no stdout or stderr log file in its config");
    }
    let mut followers = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        for line in &all[all.len().saturating_sub(lines)..] {
            println!("{line}");
        }
        followers.push(Follower::at_end(path));
    }
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        for f in &mut followers {
            f.print_new()?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The part of a log file not yet printed.
struct Follower {
    path: PathBuf,
    offset: u64,
    inode: u64,
}

impl Follower {
    fn at_end(path: PathBuf) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::metadata(&path).ok();
        Self {
            offset: meta.as_ref().map_or(0, |m| m.len()),
            inode: meta.map_or(0, |m| m.ino()),
            path,
        }
    }

    fn print_new(&mut self) -> Result<()> {
        use std::{
            io::{Read as _, Seek as _, Write as _},
            os::unix::fs::MetadataExt as _,
        };
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Ok(());
        };
        if meta.ino() != self.inode || meta.len() < self.offset {
            // Rotated or truncated: start over on the new file.
            self.inode = meta.ino();
            self.offset = 0;
        }
        if meta.len() == self.offset {
            return Ok(());
        }
        let mut file = std::fs::File::open(&self.path)?;
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new)?;
        self.offset += new.len() as u64;
        std::io::stdout().write_all(&new)?;
        std::io::stdout().flush()?;
        Ok(())
    }
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
        let one = response.watches.len() == 1;
        for w in &response.watches {
            println!("{}", row(w));
            for line in details(w, one) {
                println!("    {line}");
            }
        }
        if let Some(info) = &response.summary {
            println!("\n{}", backend_line(info));
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
            let at = clock(&exit["at"], "%H:%M:%S");
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

/// The lines under a watch's row: its health check, conditions, what its
/// process said of itself, and (for one watch) its recent events.
fn details(w: &Value, events: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let health = &w["health"];
    if !health.is_null() {
        let last = &health["last"];
        let result = if last.is_null() {
            "not probed yet".to_owned()
        } else {
            format!(
                "{} ({}) in {:.1}ms",
                if last["ok"] == true {
                    "passed"
                } else {
                    "failed"
                },
                last["message"].as_str().unwrap_or("?"),
                last["latency"].as_f64().unwrap_or(0.0)
            )
        };
        lines.push(format!(
            "health  {}: {result}; {} of the last {} failed, fired {}",
            health["check"].as_str().unwrap_or("?"),
            health["recent_failures"],
            health["times"][1],
            health["fired"]
        ));
    }
    for c in w["conditions"].as_array().into_iter().flatten() {
        lines.push(format!(
            "{:<7} {} (limit {}); {} of the last {} over, fired {}",
            c["condition"].as_str().unwrap_or("?"),
            c["last"].as_str().unwrap_or("not measured yet"),
            c["limit"].as_str().unwrap_or("?"),
            c["recent_over"],
            c["times"][1],
            c["fired"]
        ));
    }
    if let Some(said) = w["said"].as_str() {
        lines.push(format!("said    {said}"));
    }
    if events {
        for e in w["events"].as_array().into_iter().flatten() {
            let at = clock(&e["at"], "%H:%M:%S%.3f");
            lines.push(format!("{at}  {}", e["what"].as_str().unwrap_or("?")));
        }
    }
    lines
}

/// A unix time from the daemon as local wall-clock time, in `format`.
fn clock(unix_time: &Value, format: &str) -> String {
    unix_time
        .as_f64()
        .and_then(|t| jiff::Timestamp::from_microsecond((t * 1e6) as i64).ok())
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_default()
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
