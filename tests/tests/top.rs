//! `supervisor top` in a real terminal: tmux runs it in a shell, keys go
//! in with `send-keys`, and `capture-pane` is what an operator would see.
use std::process::{Command, Output};

use supervisor_tests::{
    in_ci, poll_until, processes_running, supervisor_bin, RunningDaemon, State,
};

const WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// A tmux server of its own (its own socket, so that parallel tests and
/// the operator's tmux never meet), with one window running `sh`.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(width: u16, height: u16) -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmux = Self {
            socket: format!("supervisor-top-{}-{n}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = tmux.run(&["new-session", "-d", "-x", &w, "-y", &h, "sh"]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("running tmux")
    }

    /// Types `line` into the shell and presses Enter.
    fn type_line(&self, line: &str) {
        self.run(&["send-keys", "-l", line]);
        self.keys(&["Enter"]);
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.run(&args);
        assert!(out.status.success(), "tmux send-keys {keys:?}: {out:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// Waits (bounded) until the screen satisfies `done`; returns it.
    fn wait_screen(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut screen = String::new();
        let came = poll_until(WAIT, || {
            screen = self.screen();
            done(&screen)
        });
        assert!(came, "the screen never showed {what}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

fn have_tmux() -> bool {
    let found = Command::new("tmux").arg("-V").output().is_ok();
    assert!(
        found || !in_ci(),
        "tmux is missing (cargo xtask test installs it)"
    );
    if !found {
        eprintln!("\n!!! SKIPPED: no tmux (cargo xtask test installs it)\n");
    }
    found
}

/// The table's rows, top to bottom: the first word after the `│` (and
/// the selection mark) of each line below the header.
fn rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("WATCH"))
        .skip(1)
        .take_while(|l| l.starts_with('│'))
        .filter_map(|l| {
            l.trim_matches('│')
                .trim_start_matches("> ")
                .split_whitespace()
                .next()
                .map(str::to_owned)
        })
        .collect()
}

/// After `top` ends: what the shell line prints once it has.
const AFTER: &str = "; echo TOP-EXITED-$?; stty -a | grep -o -- '-*icanon' | sed 's/^/STTY:/'";

fn daemon() -> RunningDaemon {
    let d = RunningDaemon::start(
        "[[watch]]\nname = \"hog\"\n\
         start = \"/bin/sh -c 'x=$(head -c 40000000 /dev/zero | tr \\\"\\\\\\\\0\\\" a); sleep 1000'\"\n\n\
         [[watch]]\nname = \"spin\"\nstart = \"/bin/sh -c 'while :; do :; done'\"\ncpu_max = \"30%\"\n\n\
         [[watch]]\nname = \"quiet\"\n\
         start = \"/bin/sh -c 'echo hello-from-quiet; printf \\\"esc-\\\\033[2J-done\\\\n\\\"; exec sleep 1000'\"\n\
         stdout = \"{dir}/quiet.log\"\n",
    );
    for name in ["hog", "spin", "quiet"] {
        d.wait_status(name, "up", |s| s.state == State::Up);
    }
    d
}

fn top_line(d: &RunningDaemon, args: &str) -> String {
    format!(
        "clear; {} --socket {} top {args}{AFTER}",
        supervisor_bin().display(),
        d.socket.display()
    )
}

#[test]
fn keys_sort_select_and_restart_and_the_terminal_comes_back() {
    if !have_tmux() {
        return;
    }
    let d = daemon();
    let tmux = Tmux::start(150, 40);
    tmux.type_line(&top_line(&d, ""));
    let screen = tmux.wait_screen("the three watches", |s| rows(s).len() == 3);
    assert_eq!(rows(&screen), ["hog", "quiet", "spin"], "{screen}");
    assert!(screen.contains("sorted by name ↑"), "{screen}");
    tmux.keys(&["m"]);
    tmux.wait_screen("hog first by memory", |s| {
        s.contains("sorted by memory ↓") && rows(s).first().map(String::as_str) == Some("hog")
    });
    // CPU is measured between two rounds, a second apart.
    tmux.keys(&["c"]);
    tmux.wait_screen("spin first by cpu", |s| {
        s.contains("sorted by cpu ↓") && rows(s).first().map(String::as_str) == Some("spin")
    });
    tmux.keys(&["n", "Down"]);
    let screen = tmux.wait_screen("quiet's log", |s| {
        s.contains("log of quiet") && s.contains("hello-from-quiet")
    });
    // What the program printed is shown escaped, never obeyed.
    assert!(screen.contains("esc-\\u{1b}[2J-done"), "{screen}");
    assert!(screen.contains("no exit yet"), "{screen}");
    tmux.keys(&["R"]);
    d.wait_status("quiet", "restarted once", |s| {
        s.restarts == 1 && s.state == State::Up
    });
    let screen = tmux.wait_screen("the restart said and in the exits", |s| {
        s.contains("restart quiet: done") && s.contains("restarted by the supervisor")
    });
    assert!(screen.contains("last exits of quiet"), "{screen}");
    tmux.run(&["resize-window", "-x", "100", "-y", "24"]);
    tmux.wait_screen("the table at the new width", |s| {
        s.lines()
            .find(|l| l.starts_with('┌'))
            .is_some_and(|l| l.chars().count() == 100)
            && rows(s).len() == 3
    });
    tmux.keys(&["q"]);
    let screen = tmux.wait_screen("the shell again", |s| s.contains("STTY:"));
    assert!(screen.contains("TOP-EXITED-0"), "{screen}");
    assert!(
        screen.contains("STTY:icanon"),
        "the terminal is cooked again: {screen}"
    );
    assert!(
        !screen.contains("WATCH"),
        "the alternate screen is gone: {screen}"
    );
    assert_eq!(d.status("hog").restarts, 0, "only quiet was restarted");
}

#[test]
fn ctrl_c_and_sigterm_give_the_terminal_back() {
    if !have_tmux() {
        return;
    }
    let d = daemon();
    let tmux = Tmux::start(120, 30);
    tmux.type_line(&top_line(&d, "--sort restarts"));
    tmux.wait_screen("the table", |s| rows(s).len() == 3);
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_screen("the shell after Ctrl-C", |s| s.contains("STTY:"));
    assert!(screen.contains("TOP-EXITED-0"), "{screen}");
    assert!(screen.contains("STTY:icanon"), "{screen}");
    tmux.type_line(&top_line(&d, ""));
    let screen = tmux.wait_screen("the table again", |s| rows(s).len() == 3);
    assert!(!screen.contains("STTY:"), "{screen}");
    let tops = processes_running(&format!(
        "{} --socket {} top",
        supervisor_bin().display(),
        d.socket.display()
    ));
    let [pid] = tops[..] else {
        panic!("one top running: {tops:?}");
    };
    let pid = pid as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM to top");
    let screen = tmux.wait_screen("the shell after SIGTERM", |s| s.contains("STTY:"));
    assert!(screen.contains("TOP-EXITED-0"), "{screen}");
    assert!(screen.contains("STTY:icanon"), "{screen}");
}

#[test]
fn without_a_terminal_top_says_so() {
    let d = RunningDaemon::start("[[watch]]\nname = \"a\"\nstart = \"/bin/sleep 1000\"\n");
    let out = d.cli(&["top"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("top needs a terminal"), "{stderr}");
}
