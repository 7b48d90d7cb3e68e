//! The signals the daemon is sent, and what each means. Run as a daemon:
//! SIGTERM and SIGINT terminate, SIGHUP reloads the config, SIGUSR1
//! reopens the log files. Run as a container's init (`init -c`): the seven
//! a runtime or an operator sends (`init::FORWARDED`) go to the main watch,
//! or to every watch (`[init] forward`), and SIGTERM, SIGINT and SIGQUIT
//! also start the shutdown, in which those watches are stopped with the
//! signal the init got.
//!
//! Owns the signal streams and the choice of whom a signal is for; the
//! stops go through `shutdown`.
use std::collections::BTreeSet;

use anyhow::{Context as _, Result};
use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

use crate::{config::Forward, protocol::Missing};

use super::{reach::signal_group, shutdown::Ask, Daemon};

pub(super) struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    /// The streams of what the daemon acts on: the daemon's four, or the
    /// init's seven.
    pub(super) fn open(init: bool) -> Result<Self> {
        let wanted: &[Signal] = if init {
            &crate::init::FORWARDED
        } else {
            &[
                Signal::SIGTERM,
                Signal::SIGINT,
                Signal::SIGHUP,
                Signal::SIGUSR1,
            ]
        };
        let streams = wanted
            .iter()
            .map(|&s| {
                signal(SignalKind::from_raw(s as i32))
                    .map(|stream| (s, stream))
                    .with_context(|| format!("handling {s}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { streams })
    }

    /// The next signal that arrives.
    pub(super) async fn next(&mut self) -> Signal {
        std::future::poll_fn(|cx| {
            for (signal, stream) in &mut self.streams {
                if stream.poll_recv(cx).is_ready() {
                    return std::task::Poll::Ready(*signal);
                }
            }
            std::task::Poll::Pending
        })
        .await
    }
}

/// What starts a container's shutdown (the others are only passed on).
const SHUTDOWN: [Signal; 3] = [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT];

impl Daemon {
    pub(super) fn on_signal(&mut self, signal: Signal) {
        let Some(init) = self.init else {
            match signal {
                Signal::SIGTERM | Signal::SIGINT => self.terminate(Ask {
                    why: format!("it got {signal}"),
                    reply: None,
                    within: None,
                    signal: None,
                    main: None,
                }),
                Signal::SIGHUP => {
                    let source = self.config.source.clone();
                    self.start_load(source, Missing::default(), None);
                }
                Signal::SIGUSR1 => self.logs.reopen(),
                _ => {}
            }
            return;
        };
        let targets = self.forwarded_to(init.forward);
        if SHUTDOWN.contains(&signal) && self.shutdown.is_none() {
            log::info!(
                "got {signal}: shutting down, {signal} to {}",
                targets.iter().cloned().collect::<Vec<_>>().join(", ")
            );
            self.terminate(Ask {
                why: format!("it got {signal}"),
                reply: None,
                within: Some(init.stop_timeout),
                signal: Some((signal, targets)),
                main: None,
            });
            return;
        }
        let (mut to, mut not) = (Vec::new(), Vec::new());
        for name in targets {
            match self.slots.get(&name).and_then(|s| s.watch.process()) {
                Some(process) => {
                    signal_group(process.pid, signal);
                    to.push(name);
                }
                None => not.push(name),
            }
        }
        if !to.is_empty() {
            log::info!("forwarded {signal} to {}", to.join(", "));
        }
        if !not.is_empty() {
            // A start still on its way (or none): nothing to give it to.
            log::warn!(
                "{signal} not forwarded to {}: no process running",
                not.join(", ")
            );
        }
    }

    /// Whom the init's signals are for: the main watch (if there is one
    /// and `forward` is `main`), else every watch.
    fn forwarded_to(&self, forward: Forward) -> BTreeSet<String> {
        let main = self
            .slots
            .iter()
            .find(|(_, s)| s.watch.config().main)
            .map(|(n, _)| n.clone());
        match (forward, main) {
            (Forward::Main, Some(main)) => BTreeSet::from([main]),
            _ => self.slots.keys().cloned().collect(),
        }
    }
}
