//! The live event stream (`supervisor events`): the daemon broadcasts
//! each transition, exit, check result and notification to a bounded
//! channel, and each reader's connection writes what it takes from it.
//! The daemon never waits for a reader: one that falls `BACKLOG` events
//! behind, or does not take a line within `WRITE_TIMEOUT`, is told why
//! (if it can still be told) and dropped. A replay (`since`) comes from
//! the snapshot's bounded histories first, saying where each was cut.
//!
//! Owns the channel and the writing of the stream; what goes into an
//! event is the daemon's.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Result;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt as _},
    sync::broadcast,
};

use crate::{
    protocol::{self, EventKind, StreamEvent, WatchStatus},
    snapshot::Snapshot,
};

/// Events a reader may fall behind by before it is dropped.
pub const BACKLOG: usize = 4096;
/// How long one line may take to be taken by the reader.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's side: cloned into the control server, which subscribes
/// one receiver per reader.
pub type Feed = broadcast::Sender<Arc<StreamEvent>>;

pub fn feed() -> Feed {
    broadcast::channel(BACKLOG).0
}

/// Unix seconds of `at`.
pub fn seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Writes `target`'s events to `write` until the reader goes or falls
/// behind: first those of the last `since` that `snapshot` kept, then
/// what `live` (subscribed before `snapshot` was read) brings.
pub async fn stream<W: AsyncWrite + Unpin>(
    write: &mut W,
    snapshot: &Snapshot,
    mut live: broadcast::Receiver<Arc<StreamEvent>>,
    target: Option<&str>,
    since: Option<Duration>,
) -> Result<()> {
    let wanted =
        |w: &WatchStatus| target.is_none_or(|t| protocol::names(t, &w.name, w.group.as_deref()));
    let watches: Vec<&WatchStatus> = snapshot
        .watches()
        .iter()
        .map(|s| &s.status)
        .filter(|w| wanted(w))
        .collect();
    // A group's members, to filter live events by watch name alone.
    let names: std::collections::HashSet<&str> = watches.iter().map(|w| w.name.as_str()).collect();
    // What the replay showed of each watch: live events at or before it
    // were in the snapshot already.
    let mut shown: HashMap<String, f64> = HashMap::new();
    if let Some(since) = since {
        let from = seconds(SystemTime::now()) - since.as_secs_f64();
        for line in replay(&watches, from) {
            if !line.watch.is_empty() {
                let last = shown.entry(line.watch.clone()).or_insert(line.at);
                *last = last.max(line.at);
            }
            send(write, &line).await?;
        }
    }
    loop {
        let event = match live.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                let _ = send(
                    write,
                    &stream_line(format!(
                        "dropped: this reader fell {missed} events behind (it reads slower than they come); reconnect to follow again"
                    )),
                )
                .await;
                return Ok(());
            }
            Err(broadcast::error::RecvError::Closed) => {
                let _ = send(write, &stream_line("the daemon is shutting down".into())).await;
                return Ok(());
            }
        };
        if !names.contains(event.watch.as_str()) && target.is_some() {
            continue;
        }
        if shown
            .get(&event.watch)
            .is_some_and(|&last| event.at <= last)
        {
            continue;
        }
        send(write, &event).await?;
    }
}

/// What the histories kept since `from` (unix seconds), oldest first,
/// each watch's cut said where its history ends before `from`.
fn replay(watches: &[&WatchStatus], from: f64) -> Vec<StreamEvent> {
    let mut lines = Vec::new();
    for w in watches {
        // Full histories may have dropped older entries within the window.
        let events_cut =
            w.events.len() >= crate::watch::EVENTS && w.events.first().is_some_and(|e| e.at > from);
        let exits_cut =
            w.exits.len() >= crate::watch::EXITS && w.exits.first().is_some_and(|e| e.at > from);
        if events_cut || exits_cut {
            let oldest = [
                events_cut.then(|| w.events[0].at),
                exits_cut.then(|| w.exits[0].at),
            ]
            .into_iter()
            .flatten()
            .fold(f64::MAX, f64::min);
            lines.push(StreamEvent {
                at: oldest,
                watch: String::new(),
                kind: EventKind::Stream,
                text: format!(
                    "truncated: {} keeps its last {} events and {} exits; older ones in the window are gone",
                    w.name,
                    crate::watch::EVENTS,
                    crate::watch::EXITS
                ),
                exit: None,
            });
        }
        lines.extend(
            w.events
                .iter()
                .filter(|e| e.at >= from)
                .map(|e| StreamEvent {
                    at: e.at,
                    watch: w.name.clone(),
                    kind: EventKind::Event,
                    text: e.what.clone(),
                    exit: None,
                }),
        );
        lines.extend(
            w.exits
                .iter()
                .filter(|e| e.at >= from)
                .map(|e| StreamEvent {
                    at: e.at,
                    watch: w.name.clone(),
                    kind: EventKind::Exit,
                    text: format!("process {} {}", e.pid, e.cause),
                    exit: Some(e.clone()),
                }),
        );
    }
    // Stable: a watch's exit stays after the transition noted with it.
    lines.sort_by(|a, b| a.at.total_cmp(&b.at));
    lines
}

fn stream_line(text: String) -> StreamEvent {
    StreamEvent {
        at: seconds(SystemTime::now()),
        watch: String::new(),
        kind: EventKind::Stream,
        text,
        exit: None,
    }
}

async fn send<W: AsyncWrite + Unpin>(write: &mut W, event: &StreamEvent) -> Result<()> {
    let mut bytes = serde_json::to_vec(event)?;
    bytes.push(b'\n');
    tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&bytes))
        .await
        .map_err(|_| anyhow::anyhow!("the reader took no line for {WRITE_TIMEOUT:?}"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_falls_behind_is_told_and_dropped() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (_publisher, reader) = crate::snapshot::Publisher::new();
            let (feed, live) = broadcast::channel(2);
            for i in 0..5 {
                let _ = feed.send(Arc::new(StreamEvent {
                    at: f64::from(i),
                    watch: "x".into(),
                    kind: EventKind::Event,
                    text: format!("event {i}"),
                    exit: None,
                }));
            }
            let mut out = Vec::new();
            stream(&mut out, &reader.latest(), live, None, None)
                .await
                .unwrap();
            let text = String::from_utf8(out).unwrap();
            assert_eq!(text.lines().count(), 1, "{text}");
            assert!(
                text.contains("\"kind\":\"stream\"")
                    && text.contains("dropped: this reader fell 3 events behind"),
                "{text}"
            );
        });
    }
}
