//! `supervisor events`: the live stream of what happens to watches, from
//! the real binary over the real socket, and a reader that stops reading.
use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
};

use serde_json::Value;
use supervisor_tests::{pid_of, supervisor_bin, RunningDaemon, State, WAIT};

/// `supervisor events --json ARGS` and its lines, as they come.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<Value>,
}

impl Follower {
    fn start(d: &RunningDaemon, args: &[&str]) -> Self {
        let mut child = Command::new(supervisor_bin())
            .arg("--socket")
            .arg(&d.socket)
            .args(["events", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("running supervisor events");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value: Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
                if tx.send(value).is_err() {
                    break;
                }
            }
        });
        Self { child, lines }
    }

    /// The lines up to and including the first `done` says is the last.
    fn until(&self, what: &str, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        loop {
            let line = self.lines.recv_timeout(WAIT).unwrap_or_else(|_| {
                panic!("events: {what} not seen within {WAIT:?}; saw {seen:#?}")
            });
            let last = done(&line);
            seen.push(line);
            if last {
                return seen;
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(v: &Value) -> &str {
    v["text"].as_str().unwrap_or("")
}

#[test]
fn a_kill_is_seen_as_exit_then_start_then_up_with_its_cause() {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"x\"\ngroup = \"g\"\nstart = \"/bin/sleep 1000\"\n\n[[watch]]\nname = \"other\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let first = pid_of(&d.wait_status("x", "up", |s| s.state == State::Up));
    d.wait_status("other", "up", |s| s.state == State::Up);
    // The replay ends with x up: from then on the follower is live.
    let follower = Follower::start(&d, &["--since", "1h", "g"]);
    follower.until("the replay of x's start", |v| {
        text(v).contains(&format!("process {first} started"))
    });
    supervisor_tests::kill9(first);
    let (_, other) = d.kill_and_wait_replaced("other");
    let seen = follower.until("x up again", |v| {
        v["kind"] == "event" && text(v).starts_with("moved 'start' to 'up'")
    });
    assert!(
        seen.iter().all(|v| v["watch"] == "x"),
        "only the group's watch: {seen:#?}"
    );
    let kinds: Vec<&str> = seen.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["exit", "event", "event"], "{seen:#?}");
    let exit = &seen[0];
    assert!(
        text(exit).starts_with(&format!("process {first} killed by SIGKILL")),
        "{exit}"
    );
    assert_eq!(exit["exit"]["pid"], first, "{exit}");
    assert!(
        exit["exit"]["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("killed by SIGKILL")),
        "{exit}"
    );
    assert!(
        text(&seen[1]).starts_with("moved 'up' to 'start'"),
        "{seen:#?}"
    );
    assert_ne!(pid_of(&other), 0);
}

#[test]
fn a_replay_says_where_a_history_was_cut() {
    let d = RunningDaemon::start("[[watch]]\nname = \"x\"\nstart = \"/bin/sleep 1000\"\n");
    d.wait_status("x", "up", |s| s.state == State::Up);
    // Each restart notes two events: six overflow the last ten kept.
    for _ in 0..6 {
        d.kill_and_wait_replaced("x");
    }
    let follower = Follower::start(&d, &["--since", "1h"]);
    let seen = follower.until("the replay's last event", |v| {
        text(v).starts_with("moved 'start' to 'up'")
            && v["at"].as_f64() >= d.status("x").events.last().map(|e| e.at)
    });
    let cut = seen
        .iter()
        .find(|v| v["kind"] == "stream")
        .unwrap_or_else(|| panic!("no truncation line: {seen:#?}"));
    assert!(
        text(cut).starts_with("truncated: x keeps its last 10 events and 20 exits"),
        "{cut}"
    );
    assert_eq!(seen.iter().filter(|v| v["kind"] == "exit").count(), 6);
}

#[test]
fn a_reader_that_stops_reading_slows_no_restart() {
    let d = RunningDaemon::start("[[watch]]\nname = \"x\"\nstart = \"/bin/sleep 1000\"\n");
    d.wait_status("x", "up", |s| s.state == State::Up);
    // A client that asks for the stream and never reads: its socket's
    // buffers fill at once, and the daemon's writes to it would block.
    let mut stalled = UnixStream::connect(&d.socket).unwrap();
    nix::sys::socket::setsockopt(&stalled, nix::sys::socket::sockopt::RcvBuf, &1).unwrap();
    stalled
        .write_all(b"{\"cmd\": \"events\", \"target\": null, \"since_secs\": 3600}\n")
        .unwrap();
    let mut answer = String::new();
    BufReader::new(&stalled).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("{\"ok\":true"), "{answer}");
    let follower = Follower::start(&d, &[]);
    let mut pids = Vec::new();
    for _ in 0..5 {
        let (old, s) = d.kill_and_wait_replaced("x");
        pids.push((old, pid_of(&s)));
    }
    // A reader that reads saw every one of them.
    for (old, new) in pids {
        follower.until(&format!("the restart after {old}"), |v| {
            text(v).contains(&format!("process {new} started"))
        });
    }
    drop(stalled);
    assert_eq!(d.status("x").state, State::Up);
}

#[test]
fn an_unknown_target_is_an_error() {
    let d = RunningDaemon::start("[[watch]]\nname = \"x\"\nstart = \"/bin/sleep 1000\"\n");
    let out = d.cli(&["events", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no watch or group named 'nope'"),
        "{out:?}"
    );
}
