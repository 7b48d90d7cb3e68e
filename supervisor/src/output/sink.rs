//! One log file (`Sink`): the queue the copier fills from the pipes, and
//! the blocking-pool writer that empties it in order: the writes, the
//! rotations by size (only between lines, the new file made `O_EXCL`) and
//! the SIGUSR1 reopens. Knows nothing of pipes or processes.
use std::{
    collections::VecDeque,
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, Result};

use super::copier;
use crate::{
    config::RunAs,
    safe_open::{self, Access},
};

/// How much output may wait for its file, per file. Past it the pipes
/// feeding that file are not read until the writer catches up: a process
/// faster than its disk is slowed by its own pipe filling, as it would be
/// writing into the file itself, and nothing waits for a disk.
pub(super) const QUEUED_BYTES: usize = 4 << 20;

/// One log file. The copier only queues what the pipes give; the writing,
/// rotating and reopening are done in order by a blocking-pool thread
/// while there is something queued, so that a slow disk or a rotation
/// never holds up the reading of the pipes.
pub(super) struct Sink {
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

pub(super) enum Job {
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

impl Job {
    fn len(&self) -> usize {
        match self {
            Job::Write(bytes) => bytes.len(),
            Job::Reopen | Job::Ended => 0,
        }
    }
}

impl Sink {
    /// Opens (or creates) the file at `path` as `user` would.
    pub(super) fn open(
        path: &Path,
        user: Option<&RunAs>,
        rotation: Option<crate::config::Rotation>,
    ) -> Result<Self> {
        let file = open(path, user).context("opening log file")?;
        let size = file.metadata().map_or(0, |m| m.len());
        Ok(Self {
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
        })
    }

    /// Writes what is queued and a line left open, on this thread.
    pub(super) fn flush(&self) {
        self.write_queued();
        self.write_held(&mut self.file.lock().expect("log file lock"));
    }

    pub(super) fn has_room(&self) -> bool {
        self.queue.lock().expect("log queue lock").bytes < QUEUED_BYTES
    }

    /// Until the queue has room.
    pub(super) async fn room(&self) {
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

    pub(super) fn push(self: &Arc<Self>, job: Job) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
