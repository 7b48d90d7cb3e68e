//! sd_notify: each watch that is ready on `READY=1` or has a `watchdog`
//! gets a notify socket, bound on its first start and kept; what arrives
//! there (`READY=1`, `STATUS=`, `WATCHDOG=1`, `WATCHDOG=trigger`,
//! `WATCHDOG_USEC=`) is believed only from the watch's own processes.
//!
//! The health-check way to be ready lives with the checks (`checks`).

use super::{Daemon, Internal};

use crate::{
    config::Readiness,
    sd_notify::{self, NotifySocket},
    watch::Now,
};

/// Watchdog pings closer together than this are one: the shortest
/// `watchdog` is 100 ms.
const PING_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

impl Daemon {
    /// `NOTIFY_SOCKET` for watch `name`'s processes, if it is ready on
    /// `READY=1` or has a watchdog (then `WATCHDOG_USEC` too); its socket
    /// is bound on first use and kept.
    /// `previous`: the address a re-adopted process was given, bound again
    /// if it can be.
    pub(super) fn notify_env(
        &mut self,
        name: &str,
        previous: Option<&str>,
    ) -> Vec<(String, String)> {
        let Some(config) = self.slots.get(name).map(|s| s.watch.config()) else {
            return Vec::new();
        };
        let watchdog = config.watchdog;
        if config.ready != Readiness::Notify && watchdog.is_none() {
            return Vec::new();
        }
        if self.slots.get(name).is_some_and(|s| s.notify.is_none()) {
            match self.bind_notify(name, previous) {
                Ok(socket) => {
                    let address = socket.address.clone();
                    let (tx, watch) = (self.tx.clone(), name.to_owned());
                    let task = tokio::spawn(async move {
                        let mut limiter = sd_notify::Limiter::default();
                        // Pings are outside the budget (they come at a
                        // steady rate); at most one per PING_EVERY
                        // reaches the loop.
                        let mut last_ping: Option<std::time::Instant> = None;
                        loop {
                            match socket.recv().await {
                                Ok(message) => {
                                    let now = std::time::Instant::now();
                                    if !limiter.admit(&message, now) || message.is_empty() {
                                        continue;
                                    }
                                    if message.is_bare_ping() {
                                        if last_ping.is_some_and(|at| now - at < PING_EVERY) {
                                            continue;
                                        }
                                        last_ping = Some(now);
                                    }
                                    let name = watch.clone();
                                    if tx.send(Internal::Notified { name, message }).is_err() {
                                        return;
                                    }
                                }
                                Err(e) => {
                                    log::error!("{watch}: notify socket: {e}");
                                    return;
                                }
                            }
                        }
                    });
                    if let Some(slot) = self.slots.get_mut(name) {
                        slot.notify = Some(NotifyListener { address, task });
                    }
                }
                Err(e) => {
                    // The start goes on; without READY=1 it fails after
                    // start_grace, which says why.
                    log::error!("{name}: no notify socket: {e:#}");
                    return Vec::new();
                }
            }
        }
        let Some(listener) = self.slots.get(name).and_then(|s| s.notify.as_ref()) else {
            return Vec::new();
        };
        let mut env = vec![("NOTIFY_SOCKET".to_owned(), listener.address.clone())];
        if let Some(watchdog) = watchdog {
            env.push(("WATCHDOG_USEC".to_owned(), watchdog.as_micros().to_string()));
        }
        env
    }

    /// The socket at `previous` (a re-adopted process knows only that
    /// one), else at a new random address.
    fn bind_notify(&self, name: &str, previous: Option<&str>) -> anyhow::Result<NotifySocket> {
        let instance = self.state_file.instance();
        if let Some(address) =
            previous.filter(|a| a.starts_with(&format!("@supervisor/{instance}/")))
        {
            match NotifySocket::bind(address) {
                Ok(socket) => return Ok(socket),
                Err(e) => log::warn!(
                    "{name}: cannot bind its notify socket {address} again ({e:#}); its process cannot say READY=1 any more"
                ),
            }
        }
        NotifySocket::bind(&sd_notify::new_name(instance))
    }

    /// A process wrote to watch `name`'s notify socket: believed only if
    /// it is one of the watch's own.
    pub(super) fn notified(&mut self, name: String, message: sd_notify::Message) {
        let Some(process) = self
            .slots
            .get(&name)
            .map(|s| &s.watch)
            .and_then(|w| w.process())
        else {
            return;
        };
        let ours = message.sender.is_some_and(|sender| {
            sender == process.pid || self.reach(&name).members(process.pid).contains(&sender)
        });
        if !ours {
            log::warn!(
                "{name}: ignoring a notify message from process {}, which is not the watch's",
                message
                    .sender
                    .map_or("(unknown)".to_owned(), |p| p.to_string())
            );
            return;
        }
        let Some(watch) = self.slots.get_mut(&name).map(|s| &mut s.watch) else {
            return;
        };
        if let Some(status) = message.status {
            watch.says(status);
            self.unpublished.insert(name.clone());
        }
        let now = Now::read();
        let mut actions = Vec::new();
        // A READY=1 that makes the watch up must reach `act` even when
        // it asks for nothing more: that is how watches waiting `after`
        // it hear of it.
        let mut changed = false;
        if message.ready && watch.awaiting_ready() {
            actions.extend(watch.ready("READY=1", now));
            changed = true;
        }
        if let Some(usec) = message.watchdog_usec {
            actions.extend(watch.watchdog_usec(usec, now));
        }
        if message.watchdog {
            actions.extend(watch.watchdog_ping(now));
        }
        if message.watchdog_trigger {
            actions.extend(watch.watchdog_trigger(now));
        }
        if changed || !actions.is_empty() {
            self.act(&name, actions);
        }
    }
}

/// A watch's sd_notify socket and the task reading it.
pub(super) struct NotifyListener {
    pub address: String,
    pub task: tokio::task::JoinHandle<()>,
}

impl Drop for NotifyListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}
