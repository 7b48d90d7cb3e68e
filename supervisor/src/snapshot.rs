//! The read-only picture of the watches that readers see without asking
//! the daemon's loop: `status` now; metrics, the web page and the event
//! stream later. The loop publishes a new version at the end of each turn
//! in which something changed, rebuilding only the watches that did; a
//! reader holds one version (an `Arc`) as long as it likes and never waits
//! for the loop to get round to it. Here: the picture and how it is read
//! and updated; what goes into each watch's entry is the daemon's.
//!
//! Readers are shown only settled versions: what they see is in the state
//! file, so that a daemon killed right after a `status` re-adopts what
//! that status showed. A reader asks for one at least as new as the
//! latest when it came (so that a client answered by the loop then sees
//! what the answer said), and nudges the loop to write the file at once.
use std::{collections::HashMap, sync::Arc, time::SystemTime};

use tokio::sync::{watch, Notify};

use crate::protocol::{self, DaemonInfo, Response, Summary, WatchStatus};

/// One watch as readers see it.
pub struct Shown {
    /// Its status, except `uptime_secs`, which depends on when it is read.
    pub status: WatchStatus,
    /// When its process started, for `uptime_secs`.
    pub started_at: Option<SystemTime>,
}

impl Shown {
    fn status_at(&self, now: SystemTime) -> WatchStatus {
        WatchStatus {
            uptime_secs: self
                .started_at
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs_f64()),
            ..self.status.clone()
        }
    }
}

/// One published version.
pub struct Snapshot {
    /// Counts the versions published.
    serial: u64,
    /// Every watch, in start order.
    watches: Vec<Arc<Shown>>,
    /// The daemon, as the foot of `status` shows it (from the first
    /// version the loop publishes).
    info: Option<DaemonInfo>,
    /// The state file holds everything shown here (or its write was
    /// tried): a daemon killed right after a reader saw it re-adopts what
    /// the reader saw.
    settled: bool,
}

impl Snapshot {
    /// Counts the versions: a new one is a new picture.
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Every watch, in start order.
    pub fn watches(&self) -> &[Arc<Shown>] {
        &self.watches
    }

    pub fn info(&self) -> Option<&DaemonInfo> {
        self.info.as_ref()
    }

    /// What `status` answers for `target` (a watch or a group; `None` for
    /// every watch) at `now`.
    pub fn status(&self, target: Option<&str>, now: SystemTime) -> Response {
        let watches: Vec<WatchStatus> = self
            .watches
            .iter()
            .filter(|w| {
                target.is_none_or(|t| protocol::names(t, &w.status.name, w.status.group.as_deref()))
            })
            .map(|w| w.status_at(now))
            .collect();
        match target {
            Some(t) if watches.is_empty() => Response::error(protocol::no_target(t)),
            _ => Response {
                summary: self.info.clone().map(|i| Summary::Info(Box::new(i))),
                ..Response::ok(watches)
            },
        }
    }
}

/// A reader waits for the state file: the loop, idle, is woken; busy,
/// it sees the flag at the end of its turn.
#[derive(Default)]
pub struct SaveWanted {
    wake: Notify,
    asked: std::sync::atomic::AtomicBool,
}

impl SaveWanted {
    fn ask(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
    }

    /// Whether a reader asked since the last call.
    pub fn take(&self) -> bool {
        self.asked.swap(false, std::sync::atomic::Ordering::AcqRel)
    }

    /// Resolves when a reader asks.
    pub async fn asked(&self) {
        self.wake.notified().await;
    }
}

/// What readers hold.
#[derive(Clone)]
pub struct Reader {
    latest: watch::Receiver<Arc<Snapshot>>,
    settled: watch::Receiver<Arc<Snapshot>>,
    save: Arc<SaveWanted>,
}

impl Reader {
    /// The latest version, settled or not: for readers that need not see
    /// only what the state file holds (metrics).
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.borrow().clone()
    }

    /// A settled version at least as new as the latest one now; `None`
    /// once the daemon is gone.
    pub async fn settled(&mut self) -> Option<Arc<Snapshot>> {
        let latest = self.latest.borrow().clone();
        if latest.settled {
            return Some(latest);
        }
        self.save.ask();
        self.settled
            .wait_for(|s| s.serial >= latest.serial)
            .await
            .ok()
            .map(|s| s.clone())
    }
}

/// The loop's side: the entries as of now, and the channels to readers.
pub struct Publisher {
    latest: watch::Sender<Arc<Snapshot>>,
    settled: watch::Sender<Arc<Snapshot>>,
    /// Readers wait for the state file: the loop writes it at once.
    pub save_wanted: Arc<SaveWanted>,
    watches: Vec<Arc<Shown>>,
    /// Where each watch is in `watches`.
    index: HashMap<String, usize>,
}

impl Publisher {
    pub fn new() -> (Self, Reader) {
        let first = Arc::new(Snapshot {
            serial: 0,
            watches: Vec::new(),
            info: None,
            settled: false,
        });
        let (latest, latest_rx) = watch::channel(first.clone());
        let (settled, settled_rx) = watch::channel(first);
        let save_wanted = Arc::new(SaveWanted::default());
        let reader = Reader {
            latest: latest_rx,
            settled: settled_rx,
            save: save_wanted.clone(),
        };
        let publisher = Self {
            latest,
            settled,
            save_wanted,
            watches: Vec::new(),
            index: HashMap::new(),
        };
        (publisher, reader)
    }

    /// The set of watches or their order changed: `order` is every watch,
    /// in start order; `shown` gives the entry of one not shown so far.
    pub fn reorder(&mut self, order: Vec<String>, mut shown: impl FnMut(&str) -> Option<Shown>) {
        let mut old: HashMap<String, Arc<Shown>> = self
            .index
            .drain()
            .filter_map(|(name, at)| Some((name, self.watches.get(at)?.clone())))
            .collect();
        self.watches.clear();
        for name in order {
            let Some(entry) = old.remove(&name).or_else(|| shown(&name).map(Arc::new)) else {
                continue;
            };
            self.index.insert(name, self.watches.len());
            self.watches.push(entry);
        }
    }

    /// Watch `name` changed; a watch not in the order yet is left to the
    /// next `reorder`.
    pub fn update(&mut self, name: &str, shown: Shown) {
        if let Some(&at) = self.index.get(name) {
            self.watches[at] = Arc::new(shown);
        }
    }

    /// The version readers see now.
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest.borrow().clone()
    }

    /// Hands readers the entries as they are now; `settled`: the state
    /// file holds all of it.
    pub fn publish(&mut self, info: DaemonInfo, settled: bool) {
        let snapshot = Arc::new(Snapshot {
            serial: self.latest.borrow().serial + 1,
            watches: self.watches.clone(),
            info: Some(info),
            settled,
        });
        self.latest.send_replace(snapshot.clone());
        if settled {
            self.settled.send_replace(snapshot);
        }
    }
}
