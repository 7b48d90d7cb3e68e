//! Health checks: probing a watch's process over HTTP, TCP or a unix
//! socket, and deciding from the outcomes when the check fires (N of the
//! last M checks failed, not counting the start period) or first passes
//! (readiness).
//!
//! Owns each check's schedule, history and last outcome, and the network
//! probes. Exec probes are commands: the daemon, which owns spawning and
//! reaping, runs them (through `helper`) and hands their outcome in here.
//! Knows nothing of watch states or of what is done when a check fires.
use std::{
    collections::VecDeque,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;

use crate::config::{ConditionAction, HealthCheck, Probe};

/// How often a check is probed while its process is not yet ready (at
/// most; a shorter `every` wins): readiness should be seen at once.
const READY_PROBE_EVERY: Duration = Duration::from_millis(250);

/// The result of one probe.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub ok: bool,
    /// What the probe saw, e.g. "HTTP 503 (expected 200-399)".
    pub message: String,
    #[serde(serialize_with = "millis")]
    pub latency: Duration,
    #[serde(with = "crate::exit::unix_time")]
    pub at: SystemTime,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// What an outcome means for the watch.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    Nothing,
    /// The first pass of a process that waits to be ready.
    Ready,
    /// Failed N of the last M: do `action`, for `reason`.
    Fired {
        action: ConditionAction,
        reason: String,
    },
}

/// One watch's health check, for the process it runs now.
pub struct Health {
    pub config: HealthCheck,
    /// When the process started (for `start_period`).
    started: Instant,
    /// Failed or not, newest last, at most M long, outside the start period.
    history: VecDeque<bool>,
    /// `None` while a probe is out.
    next_due: Option<Instant>,
    last: Option<Outcome>,
    checks: u64,
    failures: u64,
    fired: u32,
}

impl Health {
    pub fn new(config: HealthCheck, waiting_ready: bool) -> Self {
        let now = Instant::now();
        // A process that need not be ready first gets a whole interval
        // to open its port.
        let first = if waiting_ready {
            next_probe(now, &config, true)
        } else {
            crate::grid::next_tick(now + config.every, config.every)
        };
        Self {
            config,
            started: now,
            history: VecDeque::new(),
            next_due: Some(first),
            last: None,
            checks: 0,
            failures: 0,
            fired: 0,
        }
    }

    /// When the next probe is due; `None` while one is out.
    pub fn next_due(&self) -> Option<Instant> {
        self.next_due
    }

    /// Not probed now (its process is stopping): an interval later.
    pub fn postpone(&mut self) {
        self.next_due = Some(next_probe(Instant::now(), &self.config, false));
    }

    /// A probe goes out now: no other until its outcome is in.
    pub fn probing(&mut self) {
        self.next_due = None;
    }

    /// Takes a probe's outcome; `waiting_ready` says whether the process
    /// has yet to be ready.
    pub fn record(&mut self, outcome: Outcome, waiting_ready: bool) -> Verdict {
        let now = Instant::now();
        self.next_due = Some(next_probe(now, &self.config, waiting_ready));
        self.checks += 1;
        let ok = outcome.ok;
        let message = outcome.message.clone();
        self.last = Some(outcome);
        if !ok {
            self.failures += 1;
        }
        if waiting_ready {
            // Until it is ready, failures are the start's (start_grace),
            // not the check's.
            return if ok { Verdict::Ready } else { Verdict::Nothing };
        }
        if !ok && now.duration_since(self.started) < self.config.start_period {
            return Verdict::Nothing;
        }
        let (n, m) = self.config.times;
        self.history.push_back(!ok);
        while self.history.len() > m as usize {
            self.history.pop_front();
        }
        let failed = self.history.iter().filter(|&&f| f).count() as u32;
        if ok || failed < n {
            return Verdict::Nothing;
        }
        self.fired += 1;
        self.history.clear();
        Verdict::Fired {
            action: self.config.action,
            reason: format!(
                "health check ({}) failed {failed} of the last {m} checks: {message}",
                self.config.probe.describe()
            ),
        }
    }

    /// For `status`: the check, its last outcome and its counts.
    pub fn status(&self) -> crate::protocol::HealthStatus {
        crate::protocol::HealthStatus {
            check: self.config.probe.describe(),
            every_secs: self.config.every.as_secs_f64(),
            timeout_secs: self.config.timeout.as_secs_f64(),
            times: [self.config.times.0, self.config.times.1],
            start_period_secs: self.config.start_period.as_secs_f64(),
            action: self.config.action.name().to_owned(),
            last: self.last.as_ref().map(|o| crate::protocol::ProbeStatus {
                ok: o.ok,
                message: o.message.clone(),
                latency: o.latency.as_secs_f64() * 1000.0,
                at: crate::exit::unix_seconds(o.at),
            }),
            recent_failures: self.history.iter().filter(|&&f| f).count(),
            checks: self.checks,
            failures: self.failures,
            fired: self.fired,
        }
    }
}

