//! Starting a process the way posix_spawn does, with what posix_spawn
//! cannot do: clone3 with CLONE_VM | CLONE_VFORK (no page tables copied,
//! none torn down again by the exec), CLONE_PIDFD, and CLONE_INTO_CGROUP
//! (a process born in its cgroup costs nothing, while moving one in waits
//! for an RCU grace period).
//!
//! The child does not get a copy of the daemon's file descriptors, which
//! are thousands with as many watches (pidfds, cgroups) and would each be
//! copied and closed again at every start: it shares the table
//! (CLONE_FILES) and unshares only fds 0-11 (close_range with
//! CLOSE_RANGE_UNSHARE). Fds 3-11 are slots kept for that from the
//! daemon's first instruction (`reserve_fd_slots`), three sets of three:
//! the parent points one set at the child's stdin, stdout and stderr just
//! before the clone, and the child makes them its 0-2. A thread spawns
//! through its own set (the daemon's spawner threads each have one, every
//! other thread shares the first), each set under its own lock, so that
//! two threads starting processes at once never hand each other's files
//! to their children.
//!
//! Owns the child's side between clone and exec. It shares the daemon's
//! memory while the daemon's thread is suspended, so it makes raw
//! syscalls only (libc's set*id would also try to change the credentials
//! of the daemon's other threads, and errno is the daemon thread's) and
//! reports a failure through memory, not a pipe. Knows nothing of watches
//! or configs: `spawn` prepares the `Plan`.
use std::{
    ffi::CStr,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
    sync::atomic::{AtomicI32, AtomicU8, Ordering},
};

use crate::process::Pid;

/// What the child does between clone and exec.
pub struct Plan<'a> {
    pub program: &'a CStr,
    pub argv: &'a [std::ffi::CString],
    pub envp: &'a [std::ffi::CString],
    pub dir: Option<&'a CStr>,
    /// uid, gid and supplementary groups.
    pub user: Option<(libc::uid_t, libc::gid_t, &'a [libc::gid_t])>,
    pub umask: Option<libc::mode_t>,
    /// Resource limits to start with (`RLIMIT_*`, limit), set before
    /// the user is changed, so that root may raise a hard limit.
    pub rlimits: &'a [(libc::c_int, libc::rlimit)],
    /// Written into its own `oom_score_adj` before the user is changed
    /// (it may be lower than what it inherited: a raise is always allowed,
    /// and no lower than the daemon had at its start).
    pub oom_score_adj: Option<&'a CStr>,
    /// Become 0, 1 and 2.
    pub stdio: [BorrowedFd<'a>; 3],
    pub cgroup: Option<BorrowedFd<'a>>,
    /// cgroup v1 `cgroup.procs` files to write itself into, first thing
    /// (its limits; CLONE_INTO_CGROUP takes a v2 cgroup only).
    pub join: &'a [BorrowedFd<'a>],
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// clone3 itself failed: no process was made.
    #[error("{0}")]
    Clone(std::io::Error),
    /// The child failed before its exec (or the exec did) and exited.
    #[error("{step}: {error}")]
    Child { step: Step, error: std::io::Error },
}

/// What the child was doing when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    JoinCgroup = 1,
    Setup,
    Limits,
    OomScore,
    User,
    Dir,
    Exec,
}

impl Step {
    fn from_raw(raw: u8) -> Self {
        [
            Self::JoinCgroup,
            Self::Setup,
            Self::Limits,
            Self::OomScore,
            Self::User,
            Self::Dir,
            Self::Exec,
        ]
        .into_iter()
        .find(|s| *s as u8 == raw)
        .unwrap_or(Self::Setup)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::JoinCgroup => "joining its v1 cgroups",
            Self::Setup => "setting up its fds, session and signals",
            Self::Limits => "setting its resource limits",
            Self::OomScore => "setting its oom_score_adj",
            Self::User => "switching to its user and groups",
            Self::Dir => "changing to its dir",
            Self::Exec => "exec",
        })
    }
}

/// The first fd slot.
const SLOTS: libc::c_int = 3;

/// Sets of three slots: the first for any thread, one each for the
/// spawner threads.
const SETS: usize = 3;

