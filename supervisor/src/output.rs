//! Watches' stdout and stderr: each process writes into a pipe, the daemon
//! appends what comes out to the configured log file. Because the daemon
//! holds the files, SIGUSR1 can reopen them after a log rotation, and a
//! file that cannot be written (a full disk) costs the output, never the
//! process.
//!
//! Log files are opened as the watch's user would open them, never through
//! a symlink, a FIFO or a device (`safe_open`), at the first start and at
//! every reopen.
//!
//! Owns the log files and the copying; knows nothing of watches' states.
use std::{
    collections::HashMap,
    fs::File,
    io::Write as _,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};

use crate::{
    config::RunAs,
    safe_open::{self, Access},
};
use tokio::io::AsyncReadExt as _;

#[derive(Default)]
pub struct Logs {
    sinks: HashMap<PathBuf, Arc<Sink>>,
}

struct Sink {
    path: PathBuf,
    /// Whose the file is: reopened as that user.
    user: Option<RunAs>,
    /// `None` after a failed reopen, until the next one works.
    file: Mutex<Option<File>>,
    /// A write failed and was reported; report again only after success.
    failing: Mutex<bool>,
}

/// A log file is created readable by its owner only: output can hold
/// secrets. An existing file keeps the mode it has.
fn open(path: &Path, user: Option<&RunAs>) -> std::result::Result<File, safe_open::OpenError> {
    safe_open::open(path, user, Access::Append)
}

impl Logs {
    /// A pipe whose write end the process gets as stdout or stderr; what
    /// comes out of it is appended to `path`. Fails, with the file named,
    /// when the file cannot be opened at all.
    pub fn pipe_to(&mut self, path: &Path, user: Option<&RunAs>) -> Result<OwnedFd> {
        let sink = match self.sinks.get(path) {
            Some(sink) => sink.clone(),
            None => {
                let file = open(path, user).context("opening log file")?;
                let sink = Arc::new(Sink {
                    path: path.to_owned(),
                    user: user.cloned(),
                    file: Mutex::new(Some(file)),
                    failing: Mutex::new(false),
                });
                self.sinks.insert(path.to_owned(), sink.clone());
                sink
            }
        };
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
        let mut receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
            .context("registering a log pipe")?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            // Ends when every writer (the process and what it started) is gone.
            while let Ok(n) = receiver.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.write(&buf[..n]);
            }
        });
        Ok(write)
    }

    /// Reopens every log file (after a rotation moved it away).
    pub fn reopen(&self) {
        for sink in self.sinks.values() {
            let reopened = open(&sink.path, sink.user.as_ref());
            match reopened {
                Ok(file) => *sink.file.lock().expect("log file lock") = Some(file),
                Err(e) => {
                    log::error!("cannot reopen log file: {e}; output is dropped until it can be");
                    *sink.file.lock().expect("log file lock") = None;
                }
            }
        }
        log::info!("reopened {} log file(s)", self.sinks.len());
    }
}

impl Sink {
    fn write(&self, bytes: &[u8]) {
        let result = match self.file.lock().expect("log file lock").as_mut() {
            Some(file) => file.write_all(bytes),
            None => return,
        };
        let mut failing = self.failing.lock().expect("log flag lock");
        match result {
            Ok(()) if *failing => {
                *failing = false;
                log::info!("log file {} is writable again", self.path.display());
            }
            Ok(()) => {}
            Err(e) if !*failing => {
                *failing = true;
                log::error!(
                    "cannot write log file {}: {e}; dropping output until it can",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }
}
