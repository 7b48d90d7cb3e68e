//! What the benchmark drivers share: percentiles, a restart timed from
//! the kill to the new process seen through `status`, a process's CPU
//! time, and a daemon that goes with the benchmark however it ends.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use supervisor::{
    control::request,
    protocol::{Request, State, WatchStatus},
};

/// The median and the 99th percentile of `ms`.
pub fn median_p99(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

pub async fn status(socket: &Path, name: &str) -> Result<WatchStatus> {
    let response = request(
        socket,
        &Request::Status {
            target: Some(name.to_owned()),
        },
    )
    .await?;
    response.watches.into_iter().next().context("no such watch")
}

fn pid(status: &WatchStatus) -> Option<u32> {
    status.pid.filter(|_| status.state == State::Up)
}

/// Kills `name`'s process and does `during`; how long until another
/// process of it is up, in ms.
pub async fn restart_ms(socket: &Path, name: &str, during: impl FnOnce()) -> Result<f64> {
    let old = pid(&status(socket, name).await?).context("not up")?;
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    during();
    loop {
        if pid(&status(socket, name).await?).is_some_and(|p| p != old) {
            return Ok(t.elapsed().as_secs_f64() * 1e3);
        }
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{name} was not restarted within 30 s");
        }
    }
}

/// The CPU seconds `pid` has used so far (user + system).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    Ok(ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

/// The daemon under test, killed when dropped (terminated already when
/// all went well; else its watches stay behind, as after a kill -9 of
/// any supervisor).
pub struct Daemon(pub std::process::Child);

impl Daemon {
    /// `supervisor run -c config`, quiet but for its errors.
    pub fn run(supervisor: &Path, config: &Path) -> Result<Self> {
        Ok(Self(
            std::process::Command::new(supervisor)
                .args(["run", "-c"])
                .arg(config)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .spawn()?,
        ))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
