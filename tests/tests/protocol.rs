//! The JSON scripts see, as docs/protocol.md writes it down: each example
//! there decodes into the protocol's types, and a live daemon's answers
//! carry exactly the documented fields.
use serde_json::Value;
use supervisor::protocol::{DaemonInfo, LoadSummary, StreamEvent, WatchStatus};
use supervisor_tests::{RunningDaemon, State, StatusExt};

const DOC: &str = include_str!("../../docs/protocol.md");

/// The JSON block after `<!-- example: NAME -->`.
fn example(name: &str) -> Value {
    let marker = format!("<!-- example: {name} -->");
    let after = DOC
        .split_once(&marker)
        .unwrap_or_else(|| panic!("docs/protocol.md has no {marker}"))
        .1;
    let block = after
        .split_once("```json")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(block, _)| block)
        .unwrap_or_else(|| panic!("no json block after {marker}"));
    serde_json::from_str(block).unwrap_or_else(|e| panic!("{name} example: {e}"))
}

/// Asserts that `actual` has the fields `documented` has, no more and no
/// fewer, at every level both have an object (lists: their first items).
fn same_fields(documented: &Value, actual: &Value, at: &str) {
    match (documented, actual) {
        (Value::Object(d), Value::Object(a)) => {
            let dk: Vec<&String> = d.keys().collect();
            let ak: Vec<&String> = a.keys().collect();
            assert_eq!(dk, ak, "fields of {at}: documented vs. actual");
            for (key, value) in d {
                same_fields(value, &a[key], &format!("{at}.{key}"));
            }
        }
        (Value::Array(d), Value::Array(a)) => {
            if let (Some(d), Some(a)) = (d.first(), a.first()) {
                same_fields(d, a, &format!("{at}[0]"));
            }
        }
        _ => {}
    }
}

#[test]
fn the_documented_examples_are_what_the_types_read_and_write() {
    let watch = example("WatchStatus");
    let typed: WatchStatus = serde_json::from_value(watch.clone()).expect("WatchStatus");
    same_fields(
        &watch,
        &serde_json::to_value(&typed).unwrap(),
        "WatchStatus",
    );
    let info = example("DaemonInfo");
    let typed: DaemonInfo = serde_json::from_value(info.clone()).expect("DaemonInfo");
    same_fields(&info, &serde_json::to_value(&typed).unwrap(), "DaemonInfo");
    let load = example("LoadSummary");
    let typed: LoadSummary = serde_json::from_value(load.clone()).expect("LoadSummary");
    same_fields(&load, &serde_json::to_value(&typed).unwrap(), "LoadSummary");
    let event = example("StreamEvent");
    let typed: StreamEvent = serde_json::from_value(event.clone()).expect("StreamEvent");
    same_fields(
        &event,
        &serde_json::to_value(&typed).unwrap(),
        "StreamEvent",
    );
}

#[test]
fn a_live_daemon_answers_with_the_documented_fields() {
    let port = supervisor_tests::free_port();
    let d = RunningDaemon::start(&format!(
        r#"
[[watch]]
name = "web"
group = "www"
start = ["{{helper}}", "http", "{port}"]
stdout = "{{dir}}/web.out"
ready = "health"
memory = {{ above = "1GB", every = "1s" }}

[watch.health]
http = "http://127.0.0.1:{port}/"
every = "1s"
"#
    ));
    let up = d.wait_status("web", "up and measured", |s| {
        s.state == State::Up
            && s.last_probe().is_some()
            && s.conditions.first().is_some_and(|c| c.last.is_some())
    });
    let pid = supervisor_tests::pid_of(&up);
    supervisor_tests::kill9(pid);
    d.wait_replaced("web", pid);
    same_fields(
        &example("WatchStatus"),
        &d.status_json("web"),
        "status --json",
    );
    let out = d.cli(&["info", "--json"]);
    let info: Value = serde_json::from_slice(&out.stdout).expect("info --json");
    same_fields(&example("DaemonInfo"), &info, "info --json");
    let out = d.cli(&["load", &d.config.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
    let load: Value = serde_json::from_slice(&out.stdout).expect("load prints JSON");
    same_fields(&example("LoadSummary"), &load, "load");
}
