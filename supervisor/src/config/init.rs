//! The `[init]` table: how `supervisor init -c CONFIG` behaves as a
//! container's PID 1 (where the signals a runtime sends go, and how long
//! the shutdown they start may take). `supervisor run` has no use for it.
use std::time::Duration;

use serde::Deserialize;

use super::values::HumanDuration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitConfig {
    pub forward: Forward,
    /// From the signal that starts a shutdown to the init's exit: what is
    /// left then is SIGKILLed. Below the runtime's own grace (`docker stop`
    /// waits 10 s, Kubernetes 30 s), so that the init, not the runtime,
    /// ends it and exits with the main watch's status.
    pub stop_timeout: Duration,
}

/// Who gets the signals the init is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Forward {
    /// The main watch (`main = true`); the others are stopped with their
    /// own `stop_signal` in a shutdown. Without a main watch, all.
    #[default]
    Main,
    /// Every watch.
    All,
}

impl Default for InitConfig {
    fn default() -> Self {
        Self {
            forward: Forward::Main,
            stop_timeout: Duration::from_secs(8),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInit {
    forward: Option<Forward>,
    stop_timeout: Option<HumanDuration>,
}

pub(super) fn init_config(raw: RawInit) -> InitConfig {
    let defaults = InitConfig::default();
    InitConfig {
        forward: raw.forward.unwrap_or(defaults.forward),
        stop_timeout: raw.stop_timeout.map_or(defaults.stop_timeout, |d| d.0),
    }
}
