//! What a chatty process costs through the daemon, printed as a Markdown
//! table (`cargo xtask bench` adds it to BENCHMARKS.md): a watch writes
//! `MB` megabytes of 64-byte lines (`yes | head -c`) as fast as it can;
//! the daemon copies them into a log file rotated at 50MB (thirty backups, so that all of it is kept to be counted),
//! plain and with timestamps. Beside it, in the same run, the same
//! writer straight into a file (`yes | head -c > file`). Figures: MB/s
//! from the start to the last byte in the files, and the daemon's CPU
//! over that time.
use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use supervisor::{control::request, protocol::Request};
use supervisor_tests::bench::{cpu_seconds, Daemon};

const LINE: &str = "a line of output, as a chatty service writes it, 64 bytes long.";

/// Bytes in `path` and its rotated `path.N`.
fn written(path: &Path) -> u64 {
    let mut total = std::fs::metadata(path).map_or(0, |m| m.len());
    for n in 1.. {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        match std::fs::metadata(&name) {
            Ok(m) => total += m.len(),
            Err(_) => break,
        }
    }
    total
}

fn writer(bytes: u64) -> String {
    format!("yes '{LINE}' | head -c {bytes}")
}

/// MB/s and the daemon's CPU % of a core for `bytes` through a watch.
async fn through_daemon(bytes: u64, timestamps: bool) -> Result<(f64, f64)> {
    let supervisor = std::env::current_exe()?.with_file_name("supervisor");
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("s.sock");
    let log = dir.path().join("out.log");
    let config = dir.path().join("logs.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\nlog_level = \"warn\"\n\n\
             [[watch]]\nname = \"chatty\"\nautostart = false\nkeepalive = false\n\
             timestamps = {timestamps}\n\
             stdout = {{ path = {log:?}, max_size = \"50MB\", backups = 30 }}\n\
             start = [\"/bin/sh\", \"-c\", {:?}]\n",
            dir.path().join("state"),
            writer(bytes)
        ),
    )?;
    let daemon = Daemon::run(&supervisor, &config)?;
    let launched = Instant::now();
    while request(&socket, &Request::Info).await.is_err() {
        if launched.elapsed() > Duration::from_secs(60) {
            bail!("the daemon did not serve its socket within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = daemon.0.id();
    let (cpu_before, t) = (cpu_seconds(pid)?, Instant::now());
    let started = request(
        &socket,
        &Request::Command {
            command: supervisor::protocol::Command::Start,
            target: Some("chatty".into()),
        },
    )
    .await?;
    if !started.ok {
        bail!("start: {:?}", started.error);
    }
    // Timestamps add 28 bytes to each 64-byte line begun (the last one
    // cut by head).
    let lines = bytes.div_ceil(LINE.len() as u64 + 1);
    let want = if timestamps {
        bytes + lines * 28
    } else {
        bytes
    };
    while written(&log) < want {
        if t.elapsed() > Duration::from_secs(300) {
            bail!("{} of {want} bytes after 300 s", written(&log));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let used = cpu_seconds(pid)? - cpu_before;
    let _ = request(&socket, &Request::Terminate).await;
    drop(daemon);
    Ok((bytes as f64 / 1e6 / secs, used / secs * 100.0))
}

/// MB/s of the writer straight into a file.
fn bare(bytes: u64) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("bare.log");
    let t = Instant::now();
    let status = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("{} > {}", writer(bytes), file.display()))
        .status()?;
    if !status.success() {
        bail!("the bare writer failed: {status}");
    }
    Ok(bytes as f64 / 1e6 / t.elapsed().as_secs_f64())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mb: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(300), |a| a.parse())
        .context("megabytes to write")?;
    let bytes = mb * 1_000_000;
    let floor = bare(bytes)?;
    let (plain, plain_cpu) = through_daemon(bytes, false).await?;
    let (stamped, stamped_cpu) = through_daemon(bytes, true).await?;
    println!("## Log throughput: {mb} MB of 64-byte lines\n");
    println!("A watch writes as fast as it can (`yes | head -c`); the daemon copies it into a file rotated at 50MB. Beside it, the same writer into a file with no daemon, in the same run.\n");
    println!("| path | MB/s | vs straight into a file | daemon CPU |\n|---|---:|---:|---:|");
    println!("| `yes \\| head -c > file` (no daemon) | {floor:.0} | 1.00× | |");
    println!(
        "| through the daemon, rotated | {plain:.0} | {:.2}× | {plain_cpu:.0}% of a core |",
        plain / floor
    );
    println!(
        "| the same with `timestamps = true` | {stamped:.0} | {:.2}× | {stamped_cpu:.0}% of a core |",
        stamped / floor
    );
    Ok(())
}
