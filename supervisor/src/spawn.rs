//! Starting a watch's process: its own session and process group, its
//! cgroup, user, groups, umask, directory, environment and log files. The
//! caller gets the process's identity and a pidfd that pins it.
//!
//! The process is created by clone3 (see `clone3`), directly inside the
//! watch's cgroup when it has one; everything the child needs is prepared
//! here, before the clone. Where clone3 cannot be used, std's Command does
//! the same without a cgroup.
use std::{
    ffi::{CStr, CString, OsString},
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::{
            ffi::{OsStrExt as _, OsStringExt as _},
            process::CommandExt as _,
        },
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    cgroup::WatchCgroup,
    clone3,
    config::{RunAs, WatchConfig},
    output::{Logs, Output, Pipe},
    process::{self, Pid, ProcessId},
};

pub struct Spawned {
    pub id: ProcessId,
    pub pidfd: OwnedFd,
    /// The streams the daemon carries for it (its log files).
    pub output: Output,
}

/// A start made ready where the daemon's state is (log pipes opened,
/// program found, environment and credentials worked out), to be carried
/// out on any thread: `run` touches nothing but what it holds.
pub struct Prepared {
    how: How,
    output: Output,
    /// The command, for errors.
    what: String,
}

enum How {
    Clone {
        program: CString,
        argv: Vec<CString>,
        envp: Vec<CString>,
        dir: Option<CString>,
        user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
        umask: Option<libc::mode_t>,
        rlimits: Vec<(libc::c_int, libc::rlimit)>,
        oom_score_adj: Option<CString>,
        stdio: Stdio3,
        cgroup: Option<crate::cgroup::DirFd>,
        /// The v1 cgroups (`cgroup.procs`) its limits are in.
        join: Vec<std::fs::File>,
    },
    Command(Command),
}

/// Starts `config`'s program, inside `cgroup` when there is one and the
/// v1 cgroups whose `cgroup.procs` are `join`, with `extra_env` added to
/// its environment.
pub fn spawn(
    config: &WatchConfig,
    cgroup: Option<&WatchCgroup>,
    join: Vec<std::fs::File>,
    logs: &mut Logs,
    extra_env: &[(String, String)],
) -> Result<Spawned> {
    prepare(config, cgroup, join, logs, extra_env)?.run()
}

/// Makes ready the start of `config`'s program, for `Prepared::run`.
pub fn prepare(
    config: &WatchConfig,
    cgroup: Option<&WatchCgroup>,
    join: Vec<std::fs::File>,
    logs: &mut Logs,
    extra_env: &[(String, String)],
) -> Result<Prepared> {
    let stamps = config.timestamps;
    let (stdout, stdout_pipe) = output(
        Stream::Stdout,
        config.stdout.as_deref(),
        config.user.as_ref(),
        stamps,
        config.stdout_rotation,
        logs,
    )?;
    // One file for both: one pipe on fds 1 and 2, its lines in the order
    // they were written.
    let (stderr, stderr_pipe) = if config.stderr.is_some() && config.stderr == config.stdout {
        (stdout.try_clone().context("dup")?, None)
    } else {
        output(
            Stream::Stderr,
            config.stderr.as_deref(),
            config.user.as_ref(),
            stamps,
            config.stderr_rotation,
            logs,
        )?
    };
    let stdio = Stdio3 {
        stdin: dev_null()?,
        stdout,
        stderr,
    };
    Ok(Prepared {
        output: Output {
            stdout: stdout_pipe,
            stderr: stderr_pipe,
        },
        ..prepare_with(config, cgroup, stdio, extra_env, join)?
    })
}

/// Starts `config`'s program outside any cgroup with its stdout and
/// stderr going into a pipe, whose reading end is returned.
pub fn spawn_captured(
    config: &WatchConfig,
    extra_env: &[(String, String)],
) -> Result<(Spawned, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe2")?;
    let stdio = Stdio3 {
        stdin: dev_null()?,
        stderr: write.try_clone().context("dup")?,
        stdout: write,
    };
    Ok((
        prepare_with(config, None, stdio, extra_env, Vec::new())?.run()?,
        read,
    ))
}

fn prepare_with(
    config: &WatchConfig,
    cgroup: Option<&WatchCgroup>,
    stdio: Stdio3,
    extra_env: &[(String, String)],
    join: Vec<std::fs::File>,
) -> Result<Prepared> {
    for dir in &config.runtime_dirs {
        let owner = config.user.as_ref().map(|u| (u.uid, u.gid));
        dir.make(owner).map_err(anyhow::Error::msg)?;
    }
    let runtime_directory = crate::runtime_dir::variable(&config.runtime_dirs);
    let extra: Vec<(String, String)> = extra_env.iter().cloned().chain(runtime_directory).collect();
    let env = environment(config, &extra)?;
    let how = if clone3::available() {
        clone_plan(config, cgroup, stdio, env, join)?
    } else {
        How::Command(command(config, stdio, env, join))
    };
    Ok(Prepared {
        how,
        output: Output::default(),
        what: format!("{:?}", config.argv),
    })
}

