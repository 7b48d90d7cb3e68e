//! The daemon at scale, printed as a Markdown table (`cargo xtask bench`
//! adds it to BENCHMARKS.md): with N watches (10,000 by default),
//! - how soon after launch `info` answers, while the starts go on, and
//!   when every watch is up;
//! - how long `status NAME` takes meanwhile and once all are up;
//! - how long a killed watch takes to run again, alone and while a
//!   SIGHUP reload of the whole file is being read.
use std::{
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use supervisor::{control::request, protocol::Request};
use supervisor_tests::bench::{median_p99, restart_ms, status};

async fn timed_status(socket: &Path, name: &str) -> Result<f64> {
    let t = Instant::now();
    status(socket, name).await?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(10_000), |a| a.parse())
        .context("the number of watches")?;
    let supervisor = std::env::current_exe()?.with_file_name("supervisor");
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("s.sock");
    let config = dir.path().join("scale.toml");
    let mut text = format!(
        "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\nlog_level = \"warn\"\n\n",
        dir.path().join("state")
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\nstart = [\"/bin/sleep\", \"100000\"]\n\n"
        ));
    }
    std::fs::write(&config, text)?;
    let launched = Instant::now();
    let mut daemon = Command::new(&supervisor)
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let stderr = daemon.stderr.take().context("stderr")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("supervisor running") {
                let _ = up_tx.send(launched.elapsed());
            }
        }
    });
    let first_info = loop {
        if request(&socket, &Request::Info).await.is_ok() {
            break launched.elapsed();
        }
        if launched.elapsed() > Duration::from_secs(300) {
            bail!("info did not answer within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut during = Vec::new();
    let all_up = loop {
        if let Ok(up) = up_rx.try_recv() {
            break up;
        }
        during.push(timed_status(&socket, &format!("w{}", n / 2)).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut after = Vec::new();
    for _ in 0..50 {
        after.push(timed_status(&socket, &format!("w{}", n - 1)).await?);
    }
    let mut alone = Vec::new();
    let mut reloading = Vec::new();
    let daemon_pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    for i in 0..10 {
        alone.push(restart_ms(&socket, &format!("w{i}"), || ()).await?);
        reloading.push(
            restart_ms(&socket, &format!("w{}", 100 + i), || {
                let _ = nix::sys::signal::kill(daemon_pid, nix::sys::signal::Signal::SIGHUP);
            })
            .await?,
        );
    }
    let _ = request(&socket, &Request::Terminate).await;
    let _ = daemon.wait();
    let (during_p50, during_p99) = if during.is_empty() {
        (f64::NAN, f64::NAN)
    } else {
        median_p99(during.clone())
    };
    let (after_p50, after_p99) = median_p99(after);
    let (alone_p50, alone_p99) = median_p99(alone);
    let (reload_p50, reload_p99) = median_p99(reloading);
    println!("## {n} watches\n");
    println!("| what | figure |\n|---|---:|");
    println!(
        "| launch → `info` answers (starts still going on) | {:.2} s |",
        first_info.as_secs_f64()
    );
    println!(
        "| launch → every watch started | {:.1} s |",
        all_up.as_secs_f64()
    );
    println!(
        "| `status NAME` while starting, p50 / p99 ({} samples) | {during_p50:.1} / {during_p99:.1} ms |",
        during.len()
    );
    println!(
        "| `status NAME` once all are up, p50 / p99 (50) | {after_p50:.1} / {after_p99:.1} ms |"
    );
    println!("| kill -9 → running again, seen through `status`, p50 / p99 (10) | {alone_p50:.1} / {alone_p99:.1} ms |");
    println!(
        "| the same with a SIGHUP reload of all {n} watches sent with the kill, p50 / p99 (10) | {reload_p50:.1} / {reload_p99:.1} ms |"
    );
    Ok(())
}
