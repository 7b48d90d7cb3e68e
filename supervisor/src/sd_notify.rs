//! sd_notify readiness: a datagram socket per watch whose address its
//! processes get in `NOTIFY_SOCKET`; a process says `READY=1` (and
//! `STATUS=...`) on it, as it would to systemd.
//!
//! The socket is in the abstract namespace, so a process running as any
//! user can reach it without a path in the daemon's private state
//! directory; every datagram carries its sender's credentials
//! (SO_PASSCRED), and the daemon believes only its watch's own processes.
//! Owns the socket and the message format; knows nothing of watches.
use std::os::fd::{AsRawFd as _, OwnedFd};

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
}

impl NotifySocket {
    /// Binds watch `watch`'s socket for the daemon `instance`. The name
    /// does not change between daemon runs, so a re-adopted process can
    /// still speak to the next daemon.
    pub fn bind(instance: &str, watch: &str) -> Result<Self> {
        let name = format!("supervisor/{instance}/notify/{watch}");
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
            _ => {}
        }
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_ready_and_status() {
        let m = super::parse(b"STATUS=warming up\nREADY=1\nMAINPID=4\n");
        assert!(m.ready);
        assert_eq!(m.status.as_deref(), Some("warming up"));
        assert!(!super::parse(b"READY=0").ready);
    }
}
