//! Hot reload (`load`, SIGHUP): the config is read and parsed on a
//! blocking thread, off the loop, so that a file of thousands of watches
//! never holds up a restart; the loop then applies the plan
//! (`config::reload::plan`): new watches start in start order, changed
//! ones restart if they run, unchanged ones are not touched, missing ones
//! go as asked. A file that does not load changes nothing.
use std::path::PathBuf;

use tokio::sync::oneshot;

use super::{slot::WatchSlot, Daemon, Internal};

use crate::{
    config::{self, Config, ConfigError},
    protocol::{LoadSummary, Missing, Response, Summary},
    watch::{Command, Watch},
};

/// A config read for a reload, and who asked.
pub(super) struct Loaded {
    path: PathBuf,
    missing: Missing,
    result: Result<Config, ConfigError>,
    /// `None` for SIGHUP, which is answered in the log.
    reply: Option<oneshot::Sender<Response>>,
}

impl Daemon {
    /// Reads `path` off the loop; `finish_load` applies it.
    pub(super) fn start_load(
        &mut self,
        path: PathBuf,
        missing: Missing,
        reply: Option<oneshot::Sender<Response>>,
    ) {
        let (tx, trust) = (self.tx.clone(), self.config.trust);
        tokio::task::spawn_blocking(move || {
            let result = config::load(&path, trust);
            let _ = tx.send(Internal::Loaded(Loaded {
                path,
                missing,
                result,
                reply,
            }));
        });
    }

    pub(super) fn finish_load(&mut self, loaded: Loaded) {
        let Loaded {
            path,
            missing,
            result,
            reply,
        } = loaded;
        let outcome = result.map(|new| self.apply(&path, new, missing));
        self.answered = true;
        match reply {
            Some(reply) => {
                let _ = reply.send(match outcome {
                    Ok(summary) => Response {
                        summary: Some(Summary::Load(summary)),
                        ..Response::ok(Vec::new())
                    },
                    Err(e) => Response::error(format!("{e}; nothing changed")),
                });
            }
            None => match outcome {
                Ok(summary) => log::info!("SIGHUP: reloaded {}: {summary}", path.display()),
                Err(e) => log::error!("SIGHUP: {e}; nothing changed"),
            },
        }
    }

    /// Replaces the config with `new`, as the module comment says.
    fn apply(&mut self, path: &std::path::Path, mut new: Config, missing: Missing) -> LoadSummary {
        if new.daemon != self.config.daemon {
            log::warn!(
                "{}: [daemon] changes take effect only when the daemon starts again",
                path.display()
            );
        }
        let plan = config::reload::plan(
            self.slots.values().map(|s| s.watch.config()),
            std::mem::take(&mut new.watches),
        );
        let added: Vec<String> = plan.added.iter().map(|w| w.name.clone()).collect();
        let changed: Vec<String> = plan.changed.iter().map(|w| w.name.clone()).collect();
        let limits_changed: Vec<String> = plan.relimited.iter().map(|w| w.name.clone()).collect();
        for config in plan.relimited {
            let name = config.name.clone();
            let limits = config.limits;
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            slot.watch.reconfigure(config);
            self.unpublished.insert(name.clone());
            // Set where they are now; a watch not started yet sets them at
            // its start.
            if let Some(applied) = &slot.limits {
                match applied.update(&limits) {
                    Ok(()) => log::info!("{name}: limits set again in place (no restart)"),
                    Err(e) => log::error!("{name}: cannot set its new limits: {e:#}"),
                }
            }
        }
        // Each of them is shown anew (a watch removed and added again is
        // another watch).
        self.order_stale = true;
        for config in plan.added {
            self.unpublished.insert(config.name.clone());
            self.slots
                .insert(config.name.clone(), WatchSlot::new(Watch::new(config)));
        }
        for config in plan.changed {
            let name = config.name.clone();
            self.unpublished.insert(name.clone());
            if let Some(watch) = self.slots.get_mut(&name).map(|s| &mut s.watch) {
                watch.reconfigure(config);
                if watch.process().is_some() {
                    let why = format!("its config changed (load of {})", path.display());
                    self.command(&name, Command::Restart, &why);
                }
            }
        }
        // Started once all are in, in start order: a watch may start after
        // one added with it.
        for name in self.in_start_order(added.clone()) {
            if self
                .slots
                .get(&name)
                .map(|s| &s.watch)
                .is_some_and(|w| w.config().autostart)
            {
                self.command(&name, Command::Start, "added by a load");
            }
        }
        let gone = format!("no longer in the config (load of {})", path.display());
        for name in &plan.missing {
            match missing {
                Missing::Leave => {}
                Missing::Stop => self.command(name, Command::Stop, &gone),
                Missing::Remove => {
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.removing = true;
                    }
                    self.command(name, Command::Stop, &gone);
                }
            }
        }
        let fewer = format!(
            "an instance fewer in the config (load of {})",
            path.display()
        );
        for name in &plan.dropped {
            if let Some(slot) = self.slots.get_mut(name) {
                slot.removing = true;
            }
            self.command(name, Command::Stop, &fewer);
        }
        self.notifier.configure(&new.notify);
        let daemon = self.config.daemon.clone();
        self.config = Config { daemon, ..new };
        LoadSummary {
            added,
            changed,
            limits_changed,
            unchanged: plan.unchanged,
            missing: plan.missing,
            missing_action: missing,
            dropped: plan.dropped,
        }
    }
}
