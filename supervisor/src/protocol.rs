//! The control protocol's types: what a client sends and what the daemon
//! answers, typed on both sides. Newline-delimited JSON, one request and
//! one answer per line; the shape a script sees is written down in
//! docs/protocol.md. Here only data: the socket is `control`'s, what a
//! request does is the daemon's.
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What an operator asked of a watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Start,
    Stop,
    Restart,
    Monitor,
    Unmonitor,
}

impl Command {
    /// The CLI verb that asks for it.
    pub fn verb(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
            Self::Monitor => "monitor",
            Self::Unmonitor => "unmonitor",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "cmd", rename_all = "lowercase", deny_unknown_fields)]
pub enum Request {
    Status {
        target: Option<String>,
    },
    Command {
        command: Command,
        target: Option<String>,
    },
    /// Sends a signal (by name or number) to the process group of each
    /// running target.
    Signal {
        target: String,
        signal: String,
    },
    /// Stops a watch and forgets it.
    Remove {
        name: String,
    },
    /// Loads a config file or directory in place of the running one.
    Load {
        path: PathBuf,
        missing: Missing,
    },
    /// The daemon itself: backend, its counters, process tracking.
    Info,
    Quit,
    Terminate,
}

impl Request {
    /// How the daemon's log names a request that changes something
    /// (`stop web`, `load /etc/app.toml`); `None` for those that only read.
    pub fn audit_line(&self) -> Option<String> {
        let everything = "every watch";
        Some(match self {
            Self::Status { .. } | Self::Info => return None,
            Self::Command { command, target } => format!(
                "{} {}",
                command.verb(),
                target.as_deref().unwrap_or(everything)
            ),
            Self::Signal { target, signal } => format!("signal {target} {signal}"),
            Self::Remove { name } => format!("remove {name}"),
            Self::Load { path, missing } => {
                format!("load {} (missing: {missing:?})", path.display())
            }
            Self::Quit => "quit".to_owned(),
            Self::Terminate => "terminate".to_owned(),
        })
    }
}

/// What `load` does with running watches the new config no longer has.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// Keep them as they are: running and watched.
    #[default]
    Leave,
    /// Stop them; they stay listed, unmonitored.
    Stop,
    /// Stop them and forget them.
    Remove,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watches: Vec<serde_json::Value>,
    /// What a `load` changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

impl Response {
    pub fn ok(watches: Vec<serde_json::Value>) -> Self {
        Self {
            ok: true,
            error: None,
            watches,
            summary: None,
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            watches: Vec::new(),
            summary: None,
        }
    }
}
