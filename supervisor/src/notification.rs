//! Notifications: telling people what happened to a watch, by running a
//! hook command (the details in `SUPERVISOR_*` environment variables) and
//! by POSTing a JSON document to a webhook.
//!
//! Nothing here may hold up a restart. Webhooks are delivered by a task of
//! their own per `[[notify]]`, from a bounded queue (full: the newest is
//! dropped and counted), each attempt within the timeout, failed ones
//! retried with a growing pause. Hooks are handed to the daemon to run a
//! few at a time, after the actions of the event that caused them.
//! Owns the queues and the documents; knows nothing of how a watch
//! decides, nor how a process is started.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use serde_json::json;
use tokio::sync::mpsc;

use crate::{config::NotifyConfig, watch::Notice};

/// Webhook documents waiting per `[[notify]]`, at most.
const WEBHOOK_QUEUE: usize = 1024;
/// Hooks waiting to run, at most (beyond: dropped and counted).
const HOOK_QUEUE: usize = 1024;
/// Hooks running at once, at most.
const HOOKS_AT_ONCE: usize = 4;
/// The longest pause between two webhook attempts.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// A hook to run: its command, what to add to its environment, its limit.
pub struct HookRun {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    /// Names it in logs: event and watch.
    pub what: String,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct Target {
    config: NotifyConfig,
    webhook: Option<mpsc::Sender<serde_json::Value>>,
}

/// Who hears about what, for what the watch a notice is about.
pub struct About<'a> {
    pub watch: &'a str,
    pub group: Option<&'a str>,
    pub restarts: u32,
}

pub struct Notifier {
    targets: Vec<Target>,
    host: String,
    waiting: VecDeque<HookRun>,
    running: usize,
    counters: Arc<Counters>,
    hooks_failed: u64,
}

impl Notifier {
    /// Starts a delivery task per webhook (so it needs the runtime).
    pub fn new(configs: &[NotifyConfig]) -> Self {
        let mut notifier = Self {
            targets: Vec::new(),
            host: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            waiting: VecDeque::new(),
            running: 0,
            counters: Arc::default(),
            hooks_failed: 0,
        };
        notifier.configure(configs);
        notifier
    }

    /// Takes a new config: webhooks already queued are still delivered
    /// (their tasks end once their queues are empty).
    pub fn configure(&mut self, configs: &[NotifyConfig]) {
        if self.targets.iter().map(|t| &t.config).eq(configs.iter()) {
            return;
        }
        self.targets = configs
            .iter()
            .map(|config| Target {
                webhook: config.webhook.as_ref().map(|webhook| {
                    let (tx, rx) = mpsc::channel(WEBHOOK_QUEUE);
                    tokio::spawn(deliver(
                        webhook.clone(),
                        config.timeout,
                        config.retries,
                        rx,
                        self.counters.clone(),
                    ));
                    tx
                }),
                config: config.clone(),
            })
            .collect();
    }

    /// Hands `notice` to every `[[notify]]` that wants it; returns the
    /// hooks to run now.
    /// The `[[notify]]` targets that want `event` of `about`'s watch.
    pub fn wanted(&self, about: &About, event: crate::config::NotifyEvent) -> Vec<usize> {
        self.targets
            .iter()
            .enumerate()
            .filter(|(_, t)| t.config.events.contains(&event))
            .filter(|(_, t)| {
                t.config.watches.is_empty()
                    || t.config
                        .watches
                        .iter()
                        .any(|w| crate::protocol::names(w, about.watch, about.group))
            })
            .map(|(i, _)| i)
            .collect()
    }

    pub fn publish(&mut self, about: &About, notice: &Notice) -> Vec<HookRun> {
        let wanted = self.wanted(about, notice.event);
        if wanted.is_empty() {
            return Vec::new();
        }
        let document = self.document(about, notice);
        for &i in &wanted {
            let target = &self.targets[i];
            if let Some(queue) = &target.webhook {
                if queue.try_send(document.clone()).is_err() {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    log::warn!(
                        "{}: webhook queue full; {} notification dropped",
                        about.watch,
                        notice.event.as_str()
                    );
                }
            }
            if let Some(argv) = &target.config.command {
                if self.waiting.len() >= HOOK_QUEUE {
                    self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    log::warn!("{}: too many hooks waiting; one dropped", about.watch);
                    continue;
                }
                self.waiting.push_back(HookRun {
                    argv: argv.clone(),
                    env: environment(&document),
                    timeout: target.config.timeout,
                    what: format!("{} hook for {}", notice.event.as_str(), about.watch),
                });
            }
        }
        self.ready_hooks()
    }

    /// A hook has finished (`ok` or not): returns the hooks that may run now.
    pub fn hook_finished(&mut self, ok: bool) -> Vec<HookRun> {
        self.running = self.running.saturating_sub(1);
        if !ok {
            self.hooks_failed += 1;
        }
        self.ready_hooks()
    }

    /// A hook could not even start: returns the hooks that may run now.
    pub fn hook_not_started(&mut self) -> Vec<HookRun> {
        self.hook_finished(false)
    }

    fn ready_hooks(&mut self) -> Vec<HookRun> {
        let mut ready = Vec::new();
        while self.running < HOOKS_AT_ONCE {
            let Some(hook) = self.waiting.pop_front() else {
                break;
            };
            self.running += 1;
            ready.push(hook);
        }
        ready
    }

