//! Watches' stdout and stderr: each process writes into a pipe, the daemon
//! appends what comes out to the configured log file. Because the daemon
//! holds the files, SIGUSR1 can reopen them after a log rotation, and a
//! file that cannot be written (a full disk) costs the output, never the
//! process.
//!
//! Log files are opened as the watch's user would open them, never through
//! a symlink, a FIFO or a device (`safe_open`), at the first start and at
//! every reopen. A file with a `Rotation` is rotated by size, only between
//! lines: `PATH` becomes `PATH.1` (and so on up to `backups`, the oldest
//! deleted), and a new `PATH` is made (`O_EXCL`, so a name planted in the
//! meantime is refused, not followed).
//!
//! None of it is done on the daemon's loop: a thread of its own reads the
//! pipes and queues what they give (`copier`), and the files are written,
//! rotated and reopened by a blocking-pool thread (`Sink`), so that a
//! flood of output, a slow disk or a rotation never stalls the loop.
//!
//! The last lines of each stream of a process are kept, bounded, so that
//! its exit can say what it printed before it died. With `timestamps`,
//! each line in the file begins with when its first byte was read
//! (RFC 3339, µs, UTC).
//!
//! Here: the pipes and their reading (`Logs`, `Pipe`, the copier thread).
//! `sink`: one file's queue and its writer. `lines`: the tail and the
//! timestamps. Owns the log files and the copying; knows nothing of
//! watches' states.
use std::{
    collections::HashMap,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};

use crate::config::RunAs;

mod lines;
mod sink;

pub use lines::TAIL_LINES;
use lines::{now_stamp, Stamper, Tail};
use sink::{Job, Sink};

#[derive(Default)]
pub struct Logs {
    sinks: HashMap<PathBuf, Arc<Sink>>,
}