/// How many threads can have a set of their own (`use_own_slots`).
pub const OWN_SETS: usize = SETS - 1;

/// The child keeps fds below this (copied, not shared) until its exec,
/// which closes the slots it did not take as 0-2 (they are CLOEXEC).
const SLOTS_END: libc::c_int = SLOTS + 3 * SETS as libc::c_int;

/// One lock per set: a set is filled, cloned with and emptied by one
/// thread at a time.
static SET_LOCKS: [std::sync::Mutex<()>; SETS] = [const { std::sync::Mutex::new(()) }; SETS];

thread_local! {
    /// The set this thread spawns through.
    static SET: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread spawn through set `n` (1..=`OWN_SETS`), which no
/// other thread may use.
pub fn use_own_slots(n: usize) {
    assert!((1..SETS).contains(&n), "slot set {n} does not exist");
    SET.with(|set| set.set(n));
}

/// /dev/null, which the slots point at between starts, so that they hold
/// no log pipe open.
static NULL: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// Makes fds 0-2 valid and 3-5 the slots. To be called first thing, before
/// anything else opens a file: whatever sits at 3-5 is replaced.
pub fn reserve_fd_slots() -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    let null = std::fs::File::open("/dev/null")?;
    let high = fcntl(&null, FcntlArg::F_DUPFD_CLOEXEC(SLOTS_END))?;
    drop(null);
    // SAFETY: `high` was just returned by fcntl and is owned by nobody else.
    let null = unsafe { OwnedFd::from_raw_fd(high) };
    for fd in 0..SLOTS {
        // SAFETY: fcntl and dup2 on plain numbers; a closed 0-2 becomes
        // /dev/null, so that nothing else is ever opened there.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) < 0 && libc::dup2(null.as_raw_fd(), fd) < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    for slot in SLOTS..SLOTS_END {
        // SAFETY: dup3 onto a slot number this module owns.
        if unsafe { libc::dup3(null.as_raw_fd(), slot, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    NULL.set(null).expect("reserved once");
    Ok(())
}

/// Whether this build, kernel and process can use it: x86_64 (the clone
/// needs a few instructions of assembly), Linux 5.9 (CLONE_CLEAR_SIGHAND,
/// CLOSE_RANGE_UNSHARE), fd slots reserved.
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        cfg!(target_arch = "x86_64") && crate::kernel::at_least(5, 9) && NULL.get().is_some()
    })
}

/// Points the slots from `first` at `fds` (or back at /dev/null).
fn fill_slots(first: libc::c_int, fds: [libc::c_int; 3]) -> std::io::Result<()> {
    for (slot, fd) in (first..).zip(fds) {
        // SAFETY: dup3 onto a slot number this module owns.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Starts `plan`'s program; returns its pid and a pidfd once it has
/// exec'ed.
pub fn spawn(plan: &Plan<'_>) -> Result<(Pid, OwnedFd), Error> {
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    let join: Vec<libc::c_int> = plan.join.iter().map(|fd| fd.as_raw_fd()).collect();
    let child = Child {
        join: join.as_ptr(),
        join_len: join.len(),
        program: plan.program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        dir: plan.dir.map_or(std::ptr::null(), CStr::as_ptr),
        user: plan
            .user
            .map(|(uid, gid, groups)| (uid, gid, groups.as_ptr(), groups.len())),
        umask: plan.umask,
        rlimits: plan.rlimits.as_ptr(),
        rlimits_len: plan.rlimits.len(),
        oom_score_adj: plan
            .oom_score_adj
            .map_or((std::ptr::null(), 0), |v| (v.as_ptr(), v.to_bytes().len())),
        slots: SLOTS + 3 * SET.with(std::cell::Cell::get) as libc::c_int,
        errno: AtomicI32::new(0),
        step: AtomicU8::new(0),
    };
    let null = NULL.get().expect("checked by `available`").as_raw_fd();
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PIDFD | CLONE_CLEAR_SIGHAND,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if let Some(cgroup) = plan.cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = cgroup.as_raw_fd() as u64;
    }
    let mut stack = vec![0u8; CHILD_STACK];
    args.stack = stack.as_mut_ptr() as u64;
    args.stack_size = stack.len() as u64;
    // No handler of the daemon's may run in a child that shares its memory
    // before CLONE_CLEAR_SIGHAND takes effect: all signals are blocked
    // around the clone, and the child unblocks its own.
    let mut saved = nix::sys::signal::SigSet::empty();
    nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        Some(&mut saved),
    )
    .map_err(|e| Error::Clone(e.into()))?;
    // SAFETY: `child`, `argv`, `envp`, `stack` and what they point to live
    // until after the clone, and the parent is suspended until the child
    // has exec'ed or exited.
    let set = SET_LOCKS[SET.with(std::cell::Cell::get)]
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let ret = match fill_slots(child.slots, plan.stdio.map(|fd| fd.as_raw_fd())) {
        Ok(()) => unsafe { clone3_vfork(&mut args, &child) },
        Err(e) => -(e.raw_os_error().unwrap_or(libc::EBADF) as libc::c_long),
    };
    let _ = fill_slots(child.slots, [null; 3]);
    drop(set);
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&saved),
        None,
    );
    if ret < 0 {
        return Err(Error::Clone(std::io::Error::from_raw_os_error(-ret as i32)));
    }
    // SAFETY: the kernel gave us this pidfd with CLONE_PIDFD.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    match child.errno.load(Ordering::Acquire) {
        0 => {
            let pid = Pid::new(ret as u32).expect("clone3 returns a pid > 0 to the parent");
            Ok((pid, pidfd))
        }
        errno => Err(Error::Child {
            step: Step::from_raw(child.step.load(Ordering::Acquire)),
            error: std::io::Error::from_raw_os_error(errno),
        }),
    }
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

