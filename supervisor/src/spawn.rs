//! Starting a watch's process: its own session and process group, its
//! cgroup, user, groups, umask, directory, environment and log files. The
//! caller gets the process's identity and a pidfd that pins it.
//!
//! With a cgroup the process is created by clone3 directly inside it
//! (CLONE_INTO_CGROUP, with CLONE_PIDFD); everything the child needs is
//! prepared before the clone, and between clone and exec it makes only
//! async-signal-safe calls. Without one, std's Command does the same.
use std::{
    ffi::{CString, OsString},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{
            ffi::{OsStrExt as _, OsStringExt as _},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cgroup::WatchCgroup,
    config::WatchConfig,
    output::Logs,
    process::{self, Pid, ProcessId},
};

pub struct Spawned {
    pub id: ProcessId,
    pub pidfd: OwnedFd,
}

/// Starts `config`'s program, inside `cgroup` when there is one.
pub fn spawn(
    config: &WatchConfig,
    cgroup: Option<&WatchCgroup>,
    logs: &mut Logs,
) -> Result<Spawned> {
    let stdio = Stdio3 {
        stdin: OwnedFd::from(std::fs::File::open("/dev/null").context("opening /dev/null")?),
        stdout: output(config.stdout.as_deref(), logs)?,
        stderr: output(config.stderr.as_deref(), logs)?,
    };
    let (pid, pidfd) = match cgroup {
        Some(cgroup) => clone_into(config, cgroup, stdio)?,
        None => with_command(config, stdio)?,
    };
    let id = process::identify(pid).with_context(|| format!("reading the start time of {pid}"))?;
    Ok(Spawned { id, pidfd })
}

struct Stdio3 {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn output(path: Option<&Path>, logs: &mut Logs) -> Result<OwnedFd> {
    match path {
        Some(path) => logs.pipe_to(path),
        None => Ok(OwnedFd::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .context("opening /dev/null")?,
        )),
    }
}

/// The environment the process starts with.
fn environment(config: &WatchConfig) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = if config.clear_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| !config.env.contains_key(k.to_string_lossy().as_ref()))
            .collect()
    };
    env.extend(config.env.iter().map(|(k, v)| (k.into(), v.into())));
    env
}

/// `program` as execve needs it: as given when it has a slash, else the
/// first executable of that name along the process's PATH.
fn resolve(program: &str, env: &[(OsString, OsString)]) -> Result<PathBuf> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .with_context(|| format!("'{program}' is not an executable file in PATH"))
}

fn cstring(bytes: &[u8]) -> Result<CString> {
    CString::new(bytes).context("a NUL byte in the command or its environment")
}

/// `struct clone_args` (linux/sched.h), up to `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_PIDFD: u64 = 0x1000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone_into(config: &WatchConfig, cgroup: &WatchCgroup, stdio: Stdio3) -> Result<(Pid, OwnedFd)> {
    let env = environment(config);
    let program = cstring(resolve(&config.argv[0], &env)?.as_os_str().as_bytes())?;
    let argv: Vec<CString> = config
        .argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_>>()?;
    let envp: Vec<CString> = env
        .into_iter()
        .map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            cstring(&kv)
        })
        .collect::<Result<_>>()?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let dir = config
        .dir
        .as_ref()
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()?;
    let user = config.user.as_ref().map(|u| {
        let groups: Vec<libc::gid_t> = u.groups.iter().map(|g| g.as_raw()).collect();
        (u.uid.as_raw(), u.gid.as_raw(), groups)
    });
    let umask = config.umask;
    // Reports a failed exec: the child writes its errno, a successful exec
    // closes the pipe (O_CLOEXEC) with nothing written.
    let (report_read, report_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_PIDFD | CLONE_INTO_CGROUP,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.fd().as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    let (stdin, stdout, stderr) = (
        stdio.stdin.as_raw_fd(),
        stdio.stdout.as_raw_fd(),
        stdio.stderr.as_raw_fd(),
    );
    let report = report_write.as_raw_fd();
    // SAFETY: clone3 without CLONE_VM is a fork. In the child (ret == 0)
    // only async-signal-safe libc calls on memory prepared above run, and
    // it leaves through execve or _exit.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        unsafe {
            let fail = |report: libc::c_int| -> ! {
                let errno = *libc::__errno_location();
                libc::write(
                    report,
                    (&errno as *const libc::c_int).cast(),
                    size_of::<libc::c_int>(),
                );
                libc::_exit(127)
            };
            if libc::setsid() < 0 {
                fail(report);
            }
            if let Some(mask) = umask {
                libc::umask(mask as libc::mode_t);
            }
            if let Some((uid, gid, groups)) = &user {
                if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0
                {
                    fail(report);
                }
            }
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            // The Rust runtime ignores SIGPIPE; programs expect the default.
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            if libc::dup2(stdin, 0) < 0 || libc::dup2(stdout, 1) < 0 || libc::dup2(stderr, 2) < 0 {
                fail(report);
            }
            if let Some(dir) = &dir {
                if libc::chdir(dir.as_ptr()) != 0 {
                    fail(report);
                }
            }
            libc::execve(program.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
            fail(report);
        }
    }
    if ret < 0 {
        return Err(std::io::Error::last_os_error()).context("clone3 into the watch's cgroup");
    }
    drop(report_write);
    drop(stdio);
    // SAFETY: the kernel gave us this pidfd with CLONE_PIDFD.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let pid = Pid::new(ret as u32).context("clone3 returned pid 0 in the parent")?;
    let mut errno = [0u8; size_of::<libc::c_int>()];
    let n = nix::unistd::read(&report_read, &mut errno).unwrap_or(0);
    if n == errno.len() {
        // The child is gone (it _exit'ed); the reaper collects it.
        let error = std::io::Error::from_raw_os_error(libc::c_int::from_ne_bytes(errno));
        bail!("starting {:?}: {error}", config.argv);
    }
    Ok((pid, pidfd))
}

/// Without a cgroup: std's Command, with the session set up in pre_exec.
fn with_command(config: &WatchConfig, stdio: Stdio3) -> Result<(Pid, OwnedFd)> {
    let mut cmd = Command::new(&config.argv[0]);
    cmd.args(&config.argv[1..])
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    if config.clear_env {
        cmd.env_clear();
    }
    cmd.envs(&config.env);
    if let Some(dir) = &config.dir {
        cmd.current_dir(dir);
    }
    let umask = config.umask;
    let user = config.user.clone();
    // SAFETY: between fork and exec only async-signal-safe syscalls run.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some(mask) = umask {
                nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
            }
            if let Some(user) = &user {
                nix::unistd::setgroups(&user.groups)?;
                nix::unistd::setgid(user.gid)?;
                nix::unistd::setuid(user.uid)?;
            }
            // The daemon may block signals for its own use; the child
            // must start with a clean mask.
            nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            )?;
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", config.argv))?;
    let pid = Pid::from_child(&child);
    // The Child handle is dropped without waiting: the daemon reaps.
    drop(child);
    let pidfd = process::pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
    Ok((pid, pidfd))
}
