//! The `[daemon]` table: what the daemon itself runs with (its socket,
//! state directory, exit backend, tracking, scheduling, metrics, web
//! page), read when it starts. Parsing and defaults; the values' own checks are
//! `values`'.
use std::path::PathBuf;

use serde::Deserialize;

use super::values::{
    HumanSize, LogLevel, MetricsAddress, OomScoreAdj, RawBackend, RawToken, RingSize, WebAddress,
};
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
    /// The status page (off when `None`).
    pub web: Option<Web>,
    /// The daemon's own `oom_score_adj` (its watches' are their own).
    pub oom_score_adj: i16,
}

/// `[daemon] web` and `web_token`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Web {
    pub listen: WebListen,
    /// With it, the page has buttons, and each action must bear it.
    pub token: Option<WebToken>,
}

/// Where the status page is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebListen {
    /// Beside `/metrics`, on its listener (which `web = true` turns on at
    /// the default address when `metrics` is not set).
    Metrics,
    Own(std::net::SocketAddr),
}

/// The bearer token the page's actions need. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct WebToken(String);

impl WebToken {
    pub(super) fn new(token: String) -> Self {
        Self(token)
    }

    /// Whether `offered` is the token, in time that does not depend on
    /// where they first differ.
    pub fn matches(&self, offered: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        ours.len() == offered.len()
            && ours.iter().zip(offered).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for WebToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebToken(..)")
    }
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
            web: None,
            oom_score_adj: -1000,
        }
    }
}

pub const DEFAULT_SOCKET: &str = "/run/supervisor-rs.sock";

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
    web: Option<WebAddress>,
    web_token: Option<RawToken>,
    oom_score_adj: Option<OomScoreAdj>,
}

/// The `[daemon]` table, or the key that is wrong and why.
pub(super) fn daemon_config(raw: RawDaemon) -> Result<DaemonConfig, (&'static str, String)> {
    let defaults = DaemonConfig::default();
    let web = match (raw.web.and_then(|w| w.0), raw.web_token) {
        (Some(listen), token) => Some(Web {
            listen,
            token: token.map(|t| t.0),
        }),
        (None, None) => None,
        (None, Some(_)) => {
            return Err((
                "web_token",
                "a token for a web page that is off (set web = true or an address)".into(),
            ))
        }
    };
    let mut metrics = raw.metrics.and_then(|m| m.0);
    if let Some(Web {
        listen: WebListen::Metrics,
        ..
    }) = &web
    {
        metrics = metrics.or(super::values::DEFAULT_METRICS.parse().ok());
    }
    if let (
        Some(Web {
            listen: WebListen::Own(own),
            ..
        }),
        Some(metrics),
    ) = (&web, metrics)
    {
        if *own == metrics {
            return Err((
                "web",
                format!("{own} is the metrics address: say web = true to serve the page there"),
            ));
        }
    }
    Ok(DaemonConfig {
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
        metrics,
        web,
        oom_score_adj: raw.oom_score_adj.map_or(defaults.oom_score_adj, |o| o.0),
    })
}
