//! The `[daemon]` table: what the daemon itself runs with (its socket,
//! state directory, exit backend, tracking, scheduling, metrics), read
//! when it starts. Parsing and defaults; the values' own checks are
//! `values`'.
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{HumanSize, LogLevel, MetricsAddress, RawBackend, RingSize};
use crate::backend::BackendChoice;

#[derive(Clone, Debug, PartialEq)]
pub struct DaemonConfig {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub backend: BackendChoice,
    /// The eBPF ring buffer's size in bytes (default: the backend's).
    pub ring_buffer: Option<u32>,
    /// The netlink socket's receive buffer in bytes (default: the
    /// backend's).
    pub netlink_buffer: Option<usize>,
    pub tracking: Tracking,
    pub log_level: String,
    pub scheduling: Scheduling,
    /// Where Prometheus scrapes `/metrics` (off when `None`).
    pub metrics: Option<std::net::SocketAddr>,
}

/// How the daemon's own thread competes for the CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheduling {
    /// As any process (SCHED_OTHER).
    #[default]
    Normal,
    /// SCHED_FIFO at priority 1, ahead of every normal process, so that an
    /// exit is read the moment the kernel reports it; the processes it
    /// starts are normal again (SCHED_RESET_ON_FORK).
    Realtime,
}

/// How a watch's processes are known, beyond its process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tracking {
    /// A cgroup per watch where the kernel offers cgroup v2, else fork
    /// tracking, else the process group alone (said in the log).
    Auto,
    /// A cgroup v2 per watch, or the daemon does not start.
    Cgroup,
    /// Fork events from the proc connector, or the daemon does not start.
    Fork,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from(DEFAULT_SOCKET),
            state_dir: PathBuf::from("/var/lib/supervisor"),
            backend: BackendChoice::Auto,
            ring_buffer: None,
            netlink_buffer: None,
            tracking: Tracking::Auto,
            log_level: "info".into(),
            scheduling: Scheduling::Normal,
            metrics: None,
        }
    }
}

pub const DEFAULT_SOCKET: &str = "/run/supervisor.sock";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    backend: Option<RawBackend>,
    ring_buffer: Option<RingSize>,
    netlink_buffer: Option<HumanSize>,
    tracking: Option<Tracking>,
    log_level: Option<LogLevel>,
    scheduling: Option<Scheduling>,
    metrics: Option<MetricsAddress>,
}

pub(super) fn daemon_config(raw: RawDaemon) -> DaemonConfig {
    let defaults = DaemonConfig::default();
    DaemonConfig {
        socket: raw.socket.unwrap_or(defaults.socket),
        state_dir: raw.state_dir.unwrap_or(defaults.state_dir),
        backend: raw.backend.map_or(defaults.backend, |b| b.0),
        ring_buffer: raw.ring_buffer.map(|r| r.0),
        netlink_buffer: raw
            .netlink_buffer
            .map(|s| usize::try_from(s.0).unwrap_or(usize::MAX)),
        tracking: raw.tracking.unwrap_or(defaults.tracking),
        log_level: raw.log_level.map_or(defaults.log_level, |l| l.0),
        scheduling: raw.scheduling.unwrap_or(defaults.scheduling),
        metrics: raw.metrics.and_then(|m| m.0),
    }
}
