//! Starting a watch's process: its own session and process group, its
//! user, groups, umask, directory, environment and log files. The caller
//! gets the process's identity and a pidfd that pins it (an unreaped
//! child's pid cannot be reused, so opening it here is race-free).
use std::{
    os::{fd::OwnedFd, unix::process::CommandExt as _},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result};

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
    let mut cmd = Command::new(&config.argv[0]);
    cmd.args(&config.argv[1..]).stdin(Stdio::null());
    if config.clear_env {
        cmd.env_clear();
    }
    cmd.envs(&config.env);
    if let Some(dir) = &config.dir {
        cmd.current_dir(dir);
    }
    for (path, is_stdout) in [(&config.stdout, true), (&config.stderr, false)] {
        let stdio = match path {
            Some(path) => Stdio::from(logs.pipe_to(path)?),
            None => Stdio::null(),
        };
        if is_stdout {
            cmd.stdout(stdio);
        } else {
            cmd.stderr(stdio);
        }
    }
    let umask = config.umask;
    let cgroup_procs = cgroup.map(|c| c.procs_path().to_owned());
    let user = config.user.clone();
    // SAFETY: between fork and exec only async-signal-safe syscalls run.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid()?;
            if let Some(procs) = &cgroup_procs {
                crate::cgroup::join_from_child(procs)?;
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
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", config.argv))?;
    let pid = Pid::from_child(&child);
    // The Child handle is dropped without waiting: the daemon reaps.
    drop(child);
    let pidfd = process::pidfd_open(pid).with_context(|| format!("pidfd_open({pid})"))?;
    let id = process::identify(pid).with_context(|| format!("reading the start time of {pid}"))?;
    Ok(Spawned { id, pidfd })
}
