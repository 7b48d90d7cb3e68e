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

/// How much output may wait for its file, per file. Past it the pipes
/// feeding that file are not read until the writer catches up: a process
/// faster than its disk is slowed by its own pipe filling, as it would be
/// writing into the file itself, and nothing waits for a disk.
const QUEUED_BYTES: usize = 4 << 20;

/// One log file. The copier only queues what the pipes give; the writing,
/// rotating and reopening are done in order by a blocking-pool thread
/// while there is something queued, so that a slow disk or a rotation
/// never holds up the reading of the pipes.
struct Sink {
    path: PathBuf,
    /// Whose the file is: reopened as that user.
    user: Option<RunAs>,
    rotation: Option<crate::config::Rotation>,
    queue: Mutex<Queue>,
    /// The queue went below `QUEUED_BYTES`.
    room: tokio::sync::Notify,
    /// Touched by the writer only (the lock is for the compiler).
    file: Mutex<Writing>,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    bytes: usize,
    /// A writer is on it; a new one is started when it is not.
    writing: bool,
}

enum Job {
    Write(Vec<u8>),
    /// SIGUSR1: open the path again, in order with what came before.
    Reopen,
    /// A stream into the file ended: a line it left open is written.
    Ended,
}

struct Writing {
    /// `None` after a failed reopen, until the next one works.
    file: Option<File>,
    /// A write failed and was reported; report again only after success.
    failing: bool,
    /// With a rotation: the file's size, and whether the last byte written
    /// left a line open (rotation waits for its end).
    size: u64,
    mid_line: bool,
    /// With a rotation: the beginning of a line whose end has not come.
    held: Vec<u8>,
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
                    rotation,
                    queue: Mutex::default(),
                    room: tokio::sync::Notify::new(),
                    file: Mutex::new(Writing {
                        file: Some(file),
                        failing: false,
                        size,
                        mid_line: false,
                        held: Vec::new(),
                    }),
                });
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
            sink.write_queued();
            sink.write_held(&mut sink.file.lock().expect("log file lock"));
        }
    }
}

impl Job {
    fn len(&self) -> usize {
        match self {
            Job::Write(bytes) => bytes.len(),
            Job::Reopen | Job::Ended => 0,
        }
    }
}

impl Sink {
    fn has_room(&self) -> bool {
        self.queue.lock().expect("log queue lock").bytes < QUEUED_BYTES
    }

    /// Until the queue has room.
    async fn room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a writer making room between
            // the two is not missed.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }

    fn push(self: &Arc<Self>, job: Job) {
        let mut queue = self.queue.lock().expect("log queue lock");
        queue.bytes += job.len();
        queue.jobs.push_back(job);
        if !queue.writing {
            queue.writing = true;
            let sink = self.clone();
            match copier() {
                Ok(copier) => drop(copier.spawn_blocking(move || sink.write_queued())),
                // Never: a sink exists only once the copier does.
                Err(_) => queue.writing = false,
            }
        }
    }

    /// The writer: does the queued jobs in order until none is left. The
    /// file is held before a job is taken, so that two writers (the pool's
    /// and `Logs::flush`) still write in the order things were queued.
    fn write_queued(&self) {
        loop {
            let mut writing = self.file.lock().expect("log file lock");
            let job = {
                let mut queue = self.queue.lock().expect("log queue lock");
                let Some(job) = queue.jobs.pop_front() else {
                    queue.writing = false;
                    return;
                };
                let was_full = queue.bytes >= QUEUED_BYTES;
                queue.bytes -= job.len();
                if was_full && queue.bytes < QUEUED_BYTES {
                    self.room.notify_waiters();
                }
                job
            };
            match job {
                Job::Write(bytes) => self.write(&mut writing, &bytes),
                Job::Reopen => {
                    self.write_held(&mut writing);
                    self.reopen(&mut writing);
                }
                Job::Ended => self.write_held(&mut writing),
            }
        }
    }

    fn reopen(&self, writing: &mut Writing) {
        match open(&self.path, self.user.as_ref()) {
            Ok(file) => {
                writing.size = file.metadata().map_or(0, |m| m.len());
                writing.file = Some(file);
            }
            Err(e) => {
                log::error!("cannot reopen log file: {e}; output is dropped until it can be");
                writing.file = None;
            }
        }
    }

    fn write(&self, writing: &mut Writing, bytes: &[u8]) {
        let result = match (writing.file.is_some(), self.rotation) {
            (false, _) => return,
            (true, None) => writing.file.as_mut().expect("checked").write_all(bytes),
            (true, Some(rotation)) => self.write_rotating(writing, bytes, rotation),
        };
        self.report(writing, result);
    }

    /// Says once that the file cannot be written, and once that it can again.
    fn report(&self, writing: &mut Writing, result: std::io::Result<()>) {
        match result {
            Ok(()) if writing.failing => {
                writing.failing = false;
                log::info!("log file {} is writable again", self.path.display());
            }
            Ok(()) => {}
            Err(e) if !writing.failing => {
                writing.failing = true;
                log::error!(
                    "cannot write log file {}: {e}; dropping output until it can",
                    self.path.display()
                );
            }
            Err(_) => {}
        }
    }

