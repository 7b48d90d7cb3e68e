//! `keepalive`: whether a watch's process is started again when it ends
//! by itself, as `true`/`false` or systemd's words.
use serde::Deserialize;

/// Whether a watch's process is started again when it ends by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// Whatever the exit (god's `keepalive`, systemd's `Restart=always`).
    Always,
    /// Unless it exited with one of `success_codes` or of SIGHUP, SIGINT,
    /// SIGTERM or SIGPIPE, which systemd counts as clean
    /// (`Restart=on-failure`, supervisord's `autorestart=unexpected`).
    OnFailure,
    Never,
}

impl Keepalive {
    /// Whether a process that ended with `status` is started again.
    pub fn restarts(self, status: crate::exit::ExitStatus, success: &[u8]) -> bool {
        use crate::exit::ExitStatus;
        match self {
            Self::Always => true,
            Self::Never => false,
            Self::OnFailure => match status {
                ExitStatus::Exited(code) => !success.contains(&code),
                ExitStatus::Killed { signal, .. } => !matches!(
                    signal,
                    libc::SIGHUP | libc::SIGINT | libc::SIGTERM | libc::SIGPIPE
                ),
                ExitStatus::Unknown => true,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawKeepalive {
    Bool(bool),
    Word(String),
}