const CLONE_VM: u64 = 0x100;
const CLONE_FILES: u64 = 0x400;
const CLONE_PIDFD: u64 = 0x1000;
const CLONE_VFORK: u64 = 0x4000;
const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

const CLOSE_RANGE_UNSHARE: libc::c_long = 2;

/// The child's stack: it makes a handful of syscalls.
const CHILD_STACK: usize = 64 * 1024;

/// `Plan` as raw pointers, plus where the child reports a failure.
struct Child {
    join: *const libc::c_int,
    join_len: usize,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    dir: *const libc::c_char,
    user: Option<(libc::uid_t, libc::gid_t, *const libc::gid_t, usize)>,
    umask: Option<libc::mode_t>,
    rlimits: *const (libc::c_int, libc::rlimit),
    rlimits_len: usize,
    /// The digits to write, and how many (null: none).
    oom_score_adj: (*const libc::c_char, usize),
    /// The first of the three slots that become its 0-2.
    slots: libc::c_int,
    errno: AtomicI32,
    /// The `Step` it was at, when `errno` is set.
    step: AtomicU8,
}

/// The child's side, on its own stack, sharing the daemon's memory.
extern "C" fn child_main(child: *const Child) -> ! {
    // SAFETY: `child` is valid until the exec (see `spawn`); only raw,
    // async-signal-safe syscalls run here.
    unsafe {
        let child = &*child;
        let at = |step: Step| child.step.store(step as u8, Ordering::Release);
        let fail = |ret: libc::c_long| -> ! {
            child.errno.store(-(ret as i32), Ordering::Release);
            raw(libc::SYS_exit_group, &[127]);
            unreachable!("exit_group returned")
        };
        let check = |ret: libc::c_long| {
            if ret < 0 {
                fail(ret)
            }
        };
        // Into its v1 cgroups while the fds are still the daemon's ("0"
        // is the writer itself).
        at(Step::JoinCgroup);
        for i in 0..child.join_len {
            let fd = *child.join.add(i);
            check(raw(
                libc::SYS_write,
                &[fd as libc::c_long, b"0".as_ptr() as libc::c_long, 1],
            ));
        }
        at(Step::Setup);
        // The fd table is the daemon's: first, a copy of fds 0-11 only
        // (everything from 12 up is left out, not copied and closed).
        check(raw(
            libc::SYS_close_range,
            &[
                SLOTS_END as libc::c_long,
                libc::c_long::from(u32::MAX),
                CLOSE_RANGE_UNSHARE,
            ],
        ));
        check(raw(libc::SYS_setsid, &[]));
        if child.rlimits_len > 0 {
            at(Step::Limits);
        }
        for i in 0..child.rlimits_len {
            let (resource, limit) = &*child.rlimits.add(i);
            check(raw(
                libc::SYS_prlimit64,
                &[
                    0,
                    *resource as libc::c_long,
                    (limit as *const libc::rlimit) as libc::c_long,
                    0,
                ],
            ));
        }
        let (value, len) = child.oom_score_adj;
        if !value.is_null() {
            at(Step::OomScore);
            let fd = raw(
                libc::SYS_open,
                &[
                    crate::oom::SELF_FILE.as_ptr() as libc::c_long,
                    (libc::O_WRONLY | libc::O_CLOEXEC) as libc::c_long,
                ],
            );
            check(fd);
            let written = raw(
                libc::SYS_write,
                &[fd, value as libc::c_long, len as libc::c_long],
            );
            raw(libc::SYS_close, &[fd]);
            check(written);
        }
        if let Some(mask) = child.umask {
            raw(libc::SYS_umask, &[mask as libc::c_long]);
        }
        if let Some((uid, gid, groups, count)) = child.user {
            at(Step::User);
            check(raw(
                libc::SYS_setgroups,
                &[count as libc::c_long, groups as libc::c_long],
            ));
            check(raw(libc::SYS_setresgid, &[gid as libc::c_long; 3]));
            check(raw(libc::SYS_setresuid, &[uid as libc::c_long; 3]));
        }
        // The Rust runtime ignores SIGPIPE, and ignored signals stay
        // ignored across exec; programs expect the default. (Caught ones
        // were reset by CLONE_CLEAR_SIGHAND.) The kernel's struct
        // sigaction, all zero, is SIG_DFL.
        at(Step::Setup);
        let default = [0u64; 4];
        raw(
            libc::SYS_rt_sigaction,
            &[
                libc::SIGPIPE as libc::c_long,
                default.as_ptr() as libc::c_long,
                0,
                8,
            ],
        );
        let empty = 0u64;
        check(raw(
            libc::SYS_rt_sigprocmask,
            &[
                libc::SIG_SETMASK as libc::c_long,
                (&empty as *const u64) as libc::c_long,
                0,
                8,
            ],
        ));
        // Its slots become 0-2; all slots close themselves at the exec.
        for target in 0..3 {
            check(raw(
                libc::SYS_dup3,
                &[
                    (child.slots + target) as libc::c_long,
                    target as libc::c_long,
                    0,
                ],
            ));
        }
        if !child.dir.is_null() {
            at(Step::Dir);
            check(raw(libc::SYS_chdir, &[child.dir as libc::c_long]));
        }
        at(Step::Exec);
        fail(raw(
            libc::SYS_execve,
            &[
                child.program as libc::c_long,
                child.argv as libc::c_long,
                child.envp as libc::c_long,
            ],
        ))
    }
}