/// When the probe after one at `now` is due, on the daemon's shared grid.
fn next_probe(now: Instant, config: &HealthCheck, waiting_ready: bool) -> Instant {
    let every = if waiting_ready {
        READY_PROBE_EVERY.min(config.every)
    } else {
        config.every
    };
    crate::grid::next_tick(now, every)
}

/// An HTTP client for health checks (one for those that verify
/// certificates, one for those that do not). Connections are not kept
/// between probes: each probe must show that the server accepts a new one.
pub fn http_client(tls_verify: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(!tls_verify)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("supervisor-health/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Runs a network probe (not `Exec`), within the check's timeout; `client`
/// is for HTTP checks.
pub async fn probe(client: Option<reqwest::Client>, check: &HealthCheck) -> Outcome {
    let started = Instant::now();
    let result = tokio::time::timeout(check.timeout, probe_once(client, &check.probe)).await;
    let (ok, message) = match result {
        Ok(Ok(message)) => (true, message),
        Ok(Err(message)) => (false, message),
        Err(_) => (false, format!("no answer within {:?}", check.timeout)),
    };
    Outcome {
        ok,
        message,
        latency: started.elapsed(),
        at: SystemTime::now(),
    }
}

async fn probe_once(client: Option<reqwest::Client>, probe: &Probe) -> Result<String, String> {
    match probe {
        Probe::Http {
            method,
            url,
            status,
            headers,
            ..
        } => {
            let client = client.ok_or("no HTTP client")?;
            let method =
                reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
            let mut request = client.request(method, url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            let response = request.send().await.map_err(|e| innermost(&e))?;
            let code = response.status().as_u16();
            if (status.0..=status.1).contains(&code) {
                Ok(format!("HTTP {code}"))
            } else {
                Err(format!("HTTP {code} (expected {})", range(*status)))
            }
        }
        Probe::Tcp { address } => tokio::net::TcpStream::connect(address)
            .await
            .map(|_| "connected".to_owned())
            .map_err(|e| format!("connect {address}: {e}")),
        Probe::Unix { path } => tokio::net::UnixStream::connect(path)
            .await
            .map(|_| "connected".to_owned())
            .map_err(|e| format!("connect {}: {e}", path.display())),
        Probe::Exec { .. } => Err("an exec check is run by the daemon".into()),
    }
}

fn range((low, high): (u16, u16)) -> String {
    if low == high {
        low.to_string()
    } else {
        format!("{low}-{high}")
    }
}

/// The most specific cause of an error ("Connection refused (os error
/// 111)" rather than "error sending request").
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let deepest = cause.to_string();
    if std::ptr::eq(cause, error) {
        deepest
    } else {
        format!("{error}: {deepest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(times: (u32, u32), start_period: Duration) -> Health {
        Health::new(
            HealthCheck {
                probe: Probe::Tcp {
                    address: "127.0.0.1:1".into(),
                },
                every: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                times,
                start_period,
                action: ConditionAction::Restart,
            },
            false,
        )
    }

    fn outcome(ok: bool) -> Outcome {
        Outcome {
            ok,
            message: if ok { "ok" } else { "refused" }.into(),
            latency: Duration::ZERO,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn fires_after_n_failures_of_the_last_m() {
        let mut h = check((2, 3), Duration::ZERO);
        assert_eq!(h.record(outcome(false), false), Verdict::Nothing);
        assert_eq!(h.record(outcome(true), false), Verdict::Nothing);
        assert!(matches!(
            h.record(outcome(false), false),
            Verdict::Fired { .. }
        ));
        assert_eq!(
            h.record(outcome(false), false),
            Verdict::Nothing,
            "starts again"
        );
    }

    #[test]
    fn failures_in_the_start_period_do_not_count() {
        let mut h = check((1, 1), Duration::from_secs(3600));
        assert_eq!(h.record(outcome(false), false), Verdict::Nothing);
    }

    #[test]
    fn the_first_pass_makes_it_ready() {
        let mut h = check((1, 1), Duration::ZERO);
        assert_eq!(h.record(outcome(false), true), Verdict::Nothing);
        assert_eq!(h.record(outcome(true), true), Verdict::Ready);
    }
}
