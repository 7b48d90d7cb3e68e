//! A process that dies the way a test asks, when the test says so.
//!
//! It sets itself up, prints `ready`, then waits for a line on stdin before
//! it acts, so the test can start watching it first. Modes:
//!   block                  wait to be killed
//!   exit CODE              exit with CODE
//!   segv                   die of SIGSEGV, with core dumps enabled
//!   catch                  catch SIGUSR1 (and do nothing with it); wait
//!   null-read FILE         once FILE exists, read address 0 (a real
//!                          fault: SIGSEGV, SEGV_MAPERR at 0x0)
//!   threads N CODE         run N extra threads, then exit_group(CODE)
//!   thread-exit            a thread starts and ends before `ready`; then block
//!   leader-first CODE      the main thread exits at once; another thread
//!                          exits the group with CODE on the line
//!   daemonize PIDFILE      double-fork, leave the session, write the
//!                          grandchild's pid to PIDFILE and wait there
//!   write-pid-file PIDFILE TEXT
//!                          write TEXT to PIDFILE and wait (a liar)
//!   hog MB                 hold MB megabytes of resident memory, then wait
//!   burn MS                use a whole core for MS milliseconds, then wait
//!   stamp FIFO             first thing: write "PID MONOTONIC_NS" to FIFO,
//!                          then wait to be killed (restart benchmarks)
//!   http PORT [DELAY_MS]   serve HTTP on 127.0.0.1:PORT (after DELAY_MS):
//!                          200 to every request until SIGUSR1, 503 after
//!   notify-ready-on FILE   as notify-ready, once FILE exists
//!   notify-ready DELAY_MS  after DELAY_MS, say `STATUS=warming up` and
//!                          `READY=1` on $NOTIFY_SOCKET (sd_notify); wait
//!   watchdog FILE ACTION   say `WATCHDOG=1` on $NOTIFY_SOCKET four times per
//!                          $WATCHDOG_USEC, printing `ping N`, until FILE
//!                          exists; then remove it and ACTION: `hang` (say
//!                          no more), `trigger` (`WATCHDOG=trigger`) or
//!                          `usec:N` (`WATCHDOG_USEC=N`, then no more)
//!   churn SECONDS          fork and reap children as fast as it can for
//!                          SECONDS, then print how many (for benchmarks)
//!   (no known mode)        with a `stamp-fifo` in the working directory,
//!                          `stamp` to it: so the helper can be a service's
//!                          `run` file for daemontools, runit and s6, with
//!                          no shell in between (and s6's readiness
//!                          notification where `notification-fd` says)
use std::io::{BufRead as _, Write as _};
use supervisor_tests::monotonic_ns;

fn ready() {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready").expect("stdout");
    out.flush().expect("stdout");
}

fn wait_for_go() {
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
}

fn block() -> ! {
    loop {
        std::thread::park();
    }
}

fn arg_or(args: &[String], i: usize, default: i32) -> i32 {
    args.get(i).map_or(default, |_| arg(args, i))
}

static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn start_failing(_: libc::c_int) {
    FAILING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// A tiny HTTP server for health checks: one request per connection.
fn serve_http(port: u16, delay_ms: i32) -> ! {
    use std::io::Read as _;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGUSR1,
            start_failing as *const () as libc::sighandler_t,
        )
    };
    std::thread::sleep(std::time::Duration::from_millis(delay_ms as u64));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("binding the port");
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let status = if FAILING.load(std::sync::atomic::Ordering::SeqCst) {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
    }
    block()
}

