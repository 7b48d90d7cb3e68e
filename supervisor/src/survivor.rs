//! `daemonizes = true`: the process a self-daemonizing launch leaves
//! behind, found in the watch's cgroup (or among what fork tracking saw
//! it make) once the launch has exited 0, as systemd's `Type=forking`
//! guesses a main pid without `PIDFile=`.
//!
//! What the launch left is reparented to the daemon (its subreaper): of
//! those, the only one, or the oldest (nginx's master, not its workers,
//! which are the master's children). A double fork passes through an
//! intermediate that exits at once, so the pick counts only once the
//! processes reparented to the daemon have stayed the same for `SETTLE`.
//!
//! Owns the looking; knows nothing of watches.
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::{
    cgroup::WatchCgroup,
    process::{self, Pid, ProcessId},
    tree::Members,
};

/// Where the launch's processes are known.
pub enum Tree {
    Cgroup(WatchCgroup),
    /// What fork tracking saw descend from the launch, under this name.
    Forks(Members, String),
}

impl Tree {
    fn pids(&self) -> Vec<Pid> {
        match self {
            Self::Cgroup(cgroup) => cgroup
                .pids()
                .into_iter()
                .filter_map(|pid| u32::try_from(pid).ok().and_then(Pid::new))
                .collect(),
            Self::Forks(members, name) => members.of(name),
        }
    }
}

/// How long the processes reparented to the daemon must stay the same.
pub const SETTLE: Duration = Duration::from_millis(20);
const RECHECK: Duration = Duration::from_millis(2);

/// The process to follow, and why that one.
pub struct Found {
    pub id: ProcessId,
    pub why: String,
}

/// Looks in `tree` for what the launch left, reparented to `ours` (the
/// daemon), until `deadline`.
pub async fn find(tree: &Tree, ours: Pid, deadline: Instant) -> Result<Found> {
    let mut seen: Option<(Vec<ProcessId>, Instant)> = None;
    loop {
        let live: Vec<process::Stat> = tree
            .pids()
            .into_iter()
            .filter_map(|pid| process::stat(pid).ok().flatten())
            .filter(|stat| !stat.has_exited())
            .collect();
        if live.is_empty() {
            bail!("the launch exited 0 and left nothing running (does it daemonize?)");
        }
        let mut ours_now: Vec<ProcessId> = live
            .iter()
            .filter(|stat| stat.ppid == Some(ours))
            .map(|stat| stat.id)
            .collect();
        ours_now.sort_by_key(|id| (id.start.ticks(), id.pid.get()));
        match &seen {
            Some((before, since)) if *before == ours_now && !ours_now.is_empty() => {
                if since.elapsed() >= SETTLE {
                    let why = match ours_now.len() {
                        1 => "the one process the launch left".to_owned(),
                        n => format!(
                            "the oldest of the {n} processes the launch left (others: {})",
                            ours_now[1..]
                                .iter()
                                .map(|id| id.pid.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    return Ok(Found {
                        id: ours_now[0],
                        why,
                    });
                }
            }
            _ => seen = Some((ours_now, Instant::now())),
        }
        if Instant::now() >= deadline {
            bail!(
                "what the launch left ({} process(es)) did not settle before start_grace ended",
                live.len()
            );
        }
        tokio::time::sleep(RECHECK).await;
    }
}
