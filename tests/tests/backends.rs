//! Every exit backend against the real kernel: real processes, real
//! signals. Each scenario runs once per backend; under CI=true a backend
//! that cannot load fails its tests.
use nix::sys::signal::Signal;
use supervisor::backend::Options;
use supervisor::{
    backend::{Backend, BackendKind},
    exit::ExitStatus,
    process,
};
use supervisor_tests::{
    assert_nothing_before_sentinel, block_on, next_exit, open_backend_with, require_root, Helper,
};

fn killed(signal: Signal, core_dumped: bool) -> ExitStatus {
    ExitStatus::Killed {
        signal: signal as i32,
        core_dumped,
    }
}

async fn exit_code(mut b: Backend) {
    let mut h = Helper::spawn(&["exit", "42"]);
    b.watch(h.id).unwrap();
    h.go();
    let event = next_exit(&mut b, "exit 42").await;
    assert_eq!(event.pid, h.pid());
    assert_eq!(event.status, ExitStatus::Exited(42));
    assert_eq!(event.status.to_string(), "exited 42");
}

async fn sigkill(mut b: Backend) {
    let mut h = Helper::spawn(&["block"]);
    b.watch(h.id).unwrap();
    h.kill(Signal::SIGKILL);
    let event = next_exit(&mut b, "SIGKILL").await;
    assert_eq!(event.pid, h.pid());
    assert_eq!(event.status, killed(Signal::SIGKILL, false));
    assert_eq!(event.status.to_string(), "killed by SIGKILL");
}

async fn sigsegv_core(mut b: Backend) {
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    // The helper enables core dumps for itself; the dump is written to the
    // temp dir only when the pattern is a plain file name.
    let dumps = !pattern.trim().is_empty() && !pattern.starts_with('|') && !pattern.contains('/');
    let mut h = Helper::spawn(&["segv"]);
    b.watch(h.id).unwrap();
    h.go();
    let event = next_exit(&mut b, "SIGSEGV").await;
    assert_eq!(event.pid, h.pid());
    assert_eq!(
        event.status,
        killed(Signal::SIGSEGV, dumps),
        "core_pattern {pattern:?}"
    );
    if dumps {
        assert_eq!(event.status.to_string(), "killed by SIGSEGV (core dumped)");
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(pattern.trim().replace("%p", &h.pid().to_string())),
        );
    }
}

async fn multithreaded_once(mut b: Backend) {
    let mut h = Helper::spawn(&["threads", "8", "7"]);
    b.watch(h.id).unwrap();
    h.go();
    let event = next_exit(&mut b, "a process with 9 threads").await;
    assert_eq!(event.pid, h.pid(), "reported under its tgid");
    assert_eq!(event.status, ExitStatus::Exited(7));
    assert_nothing_before_sentinel(&mut b, "a 9-thread process must yield one event").await;
}

async fn thread_exit_is_not_death(mut b: Backend) {
    let mut h = Helper::spawn(&["thread-exit"]);
    b.watch(h.id).unwrap();
    // The thread has come and gone before `ready`; a report of it would be
    // `exited 0` and would arrive first.
    h.kill(Signal::SIGKILL);
    let event = next_exit(&mut b, "the process after one of its threads ended").await;
    assert_eq!(event.pid, h.pid());
    assert_eq!(
        event.status,
        killed(Signal::SIGKILL, false),
        "a thread's exit was reported as the process's"
    );
}

async fn leader_exits_first(mut b: Backend) {
    let mut h = Helper::spawn(&["leader-first", "5"]);
    b.watch(h.id).unwrap();
    h.wait_main_thread_exited();
    h.go();
    let event = next_exit(&mut b, "the group whose leader exited first").await;
    assert_eq!(event.pid, h.pid(), "reported under the tgid");
    // The leader's own exit would read `exited 0`.
    assert_eq!(
        event.status,
        ExitStatus::Exited(5),
        "reported when the leader left, not when the group died"
    );
    if let Some(tid) = event.tid {
        assert_ne!(tid, h.pid(), "the last thread is not the leader");
    }
    assert_nothing_before_sentinel(&mut b, "one event per process").await;
}

async fn unwatched_is_silent(mut b: Backend) {
    let mut watched = Helper::spawn(&["block"]);
    b.watch(watched.id).unwrap();
    let before = b.counters();
    let mut stranger = Helper::spawn(&["exit", "3"]);
    stranger.go();
    stranger.child.wait().unwrap();
    watched.kill(Signal::SIGKILL);
    let event = next_exit(&mut b, "the watched process").await;
    assert_eq!(
        event.pid,
        watched.pid(),
        "an unwatched exit reached the stream"
    );
    if b.kind() == BackendKind::Ebpf {
        let after = b.counters();
        let seen = after.kernel_group_exits.unwrap() - before.kernel_group_exits.unwrap();
        assert!(
            seen >= 2,
            "the program saw both deaths in the kernel (saw {seen})"
        );
        assert_eq!(
            after.delivered, 1,
            "only the watched death may reach userspace"
        );
    }
}

/// Waits (bounded) until the boot clock has moved past `tick`.
fn wait_past_tick(tick: u64) {
    supervisor_tests::wait_until(&format!("the clock to pass tick {tick}"), || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: ts is a valid timespec to fill.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let now_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        now_ns / process::ns_per_tick() > tick
    });
}

