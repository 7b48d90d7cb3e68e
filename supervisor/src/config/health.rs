//! A watch's health check (`[watch.health]`) and its readiness (`ready`),
//! as written and as the daemon uses them. Every URL, method, header and
//! status range is checked here, so a probe never meets a value it cannot
//! use.
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde::{de, Deserialize, Deserializer};

use super::{command_argv, values::HumanDuration, Command, ConditionAction};

/// What tells the supervisor that a watch's process is working.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub probe: Probe,
    pub every: Duration,
    pub timeout: Duration,
    /// Fires after `times.0` failures in the last `times.1` checks.
    pub times: (u32, u32),
    /// Failures in this long after a start do not count (passes do).
    pub start_period: Duration,
    pub action: ConditionAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    /// A request whose response status must fall in `status`.
    Http {
        method: String,
        url: String,
        status: (u16, u16),
        headers: Vec<(String, String)>,
        /// Whether an https server's certificate must be valid.
        tls_verify: bool,
    },
    /// A TCP connection to `host:port` must be accepted.
    Tcp { address: String },
    /// A connection to a unix stream socket must be accepted.
    Unix { path: PathBuf },
    /// A command (as the watch's user) must exit 0, like a Nagios plugin.
    Exec { argv: Vec<String> },
}

impl Probe {
    /// What is probed, for logs and `status`.
    pub fn describe(&self) -> String {
        match self {
            Self::Http { method, url, .. } => format!("http {method} {url}"),
            Self::Tcp { address } => format!("tcp {address}"),
            Self::Unix { path } => format!("unix {}", path.display()),
            Self::Exec { argv } => format!("exec {}", argv.join(" ")),
        }
    }
}

/// When a started watch counts as `up`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// As soon as its process runs.
    #[default]
    Started,
    /// Once its health check first passes.
    Health,
    /// Once it sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify).
    Notify,
}

impl Readiness {
    /// As the config and `status` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Health => "health",
            Self::Notify => "notify",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    http: Option<String>,
    tcp: Option<String>,
    unix: Option<PathBuf>,
    exec: Option<Command>,
    method: Option<String>,
    status: Option<StatusRange>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    tls_verify: Option<bool>,
    every: Option<HumanDuration>,
    timeout: Option<HumanDuration>,
    times: Option<(u32, u32)>,
    start_period: Option<HumanDuration>,
    action: Option<ConditionAction>,
}

/// `200`, `"200"`, `"200-299"` or `"2xx"`.
struct StatusRange(u16, u16);

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::Number(n) => n.to_string(),
            Raw::Text(text) => text,
        };
        status_range(&text)
            .map(|(low, high)| StatusRange(low, high))
            .ok_or_else(|| {
                de::Error::custom(format!(
                    "'{text}' is not an HTTP status or range (e.g. 200, \"200-299\", \"2xx\")"
                ))
            })
    }
}

fn status_range(text: &str) -> Option<(u16, u16)> {
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    let text = text.trim().to_ascii_lowercase();
    let (low, high) = if let Some(class) = text.strip_suffix("xx") {
        let low = code(&format!("{class}00"))?;
        (low, low + 99)
    } else if let Some((low, high)) = text.split_once('-') {
        (code(low)?, code(high)?)
    } else {
        (code(&text)?, code(&text)?)
    };
    (low <= high).then_some((low, high))
}

/// The health check as the daemon uses it; errors name the key to fix.
pub(super) fn health_check(raw: RawHealth) -> Result<HealthCheck, (&'static str, String)> {
    let kinds = [
        raw.http.is_some(),
        raw.tcp.is_some(),
        raw.unix.is_some(),
        raw.exec.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err((
            "health",
            "needs exactly one of http, tcp, unix or exec".into(),
        ));
    }
    let http_only = raw.method.is_some()
        || raw.status.is_some()
        || !raw.headers.is_empty()
        || raw.tls_verify.is_some();
    if http_only && raw.http.is_none() {
        return Err((
            "health",
            "method, status, headers and tls_verify are for http checks only".into(),
        ));
    }
    let probe = if let Some(url) = raw.http {
        let parsed = reqwest::Url::parse(&url)
            .map_err(|e| ("health", format!("http = '{url}': not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err((
                "health",
                format!("http = '{url}': an http:// or https:// URL with a host"),
            ));
        }
        let method = raw.method.unwrap_or_else(|| "GET".into()).to_uppercase();
        reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| ("health", format!("method = '{method}': not an HTTP method")))?;
        let headers = checked_headers(raw.headers).map_err(|e| ("health", e))?;
        let StatusRange(low, high) = raw.status.unwrap_or(StatusRange(200, 399));
        Probe::Http {
            method,
            url,
            status: (low, high),
            headers,
            tls_verify: raw.tls_verify.unwrap_or(true),
        }
    } else if let Some(address) = raw.tcp {
        let port = address
            .rsplit_once(':')
            .and_then(|(host, port)| (!host.is_empty()).then_some(port)?.parse::<u16>().ok());
        if port.is_none_or(|p| p == 0) {
            return Err((
                "health",
                format!("tcp = '{address}': write host:port, e.g. \"127.0.0.1:5432\""),
            ));
        }
        Probe::Tcp { address }
    } else if let Some(path) = raw.unix {
        if !path.is_absolute() {
            return Err((
                "health",
                format!("unix = '{}': an absolute socket path", path.display()),
            ));
        }
        Probe::Unix { path }
    } else {
        let exec = raw.exec.expect("one kind is set");
        Probe::Exec {
            argv: command_argv(exec, false, "health")?,
        }
    };
    let every = raw.every.map_or(Duration::from_secs(10), |d| d.0);
    if every < Duration::from_millis(100) {
        return Err(("health", format!("every = {every:?}: at least 100ms")));
    }
    let timeout = raw
        .timeout
        .map_or(Duration::from_secs(5).min(every), |d| d.0);
    if timeout.is_zero() || timeout > every {
        return Err((
            "health",
            format!("timeout = {timeout:?}: more than zero and at most every ({every:?})"),
        ));
    }
    let times = raw.times.unwrap_or((3, 5));
    if times.0 == 0 || times.0 > times.1 {
        return Err((
            "health",
            format!(
                "times = [{}, {}]: fire after N of the last M checks needs 1 <= N <= M",
                times.0, times.1
            ),
        ));
    }
    Ok(HealthCheck {
        probe,
        every,
        timeout,
        times,
        start_period: raw.start_period.map_or(Duration::ZERO, |d| d.0),
        action: raw.action.unwrap_or(ConditionAction::Restart),
    })
}

/// Headers as reqwest will take them, checked once here.
pub(super) fn checked_headers(
    headers: BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    headers
        .into_iter()
        .map(|(name, value)| {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers: '{name}' is not a header name"))?;
            reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| format!("headers: the value of '{name}' is not a header value"))?;
            Ok((name, value))
        })
        .collect()
}
