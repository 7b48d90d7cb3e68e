//! What happened to watches, handed to the notifiers: the notices each
//! watch collected are published once its actions are done (so a hook
//! never runs before the restart it reports), and the hooks the notifier
//! releases are run as helper processes.
use super::{
    slot::{Helper, HelperJob},
    Daemon, Internal,
};

use crate::{
    helper,
    notification::{About, HookRun},
    protocol::EventKind,
};

impl Daemon {
    /// Hands what happened to watch `name` to the notifiers.
    pub(super) fn send_notices(&mut self, name: &str) {
        let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) else {
            return;
        };
        let notices = watch.take_notices();
        if notices.is_empty() {
            return;
        }
        let Some(watch) = self.slots.get(name).map(|s| &s.watch) else {
            return;
        };
        let about = About {
            watch: name,
            group: watch.config().group.as_deref(),
            restarts: watch.restarts(),
        };
        for n in &notices {
            let targets = self.notifier.wanted(&about, n.event).len();
            if targets > 0 {
                super::feed::tell(&self.feed, name, EventKind::Notification, || {
                    format!("{} notification to {targets} target(s)", n.event.as_str())
                });
            }
        }
        let hooks: Vec<HookRun> = notices
            .iter()
            .flat_map(|n| self.notifier.publish(&about, n))
            .collect();
        for hook in hooks {
            self.run_hook(hook);
        }
    }

    pub(super) fn run_hook(&mut self, hook: HookRun) {
        let config = crate::config::WatchConfig::for_command(&hook.what, hook.argv);
        let tx = self.tx.clone();
        match helper::start(&config, &hook.env, hook.timeout, move |finished| {
            let _ = tx.send(Internal::HelperDone(finished));
        }) {
            Ok((pid, pidfd)) => {
                self.helpers.insert(
                    pid,
                    Helper::new(HelperJob::Hook {
                        what: hook.what,
                        pidfd,
                    }),
                );
            }
            Err(e) => {
                log::error!("{}: cannot run: {e:#}", hook.what);
                for hook in self.notifier.hook_not_started() {
                    self.run_hook(hook);
                }
            }
        }
    }

    /// A hook has finished; the notifier may release the next.
    pub(super) fn hook_done(&mut self, what: &str, ok: bool, message: &str) {
        if !ok {
            log::warn!("{what} failed: {message}");
        }
        for hook in self.notifier.hook_finished(ok) {
            self.run_hook(hook);
        }
    }
}