async fn pid_reuse(mut b: Backend) {
    let old = {
        let mut h = Helper::spawn(&["block"]);
        // Identity is pid + start tick: a process that lived under one
        // tick and whose pid came back within that tick is beyond it.
        wait_past_tick(h.id.start.ticks());
        h.kill(Signal::SIGKILL);
        h.child.wait().unwrap();
        h.id
    };
    let mut stranger = supervisor_tests::spawn_with_pid(old.pid);
    assert_ne!(
        stranger.id.start, old.start,
        "the pid was reused by a new process"
    );
    // Asked to watch the old process, which is gone: its death is reported,
    // the stranger is neither watched nor asked for its status.
    b.watch(old).unwrap();
    let event = next_exit(&mut b, "the process whose pid was reused").await;
    assert_eq!(event.pid, old.pid);
    assert_eq!(event.process, Some(old));
    assert_eq!(event.status, ExitStatus::Unknown);
    assert!(
        process::is_alive(stranger.id, &Default::default()),
        "the stranger lives"
    );
    stranger.kill(Signal::SIGKILL);
    stranger.child.wait().unwrap();
    assert_nothing_before_sentinel(&mut b, "the stranger's death is not the watched process's")
        .await;
    supervisor_tests::report(
        &format!("pid reuse ({})", b.kind()),
        "a watched process's pid given to a new process (ns_last_pid) before it is watched: its death reported, the stranger never watched, reaped or signalled",
        1,
        0,
        0,
    );
}

macro_rules! scenarios {
    ($($backend:ident => $kind:expr, $options:expr;)*) => {$(
        mod $backend {
            use super::*;
            fn run<F: std::future::Future<Output = ()>>(scenario: impl FnOnce(Backend) -> F) {
                block_on(async {
                    if let Some(b) = open_backend_with($kind, &$options) {
                        scenario(b).await;
                    }
                })
            }
            #[test] fn exit_code() { run(super::exit_code) }
            #[test] fn sigkill() { run(super::sigkill) }
            #[test] fn sigsegv_core() { run(super::sigsegv_core) }
            #[test] fn multithreaded_once() { run(super::multithreaded_once) }
            #[test] fn thread_exit_is_not_death() { run(super::thread_exit_is_not_death) }
            #[test] fn leader_exits_first() { run(super::leader_exits_first) }
            #[test] fn unwatched_is_silent() { run(super::unwatched_is_silent) }
            #[test] fn pid_reuse() {
                if require_root("forcing pid reuse through ns_last_pid") {
                    run(super::pid_reuse)
                }
            }
        }
    )*};
}

fn fast_poll() -> Options {
    Options {
        poll_interval: std::time::Duration::from_millis(20),
        ..Options::default()
    }
}

scenarios! {
    ebpf => BackendKind::Ebpf, Options::default();
    // As on kernels whose tracepoint lacks `group_dead`.
    ebpf_without_group_dead_field => BackendKind::Ebpf, Options {
        ebpf_ignore_group_dead_field: true,
        ..Options::default()
    };
    netlink => BackendKind::Netlink, Options::default();
    pidfd => BackendKind::Pidfd, Options::default();
    poll => BackendKind::Poll, fast_poll();
}

/// Kills `n` watched processes while nobody reads, with a buffer far too
/// small for their records: every death must still come out exactly once
/// (the lost ones found by resynchronisation) and the loss be counted.
async fn overflow_resyncs(mut b: Backend, n: usize) {
    let mut helpers: Vec<Helper> = (0..n).map(|_| Helper::spawn(&["block"])).collect();
    for h in &helpers {
        b.watch(h.id).unwrap();
    }
    for h in &mut helpers {
        h.kill(Signal::SIGKILL);
    }
    // All dead (zombies) before anyone reads: the buffer must overflow.
    for h in &mut helpers {
        h.wait_main_thread_exited();
    }
    let mut seen = std::collections::HashSet::new();
    let mut discovered = 0;
    for _ in 0..n {
        let event = next_exit(&mut b, "every one of the killed processes").await;
        assert!(
            helpers.iter().any(|h| h.pid() == event.pid),
            "unexpected {event:?}"
        );
        assert!(seen.insert(event.pid), "reported twice: {event:?}");
        assert_eq!(event.status, killed(Signal::SIGKILL, false), "{event:?}");
        discovered += usize::from(event.discovered);
    }
    let counters = b.counters();
    assert!(
        counters.dropped > 0,
        "the buffer never overflowed: {counters:?}"
    );
    assert!(counters.resyncs > 0, "{counters:?}");
    assert!(discovered > 0, "no death was found by resynchronisation");
    assert_nothing_before_sentinel(&mut b, "after the storm").await;
    supervisor_tests::report(
        &format!("buffer overflow ({})", b.kind()),
        &format!("{n} watched deaths before one is read, into a 4KB ring / 1KB socket buffer: each reported exactly once ({discovered} found by re-checking)"),
        1,
        0,
        0,
    );
}

#[test]
fn ebpf_ring_overflow_resyncs() {
    let options = Options {
        ring_bytes: Some(4096),
        ..Options::default()
    };
    block_on(async {
        if let Some(b) = open_backend_with(BackendKind::Ebpf, &options) {
            overflow_resyncs(b, 200).await;
        }
    })
}

#[test]
fn netlink_enobufs_resyncs() {
    let options = Options {
        netlink_rcvbuf: Some(1024),
        ..Options::default()
    };
    block_on(async {
        if let Some(b) = open_backend_with(BackendKind::Netlink, &options) {
            overflow_resyncs(b, 100).await;
        }
    })
}