/// The thread that reads the pipes, with a runtime of its own: a process
/// writing as fast as it can keeps it busy, and the kernel then shares the
/// CPU between it and the loop, where on the loop's runtime the flood
/// would take turns the loop needs for exits and requests. Its blocking
/// pool writes the files.
fn copier() -> Result<&'static tokio::runtime::Handle> {
    static COPIER: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    if let Some(handle) = COPIER.get() {
        return Ok(handle);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .thread_name("log-writer")
        .build()
        .context("starting the log copier's runtime")?;
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("log-copier".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .context("starting the log copier's thread")?;
    Ok(COPIER.get_or_init(|| handle))
}

impl Logs {
    /// A pipe whose write end the process gets as stdout or stderr; what
    /// comes out of it is appended to `path`, and its last lines are kept.
    /// Fails, with the file named, when the file cannot be opened at all.
    pub fn pipe_to(
        &mut self,
        path: &Path,
        user: Option<&RunAs>,
        timestamps: bool,
        rotation: Option<crate::config::Rotation>,
    ) -> Result<(OwnedFd, Arc<Pipe>)> {
        let sink = match self.sinks.get(path) {
            Some(sink) => sink.clone(),
            None => {
                let sink = Arc::new(Sink::open(path, user, rotation)?);
                self.sinks.insert(path.to_owned(), sink.clone());
                sink
            }
        };
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
        let copier = copier()?;
        let receiver = {
            let _in_copier = copier.enter();
            tokio::net::unix::pipe::Receiver::from_owned_fd(read)
                .context("registering a log pipe")?
        };
        let pipe = Arc::new(Pipe {
            receiver,
            sink,
            tail: Mutex::new(Tail::default()),
            stamps: timestamps.then(|| Mutex::new(Stamper::default())),
        });
        let reading = pipe.clone();
        copier.spawn(async move {
            // Ends when every writer (the process and what it started) is gone.
            loop {
                reading.sink.room().await;
                if reading.receiver.readable().await.is_err() || reading.drain(Drain::WhileRoom) {
                    break;
                }
            }
        });
        Ok((write, pipe))
    }

    /// Reopens every log file (after a rotation moved it away), each once
    /// what was queued for it before is written.
    pub fn reopen(&self) {
        log::info!("reopening {} log file(s)", self.sinks.len());
        for sink in self.sinks.values() {
            sink.push(Job::Reopen);
        }
    }
}

impl Logs {
    /// Writes what is queued, on this thread: the daemon is ending, and
    /// the runtime would drop a writer that has not begun.
    pub fn flush(&self) {
        for sink in self.sinks.values() {
            sink.flush();
        }
    }
}

/// One process's stream: the pipe it writes into, copied into its log
/// file, and its last lines.
pub struct Pipe {
    receiver: tokio::net::unix::pipe::Receiver,
    sink: Arc<Sink>,
    /// Held while the pipe is read, so that what is read goes into the
    /// file and the tail in order, whoever reads it.
    tail: Mutex<Tail>,
    /// With `timestamps`: where the stream is in its line.
    stamps: Option<Mutex<Stamper>>,
}

/// How much of a pipe `Pipe::drain` reads.
#[derive(Clone, Copy, PartialEq)]
enum Drain {
    /// What it holds, while its file's queue has room.
    WhileRoom,
    /// What it holds, room or not: the process is gone, and its last
    /// lines are wanted (bounded, as something it left may still write).
    All,
}

impl Pipe {
    /// Reads what the pipe holds now; true at its end.
    fn drain(&self, how: Drain) -> bool {
        let mut tail = self.tail.lock().expect("tail lock");
        // A pipe's whole buffer, as Linux sizes it, in one read.
        let mut buf = [0u8; 64 * 1024];
        let mut reads = 0;
        loop {
            if match how {
                Drain::WhileRoom => !self.sink.has_room(),
                Drain::All => reads == 64,
            } {
                return false;
            }
            reads += 1;
            match self.receiver.try_read(&mut buf) {
                Ok(0) => {
                    self.sink.push(Job::Ended);
                    return true;
                }
                Ok(n) => {
                    let bytes = match &self.stamps {
                        Some(stamper) => stamper
                            .lock()
                            .expect("stamper lock")
                            .stamp(&buf[..n], &now_stamp()),
                        None => buf[..n].to_vec(),
                    };
                    self.sink.push(Job::Write(bytes));
                    tail.push(&buf[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return true,
            }
        }
    }

    /// Its last lines, once what is still in the pipe is read (a process
    /// that is gone wrote all it will).
    pub fn last_lines(&self) -> Vec<String> {
        self.drain(Drain::All);
        self.tail.lock().expect("tail lock").lines()
    }
}

/// The streams of one process that the daemon carries.
#[derive(Clone, Default)]
pub struct Output {
    pub stdout: Option<Arc<Pipe>>,
    pub stderr: Option<Arc<Pipe>>,
}

impl Output {
    /// The last lines of its stdout and of its stderr.
    pub fn last_lines(&self) -> (Vec<String>, Vec<String>) {
        let lines = |p: &Option<Arc<Pipe>>| p.as_ref().map_or_else(Vec::new, |p| p.last_lines());
        (lines(&self.stdout), lines(&self.stderr))
    }
}

#[cfg(test)]
mod tests {
    use std::{fs::File, io::Write as _};

    use super::*;

    /// Far more than a queue's bound goes through one pipe into a rotating
    /// file: every line arrives once, in order, none split by a rotation.
    #[test]
    fn output_through_the_queue_arrives_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let lines = 400_000;
        runtime.block_on(async {
            let mut logs = Logs::default();
            let rotation = crate::config::Rotation {
                max_size: 1 << 20,
                backups: 100,
            };
            let (write, pipe) = logs.pipe_to(&path, None, false, Some(rotation)).unwrap();
            let writer = tokio::task::spawn_blocking(move || {
                let mut out = File::from(write);
                for i in 0..lines {
                    writeln!(out, "line {i:08} of the test").unwrap();
                }
            });
            writer.await.unwrap();
            while !pipe.drain(Drain::All) {}
            logs.flush();
        });
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let generation = |p: &PathBuf| {
            p.extension()
                .and_then(|e| e.to_str())
                .and_then(|e| e.parse::<u32>().ok())
                .unwrap_or(0)
        };
        files.sort_by_key(|p| std::cmp::Reverse(generation(p)));
        assert!(files.len() > 5, "{} files: too few rotations", files.len());
        let mut next = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.len() as u64 <= 1 << 20,
                "{} is too big: {} bytes",
                file.display(),
                text.len()
            );
            assert!(text.ends_with('\n'), "{} ends mid-line", file.display());
            for line in text.lines() {
                assert_eq!(line, format!("line {next:08} of the test"));
                next += 1;
            }
        }
        assert_eq!(next, lines);
    }
}
