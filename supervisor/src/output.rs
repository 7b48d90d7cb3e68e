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
//! The last lines of each stream of a process are kept, bounded, so that
//! its exit can say what it printed before it died. With `timestamps`,
//! each line in the file begins with when its first byte was read
//! (RFC 3339, µs, UTC).
//!
//! Owns the log files and the copying; knows nothing of watches' states.
use std::{
    collections::{HashMap, VecDeque},
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
    rotation: Option<crate::config::Rotation>,
    /// With a rotation: the file's size, and whether the last byte written
    /// left a line open (rotation waits for its end).
    written: Mutex<(u64, bool)>,
}

/// A log file is created readable by its owner only: output can hold
/// secrets. An existing file keeps the mode it has.
fn open(path: &Path, user: Option<&RunAs>) -> std::result::Result<File, safe_open::OpenError> {
    safe_open::open(path, user, Access::Append)
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
                let file = open(path, user).context("opening log file")?;
                let size = file.metadata().map_or(0, |m| m.len());
                let sink = Arc::new(Sink {
                    path: path.to_owned(),
                    user: user.cloned(),
                    file: Mutex::new(Some(file)),
                    failing: Mutex::new(false),
                    rotation,
                    written: Mutex::new((size, false)),
                });
                self.sinks.insert(path.to_owned(), sink.clone());
                sink
            }
        };
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
        let receiver = tokio::net::unix::pipe::Receiver::from_owned_fd(read)
            .context("registering a log pipe")?;
        let pipe = Arc::new(Pipe {
            receiver,
            sink,
            tail: Mutex::new(Tail::default()),
            stamps: timestamps.then(|| Mutex::new(Stamper::default())),
        });
        let reading = pipe.clone();
        tokio::spawn(async move {
            // Ends when every writer (the process and what it started) is gone.
            while reading.receiver.readable().await.is_ok() {
                if reading.drain() {
                    break;
                }
            }
        });
        Ok((write, pipe))
    }

    /// Reopens every log file (after a rotation moved it away).
    pub fn reopen(&self) {
        for sink in self.sinks.values() {
            let reopened = open(&sink.path, sink.user.as_ref());
            match reopened {
                Ok(file) => {
                    let size = file.metadata().map_or(0, |m| m.len());
                    // In the order `write` takes them.
                    let mut held = sink.file.lock().expect("log file lock");
                    sink.written.lock().expect("log size lock").0 = size;
                    *held = Some(file);
                }
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
        let mut file = self.file.lock().expect("log file lock");
        let result = match (file.as_mut(), self.rotation) {
            (None, _) => return,
            (Some(f), None) => f.write_all(bytes),
            (Some(_), Some(rotation)) => self.write_rotating(&mut file, bytes, rotation),
        };
        drop(file);
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

impl Sink {
    /// Writes `bytes`, rotating first where a line would begin past
    /// `max_size` (a line longer than that goes whole into one file).
    fn write_rotating(
        &self,
        file: &mut Option<File>,
        bytes: &[u8],
        rotation: crate::config::Rotation,
    ) -> std::io::Result<()> {
        let mut written = self.written.lock().expect("log size lock");
        let (size, mid_line) = &mut *written;
        let mut batch_start = 0;
        let mut at = 0;
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            if !*mid_line && *size > 0 && *size + piece.len() as u64 > rotation.max_size {
                if let Some(f) = file.as_mut() {
                    f.write_all(&bytes[batch_start..at])?;
                }
                *file = Some(self.rotate(rotation)?);
                *size = 0;
                batch_start = at;
            }
            *size += piece.len() as u64;
            *mid_line = !piece.ends_with(b"\n");
            at += piece.len();
        }
        match file.as_mut() {
            Some(f) => f.write_all(&bytes[batch_start..]),
            None => Ok(()),
        }
    }

    /// `PATH.n` → `PATH.n+1` down to `PATH` → `PATH.1`, then a new `PATH`.
    fn rotate(&self, rotation: crate::config::Rotation) -> std::io::Result<File> {
        let numbered = |n: u32| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let _ = std::fs::remove_file(numbered(rotation.backups));
        for n in (1..rotation.backups).rev() {
            let _ = std::fs::rename(numbered(n), numbered(n + 1));
        }
        std::fs::rename(&self.path, numbered(1))?;
        safe_open::open(&self.path, self.user.as_ref(), Access::CreateNew)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// How many of the last lines of a stream are kept, in how many bytes at
/// most, each cut at `LINE_BYTES`.
pub const TAIL_LINES: usize = 20;
const TAIL_BYTES: usize = 4096;
const LINE_BYTES: usize = 512;

/// What a process wrote last to one stream.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    /// The line being written (no newline yet).
    partial: Vec<u8>,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        let mut rest = data;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.extend(&rest[..end]);
            self.finish();
            rest = &rest[end + 1..];
        }
        self.extend(rest);
    }

    fn extend(&mut self, bytes: &[u8]) {
        let room = LINE_BYTES.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn finish(&mut self) {
        let line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || self.bytes > TAIL_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }

    /// Oldest first, with a last line that had no newline yet.
    fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.lines.iter().cloned().collect();
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
            if lines.len() > TAIL_LINES {
                lines.remove(0);
            }
        }
        lines
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

/// Puts the time before each line of a stream.
#[derive(Default)]
struct Stamper {
    /// A line was begun and has not ended yet.
    mid_line: bool,
}

impl Stamper {
    /// `data` with `stamp` before each line that begins in it.
    fn stamp(&mut self, data: &[u8], stamp: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + stamp.len() + 1);
        for piece in data.split_inclusive(|&b| b == b'\n') {
            if !self.mid_line {
                out.extend_from_slice(stamp.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(piece);
            self.mid_line = !piece.ends_with(b"\n");
        }
        out
    }
}

/// Now, as a log line begins: `2026-12-02T02:40:00.123456Z`.
fn now_stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Pipe {
    /// Reads what the pipe holds now; true at its end.
    fn drain(&self) -> bool {
        let mut tail = self.tail.lock().expect("tail lock");
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.receiver.try_read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => {
                    match &self.stamps {
                        Some(stamper) => {
                            let stamped = stamper
                                .lock()
                                .expect("stamper lock")
                                .stamp(&buf[..n], &now_stamp());
                            self.sink.write(&stamped);
                        }
                        None => self.sink.write(&buf[..n]),
                    }
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
        self.drain();
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
    use super::*;

    #[test]
    fn each_line_is_stamped_once_however_it_arrives() {
        let mut stamper = Stamper::default();
        let mut out = stamper.stamp(b"one\ntw", "T1");
        out.extend(stamper.stamp(b"o\nthree\n", "T2"));
        out.extend(stamper.stamp(b"\n", "T3"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "T1 one\nT1 two\nT2 three\nT3 \n"
        );
        assert_eq!(now_stamp().len(), "2026-12-02T02:40:00.123456Z".len());
    }

    #[test]
    fn a_tail_keeps_the_last_lines_within_its_bounds() {
        let mut tail = Tail::default();
        for i in 0..100 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        tail.push(b"partial, in two ");
        tail.push(b"writes");
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("partial, in two writes")
        );
        assert_eq!(lines.first().map(String::as_str), Some("line 81"));
        let mut long = Tail::default();
        long.push(&vec![b'x'; 100_000]);
        long.push(b"\n");
        for _ in 0..20 {
            long.push(&[b'y'; 1000]);
            long.push(b"\n");
        }
        assert!(long.lines().iter().all(|l| l.len() <= LINE_BYTES));
        assert!(long.lines().iter().map(String::len).sum::<usize>() <= TAIL_BYTES);
    }
}
