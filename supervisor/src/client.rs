//! The CLI verbs that talk to a running daemon over its control socket.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cli::{StatusArgs, TargetArgs},
    control,
    protocol::{Command, DaemonInfo, Missing, Request, State, Summary, WatchStatus},
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
    let Some(Summary::Info(info)) = response.summary else {
        bail!("the daemon's answer to info holds no description of it");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
    } else {
        println!("daemon pid  {}", info.pid);
        println!("config      {}", info.config.display());
        println!("watches     {}", info.watches);
        if info.starting > 0 {
            println!("starting    {} still to be started", info.starting);
        }
        match &info.cgroups {
            Some(c) => println!(
                "tracking    {}, in {}{}",
                info.tracking,
                c.dir.display(),
                if c.delegated {
                    " (delegated to the daemon's unit)"
                } else {
                    ""
                }
            ),
            None => println!("tracking    {}", info.tracking),
        }
        if let Some(oom) = &info.oom_score_adj {
            match &oom.error {
                None if oom.now == -1000 => {
                    println!("oom         score adj -1000: the OOM killer never picks the daemon")
                }
                None => println!("oom         score adj {}", oom.now),
                Some(e) => println!("oom         score adj {}, not {}: {e}", oom.now, oom.wanted),
            }
        }
        if let Some(fds) = info.fds {
            println!("fds         {} open, limit {}", fds.open, fds.limit);
        }
        println!("{}", backend_line(&info));
        let n = &info.notifications;
        println!(
            "notices     {} webhook(s) delivered, {} failed, {} dropped; {} hook(s) failed, {} waiting",
            n.webhooks_delivered, n.webhooks_failed, n.dropped, n.hooks_failed, n.hooks_waiting
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// "exits       ebpf: 1234 delivered, none lost" (or how many were lost
/// and recovered by re-checking every process).
fn backend_line(info: &DaemonInfo) -> String {
    let c = &info.counters;
    let lost = match c.dropped {
        0 => "none lost".to_owned(),
        n => format!(
            "{n} lost and recovered by {} re-check(s) of every watched process",
            c.resyncs
        ),
    };
    format!(
        "exits       {}: {} delivered, {lost}",
        info.backend, c.delivered
    )
}

/// Checks the file here first (a bad one is reported with its location and
/// never sent), then has the daemon load it.
pub async fn load(socket: &Path, path: PathBuf, missing: Missing) -> Result<ExitCode> {
    // Only whether it parses: the daemon judges whom it trusts.
    crate::config::load(&path, crate::config::Trust::Insecure)?;
    let path = std::fs::canonicalize(&path)?;
    let response = control::request(socket, &Request::Load { path, missing }).await?;
    if let Some(e) = response.error {
        bail!("{e}");
    }
    if let Some(Summary::Load(summary)) = response.summary {
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
    let mut paths: Vec<PathBuf> = [&watch.stdout, &watch.stderr]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    paths.dedup();
    if paths.is_empty() {
        bail!("{name} has no stdout or stderr log file in its config");
    }
    let mut followers = Vec::new();
    for path in paths {
        match open_log(&path) {
            Ok(mut file) => {
                let tail = tail(&mut file, lines)
                    .with_context(|| format!("reading {}", path.display()))?;
                std::io::Write::write_all(&mut std::io::stdout(), &tail)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => bail!("{}: {e}", path.display()),
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

/// A log file, opened as its folder's owner may have left it: never
/// through a symlink, never a FIFO or device (which would block or never
/// end).
pub(crate) fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other("a symbolic link; not followed"),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// The last `lines` lines of `file`, read backwards from its end in
/// chunks: a log of gigabytes costs what its tail costs.
pub(crate) fn tail(file: &mut std::fs::File, lines: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read as _, Seek as _};
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let mut start = len;
    let mut buf: Vec<u8> = Vec::new();
    // One more newline than lines: the one that ends the line before them.
    let newlines = |b: &[u8]| b.iter().filter(|&&c| c == b'\n').count();
    let wanted = lines + usize::from(len > 0);
    while start > 0 && newlines(&buf) < wanted {
        let from = start.saturating_sub(CHUNK);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.seek(std::io::SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    // Drop the partial line a chunk may have begun in, and extra lines.
    let ends = buf.ends_with(b"\n");
    let mut cut = 0;
    let mut seen = 0;
    for (i, &c) in buf.iter().enumerate().rev() {
        if c == b'\n' && !(ends && i == buf.len() - 1) {
            seen += 1;
            if seen == lines {
                cut = i + 1;
                break;
            }
        }
    }
    if lines == 0 {
        cut = buf.len();
    }
    Ok(buf.split_off(cut))
}

/// `text` with control characters (terminal escape sequences among them)
/// shown escaped: what a watched program says must not drive the
/// operator's terminal.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// A log file being followed: the file it has open (read to its end
/// even once it is renamed away), then the files that replaced it.
struct Follower {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl Follower {
    fn at_end(path: PathBuf) -> Self {
        use std::io::Seek as _;
        let file = open_log(&path).ok().and_then(|mut f| {
            f.seek(std::io::SeekFrom::End(0)).ok()?;
            Some(f)
        });
        Self { path, file }
    }

    /// Prints what was written since: the rest of the file it holds, then
    /// (after a rotation) the backups newer than it, oldest first, then
    /// the new file from its start.
    fn print_new(&mut self) -> Result<()> {
        use std::{
            io::{Read as _, Seek as _, Write as _},
            os::unix::fs::MetadataExt as _,
        };
        let mut out = Vec::new();
        let held = match self.file.as_mut() {
            Some(file) => {
                file.read_to_end(&mut out)?;
                Some((file.metadata()?.ino(), file.stream_position()?))
            }
            None => None,
        };
        let Ok(now) = std::fs::metadata(&self.path) else {
            std::io::stdout().write_all(&out)?;
            return Ok(());
        };
        match held {
            Some((inode, _)) if inode != now.ino() => {
                // Rotated: PATH.n is the file held, PATH.n-1 .. PATH.1
                // came after it.
                let numbered = |n: u32| {
                    let mut name = self.path.as_os_str().to_owned();
                    name.push(format!(".{n}"));
                    PathBuf::from(name)
                };
                let found = (1..=1000)
                    .take_while(|n| numbered(*n).exists())
                    .find(|n| std::fs::metadata(numbered(*n)).is_ok_and(|m| m.ino() == inode));
                for n in (1..found.unwrap_or(1)).rev() {
                    if let Ok(mut f) = open_log(&numbered(n)) {
                        f.read_to_end(&mut out)?;
                    }
                }
                self.file = None;
            }
            // Truncated in place: from its start again.
            Some((_, position)) if now.len() < position => {
                if let Some(file) = self.file.as_mut() {
                    file.seek(std::io::SeekFrom::Start(0))?;
                    file.read_to_end(&mut out)?;
                }
            }
            _ => {}
        }
        if self.file.is_none() {
            if let Ok(mut file) = open_log(&self.path) {
                file.read_to_end(&mut out)?;
                self.file = Some(file);
            }
        }
        std::io::stdout().write_all(&out)?;
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
            println!("{}", printable(&row(w)));
            for line in details(w, one) {
                println!("    {}", printable(&line));
            }
        }
        if let Some(Summary::Info(info)) = &response.summary {
            println!("\n{}", backend_line(info));
        }
    }
    // As god's: 0 up, 1 unmonitored, 2 anything else.
    let all = |state: State| response.watches.iter().all(|w| w.state == state);
    Ok(if all(State::Up) {
        ExitCode::SUCCESS
    } else if all(State::Unmonitored) {
        ExitCode::from(1)
    } else {
        ExitCode::from(2)
    })
}

fn row(w: &WatchStatus) -> String {
    let pid = w.pid.map_or("-".into(), |p| p.to_string());
    let uptime = w.uptime_secs.map_or("-".into(), |s| {
        crate::units::short_duration(Duration::from_secs_f64(s))
    });
    let mut last = match &w.last_exit {
        None => "-".to_owned(),
        Some(exit) => format!(
            "{} at {} (pid {})",
            exit.status.text,
            clock(exit.at, "%H:%M:%S"),
            exit.pid
        ),
    };
    if let Some(backoff) = w.backoff_secs {
        last.push_str(&format!("; flapping, backoff {backoff:.0}s"));
    }
    if let Some(error) = &w.last_error {
        last.push_str(&format!("; start failed: {error}"));
    }
    format!(
        "{:<16} {:<12} {:>7} {:>9} {:>8}  {last}",
        w.name, w.state, pid, uptime, w.restarts,
    )
}

/// The lines under a watch's row: its health check, conditions, what its
/// process said of itself, and (for one watch) its recent exits, each
/// with its cause, and its recent events.
fn details(w: &WatchStatus, events: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(health) = &w.health {
        let result = match &health.last {
            None => "not probed yet".to_owned(),
            Some(last) => format!(
                "{} ({}) in {:.1}ms",
                if last.ok { "passed" } else { "failed" },
                last.message,
                last.latency
            ),
        };
        lines.push(format!(
            "health  {}: {result}; {} of the last {} failed, fired {}",
            health.check, health.recent_failures, health.times[1], health.fired
        ));
    }
    for c in &w.conditions {
        lines.push(format!(
            "{:<7} {} (limit {}); {} of the last {} over, fired {}",
            c.condition,
            c.last.as_deref().unwrap_or("not measured yet"),
            c.limit,
            c.recent_over,
            c.times[1],
            c.fired
        ));
    }
    let limits: Vec<String> = [
        w.memory_max
            .map(|b| format!("memory_max {}", crate::units::short_size(b))),
        w.memory_high
            .map(|b| format!("memory_high {}", crate::units::short_size(b))),
        w.cpu_max_percent.map(|p| format!("cpu_max {p}%")),
        w.pids_max.map(|n| format!("pids_max {n}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !limits.is_empty() {
        lines.push(format!("limits  {}", limits.join(", ")));
    }
    if let Some(said) = &w.said {
        lines.push(format!("said    {said}"));
    }
    if events {
        // Newest first, each with why it died.
        for exit in w.exits.iter().rev() {
            let cause = if exit.cause.is_empty() {
                &exit.status.text
            } else {
                &exit.cause
            };
            lines.push(format!(
                "died    {} (pid {}): {cause}",
                clock(exit.at, "%Y-%m-%d %H:%M:%S"),
                exit.pid
            ));
        }
        for e in &w.events {
            lines.push(format!("{}  {}", clock(e.at, "%H:%M:%S%.3f"), e.what));
        }
    }
    lines
}

/// A unix time from the daemon as local wall-clock time, in `format`.
pub(crate) fn clock(unix_time: f64, format: &str) -> String {
    jiff::Timestamp::from_microsecond((unix_time * 1e6) as i64)
        .ok()
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime(format)
                .to_string()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tail_reads_the_last_lines_only() {
        use std::io::Write as _;
        let mut file = tempfile::tempfile().unwrap();
        for i in 0..100_000 {
            writeln!(file, "line {i}").unwrap();
        }
        assert_eq!(
            super::tail(&mut file, 2).unwrap(),
            b"line 99998\nline 99999\n"
        );
        assert_eq!(super::tail(&mut file, 0).unwrap(), b"");
        let mut short = tempfile::tempfile().unwrap();
        short.write_all(b"a\nb").unwrap();
        assert_eq!(super::tail(&mut short, 5).unwrap(), b"a\nb");
        assert_eq!(super::tail(&mut short, 1).unwrap(), b"b");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(super::printable("ok"), "ok");
        assert_eq!(super::printable("\u{1b}[31mred"), "\\u{1b}[31mred");
    }
}
