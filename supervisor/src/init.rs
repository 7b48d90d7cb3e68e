//! `supervisor init -- CMD`: a container's one-process init, a drop-in
//! for `tini --`. It runs CMD in a process group of its own, reaps every
//! process that ends under it (orphans reparented to it included: as PID 1
//! by the kernel's rule, elsewhere as a child subreaper), forwards the
//! signals an operator or a container runtime sends to CMD (or to CMD's
//! whole process group), and exits as CMD did: its exit code, or 128+N
//! for signal N.
//!
//! Synchronous and single-threaded, on purpose: the signals are blocked
//! and taken with `sigwaitinfo`, so nothing is missed between two reaps
//! and no async runtime is needed to be PID 1. Owns the init's loop; knows
//! nothing of watches or the daemon.
use std::{os::unix::process::CommandExt as _, process::ExitCode};

use anyhow::{Context as _, Result};
use nix::{
    errno::Errno,
    sys::{
        signal::{kill, SigSet, SigmaskHow, Signal},
        wait::{waitpid, WaitPidFlag, WaitStatus},
    },
    unistd::Pid,
};

/// What an operator or a runtime sends that CMD should get; the rest
/// (SIGCHLD aside) have their usual effect on the init itself.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// How the init runs, resolved from its arguments.
pub struct InitOptions {
    /// CMD and its arguments.
    pub argv: Vec<String>,
    /// Forward to CMD's process group, not CMD alone (tini's `-g`).
    pub to_group: bool,
    /// Exit codes of CMD that the init reports as 0 (tini's `-e`).
    pub success_codes: Vec<u8>,
    /// Sent to the init when its parent dies (tini's `-p`).
    pub parent_death: Option<Signal>,
}

pub fn run(options: &InitOptions) -> ExitCode {
    match init(options) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("supervisor init: {e:#}");
            // tini's code for a failure of its own.
            ExitCode::from(1)
        }
    }
}

/// Has `signal` sent to this process when its parent dies (tini's `-p`).
pub fn set_parent_death(signal: Signal) -> Result<()> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error()).context("PR_SET_PDEATHSIG");
    }
    Ok(())
}

/// The exit code an init reports for `code`: 0 for one of `success`
/// (tini's `-e`).
pub fn remapped(code: u8, success: &[u8]) -> u8 {
    if success.contains(&code) {
        0
    } else {
        code
    }
}

fn init(options: &InitOptions) -> Result<u8> {
    if let Some(signal) = options.parent_death {
        set_parent_death(signal)?;
    }
    if std::process::id() != 1 {
        // Not PID 1: orphans would go to the real init, and stay zombies
        // there if it does not reap (or be unseen); become their reaper.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } != 0 {
            return Err(std::io::Error::last_os_error()).context("PR_SET_CHILD_SUBREAPER");
        }
    }
    let mut taken = SigSet::empty();
    taken.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        taken.add(signal);
    }
    let mut before = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&taken), Some(&mut before))
        .context("blocking the signals the init takes")?;
    let (program, args) = options
        .argv
        .split_first()
        .context("no command to run: supervisor init -- CMD [ARGS...]")?;
    let mut command = std::process::Command::new(program);
    command.args(args).process_group(0);
    // SAFETY: only sigprocmask, tcsetpgrp and getpgrp, async-signal-safe,
    // between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // On a terminal (`docker run -it`), CMD's group is made the
            // foreground one, so that it may read it; a background group
            // doing so would get SIGTTOU, blocked meanwhile.
            let mut ttou = SigSet::empty();
            ttou.add(Signal::SIGTTOU);
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&ttou), None)?;
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None)
                .map_err(std::io::Error::from)
        });
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot run {program:?}"))?;
    let child = Pid::from_raw(child.id() as i32);
    let target = if options.to_group {
        Pid::from_raw(-child.as_raw())
    } else {
        child
    };
    loop {
        let signal = taken.wait().context("waiting for a signal")?;
        if signal != Signal::SIGCHLD {
            // ESRCH: CMD is gone and its exit is on its way.
            let _ = kill(target, signal);
            continue;
        }
        if let Some(code) = reap(child)? {
            return Ok(if options.success_codes.contains(&code) {
                0
            } else {
                code
            });
        }
    }
}

/// Reaps everything that has ended; CMD's exit code (128+N for signal N)
/// once it is among them.
fn reap(child: Pid) -> Result<Option<u8>> {
    let mut code = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return Ok(code),
            Ok(WaitStatus::Exited(pid, status)) if pid == child => code = Some(status as u8),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => {
                code = Some(128 + signal as u8)
            }
            Ok(_) => {}
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("waitpid"),
        }
    }
}
