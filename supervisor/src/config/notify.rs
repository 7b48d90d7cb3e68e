//! `[[notify]]`: who hears about what happens to watches (a hook command,
//! a webhook), as written and as the daemon uses it.
use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::{command_argv, values::HumanDuration, Command};

/// Something that happened to a watch that an operator may want to hear
/// about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// Its process exited without being asked to.
    Exited,
    /// It is up again with a new process after an exit or a restart.
    Restarted,
    /// It started too often and is held back (crash-loop backoff).
    Flapping,
    /// A resource condition or its health check fired.
    Condition,
    /// It is no longer kept alive (its process died or could not start
    /// and `keepalive` is off).
    GaveUp,
}

impl NotifyEvent {
    pub const ALL: [Self; 5] = [
        Self::Exited,
        Self::Restarted,
        Self::Flapping,
        Self::Condition,
        Self::GaveUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Restarted => "restarted",
            Self::Flapping => "flapping",
            Self::Condition => "condition",
            Self::GaveUp => "gave_up",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NotifyConfig {
    pub events: Vec<NotifyEvent>,
    /// Watches or groups this applies to; empty means every watch.
    pub watches: Vec<String>,
    /// Run with the details in `SUPERVISOR_*` environment variables.
    pub command: Option<Vec<String>>,
    pub webhook: Option<Webhook>,
    /// For one run of the command, or one webhook attempt.
    pub timeout: Duration,
    /// Webhook attempts after the first that failed.
    pub retries: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub headers: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotify {
    events: Option<Vec<NotifyEvent>>,
    #[serde(default)]
    watches: Vec<String>,
    command: Option<Command>,
    webhook: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<HumanDuration>,
    retries: Option<u32>,
}

pub(super) fn notify_config(raw: RawNotify) -> Result<NotifyConfig, (&'static str, String)> {
    if raw.command.is_none() && raw.webhook.is_none() {
        return Err((
            "command",
            "a [[notify]] needs a command, a webhook or both".into(),
        ));
    }
    if raw.webhook.is_none() && !raw.headers.is_empty() {
        return Err(("headers", "headers are for a webhook".into()));
    }
    let webhook = match raw.webhook {
        Some(url) => {
            let parsed = reqwest::Url::parse(&url)
                .map_err(|e| ("webhook", format!("'{url}' is not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                return Err((
                    "webhook",
                    format!("'{url}': an http:// or https:// URL with a host"),
                ));
            }
            Some(Webhook {
                url,
                headers: super::health::checked_headers(raw.headers).map_err(|e| ("headers", e))?,
            })
        }
        None => None,
    };
    let events = raw.events.unwrap_or_else(|| NotifyEvent::ALL.to_vec());
    if events.is_empty() {
        return Err(("events", "is empty: name at least one event".into()));
    }
    let timeout = raw.timeout.map_or(Duration::from_secs(10), |d| d.0);
    if timeout.is_zero() {
        return Err(("timeout", "must be more than zero".into()));
    }
    Ok(NotifyConfig {
        events,
        watches: raw.watches,
        command: raw
            .command
            .map(|c| command_argv(c, false, "command"))
            .transpose()?,
        webhook,
        timeout,
        retries: raw.retries.unwrap_or(3),
    })
}
