//! Notifications, end to end: a hook command and a webhook receiver on
//! 127.0.0.1 hear what happened to a real process, and a receiver that
//! never answers holds up no restart.
use supervisor_tests::{kill9, pid_of, wait_until, RunningDaemon, State, WebhookReceiver};

#[test]
fn a_hook_and_a_webhook_get_the_documents_of_an_exit_and_its_restart() {
    let receiver = WebhookReceiver::start(false);
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "app"
group = "web"
start = "/bin/sleep 1000"

[[watch]]
name = "quiet"
start = "/bin/sleep 1000"

[[notify]]
watches = ["web"]
events = ["exited", "restarted"]
webhook = "{url}"
headers = {{ Authorization = "Bearer test" }}
timeout = "2s"

[[notify]]
watches = ["app"]
events = ["exited"]
command = ["/bin/sh", "-c", "env | grep ^SUPERVISOR_ | sort > {{dir}}/hook.$SUPERVISOR_PID"]
"#,
        url = receiver.url
    ));
    let quiet = pid_of(&d.wait_status("quiet", "up", |s| s.state == State::Up));
    let (old, s) = d.kill_and_wait_replaced("app");
    let new = pid_of(&s);

    let exited = receiver.wait_for("app exited", |doc| {
        doc["event"] == "exited" && doc["watch"] == "app"
    });
    assert_eq!(exited["pid"], old, "{exited}");
    assert_eq!(exited["group"], "web", "{exited}");
    assert_eq!(exited["exit"]["signal"], "SIGKILL", "{exited}");
    assert_eq!(exited["exit"]["text"], "killed by SIGKILL", "{exited}");
    let host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(exited["host"], host.to_string_lossy().as_ref(), "{exited}");
    assert!(
        exited["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{exited}"
    );
    assert!(exited["unix_time"].is_number(), "{exited}");
    let restarted = receiver.wait_for("app restarted", |doc| {
        doc["event"] == "restarted" && doc["watch"] == "app"
    });
    assert_eq!(restarted["pid"], new, "{restarted}");
    assert_eq!(restarted["restarts"], 1, "{restarted}");

    let hook = d.dir.path().join(format!("hook.{old}"));
    supervisor_tests::wait_file_contains(&hook, "SUPERVISOR_TIME=");
    let env = std::fs::read_to_string(&hook).expect("hook output");
    for line in [
        "SUPERVISOR_WATCH=app".to_owned(),
        "SUPERVISOR_GROUP=web".to_owned(),
        "SUPERVISOR_EVENT=exited".to_owned(),
        format!("SUPERVISOR_PID={old}"),
        "SUPERVISOR_EXIT_SIGNAL=SIGKILL".to_owned(),
        "SUPERVISOR_EXIT_STATUS=killed by SIGKILL".to_owned(),
        "SUPERVISOR_EXIT_CODE=".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "{line:?} not in {env}");
    }
    let json = env
        .lines()
        .find_map(|l| l.strip_prefix("SUPERVISOR_JSON="))
        .expect("SUPERVISOR_JSON");
    let doc: serde_json::Value = serde_json::from_str(json).expect("JSON");
    assert_eq!(
        (doc["event"].as_str(), doc["pid"].as_u64()),
        (Some("exited"), Some(u64::from(old)))
    );

    // The other watch is not theirs: nothing about it.
    let (quiet_old, _) = d.kill_and_wait_replaced("quiet");
    assert_eq!(quiet_old, quiet);
    let sentinel = d.kill_and_wait_replaced("app").0;
    receiver.wait_for("the second exit of app", |doc| doc["pid"] == sentinel);
    assert!(
        !d.dir.path().join(format!("hook.{quiet}")).exists(),
        "the hook is for app only"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&d.cli(&["info", "--json"]).stdout).expect("info --json");
    assert!(
        info["notifications"]["webhooks_delivered"].as_u64() >= Some(3),
        "{info}"
    );
}

#[test]
fn a_webhook_that_never_answers_does_not_delay_restarts() {
    let receiver = WebhookReceiver::start(true);
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "app"
start = "/bin/sleep 1000"
flapping = {{ starts = 100 }}

[[notify]]
webhook = "{url}"
timeout = "60s"
retries = 5
"#,
        url = receiver.url
    ));
    let mut pid = pid_of(&d.wait_status("app", "up", |s| s.state == State::Up));
    for _ in 0..5 {
        kill9(pid);
        pid = pid_of(&d.wait_replaced("app", pid));
    }
    // Every restart happened while the first delivery still hangs.
    wait_until("the receiver to hold a connection", || {
        receiver.connections() >= 1
    });
    assert_eq!(
        receiver.connections(),
        1,
        "one delivery at a time, in order"
    );
    let s = d.status("app");
    assert_eq!(s.restarts, 5, "{s}");
    let log = d.log();
    assert!(
        !log.iter().any(|l| l.contains("flapping")),
        "restarts were not held back: {log:?}"
    );
    supervisor_tests::report(
        "webhook receiver hangs",
        "a receiver that accepts and never answers (60 s timeout, 5 retries) while the watch is killed 5 times: every restart on time",
        5,
        0,
        0,
    );
}

#[test]
fn flapping_giving_up_and_conditions_are_told_too() {
    let receiver = WebhookReceiver::start(false);
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "crashy"
start = ["/bin/sh", "-c", "exit 3"]
flapping = {{ starts = 2, within = "60s" }}

[[watch]]
name = "oneshot"
start = ["/bin/sh", "-c", "exit 4"]
keepalive = false

[[watch]]
name = "sick"
start = "/bin/sleep 1000"

[watch.health]
exec = ["/bin/false"]
every = "200ms"
times = [1, 1]
action = "notify"

[[notify]]
events = ["flapping", "gave_up", "condition"]
webhook = "{url}"
"#,
        url = receiver.url
    ));
    let flapping = receiver.wait_for("crashy flapping", |doc| {
        doc["event"] == "flapping" && doc["watch"] == "crashy"
    });
    assert!(
        flapping["detail"]
            .as_str()
            .is_some_and(|t| t.contains("starts within 60s; next start in")),
        "{flapping}"
    );
    let gave_up = receiver.wait_for("oneshot gave up", |doc| {
        doc["event"] == "gave_up" && doc["watch"] == "oneshot"
    });
    assert_eq!(gave_up["exit"]["code"], 4, "{gave_up}");
    let condition = receiver.wait_for("sick's check fired", |doc| {
        doc["event"] == "condition" && doc["watch"] == "sick"
    });
    assert!(
        condition["detail"].as_str().is_some_and(
            |t| t.starts_with("health check (exec /bin/false) failed 1 of the last 1 checks")
        ),
        "{condition}"
    );
    assert_eq!(condition["pid"], pid_of(&d.status("sick")), "{condition}");
}