impl Prepared {
    /// Starts the process.
    pub fn run(self) -> Result<Spawned> {
        let (pid, pidfd) = match self.how {
            How::Clone {
                program,
                argv,
                envp,
                dir,
                user,
                umask,
                rlimits,
                oom_score_adj,
                stdio,
                cgroup,
                join,
            } => {
                let join: Vec<_> = join.iter().map(|f| f.as_fd()).collect();
                let plan = clone3::Plan {
                    program: &program,
                    argv: &argv,
                    envp: &envp,
                    dir: dir.as_deref(),
                    user: user
                        .as_ref()
                        .map(|(uid, gid, groups)| (*uid, *gid, groups.as_slice())),
                    umask,
                    rlimits: &rlimits,
                    oom_score_adj: oom_score_adj.as_deref(),
                    stdio: [
                        stdio.stdin.as_fd(),
                        stdio.stdout.as_fd(),
                        stdio.stderr.as_fd(),
                    ],
                    cgroup: cgroup.as_ref().map(std::os::fd::AsFd::as_fd),
                    join: &join,
                };
                match clone3::spawn(&plan) {
                    Ok(spawned) => spawned,
                    Err(clone3::Error::Clone(e)) => {
                        return Err(e).context(match cgroup {
                            Some(_) => "clone3 into the watch's cgroup",
                            None => "clone3",
                        })
                    }
                    // The child is gone (it exited); the reaper collects it.
                    Err(clone3::Error::Child {
                        step: clone3::Step::Dir,
                        error,
                    }) => bail!(
                        "starting {}: changing to its dir {}: {error}",
                        self.what,
                        dir.as_deref().map_or("?".into(), CStr::to_string_lossy)
                    ),
                    Err(clone3::Error::Child {
                        step: clone3::Step::OomScore,
                        error,
                    }) if error.kind() == std::io::ErrorKind::PermissionDenied => bail!(
                        "starting {}: setting its oom_score_adj to {}: {error} (lower than the daemon started with needs CAP_SYS_RESOURCE)",
                        self.what,
                        oom_score_adj.as_deref().map_or("?".into(), CStr::to_string_lossy)
                    ),
                    Err(e @ clone3::Error::Child { .. }) => {
                        bail!("starting {}: {e}", self.what)
                    }
                }
            }
            How::Command(mut command) => {
                let child = command
                    .spawn()
                    .with_context(|| format!("starting {}", self.what))?;
                let pid = Pid::from_child(&child);
                // The Child handle is dropped without waiting: the daemon reaps.
                drop(child);
                let pidfd =
                    process::pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
                (pid, pidfd)
            }
        };
        let id = match process::identify(pid) {
            Ok(id) => id,
            // Exited, and reaped by the daemon's loop while this ran on a
            // spawner thread: its status is kept for it, and no live
            // process matches this identity.
            Err(_) if process::pidfd_exited(&pidfd) => ProcessId {
                pid,
                start: process::StartTime::GONE,
            },
            Err(e) => return Err(e).with_context(|| format!("reading the start time of {pid}")),
        };
        Ok(Spawned {
            id,
            pidfd,
            output: self.output,
        })
    }
}

fn dev_null() -> Result<OwnedFd> {
    Ok(OwnedFd::from(
        std::fs::File::open("/dev/null").context("opening /dev/null")?,
    ))
}