/// A syscall returning `-errno` on failure, leaving `errno` alone.
#[cfg(target_arch = "x86_64")]
unsafe fn raw(number: libc::c_long, args: &[libc::c_long]) -> libc::c_long {
    let mut a = [0 as libc::c_long; 6];
    a[..args.len()].copy_from_slice(args);
    let ret: libc::c_long;
    // SAFETY: the caller passes a valid syscall and arguments.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// clone3 whose child starts in `child_main` on `args.stack`: a child
/// sharing the parent's memory must not return into the parent's frames.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vfork(args: &mut CloneArgs, child: &Child) -> libc::c_long {
    let ret: libc::c_long;
    // SAFETY: the kernel points the child's rsp at the top of its stack
    // (16-byte aligned: the call makes it a proper frame); it never
    // returns from `child_main`. The parent goes on at `2:` with only
    // rax, rcx and r11 changed.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") size_of::<CloneArgs>(),
            in("r12") child as *const Child,
            in("r13") child_main as extern "C" fn(*const Child) -> !,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw(_: libc::c_long, _: &[libc::c_long]) -> libc::c_long {
    unreachable!("`available` is false off x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vfork(_: &mut CloneArgs, _: &Child) -> libc::c_long {
    unreachable!("`available` is false off x86_64")
}
