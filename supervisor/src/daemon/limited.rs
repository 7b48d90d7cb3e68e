//! A watch's kernel-enforced limits (`memory_max`, `memory_high`,
//! `cpu_max`, `pids_max`): applied before each start (their cgroups made at the first), and whether the
//! OOM killer that ended a process acted on the watch's own limit. The
//! cgroup files are `resources`'; here what the daemon keeps of them.
use std::fs::File;

use anyhow::Result;

use super::Daemon;
use crate::{
    exit::ExitStatus,
    origin::{OomDeath, OomKill},
};

impl Daemon {
    /// Sets watch `name`'s limits (if it has any) for the start about to
    /// be made; returns the v1 `cgroup.procs` files its process joins.
    pub(super) fn limits_for_start(&mut self, name: &str) -> Result<Vec<File>> {
        let cgroup = self.cgroup_of(name);
        let Some(slot) = self.slots.get_mut(name) else {
            return Ok(Vec::new());
        };
        let limits = slot.watch.config().limits;
        if !limits.any() {
            return Ok(Vec::new());
        }
        let applied = crate::resources::apply(
            &self.resources,
            self.state_file.instance(),
            name,
            cgroup.as_ref().map(|c| c.dir()),
            &limits,
        )?;
        // Counted from here: a later kill is this start's process's.
        slot.oom_kills = applied.oom_counters();
        slot.fork_refusals = applied.fork_refusals();
        let join = applied.join()?;
        slot.limits = Some(applied);
        Ok(join)
    }

    /// How many forks its `pids_max` refused since its process started,
    /// and that limit, if any were.
    pub(super) fn forks_refused(&self, name: &str) -> Option<(u64, u64)> {
        let slot = self.slots.get(name)?;
        let refused = (slot.limits.as_ref()?.fork_refusals()?)
            .saturating_sub(slot.fork_refusals.unwrap_or(0));
        let limit = slot.watch.config().limits.pids_max?;
        (refused > 0).then_some((refused, limit))
    }

    /// How the OOM killer ended watch `name`'s process, if it did: what
    /// the backend saw of it (`kill`), else its cgroup's count of a kill
    /// with its SIGKILL.
    pub(super) fn oom_death(
        &self,
        name: &str,
        status: ExitStatus,
        kill: Option<OomKill>,
    ) -> Option<OomDeath> {
        let counted = self.oom_counted(name);
        match (kill, counted) {
            (Some(kill), counted) => Some(OomDeath {
                kill: Some(kill),
                limit: counted.flatten(),
            }),
            (None, Some(limit)) if matches!(status, ExitStatus::Killed { signal, .. } if signal == libc::SIGKILL) => {
                Some(OomDeath { kill: None, limit })
            }
            _ => None,
        }
    }

    /// What the watch's cgroup counted since its process started: `None`
    /// if no OOM kill; else `Some` with its `memory_max` if that limit
    /// was reached meanwhile (else the host ran out of memory).
    pub(super) fn oom_counted(&self, name: &str) -> Option<Option<u64>> {
        let slot = self.slots.get(name)?;
        let now = slot.limits.as_ref()?.oom_counters()?;
        let then = slot.oom_kills.unwrap_or(crate::resources::OomCounters {
            kills: 0,
            limit_reached: 0,
        });
        (now.kills > then.kills).then(|| {
            (now.limit_reached > then.limit_reached)
                .then_some(slot.watch.config().limits.memory_max)
                .flatten()
        })
    }
}
