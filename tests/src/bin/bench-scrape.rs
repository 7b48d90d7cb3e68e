//! What `/metrics` costs, printed as a Markdown table (`cargo xtask bench`
//! adds it to BENCHMARKS.md): with N watches (1,000 by default) and
//! metrics on,
//! - the size of a scrape and its series;
//! - a scrape's time when the snapshot changed since the last one (a
//!   rendering) and when it did not (the cached one);
//! - what scraping costs the loop: kill -9 to running again, seen through
//!   `status`, without scrapes and with a client scraping back to back.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use supervisor::{control::request, protocol::Request};
use supervisor_tests::bench::{median_p99, restart_ms};

/// The daemon under test, gone with the benchmark however it ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // Terminated already when all went well; else its watches stay
        // behind, as after a kill -9 of any supervisor.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scrape(addr: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").context("no body")?;
    if !head.starts_with("HTTP/1.0 200") {
        bail!("scrape answered {head}");
    }
    Ok(body.to_owned())
}

fn timed_scrape(addr: &str) -> Result<f64> {
    let t = Instant::now();
    scrape(addr)?;
    Ok(t.elapsed().as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000), |a| a.parse())
        .context("the number of watches")?;
    if n < 70 {
        bail!("at least 70 watches: each measurement kills watches of its own");
    }
    let supervisor = std::env::current_exe()?.with_file_name("supervisor");
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("s.sock");
    let config = dir.path().join("scrape.toml");
    let port = {
        // The kernel's pick, then given back: nothing else here binds.
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut text = format!(
        "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\nlog_level = \"warn\"\nmetrics = \"{addr}\"\n\n",
        dir.path().join("state")
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\ngroup = \"g{}\"\nstart = [\"/bin/sleep\", \"100000\"]\n\n",
            i % 10
        ));
    }
    std::fs::write(&config, text)?;
    let daemon = Daemon(
        Command::new(&supervisor)
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let launched = Instant::now();
    loop {
        if let Ok(response) = request(&socket, &Request::Info).await {
            if let Some(supervisor::protocol::Summary::Info(info)) = response.summary {
                if info.starting == 0 {
                    break;
                }
            }
        }
        if launched.elapsed() > Duration::from_secs(300) {
            bail!("the watches did not start within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the usage sampler has been round: every series is there.
    let body = loop {
        let body = scrape(&addr)?;
        if body.contains("supervisor_watch_memory_bytes{") {
            break body;
        }
        if launched.elapsed() > Duration::from_secs(300) {
            bail!("no usage sample within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let series = body.lines().filter(|l| !l.starts_with('#')).count();
    let mut fresh = Vec::new();
    let mut cached = Vec::new();
    for i in 0..30 {
        // A restart makes a new snapshot: the next scrape renders again.
        restart_ms(&socket, &format!("w{i}"), || ()).await?;
        fresh.push(timed_scrape(&addr)?);
        cached.push(timed_scrape(&addr)?);
    }
    let mut quiet = Vec::new();
    for i in 0..20 {
        quiet.push(restart_ms(&socket, &format!("w{}", 30 + i), || ()).await?);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let scrapes = Arc::new(AtomicU64::new(0));
    let scraper = {
        let (stop, scrapes, addr) = (stop.clone(), scrapes.clone(), addr.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if scrape(&addr).is_ok() {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let scraping_since = Instant::now();
    let mut scraped = Vec::new();
    for i in 0..20 {
        scraped.push(restart_ms(&socket, &format!("w{}", 50 + i), || ()).await?);
    }
    let rate = scrapes.load(Ordering::Relaxed) as f64 / scraping_since.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = scraper.join();
    let _ = request(&socket, &Request::Terminate).await;
    drop(daemon);
    let (fresh_p50, fresh_p99) = median_p99(fresh);
    let (cached_p50, cached_p99) = median_p99(cached);
    let (quiet_p50, quiet_p99) = median_p99(quiet);
    let (scraped_p50, scraped_p99) = median_p99(scraped);
    println!("## /metrics with {n} watches\n");
    println!("| what | figure |\n|---|---:|");
    println!(
        "| one scrape: size, series | {:.0} KB, {series} |",
        body.len() as f64 / 1024.0
    );
    println!(
        "| scrape after a change (rendered), p50 / p99 (30) | {fresh_p50:.1} / {fresh_p99:.1} ms |"
    );
    println!("| scrape with no change since (the last rendering), p50 / p99 (30) | {cached_p50:.2} / {cached_p99:.2} ms |");
    println!("| kill -9 → running again, seen through `status`, p50 / p99 (20) | {quiet_p50:.1} / {quiet_p99:.1} ms |");
    println!("| the same while a client scrapes back to back ({rate:.0} scrapes/s), p50 / p99 (20) | {scraped_p50:.1} / {scraped_p99:.1} ms |");
    Ok(())
}
