//! The watch state machine, driven by a fake clock: every input is given
//! its time, and every timer the watch asks for is handed back by hand.
use super::*;
use crate::{
    exit::ExitStatus,
    process::{Pid, StartTime},
};

fn process(pid: u32) -> ProcessId {
    ProcessId {
        pid: Pid::new(pid).expect("pid"),
        start: StartTime::from_ticks(1),
    }
}

fn watch(ready: Readiness) -> Watch {
    let mut config = WatchConfig::for_command("w", vec!["/bin/true".into()]);
    config.ready = ready;
    config.keepalive = Keepalive::Always;
    Watch::new(config)
}

/// A fake clock: `t(ms)` is `ms` milliseconds after a fixed start.
fn t(ms: u64) -> Now {
    thread_local!(static START: Now = Now::read());
    START.with(|start| Now {
        mono: start.mono + Duration::from_millis(ms),
        wall: start.wall + Duration::from_millis(ms),
    })
}

/// A death whose backend saw no sender (as netlink reports it).
fn death(status: ExitStatus) -> Death {
    Death {
        status,
        origin: None,
        senders_unseen: Some("the netlink backend cannot see senders"),
        oom: None,
        forks_refused: None,
        usage: None,
        core: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

fn killed(signal: i32) -> ExitStatus {
    ExitStatus::Killed {
        signal,
        core_dumped: false,
    }
}

fn last_cause(w: &Watch) -> &str {
    w.last_exit().map_or("", |e| e.cause.as_str())
}

fn events(w: &mut Watch) -> Vec<NotifyEvent> {
    w.take_notices().into_iter().map(|n| n.event).collect()
}

/// The timer for `delay` among `actions`, and when it is due.
fn timer(actions: &[Action], delay: Delay) -> (Instant, Timer) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::Timer { at, timer } if timer.delay == delay => Some((*at, *timer)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {delay:?} timer in {actions:?}"))
}

/// Whether `actions` begin the stop ladder of a watch without a stop
/// command: its stop signal, and SIGKILL after `stop_timeout`.
fn stops(actions: &[Action]) -> bool {
    matches!(
        actions,
        [Action::Signal(Signal::SIGTERM), Action::Timer { timer, .. }] if timer.delay == Delay::StopTimeout
    )
}

#[test]
fn a_watch_that_waits_to_be_ready_is_up_only_once_it_is() {
    let mut w = watch(Readiness::Notify);
    assert_eq!(w.command(Command::Start, "test", t(0)), vec![Action::Spawn]);
    let (due, ready_timer) = timer(&w.spawned(process(10), t(0)), Delay::Ready);
    assert_eq!(due, t(0).mono + w.config.start_grace);
    assert_eq!((w.state(), w.awaiting_ready()), (State::Start, true));
    assert!(w.ready("READY=1", t(0)).is_empty());
    assert!(
        w.timer_fired(ready_timer, t(1)).is_empty(),
        "start_grace no longer counts once it is ready"
    );
    assert_eq!(w.state(), State::Up);
    assert!(w.ready("READY=1", t(0)).is_empty(), "once");
    assert!(events(&mut w).is_empty(), "a first start is no restart");
}

#[test]
fn a_restart_is_told_once_the_new_process_is_ready() {
    let mut w = watch(Readiness::Health);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    w.ready("health", t(0));
    assert_eq!(
        w.exited(death(ExitStatus::Exited(1)), t(0)),
        vec![Action::Spawn]
    );
    assert_eq!(events(&mut w), vec![NotifyEvent::Exited]);
    w.spawned(process(11), t(0));
    assert!(events(&mut w).is_empty(), "not up yet");
    w.ready("health", t(0));
    assert_eq!(events(&mut w), vec![NotifyEvent::Restarted]);
}

#[test]
fn not_ready_in_time_stops_it_and_its_exit_starts_it_again() {
    let mut w = watch(Readiness::Notify);
    w.command(Command::Start, "test", t(0));
    let (_, ready_timer) = timer(&w.spawned(process(10), t(0)), Delay::Ready);
    assert!(stops(&w.timer_fired(ready_timer, t(0))));
    assert!(w
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("not ready")));
    assert_eq!(
        w.exited(death(ExitStatus::Exited(0)), t(0)),
        vec![Action::Spawn]
    );
    assert_eq!(w.restarts, 1);
}

#[test]
fn a_stop_before_it_is_ready_stops_the_process() {
    let mut w = watch(Readiness::Notify);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    assert!(stops(&w.command(Command::Stop, "test", t(0))));
    assert_eq!(w.state(), State::Stop);
    assert!(w.exited(death(ExitStatus::Exited(0)), t(0)).is_empty());
    assert_eq!(w.state(), State::Unmonitored);
    assert!(events(&mut w).is_empty(), "an asked-for stop is no news");
}

#[test]
fn without_keepalive_a_death_gives_up() {
    let mut w = watch(Readiness::Started);
    w.config.keepalive = Keepalive::Never;
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    assert!(w.exited(death(ExitStatus::Exited(3)), t(0)).is_empty());
    assert_eq!(
        events(&mut w),
        vec![NotifyEvent::Exited, NotifyEvent::GaveUp]
    );
}

#[test]
fn crashes_past_the_flapping_limit_back_off_doubling_and_a_calm_stretch_ends_it() {
    let mut w = watch(Readiness::Started);
    w.config.flapping.starts = 3;
    w.config.flapping.within = Duration::from_secs(60);
    w.config.flapping.max_backoff = Duration::from_secs(3);
    w.command(Command::Start, "test", t(0));
    let mut pid = 10;
    let mut crash = |w: &mut Watch, at: u64| {
        w.spawned(process(pid), t(at));
        pid += 1;
        w.exited(death(ExitStatus::Exited(1)), t(at + 1))
    };
    assert_eq!(crash(&mut w, 0), vec![Action::Spawn]);
    assert_eq!(crash(&mut w, 10), vec![Action::Spawn]);
    // The third start within the minute: held back 1 s, then 2, then 3 (the cap).
    let (due, held) = timer(&crash(&mut w, 20), Delay::Backoff);
    assert_eq!(due, t(21).mono + Duration::from_secs(1));
    assert_eq!(w.timer_fired(held, t(1021)), vec![Action::Spawn]);
    let (due, held) = timer(&crash(&mut w, 1021), Delay::Backoff);
    assert_eq!(due, t(1022).mono + Duration::from_secs(2));
    w.timer_fired(held, t(3022));
    let (due, held) = timer(&crash(&mut w, 3022), Delay::Backoff);
    assert_eq!(due, t(3023).mono + Duration::from_secs(3));
    assert!(events(&mut w).contains(&NotifyEvent::Flapping));
    // Two minutes later the window holds one start: calm again.
    w.timer_fired(held, t(6023));
    w.spawned(process(99), t(126_000));
    assert_eq!(w.backoff, None);
    assert_eq!(
        w.exited(death(ExitStatus::Exited(1)), t(126_001)),
        vec![Action::Spawn]
    );
}

#[test]
fn an_operators_restarts_are_never_held_back() {
    let mut w = watch(Readiness::Started);
    w.config.flapping.starts = 2;
    w.asked(Command::Start, "test", t(0));
    for i in 0..10 {
        w.spawned(process(10 + i), t(i as u64));
        assert!(stops(&w.asked(Command::Restart, "test", t(i as u64))));
        assert_eq!(
            w.exited(death(ExitStatus::Exited(0)), t(i as u64)),
            vec![Action::Spawn]
        );
    }
    assert_eq!(w.backoff, None);
}

#[test]
fn a_stop_queued_behind_a_restart_stops_without_starting_again() {
    let mut w = watch(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    assert!(stops(&w.asked(Command::Restart, "test", t(1))));
    assert!(w.asked(Command::Restart, "test", t(2)).is_empty(), "queued");
    assert!(w.asked(Command::Stop, "test", t(3)).is_empty(), "queued");
    assert!(
        w.exited(death(ExitStatus::Exited(0)), t(4)).is_empty(),
        "no start"
    );
    assert_eq!(w.state(), State::Unmonitored);
    assert_eq!(w.entered(State::Unmonitored), 1);
}

#[test]
fn a_stop_during_a_launch_stops_what_the_launch_leaves() {
    let mut w = watch(Readiness::Started);
    w.config.pid_file = Some("/run/x.pid".into());
    assert_eq!(w.command(Command::Start, "test", t(0)), vec![Action::Spawn]);
    w.launched();
    assert!(w.asked(Command::Stop, "test", t(1)).is_empty());
    assert_eq!(w.state(), State::Stop);
    assert!(
        w.asked(Command::Start, "test", t(2)).is_empty(),
        "queued behind the stop"
    );
    assert!(stops(&w.spawned(process(10), t(3))));
    assert_eq!(
        w.exited(death(ExitStatus::Exited(0)), t(4)),
        vec![Action::Spawn],
        "then the queued start"
    );
    // A stop whose launch then fails ends unmonitored, with no error.
    w.launched();
    w.asked(Command::Stop, "test", t(5));
    assert!(w.spawn_failed("no pid file", t(6)).is_empty());
    assert_eq!((w.state(), w.failures()), (State::Unmonitored, 0));
}

#[test]
fn timestamps_come_from_the_event_not_a_clock() {
    let mut w = watch(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(5_000));
    assert_eq!(w.started_at, Some(t(5_000).wall));
    w.exited(death(ExitStatus::Exited(2)), t(7_000));
    assert_eq!(w.last_exit().map(|e| e.at), Some(t(7_000).wall));
    assert!(w.history().events().all(|e| e.at <= t(7_000).wall));
}

fn with_stop_command(mut w: Watch) -> Watch {
    w.config.stop = Some(vec!["/bin/stop-it".into()]);
    w.config.stop_grace = Duration::from_secs(2);
    w.config.stop_timeout = Duration::from_secs(5);
    w
}

#[test]
fn the_stop_ladder_is_command_then_signal_then_sigkill() {
    let mut w = with_stop_command(watch(Readiness::Started));
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    let actions = w.command(Command::Stop, "test", t(100));
    assert_eq!(actions[0], Action::RunStop(vec!["/bin/stop-it".into()]));
    let (due, grace) = timer(&actions, Delay::StopGrace);
    assert_eq!(due, t(2100).mono);
    let actions = w.timer_fired(grace, t(2100));
    assert_eq!(
        actions[..2],
        [Action::KillCommand, Action::Signal(Signal::SIGTERM)]
    );
    let (due, timeout) = timer(&actions, Delay::StopTimeout);
    assert_eq!(due, t(7100).mono);
    assert_eq!(w.timer_fired(timeout, t(7100)), vec![Action::Kill]);
    assert!(w
        .history()
        .events()
        .any(|e| e.what.contains("did not stop within stop_timeout")));
    assert!(w.exited(death(killed(9)), t(7101)).is_empty());
    assert_eq!(w.state(), State::Unmonitored);
    assert_eq!(
        last_cause(&w),
        "killed by the supervisor after 7s: did not stop within stop_timeout 5s (test)"
    );
}

#[test]
fn an_exit_says_who_caused_it_and_after_how_long() {
    use crate::origin::{Code, Origin, Sender};
    let mut w = watch(Readiness::Started);
    w.command(Command::Start, "start-up", t(0));
    w.spawned(process(10), t(0));
    let from_bash = Origin {
        signal: 9,
        code: Code::User,
        sender: Sender {
            pid: Pid::new(4242).expect("pid"),
            tid: Pid::new(4242).expect("pid"),
            uid: 1000,
            comm: "bash".into(),
            parent: Some((Pid::new(4100).expect("pid"), "sshd".into())),
            start: StartTime::from_ticks(5),
            cmdline: None,
        },
        addr: None,
        sent_ns: 0,
    };
    let by_bash = Death {
        status: killed(9),
        origin: Some(from_bash),
        senders_unseen: None,
        oom: None,
        forks_refused: None,
        usage: None,
        core: None,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    w.exited(by_bash, t(3 * 3600 * 1000 + 12 * 60 * 1000));
    assert_eq!(
        last_cause(&w),
        "killed by SIGKILL from pid 4242 (bash, uid 1000, parent sshd 4100) after 3h12m"
    );
    assert!(w
        .history()
        .events()
        .any(|e| e.what.ends_with("process 10 exited: killed by SIGKILL from pid 4242 (bash, uid 1000, parent sshd 4100) after 3h12m")));
    // Restarted (keepalive); the operator stops it now.
    w.spawned(process(11), t(20_000_000));
    w.asked(
        Command::Stop,
        "`stop` requested by uid 0 over the control socket",
        t(20_001_000),
    );
    w.exited(death(killed(15)), t(20_001_500));
    assert_eq!(
        last_cause(&w),
        "stopped by the supervisor after 1s: `stop` requested by uid 0 over the control socket"
    );
    // And a condition's restart.
    w.asked(Command::Start, "test", t(20_002_000));
    w.spawned(process(12), t(20_002_000));
    w.command(
        Command::Restart,
        "memory 164.0 MB above 150.0 MB in 3 of the last 5 checks",
        t(20_003_000),
    );
    w.exited(death(killed(15)), t(20_003_000));
    assert_eq!(
        last_cause(&w),
        "restarted by the supervisor after 1s: memory 164.0 MB above 150.0 MB in 3 of the last 5 checks"
    );
    // Where the backend cannot see a sender, it says so.
    w.spawned(process(13), t(20_004_000));
    w.exited(death(killed(9)), t(20_004_000));
    assert_eq!(
        last_cause(&w),
        "killed by SIGKILL (sender unknown: the netlink backend cannot see senders) after 0s"
    );
}

#[test]
fn a_stop_command_that_cannot_run_falls_back_to_the_signal() {
    let mut w = with_stop_command(watch(Readiness::Started));
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    let (_, grace) = timer(&w.command(Command::Stop, "test", t(0)), Delay::StopGrace);
    assert!(stops(&w.stop_command_failed("no such file", t(1))));
    assert!(
        w.timer_fired(grace, t(2000)).is_empty(),
        "the grace is over"
    );
}

#[test]
fn a_timer_for_a_process_that_is_gone_never_acts() {
    let mut w = watch(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    let (_, old_timeout) = timer(&w.asked(Command::Restart, "test", t(1)), Delay::StopTimeout);
    assert_eq!(
        w.exited(death(ExitStatus::Exited(0)), t(2)),
        vec![Action::Spawn]
    );
    w.spawned(process(11), t(3));
    let (_, timeout) = timer(&w.asked(Command::Stop, "test", t(4)), Delay::StopTimeout);
    assert!(
        w.timer_fired(old_timeout, t(10_001)).is_empty(),
        "the first process's stop timeout must not kill the second"
    );
    assert_eq!(w.timer_fired(timeout, t(10_004)), vec![Action::Kill]);
    assert!(w.timer_fired(timeout, t(10_005)).is_empty(), "once");
}

#[test]
fn a_backoff_cancelled_by_a_stop_does_not_start_it_later() {
    let mut w = watch(Readiness::Started);
    w.config.flapping.starts = 1;
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    let (_, held) = timer(
        &w.exited(death(ExitStatus::Exited(1)), t(1)),
        Delay::Backoff,
    );
    w.asked(Command::Stop, "test", t(2));
    assert_eq!(w.asked(Command::Start, "test", t(3)), vec![Action::Spawn]);
    assert!(
        w.timer_fired(held, t(1001)).is_empty(),
        "the old backoff must not start a second process"
    );
}

#[test]
fn a_restart_command_has_restart_grace_then_the_process_is_stopped() {
    let mut w = watch(Readiness::Started);
    w.config.restart = Some(vec!["/bin/reload-it".into()]);
    w.config.restart_grace = Duration::from_secs(3);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(0));
    let actions = w.asked(Command::Restart, "test", t(0));
    assert_eq!(
        actions[0],
        Action::RunRestart(vec!["/bin/reload-it".into()])
    );
    let (_, grace) = timer(&actions, Delay::RestartGrace);
    let actions = w.timer_fired(grace, t(3000));
    assert_eq!(actions[0], Action::KillCommand);
    assert!(stops(&actions[1..]));
    assert!(
        w.restart_command_done(t(3001)).is_empty(),
        "the killed command's end is not a restart in place"
    );
    assert_eq!(w.state(), State::Restart);
    // A restart command that ends in time restarted the process in place.
    assert_eq!(
        w.exited(death(ExitStatus::Exited(0)), t(3002)),
        vec![Action::Spawn]
    );
    w.spawned(process(11), t(3003));
    w.asked(Command::Restart, "test", t(4000));
    assert!(w.restart_command_done(t(4001)).is_empty());
    assert_eq!((w.state(), w.restarts()), (State::Up, 2));
}

fn with_watchdog(ready: Readiness) -> Watch {
    let mut w = watch(ready);
    w.config.watchdog = Some(Duration::from_secs(30));
    w
}

#[test]
fn the_watchdog_counts_once_up_and_each_ping_starts_it_again() {
    let mut w = with_watchdog(Readiness::Notify);
    w.command(Command::Start, "test", t(0));
    let started = w.spawned(process(10), t(1));
    assert!(
        !started
            .iter()
            .any(|a| matches!(a, Action::Timer { timer, .. } if timer.delay == Delay::Watchdog)),
        "no watchdog before it is ready: {started:?}"
    );
    assert_eq!(w.watchdog_ping(t(2)), Vec::new(), "a ping before it is up");
    let up = w.ready("READY=1", t(5));
    let (due, first) = timer(&up, Delay::Watchdog);
    assert_eq!(due, t(5).mono + Duration::from_secs(30));
    let pinged = w.watchdog_ping(t(20_000));
    let (due, _) = timer(&pinged, Delay::Watchdog);
    assert_eq!(due, t(20_000).mono + Duration::from_secs(30));
    // The first count was replaced: firing it does nothing.
    assert_eq!(w.timer_fired(first, t(30_005)), Vec::new());
    assert_eq!(w.state(), State::Up);
}

#[test]
fn a_hung_process_gets_the_watchdog_signal_and_is_started_again() {
    let mut w = with_watchdog(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    let up = w.spawned(process(10), t(1));
    let (_, count) = timer(&up, Delay::Watchdog);
    let hung = w.timer_fired(count, t(30_001));
    assert!(
        matches!(hung.as_slice(), [Action::Signal(Signal::SIGABRT), Action::Timer { timer, .. }] if timer.delay == Delay::StopTimeout),
        "{hung:?}"
    );
    assert_eq!(w.state(), State::Restart);
    assert_eq!(events(&mut w), vec![NotifyEvent::Condition]);
    let again = w.exited(
        death(ExitStatus::Killed {
            signal: libc::SIGABRT,
            core_dumped: true,
        }),
        t(30_010),
    );
    assert_eq!(again, vec![Action::Spawn]);
    assert_eq!(
        last_cause(&w),
        "restarted by the supervisor after 30s: hung: no WATCHDOG=1 for 30s"
    );
    assert_eq!(w.restarts(), 1);
}

#[test]
fn the_process_may_change_its_timeout_or_say_it_is_hung() {
    let mut w = with_watchdog(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(1));
    let longer = w.watchdog_usec(90_000_000, t(10));
    let (due, _) = timer(&longer, Delay::Watchdog);
    assert_eq!(due, t(10).mono + Duration::from_secs(90));
    // Until the next process: its own timeout is the config's again.
    w.exited(death(ExitStatus::Exited(1)), t(20));
    let next = w.spawned(process(11), t(21));
    let (due, _) = timer(&next, Delay::Watchdog);
    assert_eq!(due, t(21).mono + Duration::from_secs(30));
    // WATCHDOG_USEC=0: none for this process.
    assert_eq!(w.watchdog_usec(0, t(22)), Vec::new());
    assert_eq!(w.watchdog_ping(t(23)), Vec::new());
    let mut w = with_watchdog(Readiness::Started);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(12), t(1));
    let hung = w.watchdog_trigger(t(5));
    assert!(
        matches!(hung.first(), Some(Action::Signal(Signal::SIGABRT))),
        "{hung:?}"
    );
    w.exited(death(killed(libc::SIGABRT)), t(6));
    assert!(
        last_cause(&w).ends_with(": hung: it sent WATCHDOG=trigger"),
        "{}",
        last_cause(&w)
    );
    // Without a watchdog, the messages change nothing.
    let mut plain = watch(Readiness::Started);
    plain.command(Command::Start, "test", t(0));
    plain.spawned(process(13), t(1));
    assert_eq!(plain.watchdog_trigger(t(2)), Vec::new());
    assert_eq!(plain.watchdog_usec(5, t(2)), Vec::new());
    assert_eq!(plain.state(), State::Up);
}

#[test]
fn on_failure_restarts_failures_only_and_restart_delay_waits() {
    let on_failure = || {
        let mut w = watch(Readiness::Started);
        w.config.keepalive = Keepalive::OnFailure;
        w.config.success_codes = vec![0, 3];
        w.command(Command::Start, "test", t(0));
        w.spawned(process(10), t(1));
        w
    };
    for (status, again) in [
        (ExitStatus::Exited(1), true),
        (ExitStatus::Exited(0), false),
        (ExitStatus::Exited(3), false),
        (killed(libc::SIGKILL), true),
        (killed(libc::SIGSEGV), true),
        (killed(libc::SIGTERM), false),
        (killed(libc::SIGHUP), false),
    ] {
        let mut w = on_failure();
        let actions = w.exited(death(status), t(5));
        assert_eq!(
            actions == vec![Action::Spawn],
            again,
            "{status:?}: {actions:?}"
        );
        if !again {
            assert_eq!(w.state(), State::Unmonitored);
            assert!(
                events(&mut w).iter().all(|e| *e != NotifyEvent::GaveUp),
                "a clean exit is not giving up"
            );
        }
    }
    let mut w = watch(Readiness::Started);
    w.config.restart_delay = Duration::from_secs(5);
    w.command(Command::Start, "test", t(0));
    w.spawned(process(10), t(1));
    let later = w.exited(death(ExitStatus::Exited(1)), t(10));
    let (due, backoff) = timer(&later, Delay::Backoff);
    assert_eq!(due, t(10).mono + Duration::from_secs(5));
    assert_eq!(w.timer_fired(backoff, t(5010)), vec![Action::Spawn]);
    // An operator's restart is never delayed.
    w.spawned(process(11), t(5011));
    assert!(w
        .asked(Command::Restart, "op", t(6000))
        .iter()
        .any(|a| matches!(a, Action::Signal(_))));
    assert_eq!(
        w.exited(death(killed(libc::SIGTERM)), t(6001)),
        vec![Action::Spawn]
    );
}
