//! What `/metrics` and the web page cost, printed as a Markdown table
//! (`cargo xtask bench` adds it to BENCHMARKS.md): with N watches (1,000
//! by default), metrics on and the page beside them,
//! - the size of a scrape and its series;
//! - a scrape's time when the snapshot changed since the last one (a
//!   rendering) and when it did not (the cached one);
//! - what scraping costs the loop: kill -9 to running again, seen through
//!   `status`, without scrapes and with a client scraping back to back;
//! - the page: its picture's size and time, and the daemon's CPU over a
//!   window in which a watch is killed every `KILL_EVERY`, with no page
//!   open and with `PAGES` pages reading the live stream, and the restart
//!   time meanwhile.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use supervisor::{control::request, protocol::Request};
use supervisor_tests::bench::{median_p99, restart_ms, Daemon};

/// Live pages open at once in the page measurement.
const PAGES: usize = 3;
/// How often a watch is killed while the daemon's CPU is measured.
const KILL_EVERY: Duration = Duration::from_millis(500);
const CPU_WINDOW: Duration = Duration::from_secs(15);

fn scrape(addr: &str) -> Result<String> {
    get(addr, "/metrics")
}

fn get(addr: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n")?;
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
        "[daemon]\nsocket = {socket:?}\nstate_dir = {:?}\nlog_level = \"warn\"\nmetrics = \"{addr}\"\nweb = true\n\n",
        dir.path().join("state")
    );
    for i in 0..n {
        text.push_str(&format!(
            "[[watch]]\nname = \"w{i}\"\ngroup = \"g{}\"\nstart = [\"/bin/sleep\", \"100000\"]\n\n",
            i % 10
        ));
    }
    std::fs::write(&config, text)?;
    let mut daemon = Daemon::run(&supervisor, &config)?;
    let launched = Instant::now();
    loop {
        if let Ok(response) = request(&socket, &Request::Info).await {
            if let Some(supervisor::protocol::Summary::Info(info)) = response.summary {
                if info.starting == 0 {
                    break;
                }
            }
        }
        if let Some(status) = daemon.0.try_wait()? {
            bail!("the daemon exited ({status}) on {}", config.display());
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
    let page = Page::measure(&addr, &socket, daemon.0.id()).await?;
    let _ = request(&socket, &Request::Terminate).await;
    drop(daemon);
    let (fresh_p50, fresh_p99) = median_p99(fresh);
    let (cached_p50, cached_p99) = median_p99(cached);
    let (quiet_p50, quiet_p99) = median_p99(quiet);
    let (scraped_p50, scraped_p99) = median_p99(scraped);
    println!("## /metrics and the web page with {n} watches\n");
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
    page.print();
    Ok(())
}

/// The web page's figures.
struct Page {
    bytes: usize,
    rendered: (f64, f64),
    idle_cpu: f64,
    open_cpu: f64,
    pictures: f64,
    restart: (f64, f64),
    open_restart: (f64, f64),
}

impl Page {
    async fn measure(addr: &str, socket: &std::path::Path, daemon: u32) -> Result<Self> {
        let mut rendered = Vec::new();
        let mut bytes = 0;
        for i in 0..20 {
            restart_ms(socket, &format!("w{}", 100 + i), || ()).await?;
            let t = Instant::now();
            bytes = get(addr, "/api/page")?.len();
            rendered.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let (idle_cpu, restart) = cpu_while_killing(socket, daemon, 200).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let pictures = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..PAGES)
            .map(|_| {
                let (stop, pictures, addr) = (stop.clone(), pictures.clone(), addr.to_owned());
                std::thread::spawn(move || read_live(&addr, &stop, &pictures))
            })
            .collect();
        let since = Instant::now();
        let (open_cpu, open_restart) = cpu_while_killing(socket, daemon, 400).await?;
        let pictures = pictures.load(Ordering::Relaxed) as f64 / since.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            let _ = r.join();
        }
        Ok(Self {
            bytes,
            rendered: median_p99(rendered),
            idle_cpu,
            open_cpu,
            pictures,
            restart,
            open_restart,
        })
    }

    fn print(&self) {
        let w = CPU_WINDOW.as_secs();
        let every = KILL_EVERY.as_millis();
        println!(
            "| web page: one picture (`/api/page`), size | {:.0} KB |",
            self.bytes as f64 / 1024.0
        );
        println!(
            "| web page: a picture after a change, p50 / p99 (20) | {:.1} / {:.1} ms |",
            self.rendered.0, self.rendered.1
        );
        println!("| daemon CPU over {w} s, a watch killed every {every} ms, no page open | {:.1}% of a core |", self.idle_cpu);
        println!(
            "| the same with {PAGES} pages open on the live stream ({:.1} pictures/s each) | {:.1}% of a core |",
            self.pictures / PAGES as f64,
            self.open_cpu
        );
        println!(
            "| kill -9 → running again meanwhile, no page / {PAGES} pages, p50 / p99 | {:.1} / {:.1} ms, {:.1} / {:.1} ms |",
            self.restart.0, self.restart.1, self.open_restart.0, self.open_restart.1
        );
    }
}

/// The daemon's CPU (percent of one core) over `CPU_WINDOW`, while watch
/// after watch from `w{first}` is killed every `KILL_EVERY`; and the
/// restart times.
async fn cpu_while_killing(
    socket: &std::path::Path,
    daemon: u32,
    first: usize,
) -> Result<(f64, (f64, f64))> {
    let cpu = || supervisor_tests::bench::cpu_seconds(daemon);
    let (start, t0) = (cpu()?, Instant::now());
    let mut times = Vec::new();
    let mut i = first;
    while t0.elapsed() < CPU_WINDOW {
        let next = Instant::now() + KILL_EVERY;
        times.push(restart_ms(socket, &format!("w{i}"), || ()).await?);
        i += 1;
        tokio::time::sleep_until(next.into()).await;
    }
    let used = cpu()? - start;
    Ok((used / t0.elapsed().as_secs_f64() * 100.0, median_p99(times)))
}

/// Reads `/api/live` until `stop`, counting the pictures it brings.
fn read_live(addr: &str, stop: &AtomicBool, pictures: &AtomicU64) {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return;
    };
    if write!(stream, "GET /api/live HTTP/1.1\r\nHost: bench\r\n\r\n").is_err() {
        return;
    }
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = vec![0u8; 1 << 16];
    let mut tail = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                const MARK: &[u8] = b"event: page\n";
                let mut after = 0;
                while let Some(at) = tail[after..].windows(MARK.len()).position(|w| w == MARK) {
                    pictures.fetch_add(1, Ordering::Relaxed);
                    after += at + MARK.len();
                }
                // What follows the last marker may begin the next one.
                let keep_from = after.max(tail.len().saturating_sub(MARK.len()));
                tail.drain(..keep_from);
            }
            Err(_) => continue,
        }
    }
}