    /// Writes `bytes`, rotating first where a line would take the file
    /// past `max_size`. The beginning of a line is held until its end
    /// comes, so that its length is known when the rotation is decided; a
    /// line longer than `max_size` goes whole into one file, written as it
    /// comes once it is that long.
    fn write_rotating(
        &self,
        writing: &mut Writing,
        bytes: &[u8],
        rotation: crate::config::Rotation,
    ) -> std::io::Result<()> {
        let mut batch = Vec::with_capacity(bytes.len() + writing.held.len());
        for piece in bytes.split_inclusive(|&b| b == b'\n') {
            let ended = piece.ends_with(b"\n");
            if writing.mid_line {
                batch.extend_from_slice(piece);
                writing.size += piece.len() as u64;
                writing.mid_line = !ended;
                continue;
            }
            writing.held.extend_from_slice(piece);
            let long = writing.held.len() as u64 > rotation.max_size;
            if !ended && !long {
                continue;
            }
            if writing.size > 0 && writing.size + writing.held.len() as u64 > rotation.max_size {
                if let Some(f) = writing.file.as_mut() {
                    f.write_all(&batch)?;
                }
                batch.clear();
                writing.file = Some(self.rotate(rotation)?);
                writing.size = 0;
            }
            writing.size += writing.held.len() as u64;
            writing.mid_line = !ended;
            batch.append(&mut writing.held);
        }
        match writing.file.as_mut() {
            Some(f) => f.write_all(&batch),
            None => Ok(()),
        }
    }

    /// Writes a held beginning of a line as it is: its stream ended, or
    /// the file is being reopened or closed.
    fn write_held(&self, writing: &mut Writing) {
        if writing.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut writing.held);
        let result = self.write_line_start(writing, &held);
        self.report(writing, result);
    }

    fn write_line_start(&self, writing: &mut Writing, held: &[u8]) -> std::io::Result<()> {
        if let Some(rotation) = self.rotation {
            if writing.size > 0 && writing.size + held.len() as u64 > rotation.max_size {
                writing.file = Some(self.rotate(rotation)?);
                writing.size = 0;
            }
        }
        writing.size += held.len() as u64;
        writing.mid_line = true;
        match writing.file.as_mut() {
            Some(f) => f.write_all(held),
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
        // Of more than TAIL_LINES lines ending here, only the last ones
        // can be kept: the earlier ones (and all before) need no copying.
        let mut rest = data;
        if let Some(end) = data
            .iter()
            .rposition(|&b| b == b'\n')
            .and_then(|last| {
                data[..last]
                    .iter()
                    .enumerate()
                    .rev()
                    .filter(|(_, &b)| b == b'\n')
                    .nth(TAIL_LINES - 1)
            })
            .map(|(at, _)| at)
        {
            self.lines.clear();
            self.bytes = 0;
            self.partial.clear();
            rest = &data[end + 1..];
        }
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

    /// What each file holds after `writes` go through a file rotated at
    /// 10 bytes, newest last.
    fn rotated(writes: &[&[u8]]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let sink = Sink {
            path: path.clone(),
            user: None,
            rotation: Some(crate::config::Rotation {
                max_size: 10,
                backups: 9,
            }),
            queue: Mutex::default(),
            room: tokio::sync::Notify::new(),
            file: Mutex::new(Writing {
                file: Some(open(&path, None).unwrap()),
                failing: false,
                size: 0,
                mid_line: false,
                held: Vec::new(),
            }),
        };
        let mut writing = sink.file.lock().unwrap();
        for bytes in writes {
            match *bytes {
                b"END" => sink.write_held(&mut writing),
                bytes => sink.write(&mut writing, bytes),
            }
        }
        (0..10)
            .rev()
            .filter_map(|n| {
                let name = match n {
                    0 => path.clone(),
                    n => dir.path().join(format!("out.log.{n}")),
                };
                std::fs::read_to_string(name).ok()
            })
            .collect()
    }

    #[test]
    fn rotation_knows_a_line_whole_before_it_decides() {
        // A line that comes in pieces goes after the rotation it needs.
        assert_eq!(
            rotated(&[b"12345\n12", b"345", b"\n"]),
            ["12345\n", "12345\n"]
        );
        assert_eq!(rotated(&[b"1234\n", b"1234", b"\n"]), ["1234\n1234\n"]);
        // Longer than a file: whole in one, written as it comes.
        assert_eq!(
            rotated(&[b"1\n", b"0123456789", b"abc", b"\n2\n"]),
            ["1\n", "0123456789abc\n", "2\n"]
        );
        // A stream that ended mid-line leaves its line; what comes next
        // finishes it in the same file.
        assert_eq!(
            rotated(&[b"12345678\n", b"ab", b"END", b"cdefgh\n"]),
            ["12345678\n", "abcdefgh\n"]
        );
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
        // One chunk of many lines keeps what line by line would.
        let many: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        let mut chunked = Tail::default();
        chunked.push(b"before ");
        chunked.push(many.as_bytes());
        chunked.push(b"partial");
        let mut one_by_one = Tail::default();
        one_by_one.push(b"before ");
        for line in many.split_inclusive('\n') {
            one_by_one.push(line.as_bytes());
        }
        one_by_one.push(b"partial");
        assert_eq!(chunked.lines(), one_by_one.lines());
        assert_eq!(chunked.bytes, one_by_one.bytes);
        let few = "a\nb\nc\n";
        let mut short = Tail::default();
        short.push(few.as_bytes());
        assert_eq!(short.lines(), ["a", "b", "c"]);
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
