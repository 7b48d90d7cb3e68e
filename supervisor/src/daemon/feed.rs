//! What the daemon tells the event stream (`crate::events`): each
//! watch's fresh events and exits once its actions are done, health
//! check results and notifications. Nothing is built while nobody reads.
use std::{sync::Arc, time::SystemTime};

use super::Daemon;
use crate::{
    events::seconds,
    protocol::{EventKind, StreamEvent},
    watch::Fresh,
};

impl Daemon {
    /// Hands what happened to watch `name` to the readers.
    pub(super) fn send_events(&mut self, name: &str) {
        let Some(watch) = self.slots.get_mut(name).map(|s| &mut s.watch) else {
            return;
        };
        let fresh = watch.take_fresh();
        if fresh.is_empty() || self.feed.receiver_count() == 0 {
            return;
        }
        for item in fresh {
            let event = match item {
                Fresh::Event(e) => StreamEvent {
                    at: seconds(e.at),
                    watch: name.to_owned(),
                    kind: EventKind::Event,
                    text: e.what,
                    exit: None,
                },
                Fresh::Exit(exit) => StreamEvent {
                    at: seconds(exit.at),
                    watch: name.to_owned(),
                    kind: EventKind::Exit,
                    text: format!("process {} {}", exit.pid, exit.cause),
                    exit: Some(super::shown::exit_status(&exit)),
                },
            };
            let _ = self.feed.send(Arc::new(event));
        }
    }
}

/// Something of `kind` about watch `name` that is not in its history (a
/// check result, a notification).
pub(super) fn tell(
    feed: &crate::events::Feed,
    name: &str,
    kind: EventKind,
    text: impl FnOnce() -> String,
) {
    if feed.receiver_count() == 0 {
        return;
    }
    let _ = feed.send(Arc::new(StreamEvent {
        at: seconds(SystemTime::now()),
        watch: name.to_owned(),
        kind,
        text: text(),
        exit: None,
    }));
}
