//! The daemon under a service manager, as systemd runs a `Type=notify`
//! unit with `WatchdogSec=`: a stand-in `NOTIFY_SOCKET` reader sees
//! `READY=1` with a status line, `WATCHDOG=1` at half the period, the
//! status following the watches, and the pings stop when the loop is
//! wedged (a fault only debug builds have).
use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use supervisor_tests::{kill9, RunningDaemon, WAIT};

/// The next datagram, or `None` when none comes within `within`.
fn next(reader: &UnixDatagram, within: Duration) -> Option<String> {
    reader.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    match reader.recv(&mut buf) {
        Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("reading the notify socket: {e}"),
    }
}

#[test]
fn the_daemon_says_ready_and_its_status_and_pings_its_watchdog_until_its_loop_is_wedged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let reader = UnixDatagram::bind(&path).unwrap();
    let wedge = dir.path().join("wedge");
    const PERIOD: Duration = Duration::from_secs(2);
    let d = RunningDaemon::start_wrapped(
        &[
            "env",
            &format!("NOTIFY_SOCKET={}", path.display()),
            &format!("WATCHDOG_USEC={}", PERIOD.as_micros()),
            &format!("SUPERVISOR_FAULT_WEDGE_FILE={}", wedge.display()),
        ],
        "",
        "[[watch]]\nname = \"app\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let first = next(&reader, WAIT).expect("a first message");
    assert!(
        first.starts_with("READY=1\nSTATUS=1 watch(es): 1 up; exit backend "),
        "{first:?}"
    );
    // Pings at half the period: never later than the period, never a flood.
    let mut pings = Vec::new();
    while pings.len() < 3 {
        match next(&reader, WAIT).expect("a ping") {
            ping if ping == "WATCHDOG=1" => pings.push(Instant::now()),
            other => panic!("{other:?} between pings"),
        }
    }
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap < PERIOD && gap > PERIOD / 4, "{gap:?} between pings");
    }
    // The status follows what the watches do.
    d.cli(&["stop", "app"]);
    let mut status = None;
    while status.is_none() {
        let message = next(&reader, WAIT).expect("the new status");
        status = message.strip_prefix("STATUS=").map(str::to_owned);
    }
    assert_eq!(
        status.unwrap(),
        format!(
            "1 watch(es): 1 unmonitored; exit backend {}",
            first.rsplit(' ').next().unwrap()
        )
    );
    // Wedged: at most the ping already on its way, then nothing for
    // twice the period, which systemd would take for a hung daemon.
    std::fs::write(&wedge, "").unwrap();
    let mut late = 0;
    while let Some(message) = next(&reader, PERIOD * 2) {
        assert_eq!(message, "WATCHDOG=1");
        late += 1;
        assert!(late <= 1, "pings go on from a wedged loop");
    }
    assert!(d
        .log()
        .iter()
        .any(|l| l.contains("fault injected: the loop hangs")));
    kill9(d.pid());
}

#[test]
fn quitting_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let reader = UnixDatagram::bind(&path).unwrap();
    let d = RunningDaemon::start_wrapped(
        &["env", &format!("NOTIFY_SOCKET={}", path.display())],
        "",
        "[[watch]]\nname = \"app\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let first = next(&reader, WAIT).expect("READY=1");
    assert!(first.starts_with("READY=1\n"), "{first:?}");
    d.cli(&["terminate"]);
    loop {
        let message = next(&reader, WAIT).expect("STOPPING=1");
        assert_ne!(message, "WATCHDOG=1", "no WATCHDOG_USEC, no pings");
        if message == "STOPPING=1" {
            break;
        }
    }
}
