//! The daemon under a service manager, as systemd runs a `Type=notify`
//! unit with `WatchdogSec=`: a stand-in `NOTIFY_SOCKET` reader sees
//! `READY=1` with a status line, `WATCHDOG=1` at half the period, the
//! status following the watches, and the pings stop when the loop is
//! wedged (a fault only debug builds have). And in a cgroup systemd
//! delegated to its unit (`Delegate=yes`, marked by the `trusted.delegate`
//! xattr systemd sets), the watches' cgroups are made under it.
use std::{
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use supervisor_tests::{info_of, kill9, RunningDaemon, WAIT};

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

/// A cgroup at the root of the cgroup2 mount, as systemd makes a unit's,
/// marked delegated (as systemd marks a unit's with `Delegate=yes`) or not;
/// removed with everything under it when dropped.
struct UnitCgroup(PathBuf);

impl UnitCgroup {
    /// Marked with the xattr `mark` (to "1"), if any.
    fn new(name: &str, mark: Option<&str>) -> Self {
        let mount = supervisor::cgroup::mount().expect("a cgroup2 mount");
        let dir = mount.join(format!("{name}-{}.service", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        if let Some(mark) = mark {
            nix_setxattr(&dir, mark, b"1");
        }
        Self(dir)
    }

    /// Its path under the mount, as /proc/PID/cgroup says it.
    fn path(&self) -> String {
        let mount = supervisor::cgroup::mount().unwrap();
        format!("/{}", self.0.strip_prefix(&mount).unwrap().display())
    }

    /// A daemon with one watch, `app`, started in this cgroup as systemd
    /// starts a unit's main process in the unit's.
    fn start_daemon(&self) -> RunningDaemon {
        let procs = self.0.join("cgroup.procs");
        let script = format!("echo $$ > {} && exec \"$@\"", procs.display());
        RunningDaemon::start_wrapped(
            &["sh", "-c", &script, "sh"],
            "tracking = \"cgroup\"",
            "[[watch]]\nname = \"app\"\nstart = [\"sleep\", \"1000\"]\n",
        )
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&entry.path());
                }
            }
            let _ = std::fs::write(dir.join("cgroup.kill"), "1");
            supervisor_tests::poll_until(WAIT, || {
                !std::fs::read_to_string(dir.join("cgroup.events"))
                    .is_ok_and(|e| e.contains("populated 1"))
            });
            let _ = std::fs::remove_dir(dir);
        }
        remove(&self.0);
    }
}

fn nix_setxattr(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt as _;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer with its length.
    let rc = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

/// The cgroup v2 `pid` is in, as a path under the mount.
fn cgroup_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap()
}

#[test]
fn in_a_delegated_unit_cgroup_the_watches_cgroups_are_under_it_and_survive_a_restart_of_the_daemon()
{
    let unit = UnitCgroup::new("delegated", Some("trusted.delegate"));
    let mut d = unit.start_daemon();
    let unit_path = unit.path();
    let instance = d.instance();
    let info = info_of(&d.socket).unwrap();
    let cgroups = info.cgroups.expect("cgroups in info");
    assert!(cgroups.delegated, "{cgroups:?}");
    assert_eq!(
        cgroups.dir,
        unit.0.join("supervisor").join(&instance),
        "{cgroups:?}"
    );
    // The daemon left the unit's cgroup for its leaf, so that the unit's
    // cgroup has no process of its own.
    assert_eq!(cgroup_of(d.pid()), format!("{unit_path}/daemon"));
    let app = supervisor_tests::pid_of(&d.status("app"));
    let app_cgroup = format!("{unit_path}/supervisor/{instance}/app");
    assert_eq!(cgroup_of(app), app_cgroup);
    let text = String::from_utf8(d.cli(&["info"]).stdout).unwrap();
    assert!(
        text.contains(&format!(
            "tracking    cgroup, in {} (delegated to the daemon's unit)",
            cgroups.dir.display()
        )),
        "{text}"
    );

    // systemd restarting the unit with KillMode=process: the daemon goes,
    // its watches stay, and the new one (started in the unit's cgroup
    // again) moves into its leaf and adopts them where they are.
    d.kill9_and_restart();
    assert_eq!(cgroup_of(d.pid()), format!("{unit_path}/daemon"));
    assert_eq!(supervisor_tests::pid_of(&d.status("app")), app);
    let (_, after) = d.kill_and_wait_replaced("app");
    assert_eq!(cgroup_of(supervisor_tests::pid_of(&after)), app_cgroup);
    drop(d);
}

#[test]
fn in_a_unit_cgroup_not_delegated_the_watches_cgroups_stay_at_the_root() {
    // Marked only with user.delegate, which a user may set on a cgroup of
    // theirs: a root daemon believes systemd's trusted.delegate alone.
    let unit = UnitCgroup::new("undelegated", Some("user.delegate"));
    let d = unit.start_daemon();
    let mount = supervisor::cgroup::mount().unwrap();
    let cgroups = info_of(&d.socket).unwrap().cgroups.unwrap();
    assert!(!cgroups.delegated);
    assert_eq!(
        cgroups.dir,
        supervisor::cgroup::instance_dir(&mount, &d.instance())
    );
    // Nothing moved: a cgroup systemd did not delegate is systemd's.
    assert_eq!(cgroup_of(d.pid()), unit.path());
    drop(d);
}