    /// For `info`.
    pub fn counters(&self) -> crate::protocol::NotificationCounters {
        crate::protocol::NotificationCounters {
            webhooks_delivered: self.counters.delivered.load(Ordering::Relaxed),
            webhooks_failed: self.counters.failed.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
            hooks_failed: self.hooks_failed,
            hooks_waiting: self.waiting.len(),
        }
    }

    /// The JSON document a webhook gets (and a hook, in
    /// `SUPERVISOR_JSON`).
    fn document(&self, about: &About, notice: &Notice) -> serde_json::Value {
        let now = SystemTime::now();
        let exit = notice.exit.as_ref();
        json!({
            "watch": about.watch,
            "group": about.group,
            "host": self.host,
            "event": notice.event,
            "pid": notice.pid,
            "exit": exit.map(|e| e.status),
            "cause": exit.map(|e| &e.cause),
            "origin": exit.and_then(|e| e.origin.as_ref()),
            "oom": exit.and_then(|e| e.oom.as_ref()),
            "lifetime_secs": exit.and_then(|e| e.lifetime).map(|d| d.as_secs_f64()),
            "core": exit.and_then(|e| e.core.as_ref()),
            "stdout": exit.map(|e| &e.stdout),
            "stderr": exit.map(|e| &e.stderr),
            "detail": notice.detail,
            "restarts": about.restarts,
            "time": jiff::Timestamp::try_from(now).map(|t| t.to_string()).unwrap_or_default(),
            "unix_time": now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64(),
        })
    }
}

/// The hook's view of a document: `SUPERVISOR_*` variables, and the whole
/// of it in `SUPERVISOR_JSON`.
fn environment(document: &serde_json::Value) -> Vec<(String, String)> {
    // Null is empty, a string is itself (a NUL, which no variable can
    // hold, escaped), anything else its JSON.
    let plain = |value: &serde_json::Value| match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.replace('\0', "\\0"),
        other => other.to_string(),
    };
    let text = |key: &str| plain(&document[key]);
    let field = |key: &str| plain(&document["exit"][key]);
    let sender = |key: &str| plain(&document["origin"]["sender"][key]);
    let lines = |key: &str| {
        document[key]
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .filter_map(|l| l.as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    vec![
        ("SUPERVISOR_WATCH".into(), text("watch")),
        ("SUPERVISOR_GROUP".into(), text("group")),
        ("SUPERVISOR_HOST".into(), text("host")),
        ("SUPERVISOR_EVENT".into(), text("event")),
        ("SUPERVISOR_PID".into(), text("pid")),
        ("SUPERVISOR_EXIT_STATUS".into(), field("text")),
        ("SUPERVISOR_EXIT_CODE".into(), field("code")),
        ("SUPERVISOR_EXIT_SIGNAL".into(), field("signal")),
        ("SUPERVISOR_EXIT_CORE_DUMPED".into(), field("core_dumped")),
        ("SUPERVISOR_CAUSE".into(), text("cause")),
        (
            "SUPERVISOR_SIGNAL_CODE".into(),
            plain(&document["origin"]["code"]),
        ),
        ("SUPERVISOR_SENDER_PID".into(), sender("pid")),
        ("SUPERVISOR_SENDER_UID".into(), sender("uid")),
        ("SUPERVISOR_SENDER_COMM".into(), sender("comm")),
        ("SUPERVISOR_SENDER_CMDLINE".into(), sender("cmdline")),
        (
            "SUPERVISOR_CORE_FILE".into(),
            plain(&document["core"]["path"]),
        ),
        ("SUPERVISOR_STDOUT".into(), lines("stdout")),
        ("SUPERVISOR_STDERR".into(), lines("stderr")),
        ("SUPERVISOR_DETAIL".into(), text("detail")),
        ("SUPERVISOR_RESTARTS".into(), text("restarts")),
        ("SUPERVISOR_TIME".into(), text("time")),
        ("SUPERVISOR_JSON".into(), document.to_string()),
    ]
}

/// Delivers one webhook's documents in order until its queue is closed
/// and empty.
async fn deliver(
    webhook: crate::config::Webhook,
    timeout: Duration,
    retries: u32,
    mut queue: mpsc::Receiver<serde_json::Value>,
    counters: Arc<Counters>,
) {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("supervisor/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    while let Some(document) = queue.recv().await {
        let mut pause = Duration::from_secs(1);
        for attempt in 0..=retries {
            let mut request = client
                .post(&webhook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(document.to_string());
            for (name, value) in &webhook.headers {
                request = request.header(name, value);
            }
            let error = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(response) => format!("HTTP {}", response.status()),
                Err(e) if e.is_timeout() => format!("no answer within {timeout:?}"),
                Err(e) => e.to_string(),
            };
            if attempt == retries {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                log::error!(
                    "webhook {}: {} notification for {} not delivered after {} attempt(s): {error}",
                    webhook.url,
                    document["event"],
                    document["watch"],
                    attempt + 1
                );
                break;
            }
            log::warn!(
                "webhook {}: {error}; trying again in {pause:?}",
                webhook.url
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}