struct Stdio3 {
    stdin: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Whether a watch with no log file writes into the daemon's own stdout
/// and stderr, not /dev/null: so it does under a container's init, whose
/// output is the container's log (as CMD's is under tini).
static INHERIT_OUTPUT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// From now on, a watch with no `stdout` (or `stderr`) writes into the
/// daemon's own.
pub fn inherit_unset_output() {
    INHERIT_OUTPUT.store(true, std::sync::atomic::Ordering::Relaxed);
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn output(
    stream: Stream,
    path: Option<&Path>,
    user: Option<&RunAs>,
    timestamps: bool,
    rotation: Option<crate::config::Rotation>,
    logs: &mut Logs,
) -> Result<(OwnedFd, Option<Arc<Pipe>>)> {
    match path {
        Some(path) => logs
            .pipe_to(path, user, timestamps, rotation)
            .map(|(fd, pipe)| (fd, Some(pipe))),
        None if INHERIT_OUTPUT.load(std::sync::atomic::Ordering::Relaxed) => {
            let own = match stream {
                Stream::Stdout => std::io::stdout().as_fd().try_clone_to_owned(),
                Stream::Stderr => std::io::stderr().as_fd().try_clone_to_owned(),
            };
            Ok((own.context("dup of the daemon's own output")?, None))
        }
        None => Ok((
            OwnedFd::from(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/null")
                    .context("opening /dev/null")?,
            ),
            None,
        )),
    }
}

/// What the daemon's own service manager told the daemon (systemd's
/// readiness socket, socket activation, watchdog, invocation): said to a
/// watch, it would speak for the daemon or take its sockets.
const THE_DAEMONS_OWN: &[&str] = &[
    "NOTIFY_SOCKET",
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "INVOCATION_ID",
    "RUNTIME_DIRECTORY",
];

/// The limits its process starts with: the config's, and the daemon's
/// original `nofile` where the config sets none (the daemon raised its
/// own).
fn rlimits(config: &WatchConfig) -> Vec<(libc::c_int, libc::rlimit)> {
    let sets = |r: crate::rlimit::Resource| config.rlimits.iter().any(|l| l.resource == r);
    let original = crate::limits::original_nofile()
        .filter(|_| !sets(crate::rlimit::Resource::Nofile))
        .map(|limit| (libc::RLIMIT_NOFILE as libc::c_int, limit));
    original
        .into_iter()
        .chain(config.rlimits.iter().map(|l| l.raw()))
        .collect()
}

/// The process's environment: the daemon's (unless `clear_env`), then
/// the env files' in order, then `env`, then `extra`, each overriding
/// what came before. An env file that cannot be read fails the start.
fn environment(
    config: &WatchConfig,
    extra: &[(String, String)],
) -> Result<Vec<(OsString, OsString)>> {
    let owner = config.user.as_ref().map(|u| u.uid.as_raw());
    let mut from_files: Vec<(String, String)> = Vec::new();
    for file in &config.env_files {
        from_files.extend(file.read(owner).map_err(anyhow::Error::msg)?);
    }
    let later = |k: &str| config.env.contains_key(k) || extra.iter().any(|(e, _)| e == k);
    let mut env: Vec<(OsString, OsString)> = if config.clear_env {
        Vec::new()
    } else {
        std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                !later(k.as_ref())
                    && !from_files.iter().any(|(f, _)| f == k.as_ref())
                    && !THE_DAEMONS_OWN.contains(&k.as_ref())
            })
            .collect()
    };
    // Of a name set twice in the files, the last one.
    let mut seen = std::collections::HashSet::new();
    let files: Vec<(String, String)> = from_files
        .into_iter()
        .rev()
        .filter(|(k, _)| !later(k) && seen.insert(k.clone()))
        .collect();
    env.extend(files.into_iter().rev().map(|(k, v)| (k.into(), v.into())));
    env.extend(
        config
            .env
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == *k))
            .map(|(k, v)| (k.into(), v.into())),
    );
    env.extend(extra.iter().map(|(k, v)| (k.into(), v.into())));
    Ok(env)
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

fn clone_plan(
    config: &WatchConfig,
    cgroup: Option<&WatchCgroup>,
    stdio: Stdio3,
    env: Vec<(OsString, OsString)>,
    join: Vec<std::fs::File>,
) -> Result<How> {
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
    let dir = config
        .dir
        .as_ref()
        .map(|d| cstring(d.as_os_str().as_bytes()))
        .transpose()?;
    let user = config.user.as_ref().map(|u| {
        (
            u.uid.as_raw(),
            u.gid.as_raw(),
            u.groups.iter().map(|g| g.as_raw()).collect(),
        )
    });
    Ok(How::Clone {
        program,
        argv,
        envp,
        dir,
        user,
        umask: config.umask.map(|m| m as libc::mode_t),
        rlimits: rlimits(config),
        oom_score_adj: crate::oom::for_child(config.oom_score_adj),
        stdio,
        cgroup: cgroup.map(WatchCgroup::fd).transpose()?,
        join,
    })
}

/// Where clone3 cannot be used (and so without cgroups): std's Command,
/// with the session set up in pre_exec.
fn command(
    config: &WatchConfig,
    stdio: Stdio3,
    env: Vec<(OsString, OsString)>,
    join: Vec<std::fs::File>,
) -> Command {
    let mut cmd = Command::new(&config.argv[0]);
    cmd.args(&config.argv[1..])
        .stdin(Stdio::from(stdio.stdin))
        .stdout(Stdio::from(stdio.stdout))
        .stderr(Stdio::from(stdio.stderr));
    cmd.env_clear().envs(env);
    if let Some(dir) = &config.dir {
        cmd.current_dir(dir);
    }
    let umask = config.umask;
    let user = config.user.clone();
    let rlimits = rlimits(config);
    let oom_score_adj = crate::oom::for_child(config.oom_score_adj);
    // SAFETY: between fork and exec only async-signal-safe syscalls run.
    unsafe {
        cmd.pre_exec(move || {
            for procs in &join {
                nix::unistd::write(procs, b"0")?;
            }
            nix::unistd::setsid()?;
            for (resource, limit) in &rlimits {
                if libc::setrlimit(*resource as _, limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(value) = &oom_score_adj {
                let fd = libc::open(
                    crate::oom::SELF_FILE.as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let bytes = value.to_bytes();
                let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
                let error = std::io::Error::last_os_error();
                libc::close(fd);
                if written < 0 {
                    return Err(error);
                }
            }
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
    cmd
}
