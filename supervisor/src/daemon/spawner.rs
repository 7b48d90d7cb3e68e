//! Starting watches' processes off the loop. Two threads, each with a set
//! of clone3's fd slots of its own, carry out starts the loop prepared
//! (`spawn::prepare`: log pipes, program, environment, cgroup), so that
//! the loop goes on with exits, timers and requests while the programs
//! exec, and two cores exec at once: a thousand watches that die together
//! are back in about half the time one thread takes.
//!
//! A start is a launch, as for a program that writes a pid file: the watch
//! knows a process is coming (`launched`) and learns it, or the error,
//! when the thread is done (`Internal::Spawned`). A bounded number are in
//! flight, since each holds its log pipes and cgroup open; the rest wait
//! here, unprepared, in order. Owns nothing of a watch but that queue.
use std::{
    collections::{HashMap, VecDeque},
    sync::{mpsc, Arc, Mutex},
};

use anyhow::{Context as _, Result};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::{
    exit::ExitStatus,
    process::Pid,
    spawn::{Prepared, Spawned},
};

/// Starts in flight at most: enough to keep both threads busy.
const IN_FLIGHT: usize = 16;

/// Exit statuses kept for children reaped before the loop heard of them,
/// at most (a bound, not a size anything reaches).
const EARLY_EXITS: usize = 4096;

struct Job {
    name: String,
    launch: u64,
    prepared: Prepared,
}

/// A start the threads carried out: the watch, its launch, and the
/// process or why there is none.
pub(super) struct Done {
    pub name: String,
    pub launch: u64,
    pub result: std::result::Result<Spawned, String>,
}

pub(super) struct Spawner {
    jobs: mpsc::Sender<Job>,
    /// What the threads carried out. Apart from the loop's other messages,
    /// so that the loop takes requests before the next start's outcome
    /// (a stream of starts would otherwise keep `status` waiting).
    done: UnboundedReceiver<Done>,
    in_flight: usize,
    /// Starts waiting their turn: the watch and its launch.
    waiting: VecDeque<(String, u64)>,
    /// Children that exited and were reaped while starts were in flight,
    /// before the loop learnt they were watches' processes: their exact
    /// status, for when it does.
    early: HashMap<Pid, ExitStatus>,
}

impl Spawner {
    /// Starts the threads.
    pub fn start() -> Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (tx, done) = unbounded_channel();
        let queue = Arc::new(Mutex::new(queue));
        for n in 1..=crate::clone3::OWN_SETS {
            let (queue, tx) = (queue.clone(), tx.clone());
            std::thread::Builder::new()
                .name(format!("spawner-{n}"))
                .spawn(move || {
                    crate::clone3::use_own_slots(n);
                    loop {
                        let job = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let result = job.prepared.run().map_err(|e| format!("{e:#}"));
                        let spawned = Done {
                            name: job.name,
                            launch: job.launch,
                            result,
                        };
                        if tx.send(spawned).is_err() {
                            return;
                        }
                    }
                })
                .context("starting a spawner thread")?;
        }
        Ok(Self {
            jobs,
            done,
            in_flight: 0,
            waiting: VecDeque::new(),
            early: HashMap::new(),
        })
    }

    /// The next start the threads carried out.
    pub async fn next_done(&mut self) -> Option<Done> {
        self.done.recv().await
    }

    /// Whether another start may be handed to the threads now.
    pub fn has_room(&self) -> bool {
        self.in_flight < IN_FLIGHT
    }

    /// Hands a prepared start to the threads.
    pub fn send(&mut self, name: &str, launch: u64, prepared: Prepared) {
        let job = Job {
            name: name.to_owned(),
            launch,
            prepared,
        };
        // The threads end only with the daemon.
        if self.jobs.send(job).is_ok() {
            self.in_flight += 1;
        }
    }

    /// A start waits its turn.
    pub fn wait(&mut self, name: &str, launch: u64) {
        self.waiting.push_back((name.to_owned(), launch));
    }

    /// The next start waiting, once there is room for it.
    pub fn next_waiting(&mut self) -> Option<(String, u64)> {
        self.has_room().then(|| self.waiting.pop_front()).flatten()
    }

    /// A start came back.
    pub fn done(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.early.clear();
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Starts in flight or waiting.
    pub fn unfinished(&self) -> usize {
        self.in_flight + self.waiting.len()
    }

    /// Forgets the starts that have not begun (the daemon quits: the next
    /// one starts those watches).
    pub fn drop_waiting(&mut self) {
        self.waiting.clear();
    }

    /// A child the loop does not know exited: if a start is in flight, it
    /// may be that start's process, so its status is kept.
    pub fn reaped_unknown(&mut self, pid: Pid, status: ExitStatus) {
        if self.in_flight > 0 && self.early.len() < EARLY_EXITS {
            self.early.insert(pid, status);
        }
    }

    /// The status of `pid` if it was reaped before the loop knew it.
    pub fn take_early(&mut self, pid: Pid) -> Option<ExitStatus> {
        self.early.remove(&pid)
    }
}

/// The next start the spawner threads carried out (never, without them).
pub(super) async fn next_done(spawner: &mut Option<Spawner>) -> Option<Done> {
    match spawner {
        Some(spawner) => spawner.next_done().await,
        None => std::future::pending().await,
    }
}
