//! `/metrics`, scraped by a real Prometheus (Debian's, started here on a
//! temporary folder and a loopback port) and checked by its `promtool`;
//! and the listener's answers to clients that misbehave.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use supervisor_tests::{free_port, in_ci, pid_of, wait_until, RunningDaemon, State};

/// A daemon serving metrics on a port of its own, with one watch `x`.
fn daemon() -> (RunningDaemon, String) {
    let port = free_port();
    let d = RunningDaemon::start_with(
        &format!("metrics = \"127.0.0.1:{port}\""),
        "[[watch]]\nname = \"x\"\ngroup = \"g\"\nstart = \"/bin/sleep 1000\"\n",
    );
    d.wait_status("x", "up", |s| s.state == State::Up);
    (d, format!("127.0.0.1:{port}"))
}

/// `GET path` over HTTP/1.0 with `headers`: the status line and body.
fn get(addr: &str, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n{headers}\r\n").unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

fn scrape(addr: &str) -> String {
    let (head, body) = get(addr, "/metrics", "");
    assert!(head.starts_with("HTTP/1.0 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body
}

/// Whether Debian's prometheus (and promtool) is installed; CI installs
/// it (`cargo xtask test`), so there a missing one fails.
fn have_prometheus() -> bool {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    assert!(
        found || !in_ci(),
        "promtool is missing (cargo xtask test installs prometheus)"
    );
    if !found {
        eprintln!("\n!!! SKIPPED: no prometheus installed (cargo xtask test installs it)\n");
    }
    found
}

#[test]
fn a_scrape_passes_promtool_and_says_what_status_says() {
    if !have_prometheus() {
        return;
    }
    let (d, addr) = daemon();
    d.kill_and_wait_replaced("x");
    // The usage sampler's first round comes a second after start-up.
    wait_until("a usage sample", || {
        scrape(&addr).contains("supervisor_watch_memory_bytes{watch=\"x\",group=\"g\"} ")
    });
    let text = scrape(&addr);
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "supervisor_watch_cpu_seconds_total{watch=\"x\",group=\"g\"} ",
        "supervisor_watch_up{watch=\"x\",group=\"g\"} 1",
        "supervisor_watch_state{watch=\"x\",group=\"g\",state=\"up\"} 1",
        "supervisor_watch_restarts_total{watch=\"x\",group=\"g\"} 1",
        "supervisor_watch_exits_total{watch=\"x\",group=\"g\",cause=\"signal\"} 1",
        "supervisor_backend_info{backend=\"",
        "supervisor_detection_latency_seconds_count ",
        "supervisor_restart_duration_seconds_count 1",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    let (head, body) = get(
        &addr,
        "/metrics",
        "Accept: application/openmetrics-text; version=1.0.0\r\n",
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(
        body.contains("# TYPE supervisor_watch_restarts counter\n"),
        "{body}"
    );
    let info = supervisor_tests::info_of(&d.socket).expect("info");
    assert_eq!(info.metrics.as_deref(), Some(addr.as_str()));
}

/// Prometheus on a port of its own, scraping `target` every second.
struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Self {
        Self::start_with_rules(target, None)
    }

    /// Also evaluating the rules in `rules` every second.
    fn start_with_rules(target: &str, rules: Option<&std::path::Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        let rule_files = rules.map_or_else(String::new, |r| {
            format!("rule_files:\n  - '{}'\n", r.display())
        });
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: supervisor\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus");
        let p = Self {
            child,
            addr,
            _dir: dir,
        };
        wait_until("prometheus to be ready", || {
            TcpStream::connect(&p.addr).is_ok() && get(&p.addr, "/-/ready", "").0.contains(" 200")
        });
        p
    }

    /// Prometheus's answer to `query` now.
    fn query(&self, query: &str) -> Value {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                b => format!("%{b:02X}"),
            })
            .collect();
        let (_, body) = get(&self.addr, &format!("/api/v1/query?query={encoded}"), "");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// The value of `query` now, if it has one.
    fn value(&self, query: &str) -> Option<f64> {
        self.query(query)["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
    }

    fn wait_for(&self, query: &str, what: &str, done: impl Fn(f64) -> bool) {
        wait_until(&format!("prometheus to see {what} ({query})"), || {
            self.value(query).is_some_and(&done)
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_sees_a_stop_a_start_and_a_restart() {
    if !have_prometheus() {
        return;
    }
    let (d, addr) = daemon();
    let prometheus = Prometheus::start(&addr);
    let up = "supervisor_watch_up{watch=\"x\"}";
    prometheus.wait_for(up, "x up", |v| v == 1.0);
    assert!(d.cli(&["stop", "x"]).status.success());
    prometheus.wait_for(up, "x stopped", |v| v == 0.0);
    assert!(d.cli(&["start", "x"]).status.success());
    prometheus.wait_for(up, "x up again", |v| v == 1.0);
    let restarts = "supervisor_watch_restarts_total{watch=\"x\"}";
    prometheus.wait_for(restarts, "the restart count", |_| true);
    let before = prometheus.value(restarts).unwrap();
    let old = pid_of(&d.status("x"));
    supervisor_tests::kill9(old);
    d.wait_replaced("x", old);
    prometheus.wait_for(restarts, "one more restart", |v| v == before + 1.0);
    prometheus.wait_for(
        "supervisor_watch_exits_total{watch=\"x\",cause=\"signal\"}",
        "the kill",
        |v| v >= 1.0,
    );
}

#[test]
fn clients_that_misbehave_get_errors_and_cost_no_restart() {
    let (d, addr) = daemon();
    let (head, _) = get(&addr, "/../../etc/passwd", "");
    assert!(head.starts_with("HTTP/1.0 404"), "{head}");
    let mut post = TcpStream::connect(&addr).unwrap();
    write!(post, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 405"), "{answer}");
    let huge = format!("X-Filler: {}\r\n", "a".repeat(64 * 1024));
    let mut big = TcpStream::connect(&addr).unwrap();
    let _ = big.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{huge}\r\n").as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "oversized headers: {answer:?}"
    );
    // Slow clients hold connections without sending a request: they are
    // closed after the header timeout, and meanwhile others are served.
    let slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s
        })
        .collect();
    for _ in 0..50 {
        scrape(&addr);
    }
    let (victim, s) = d.kill_and_wait_replaced("x");
    assert_ne!(pid_of(&s), victim);
    for mut s in slow {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
            "a slow client is closed: {rest:?}"
        );
    }
}

const CONTRIB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib");

#[test]
fn the_contrib_alert_rules_and_dashboard_run_against_a_real_prometheus() {
    if !have_prometheus() {
        return;
    }
    let rules = std::path::Path::new(CONTRIB).join("prometheus/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (d, addr) = daemon();
    let prometheus = Prometheus::start_with_rules(&addr, Some(&rules));
    prometheus.wait_for("supervisor_watch_up{watch=\"x\"}", "x up", |v| v == 1.0);
    d.kill_and_wait_replaced("x");
    // Prometheus evaluates every rule each second: each one's health says
    // whether its expression ran.
    wait_until("prometheus to evaluate every alert rule", || {
        let (_, body) = get(&prometheus.addr, "/api/v1/rules", "");
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let rules: Vec<&Value> = answer["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        for rule in &rules {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        rules.len() == 7 && rules.iter().all(|r| r["health"] == "ok")
    });
    // Each panel's queries, with the host picker at "all".
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(std::path::Path::new(CONTRIB).join("grafana/supervisor.json"))
            .unwrap(),
    )
    .unwrap();
    let mut queries = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$instance", ".+");
            let answer = prometheus.query(&expr);
            assert_eq!(
                answer["status"], "success",
                "{}: {expr}: {answer}",
                panel["title"]
            );
            queries += 1;
        }
    }
    assert!(queries >= 10);
    let backend = prometheus.query("supervisor_backend_info");
    assert_eq!(
        backend["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "{backend}"
    );
}
