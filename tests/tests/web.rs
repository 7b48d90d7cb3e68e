//! The web status page (`[daemon] web`): in Debian's headless Chromium,
//! driven by Selenium (tests/web/page.py), and over raw HTTP for the
//! clients that misbehave.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::Value;
use supervisor_tests::{free_port, in_ci, info_of, pid_of, RunningDaemon, State};

const TOKEN: &str = "t0ken-for-the-web-page-0123";
/// What no reader of the page may see: output, paths, environment.
const SECRETS: [&str; 3] = ["secret-output-line", "secret-env-value", "secret-dir"];

/// A daemon with the page on a port of its own (and a token if `token`),
/// and a watch `app` that prints, has environment, a health check and
/// output files; its page's address.
fn daemon(token: bool) -> (RunningDaemon, String) {
    let port = free_port();
    let mut keys = format!("web = \"127.0.0.1:{port}\"");
    if token {
        keys.push_str(&format!("\nweb_token = \"{TOKEN}\""));
    }
    let d = RunningDaemon::start_with(
        &keys,
        "[[watch]]\nname = \"app\"\ngroup = \"demo\"\n\
         start = \"/bin/sh -c 'echo secret-output-line; exec sleep 1000'\"\n\
         env = { APP_KEY = \"secret-env-value\" }\n\
         dir = \"{dir}\"\nstdout = \"{dir}/secret-dir.log\"\n\
         health = { exec = \"/bin/test -d {dir}\", every = \"1s\" }\n\n\
         [[watch]]\nname = \"idle\"\nstart = \"/bin/sleep 1000\"\n",
    );
    d.wait_status("app", "up", |s| s.state == State::Up);
    (d, format!("127.0.0.1:{port}"))
}

/// Whether Chromium, its driver and Selenium are installed; CI installs
/// them (`cargo xtask test`), so there a missing one fails.
fn have_chromium() -> bool {
    let missing: Vec<&str> = [
        "/usr/bin/chromium",
        "/usr/bin/chromedriver",
        "/usr/lib/python3/dist-packages/selenium",
    ]
    .into_iter()
    .filter(|p| !std::path::Path::new(p).exists())
    .collect();
    assert!(
        missing.is_empty() || !in_ci(),
        "{missing:?} missing (cargo xtask test installs chromium, chromium-driver, python3-selenium)"
    );
    if !missing.is_empty() {
        eprintln!("\n!!! SKIPPED: {missing:?} missing (cargo xtask test installs them)\n");
    }
    missing.is_empty()
}

/// Runs tests/web/page.py on the page at `addr`, its screenshot in
/// target/`shot`; what it saw.
fn drive(addr: &str, shot: &str, token: Option<&str>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/web/page.py");
    let shot = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).join(shot);
    // Debian's python3, which has python3-selenium (not a pyenv one).
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(format!("http://{addr}/"))
        .arg(&shot)
        .args(token)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "page.py failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).expect("the screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
    serde_json::from_slice(&out.stdout).expect("page.py's JSON")
}

fn assert_shows_no_secrets(seen: &Value, d: &RunningDaemon) {
    let text = seen["text"].as_str().expect("the page's text");
    for secret in SECRETS {
        assert!(!text.contains(secret), "the page shows {secret}: {text}");
    }
    let dir = d.config.parent().unwrap().display().to_string();
    assert!(!text.contains(&dir), "the page shows {dir}: {text}");
}

#[test]
fn the_page_shows_a_kill_live_and_has_no_buttons_without_a_token() {
    if !have_chromium() {
        return;
    }
    let (d, addr) = daemon(false);
    let seen = drive(&addr, "web-page-read-only.png", None);
    let now = d.status("app");
    assert_eq!(seen["after_kill_pid"].as_u64(), Some(pid_of(&now) as u64));
    assert_ne!(seen["first_pid"], seen["after_kill_pid"]);
    assert_eq!(seen["restarts_shown"], "1");
    let cause = seen["last_exit_shown"].as_str().unwrap();
    assert!(cause.contains("killed by SIGKILL from pid"), "{cause}");
    assert!(cause.contains("(python3, uid 0"), "{cause}");
    assert_eq!(seen["buttons"], 0);
    assert_shows_no_secrets(&seen, &d);
    let info = info_of(&d.socket).expect("info");
    assert_eq!(info.web.as_deref(), Some(addr.as_str()));
    assert_eq!(info.metrics, None);
}

#[test]
fn with_a_token_the_page_restarts_the_watch_and_each_action_is_logged() {
    if !have_chromium() {
        return;
    }
    let (d, addr) = daemon(true);
    let seen = drive(&addr, "web-page.png", Some(TOKEN));
    assert_eq!(seen["without_token"], "Enter the web_token first.");
    assert_eq!(seen["wrong_token"], "restart app: wrong token");
    assert_eq!(seen["said"], "restart app: done");
    let now = d.status("app");
    assert_eq!(seen["after_button_pid"].as_u64(), Some(pid_of(&now) as u64));
    assert_eq!(now.restarts, 2);
    let cause = &now.last_exit.as_ref().expect("last exit").cause;
    assert!(cause.contains("on the web page"), "{cause}");
    // Six buttons: start, stop, restart for each of the two watches.
    assert_eq!(seen["buttons"], 6);
    d.wait_log_line("of the refused action", |l| {
        l.contains("web: 127.0.0.1:")
            && l.ends_with("POST /api/watches/app/restart refused: wrong token")
    });
    d.wait_log_line("of the action", |l| {
        l.contains("control: restart app (from 127.0.0.1:") && l.ends_with(" on the web page)")
    });
    assert_shows_no_secrets(&seen, &d);
}

