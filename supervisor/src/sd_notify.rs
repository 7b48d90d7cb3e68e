//! sd_notify readiness: a datagram socket per watch whose address its
//! processes get in `NOTIFY_SOCKET`; a process says `READY=1` (and
//! `STATUS=...`) on it, as it would to systemd.
//!
//! The socket is in the abstract namespace, so a process running as any
//! user can reach it without a path in the daemon's private state
//! directory. Its name is random (kept in the state file, so that a
//! re-adopted process can still talk): nobody can bind it first, and only
//! those told the name can send. Every datagram carries its sender's
//! credentials (SO_PASSCRED), the daemon believes only its watch's own
//! processes, and each sender has a budget (`Limiter`), so that a flood
//! costs the daemon next to nothing.
//! Owns the socket, the message format and the budget; knows nothing of
//! watches.
use std::{
    collections::HashMap,
    os::fd::{AsRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    bind, recvmsg, setsockopt, socket, sockopt, AddressFamily, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use tokio::io::unix::AsyncFd;

use crate::process::Pid;

/// The most a message may be (systemd takes a page too).
const MESSAGE_MAX: usize = 4096;

pub struct NotifySocket {
    fd: AsyncFd<OwnedFd>,
    /// What `NOTIFY_SOCKET` says: `@` and the abstract name.
    pub address: String,
}

/// What a process said.
#[derive(Debug, Default)]
pub struct Message {
    /// Who sent it, as the kernel says.
    pub sender: Option<Pid>,
    pub ready: bool,
    pub status: Option<String>,
    /// `WATCHDOG=1`: exempt from the budget, since a watchdog ping is
    /// expected at a steady rate.
    pub watchdog: bool,
    /// `WATCHDOG=trigger`: the process says it is hung.
    pub watchdog_trigger: bool,
    /// `WATCHDOG_USEC=N`: its watchdog timeout from now on.
    pub watchdog_usec: Option<u64>,
}

impl Message {
    /// Whether it is `WATCHDOG=1` and nothing else.
    pub fn is_bare_ping(&self) -> bool {
        self.watchdog
            && !self.ready
            && self.status.is_none()
            && !self.watchdog_trigger
            && self.watchdog_usec.is_none()
    }

    /// Whether it says anything the daemon acts on.
    pub fn is_empty(&self) -> bool {
        !self.ready
            && self.status.is_none()
            && !self.watchdog
            && !self.watchdog_trigger
            && self.watchdog_usec.is_none()
    }
}

/// A fresh, unguessable abstract name under the daemon's `instance`.
pub fn new_name(instance: &str) -> String {
    format!("@supervisor/{instance}/{}", crate::state::random_id())
}

impl NotifySocket {
    /// Binds the abstract socket `address` (`@` and the name).
    pub fn bind(address: &str) -> Result<Self> {
        let name = address.strip_prefix('@').unwrap_or(address);
        let fd = socket(
            AddressFamily::Unix,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .context("socket(AF_UNIX, SOCK_DGRAM)")?;
        let addr = UnixAddr::new_abstract(name.as_bytes())
            .with_context(|| format!("abstract socket name '{name}'"))?;
        bind(fd.as_raw_fd(), &addr).with_context(|| format!("binding @{name}"))?;
        setsockopt(&fd, sockopt::PassCred, &true).context("SO_PASSCRED")?;
        // SAFETY: the fd is owned by the AsyncFd, which deregisters it
        // before closing it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .context("registering the notify socket")?;
        Ok(Self {
            fd,
            address: format!("@{name}"),
        })
    }

    /// The next message.
    pub async fn recv(&self) -> std::io::Result<Message> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| receive(fd.get_ref()).map_err(std::io::Error::from)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}

fn receive(fd: &OwnedFd) -> nix::Result<Message> {
    let mut buf = vec![0u8; MESSAGE_MAX];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!(nix::sys::socket::UnixCredentials);
    let msg = recvmsg::<()>(
        fd.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )?;
    let mut sender = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmCredentials(creds) = cmsg {
            sender = u32::try_from(creds.pid()).ok().and_then(Pid::new);
        }
    }
    let len = msg.bytes;
    Ok(Message {
        sender,
        ..parse(&buf[..len])
    })
}

/// `KEY=value` lines; unknown keys are ignored, as systemd does.
fn parse(bytes: &[u8]) -> Message {
    let mut message = Message::default();
    for line in String::from_utf8_lossy(bytes).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => message.ready = true,
            Some(("STATUS", text)) => message.status = Some(text.chars().take(200).collect()),
            Some(("WATCHDOG", "1")) => message.watchdog = true,
            Some(("WATCHDOG", "trigger")) => message.watchdog_trigger = true,
            Some(("WATCHDOG_USEC", usec)) => message.watchdog_usec = usec.trim().parse().ok(),
            _ => {}
        }
    }
    message
}

/// Messages a sender may send in a burst, and again per second after.
const BURST: f64 = 20.0;
const PER_SECOND: f64 = 10.0;
/// Senders remembered at once; past that the quietest are forgotten.
const SENDERS_MAX: usize = 256;

/// A budget per sender (token bucket), so that no process can make the
/// daemon scan /proc or log a line for each datagram it floods in.
#[derive(Default)]
pub struct Limiter {
    senders: HashMap<Option<Pid>, (f64, Instant)>,
    dropped: u64,
    last_said: Option<Instant>,
}

impl Limiter {
    /// Whether `message`, arriving at `now`, is let through. What is
    /// dropped is logged at most once every ten seconds, with a count.
    pub fn admit(&mut self, message: &Message, now: Instant) -> bool {
        if message.is_bare_ping() {
            return true;
        }
        if self.senders.len() >= SENDERS_MAX && !self.senders.contains_key(&message.sender) {
            let full = now - Duration::from_secs(2);
            self.senders.retain(|_, (_, at)| *at > full);
            if self.senders.len() >= SENDERS_MAX {
                return self.drop_one(now);
            }
        }
        let (tokens, at) = self.senders.entry(message.sender).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * PER_SECOND).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            self.drop_one(now)
        }
    }

    fn drop_one(&mut self, now: Instant) -> bool {
        self.dropped += 1;
        if self
            .last_said
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            log::warn!(
                "notify socket flooded: {} message(s) dropped so far (each sender may send {BURST} at once, {PER_SECOND} a second)",
                self.dropped
            );
            self.last_said = Some(now);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_sender_is_cut_off_and_others_are_not() {
        let mut limiter = Limiter::default();
        let now = Instant::now();
        let from = |pid: u32| Message {
            sender: Pid::new(pid),
            status: Some("x".into()),
            ..Message::default()
        };
        let admitted = (0..1000).filter(|_| limiter.admit(&from(7), now)).count();
        assert_eq!(admitted, BURST as usize);
        assert!(
            limiter.admit(&from(8), now),
            "another sender has its own budget"
        );
        assert!(limiter.admit(&from(7), now + Duration::from_millis(200)));
        let watchdog = Message {
            sender: Pid::new(7),
            watchdog: true,
            ..Message::default()
        };
        assert!(limiter.admit(&watchdog, now), "WATCHDOG=1 is exempt");
    }

    #[test]
    fn reads_ready_and_status() {
        let m = parse(b"STATUS=warming up\nREADY=1\nMAINPID=4\n");
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("warming up"));
        assert!(!parse(b"READY=0").ready);
        assert!(parse(b"WATCHDOG=1").watchdog);
    }
}
