//! The daemon's own service manager: when systemd (or anything speaking
//! sd_notify) runs the daemon with `Type=notify`, it gives `NOTIFY_SOCKET`
//! and, with `WatchdogSec=`, `WATCHDOG_USEC`. The daemon then says
//! `READY=1` once it serves, `STATUS=` with a one-line summary,
//! `STOPPING=1` when it ends, and `WATCHDOG=1` at half the watchdog's
//! period from its loop, so that a wedged loop is caught and restarted.
//!
//! A datagram that cannot be sent is dropped: the manager being slow or
//! gone must never hold up the loop. Owns the socket and the message
//! format; what the summary says is the daemon's.
use std::{
    os::{linux::net::SocketAddrExt as _, unix::net::SocketAddr},
    time::Duration,
};

use anyhow::{Context as _, Result};

pub struct ServiceManager {
    socket: std::os::unix::net::UnixDatagram,
    address: SocketAddr,
    /// How often to ping: half of `WATCHDOG_USEC`, when it is meant for us.
    ping_every: Option<Duration>,
    /// The last `STATUS=` said, so that it is said again only when it
    /// changes.
    status: String,
}

impl ServiceManager {
    /// From the daemon's environment; `None` when nothing manages it.
    pub fn from_env() -> Result<Option<Self>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let path = path.to_string_lossy().into_owned();
        let address = match path.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
            None => SocketAddr::from_pathname(&path),
        }
        .with_context(|| format!("NOTIFY_SOCKET {path:?}"))?;
        // WATCHDOG_PID names the process the watchdog is meant for; without
        // it, this one.
        let ours = std::env::var("WATCHDOG_PID")
            .map_or(true, |pid| pid.trim() == std::process::id().to_string());
        let ping_every = std::env::var("WATCHDOG_USEC")
            .ok()
            .filter(|_| ours)
            .and_then(|usec| usec.trim().parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .map(|usec| Duration::from_micros(usec) / 2);
        let socket = std::os::unix::net::UnixDatagram::unbound().context("a datagram socket")?;
        socket
            .set_nonblocking(true)
            .context("making the notify socket non-blocking")?;
        Ok(Some(Self {
            socket,
            address,
            ping_every,
            status: String::new(),
        }))
    }

    pub fn ping_every(&self) -> Option<Duration> {
        self.ping_every
    }

    /// `READY=1`, with what it runs.
    pub fn ready(&mut self, status: String) {
        self.send(&format!("READY=1\nSTATUS={status}"));
        self.status = status;
    }

    /// `STATUS=`, if it changed.
    pub fn status(&mut self, status: String) {
        if status != self.status {
            self.send(&format!("STATUS={status}"));
            self.status = status;
        }
    }

    pub fn ping(&self) {
        self.send("WATCHDOG=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.address) {
            log::debug!("cannot tell the service manager {message:?}: {e}");
        }
    }
}