/// `method path` with `headers` over HTTP/1.0: the status line (and
/// headers) and the body.
fn ask(addr: &str, method: &str, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting");
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n{headers}\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .expect("reading the answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.to_owned(), body.to_owned())
}

fn status_line(answer: &(String, String)) -> &str {
    answer.0.lines().next().unwrap_or_default()
}

#[test]
fn actions_need_the_token_and_this_pages_origin() {
    let (d, addr) = daemon(true);
    let before = d.status("app");
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let restart = "/api/watches/app/restart";
    let cases: [(&str, &str, String, &str); 8] = [
        ("POST", restart, String::new(), "401"),
        (
            "POST",
            restart,
            "Authorization: Bearer nope\r\n".into(),
            "401",
        ),
        (
            "POST",
            restart,
            format!("Authorization: Bearer {TOKEN}x\r\n"),
            "401",
        ),
        (
            "POST",
            restart,
            "Authorization: Basic dXNlcjpwYXNz\r\n".into(),
            "401",
        ),
        (
            "POST",
            restart,
            format!("{bearer}Origin: http://evil.example\r\n"),
            "403",
        ),
        ("GET", restart, bearer.clone(), "405"),
        ("POST", "/api/watches/app/kill", bearer.clone(), "404"),
        ("POST", "/api/watches/nobody/restart", bearer.clone(), "409"),
    ];
    for (method, path, headers, want) in &cases {
        let answer = ask(&addr, method, path, headers);
        assert!(
            status_line(&answer).contains(want),
            "{method} {path} with {headers:?}: {answer:?}"
        );
        let body: Value = serde_json::from_str(&answer.1).expect("a JSON error");
        assert_eq!(body["ok"], false, "{answer:?}");
    }
    assert_eq!(d.status("app").pid, before.pid, "nothing was restarted");
    d.wait_logged("refused: wrong token", 2);
    d.wait_logged("refused: no token", 2);
    d.wait_logged(
        "refused: Origin 'http://evil.example' is not this page's",
        1,
    );
    // With the token and the page's own Origin (what the page sends).
    let answer = ask(
        &addr,
        "POST",
        restart,
        &format!("{bearer}Origin: http://{addr}\r\n"),
    );
    assert!(status_line(&answer).contains("200"), "{answer:?}");
    let after = d.wait_replaced("app", pid_of(&before));
    assert_eq!(after.restarts, 1);
}

#[test]
fn without_a_token_there_are_no_actions_and_a_public_page_is_warned_about() {
    let port = free_port();
    let d = RunningDaemon::start_with(
        &format!("web = \"0.0.0.0:{port}\""),
        "[[watch]]\nname = \"app\"\nstart = \"/bin/sleep 1000\"\n",
    );
    let before = d.wait_status("app", "up", |s| s.state == State::Up);
    d.wait_logged(
        "which is not a loopback address, and without a web_token",
        1,
    );
    let addr = format!("127.0.0.1:{port}");
    let answer = ask(
        &addr,
        "POST",
        "/api/watches/app/restart",
        "Authorization: Bearer whatever-it-may-be\r\n",
    );
    assert!(status_line(&answer).contains("403"), "{answer:?}");
    assert!(answer.1.contains("actions are off"), "{answer:?}");
    let page: Value = serde_json::from_str(&ask(&addr, "GET", "/api/page", "").1).unwrap();
    assert_eq!(page["actions"], false);
    assert_eq!(d.status("app").pid, before.pid);
}

#[test]
fn clients_that_misbehave_get_errors_and_cost_no_restart() {
    let (d, addr) = daemon(true);
    for path in [
        "/../../etc/passwd",
        "/page.js/../../../etc/passwd",
        "/%2e%2e/etc/passwd",
    ] {
        let answer = ask(&addr, "GET", path, "");
        assert!(status_line(&answer).contains("404"), "{path}: {answer:?}");
    }
    let page = ask(&addr, "GET", "/", "");
    assert!(status_line(&page).contains("200"), "{page:?}");
    assert!(
        page.0
            .contains("content-security-policy: default-src 'none'"),
        "{page:?}"
    );
    let answer = ask(&addr, "DELETE", "/", "");
    assert!(status_line(&answer).contains("405"), "{answer:?}");
    let huge = format!("X-Filler: {}\r\n", "a".repeat(64 * 1024));
    let mut big = TcpStream::connect(&addr).unwrap();
    let _ = big.write_all(format!("GET / HTTP/1.1\r\nHost: x\r\n{huge}\r\n").as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    // Live pages that never read (their stream fills and stalls), idle
    // connections that send nothing, and a flood of page requests: the
    // watch is still restarted each time it is killed.
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            write!(s, "GET /api/live HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
            // Its stream has begun (it holds one of the 16 places) once
            // its first bytes come; from then on it reads no more.
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let mut first = [0u8; 64];
            let n = s.read(&mut first).expect("the stream's first bytes");
            assert!(first[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &first[..n]);
            s
        })
        .collect();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    let answer = ask(&addr, "GET", "/api/live", "");
    assert!(
        status_line(&answer).contains("503"),
        "a 17th live page: {answer:?}"
    );
    assert!(answer.1.contains("too many live pages"), "{answer:?}");
    for _ in 0..5 {
        for _ in 0..20 {
            let answer = ask(&addr, "GET", "/api/page", "");
            assert!(status_line(&answer).contains("200"), "{answer:?}");
        }
        let (victim, now) = d.kill_and_wait_replaced("app");
        assert_ne!(pid_of(&now), victim);
    }
    assert_eq!(d.status("app").restarts, 5);
    drop((stalled, idle));
}