fn watchdog(go: &std::path::Path, action: &str) -> ! {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .expect("WATCHDOG_USEC is set")
        .parse()
        .expect("WATCHDOG_USEC is a number");
    println!("watchdog_usec {usec}");
    let every = std::time::Duration::from_micros(usec / 4);
    for n in 1.. {
        if go.exists() {
            let _ = std::fs::remove_file(go);
            match action {
                "hang" => {}
                "trigger" => notify_systemd_style("WATCHDOG=trigger"),
                _ => {
                    let usec = action
                        .strip_prefix("usec:")
                        .expect("hang, trigger or usec:N");
                    notify_systemd_style(&format!("WATCHDOG_USEC={usec}"));
                }
            }
            println!("{action}");
            block()
        }
        notify_systemd_style("WATCHDOG=1");
        println!("ping {n}");
        std::thread::sleep(every);
    }
    unreachable!("the pings go on until FILE exists")
}

/// sd_notify as a service would do it, abstract socket names included.
fn notify_systemd_style(message: &str) {
    use std::os::linux::net::SocketAddrExt as _;
    let target = std::env::var("NOTIFY_SOCKET").expect("NOTIFY_SOCKET is set");
    let addr = match target.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()),
        None => std::os::unix::net::SocketAddr::from_pathname(&target),
    }
    .expect("a socket address");
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("socket");
    socket
        .send_to_addr(message.as_bytes(), &addr)
        .expect("sending to NOTIFY_SOCKET");
}

fn arg(args: &[String], i: usize) -> i32 {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} missing or not a number: {args:?}"))
}

