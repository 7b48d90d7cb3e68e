//! What is kept of a stream's lines (`Tail`: the last ones, bounded, so
//! that an exit can say what the process printed before it died) and the
//! time put before each line with `timestamps` (`Stamper`). No I/O.
use std::collections::VecDeque;

/// How many of the last lines of a stream are kept, in how many bytes at
/// most, each cut at `LINE_BYTES`.
pub const TAIL_LINES: usize = 20;
pub(super) const TAIL_BYTES: usize = 4096;
pub(super) const LINE_BYTES: usize = 512;

/// What a process wrote last to one stream.
#[derive(Default)]
pub(super) struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    /// The line being written (no newline yet).
    partial: Vec<u8>,
}

impl Tail {
    pub(super) fn push(&mut self, data: &[u8]) {
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
    pub(super) fn lines(&self) -> Vec<String> {
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

/// Puts the time before each line of a stream.
#[derive(Default)]
pub(super) struct Stamper {
    /// A line was begun and has not ended yet.
    mid_line: bool,
}

impl Stamper {
    /// `data` with `stamp` before each line that begins in it.
    pub(super) fn stamp(&mut self, data: &[u8], stamp: &str) -> Vec<u8> {
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
pub(super) fn now_stamp() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
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