/// The classic double fork: the caller's process exits, the grandchild,
/// in a session of its own, writes its pid to `pid_file` and returns.
fn daemonize(pid_file: &str) {
    // SAFETY: single-threaded here; each parent leaves with _exit.
    unsafe {
        if libc::fork() != 0 {
            libc::_exit(0);
        }
        libc::setsid();
        if libc::fork() != 0 {
            libc::_exit(0);
        }
    }
    let tmp = format!("{pid_file}.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id())).expect("pid file");
    std::fs::rename(&tmp, pid_file).expect("pid file");
}

/// Writes "PID STARTED_NS" to the benchmark's FIFO.
fn stamp(fifo: &str, started: u64) {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(fifo)
        .expect("opening the FIFO");
    // One write, so that stamps of helpers starting together never mix.
    let line = format!("{} {started}\n", std::process::id());
    out.write_all(line.as_bytes()).expect("writing the stamp");
}

/// s6's readiness protocol: a newline on the fd named in the service's
/// `notification-fd` file. Without it, s6-supervise waits a second before
/// each restart.
fn notify_s6() {
    use std::os::fd::FromRawFd as _;
    let Ok(text) = std::fs::read_to_string("notification-fd") else {
        return;
    };
    let fd: i32 = text.trim().parse().expect("notification-fd holds a number");
    // SAFETY: s6-supervise opened this fd for us to write and close.
    let mut ready = unsafe { std::fs::File::from_raw_fd(fd) };
    ready
        .write_all(b"\n")
        .expect("writing to the notification fd");
}

fn main() {
    let started = monotonic_ns();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("block") => {
            ready();
            block()
        }
        Some("exit") => {
            ready();
            wait_for_go();
            std::process::exit(arg(&args, 1))
        }
        Some("segv") => {
            let unlimited = libc::rlimit {
                rlim_cur: libc::RLIM_INFINITY,
                rlim_max: libc::RLIM_INFINITY,
            };
            // SAFETY: plain libc calls on valid arguments; SIG_DFL undoes the
            // handler Rust's runtime installs for stack overflows.
            unsafe {
                libc::setrlimit(libc::RLIMIT_CORE, &unlimited);
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            }
            ready();
            wait_for_go();
            // SAFETY: raising a signal at ourselves.
            unsafe { libc::raise(libc::SIGSEGV) };
            unreachable!("SIGSEGV did not kill us")
        }
        Some("catch") => {
            extern "C" fn nothing(_: libc::c_int) {}
            // SAFETY: the handler does nothing.
            unsafe { libc::signal(libc::SIGUSR1, nothing as *const () as libc::sighandler_t) };
            ready();
            block()
        }
        Some("null-read") => {
            // SAFETY: SIG_DFL undoes the handler Rust's runtime installs
            // for stack overflows, so that the fault kills the process.
            unsafe { libc::signal(libc::SIGSEGV, libc::SIG_DFL) };
            ready();
            let go = std::path::Path::new(&args[1]);
            while !go.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            // SAFETY: none: libc's strlen reads address 0, which is the
            // point, and the kernel kills the process for it. (Rust's own
            // reads check for null in debug builds.)
            unsafe { libc::strlen(std::hint::black_box(std::ptr::null())) };
            unreachable!("reading address 0 did not kill us")
        }
        Some("threads") => {
            for _ in 0..arg(&args, 1) {
                std::thread::spawn(|| block());
            }
            ready();
            wait_for_go();
            std::process::exit(arg(&args, 2))
        }
        Some("thread-exit") => {
            std::thread::spawn(|| ()).join().expect("thread");
            ready();
            block()
        }
        Some("leader-first") => {
            let code = arg(&args, 1);
            std::thread::spawn(move || {
                wait_for_go();
                std::process::exit(code)
            });
            ready();
            // SAFETY: SYS_exit ends only the calling thread: the main thread
            // goes, the process lives on in the other thread.
            unsafe { libc::syscall(libc::SYS_exit, 0) };
            unreachable!("SYS_exit returned")
        }
        Some("daemonize") => {
            daemonize(args.get(1).expect("daemonize PIDFILE"));
            block()
        }
        Some("write-pid-file") => {
            let path = args.get(1).expect("PIDFILE");
            std::fs::write(path, args.get(2).expect("TEXT")).expect("pid file");
            block()
        }
        Some("daemonize-stamp") => {
            daemonize(args.get(1).expect("PIDFILE"));
            stamp(args.get(2).expect("FIFO"), started);
            block()
        }
        Some("hog") => {
            // Resident, not just reserved: every page is written.
            let megabytes: usize = args.get(1).expect("hog MB").parse().expect("a number");
            let hoard = vec![1u8; megabytes << 20];
            std::hint::black_box(&hoard);
            block()
        }
        Some("burn") => {
            let until =
                std::time::Instant::now() + std::time::Duration::from_millis(arg(&args, 1) as u64);
            while std::time::Instant::now() < until {
                std::hint::black_box(0u64.wrapping_add(1));
            }
            block()
        }
        Some("stamp") => {
            stamp(args.get(1).expect("stamp FIFO"), started);
            block()
        }
        Some("http") => serve_http(arg(&args, 1) as u16, arg_or(&args, 2, 0)),
        Some("notify-ready-on") => {
            let go = std::path::Path::new(&args[1]);
            while !go.exists() {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            notify_systemd_style("STATUS=warming up\nREADY=1");
            block()
        }
        Some("watchdog") => watchdog(std::path::Path::new(&args[1]), &args[2]),
        Some("notify-ready") => {
            std::thread::sleep(std::time::Duration::from_millis(arg(&args, 1) as u64));
            notify_systemd_style("STATUS=warming up\nREADY=1");
            block()
        }
        // s6-supervise passes the service's name; the others nothing.
        _ if std::path::Path::new("stamp-fifo").exists() => {
            stamp("stamp-fifo", started);
            notify_s6();
            block()
        }
        Some("churn") => {
            let until =
                std::time::Instant::now() + std::time::Duration::from_secs(arg(&args, 1) as u64);
            ready();
            wait_for_go();
            let mut count = 0u64;
            while std::time::Instant::now() < until {
                // SAFETY: the child only calls _exit; the parent reaps it.
                unsafe {
                    let pid = libc::fork();
                    if pid == 0 {
                        libc::_exit(0);
                    }
                    if pid > 0 {
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                        count += 1;
                    }
                }
            }
            println!("{count}");
        }
        other => panic!("unknown mode {other:?}"),
    }
}
