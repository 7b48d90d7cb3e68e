//! The kernel side: one record per process death into a ring buffer, with
//! who sent the signal that ended it.
//!
//! Attached to `sched/sched_process_exit`, which fires once per exiting
//! thread in the context of that thread. Only the thread that ends its
//! group (`group_dead`) counts, so a process is reported once, under its
//! tgid, when its last thread goes. Unless `REPORT_ALL` is set, deaths of
//! processes that are not in `WATCHED` (tgid + start time) are dropped here
//! and never wake userspace.
//!
//! A second program, on the raw tracepoint `signal_generate`, runs in the
//! sender's context each time a signal is queued. For watched targets only
//! (the same map), it records the sender of each signal that could end the
//! process in `SIGNALS`, keyed by target and signal; the exit program
//! takes the entry of the signal the process died of into its record.
//! The sender is captured here because it may be gone long before the
//! death is read.
//!
//! While `REPORT_SIGNALS` is set (by `trace --signals`, never by the
//! daemon), it also writes each such signal into the `SENT` ring buffer
//! as it is sent.
//!
//! A third, on `oom/mark_victim`, notes each watched process the OOM
//! killer chooses, with its resident memory and the task whose
//! allocation triggered it, in `OOM_KILLS`; the exit record carries it.
//!
//! Rust eBPF has no CO-RE field relocation, so every `task_struct` and
//! `signal_struct` offset, and the tracepoint's own field offsets, are
//! globals that userspace fills in at load time from BTF and the
//! tracepoint's `format` file. This program must not interpret policy: it
//! filters and reports, nothing else.
#![no_std]
#![no_main]

use core::ptr::read_volatile;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_get_current_uid_gid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use supervisor_common::{
    stat, ExitRecord, OomRecord, SentRecord, SignalKey, SignalRecord, WatchEntry, COMM_LEN,
    MAX_SIGNALS, MAX_WATCHED,
};

/// Marks an offset the running kernel does not have.
const ABSENT: u32 = u32::MAX;
/// `SIGNAL_GROUP_EXIT` in `signal_struct.flags` (include/linux/sched/signal.h).
const SIGNAL_GROUP_EXIT: u32 = 0x4;

#[no_mangle]
static REPORT_ALL: u8 = 0;
#[no_mangle]
static REPORT_SIGNALS: u8 = 0;
/// Nanoseconds per USER_HZ tick, to compare `start_boottime` with the
/// start time `/proc/PID/stat` gives userspace.
#[no_mangle]
static NS_PER_TICK: u64 = 10_000_000;
/// Offset of `group_dead` in the tracepoint record, or `ABSENT` on kernels
/// whose tracepoint lacks it (then `signal_struct.live` decides).
#[no_mangle]
static TP_GROUP_DEAD: u32 = ABSENT;
#[no_mangle]
static TASK_TGID: u32 = 0;
#[no_mangle]
static TASK_PID: u32 = 0;
#[no_mangle]
static TASK_REAL_PARENT: u32 = 0;
#[no_mangle]
static TASK_GROUP_LEADER: u32 = 0;
#[no_mangle]
static TASK_EXIT_CODE: u32 = 0;
#[no_mangle]
static TASK_START_BOOTTIME: u32 = 0;
#[no_mangle]
static TASK_SIGNAL: u32 = 0;
#[no_mangle]
static SIGNAL_FLAGS: u32 = 0;
#[no_mangle]
static SIGNAL_GROUP_EXIT_CODE: u32 = 0;
#[no_mangle]
static SIGNAL_LIVE: u32 = 0;
#[no_mangle]
static TASK_COMM: u32 = 0;
/// `si_code` and the `_sifields` union in `kernel_siginfo`.
#[no_mangle]
static SIGINFO_CODE: u32 = 0;
#[no_mangle]
static SIGINFO_FIELDS: u32 = 0;

/// Offsets of `oom/mark_victim`'s fields, from its format file.
#[no_mangle]
static TP_OOM_PID: u32 = ABSENT;
#[no_mangle]
static TP_OOM_ANON_RSS: u32 = ABSENT;
#[no_mangle]
static TP_OOM_FILE_RSS: u32 = ABSENT;
#[no_mangle]
static TP_OOM_SHMEM_RSS: u32 = ABSENT;

/// `SEND_SIG_NOINFO` and `SEND_SIG_PRIV`: values of the `siginfo`
/// argument that are not pointers (a kill from `current`, and the kernel).
const SEND_SIG_NOINFO: u64 = 0;
const SEND_SIG_PRIV: u64 = 1;
const SI_USER: i32 = 0;
const SI_KERNEL: i32 = 0x80;
/// `TRACE_SIGNAL_DELIVERED` and `TRACE_SIGNAL_LOSE_INFO`: the signal was
/// queued (the others: ignored, already pending, or not queued at all).
const DELIVERED: u64 = 0;
const LOSE_INFO: u64 = 4;

#[map(name = "EVENTS")]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Sized at load time: a page when nobody asked for signals.
#[map(name = "SENT")]
static SENT: RingBuf = RingBuf::with_byte_size(4096, 0);

#[map(name = "WATCHED")]
static WATCHED: HashMap<u32, WatchEntry> = HashMap::with_max_entries(MAX_WATCHED, 0);

#[map(name = "SIGNALS")]
static SIGNALS: LruHashMap<SignalKey, SignalRecord> = LruHashMap::with_max_entries(MAX_SIGNALS, 0);

#[map(name = "OOM_KILLS")]
static OOM_KILLS: LruHashMap<u32, OomRecord> = LruHashMap::with_max_entries(MAX_SIGNALS, 0);

#[map(name = "STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let _ = try_exit(&ctx);
    0
}

#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> i32 {
    let _ = try_signal(&ctx);
    0
}

#[tracepoint(category = "oom", name = "mark_victim")]
pub fn mark_victim(ctx: TracePointContext) -> u32 {
    let _ = try_oom(&ctx);
    0
}

fn global<T: Copy>(v: &T) -> T {
    // SAFETY: globals are plain integers; volatile stops the compiler from
    // folding the defaults userspace overrides at load time.
    unsafe { read_volatile(v) }
}

/// Reads a `T` at `base + offset` in kernel memory.
fn field<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad offset yields
    // an error, never a fault.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

fn count(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; no other writer while this program runs here.
        unsafe { *p += 1 };
    }
}

fn try_exit(ctx: &TracePointContext) -> Result<(), i32> {
    // SAFETY: a helper with no arguments; the pointer is only ever read
    // through bpf_probe_read_kernel (`field`).
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let signal: *const u8 = field(task, global(&TASK_SIGNAL))?;

    let tp_group_dead = global(&TP_GROUP_DEAD);
    let group_dead = if tp_group_dead != ABSENT {
        // SAFETY: offset read from the tracepoint's format file.
        unsafe { ctx.read_at::<u8>(tp_group_dead as usize)? != 0 }
    } else {
        // The exiting thread has already decremented `live`.
        field::<i32>(signal, global(&SIGNAL_LIVE))? == 0
    };
    if !group_dead {
        return Ok(());
    }
    count(stat::GROUP_EXITS);

    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let leader: *const u8 = field(task, global(&TASK_GROUP_LEADER))?;
    let start_boottime_ns: u64 = field(leader, global(&TASK_START_BOOTTIME))?;

    if global(&REPORT_ALL) == 0 {
        // SAFETY: the value is copied out before anything can delete it.
        let watched = match unsafe { WATCHED.get(tgid) } {
            Some(entry) => *entry,
            None => return Ok(()),
        };
        if watched.start_ticks != 0 {
            let ns_per_tick = global(&NS_PER_TICK);
            if ns_per_tick == 0 || start_boottime_ns / ns_per_tick != watched.start_ticks {
                // Same pid, another process: not the one being watched.
                return Ok(());
            }
        }
    }

    // What wait(2) reports: a group exit's shared code, else the leader's.
    let flags: u32 = field(signal, global(&SIGNAL_FLAGS))?;
    let wait_status: u32 = if flags & SIGNAL_GROUP_EXIT != 0 {
        field(signal, global(&SIGNAL_GROUP_EXIT_CODE))?
    } else {
        field(leader, global(&TASK_EXIT_CODE))?
    };
    let parent: *const u8 = field(task, global(&TASK_REAL_PARENT))?;
    let ppid: u32 = field(parent, global(&TASK_TGID))?;
    let (has_signal, signal) = fatal_signal(tgid, start_boottime_ns, wait_status);
    // SAFETY: the value is copied out before it is removed.
    let oom = unsafe { OOM_KILLS.get(tgid) }.copied();
    if oom.is_some() {
        let _ = OOM_KILLS.remove(tgid);
    }

    match EVENTS.reserve::<ExitRecord>(0) {
        Some(mut entry) => {
            entry.write(ExitRecord {
                // SAFETY: a helper with no arguments that reads a clock.
                ktime_ns: unsafe { bpf_ktime_get_ns() },
                start_boottime_ns,
                tgid,
                tid,
                ppid,
                wait_status,
                comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
                has_signal,
                has_oom: u32::from(oom.is_some()),
                signal,
                oom: oom.unwrap_or_default(),
            });
            entry.submit(0);
            count(stat::EMITTED);
            if global(&REPORT_ALL) == 0 {
                // Reported; a later process with this pid is a stranger.
                let _ = WATCHED.remove(tgid);
            }
        }
        None => {
            // Leave the death in the map first, then count the drop, so a
            // reader that sees the count move finds the entry marked.
            if let Some(entry) = WATCHED.get_ptr_mut(tgid) {
                // SAFETY: a valid map value pointer from the lookup.
                unsafe {
                    (*entry).wait_status = wait_status;
                    (*entry).lost = 1;
                }
            }
            count(stat::DROPPED);
        }
    }
    Ok(())
}

/// Who sent the signal a process died of, if `signal_generate` saw it
/// sent to this very process; its entry goes with the death.
fn fatal_signal(tgid: u32, start_boottime_ns: u64, wait_status: u32) -> (u32, SignalRecord) {
    let signal = wait_status & 0x7f;
    if signal == 0 {
        return (0, SignalRecord::default());
    }
    let key = SignalKey { tgid, signal };
    // SAFETY: the value is copied out before it is removed.
    let found = unsafe { SIGNALS.get(&key) }.copied();
    let _ = SIGNALS.remove(&key);
    match found {
        Some(record) if record.target_start_boottime_ns == start_boottime_ns => (1, record),
        _ => (0, SignalRecord::default()),
    }
}

/// A tracepoint field at `offset` (from the format file), 0 where this
/// kernel's tracepoint lacks it.
fn tp_field<T: Default>(ctx: &TracePointContext, offset: u32) -> Result<T, i32> {
    if offset == ABSENT {
        return Ok(T::default());
    }
    // SAFETY: offset read from the tracepoint's format file.
    unsafe { ctx.read_at::<T>(offset as usize) }
}

/// The OOM killer chose `pid` (its thread group leader, which it picks):
/// noted if it is watched, for its exit record.
fn try_oom(ctx: &TracePointContext) -> Result<(), i32> {
    let pid: i32 = tp_field(ctx, global(&TP_OOM_PID))?;
    let tgid = pid as u32;
    // SAFETY: only whether the key is there is used.
    if tgid == 0 || global(&REPORT_ALL) == 0 && unsafe { WATCHED.get(tgid) }.is_none() {
        return Ok(());
    }
    let record = OomRecord {
        // SAFETY: a helper with no arguments that reads a clock.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        anon_rss_kb: tp_field(ctx, global(&TP_OOM_ANON_RSS))?,
        file_rss_kb: tp_field(ctx, global(&TP_OOM_FILE_RSS))?,
        shmem_rss_kb: tp_field(ctx, global(&TP_OOM_SHMEM_RSS))?,
        trigger_tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        trigger_comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    OOM_KILLS.insert(tgid, record, 0)?;
    Ok(())
}

/// Signals whose default action cannot end a process: never recorded
/// (SIGCHLD alone is sent at every child's death). SIGCHLD, SIGCONT,
/// SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG, SIGWINCH.
fn never_fatal(signal: u32) -> bool {
    matches!(signal, 17..=23 | 28)
}

/// The signals the kernel raises for a fault, with `si_addr`.
fn is_fault(signal: u32) -> bool {
    // SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV.
    matches!(signal, 4 | 5 | 7 | 8 | 11)
}

/// `TP_PROTO(int sig, struct kernel_siginfo *info, struct task_struct
/// *task, int group, int result)`.
fn try_signal(ctx: &RawTracePointContext) -> Result<(), i32> {
    let signal = ctx.arg::<u64>(0) as u32;
    let result = ctx.arg::<u64>(4);
    if signal == 0 || never_fatal(signal) || (result != DELIVERED && result != LOSE_INFO) {
        return Ok(());
    }
    let target: *const u8 = ctx.arg(2);
    let tgid: u32 = field(target, global(&TASK_TGID))?;
    // SAFETY: only whether the key is there is used.
    if global(&REPORT_ALL) == 0 && unsafe { WATCHED.get(tgid) }.is_none() {
        return Ok(());
    }
    let group = ctx.arg::<u64>(3);
    let info = ctx.arg::<u64>(1);
    let (code, addr) = match info {
        SEND_SIG_NOINFO => (SI_USER, 0),
        SEND_SIG_PRIV => (SI_KERNEL, 0),
        pointer => {
            let info = pointer as *const u8;
            let code: i32 = field(info, global(&SIGINFO_CODE))?;
            // `_sigfault._addr` is the union's first member (uapi).
            let addr = if code > 0 && is_fault(signal) {
                field::<u64>(info, global(&SIGINFO_FIELDS))?
            } else {
                0
            };
            (code, addr)
        }
    };
    let target_leader: *const u8 = field(target, global(&TASK_GROUP_LEADER))?;
    // SAFETY: a helper with no arguments; the pointer is only ever read
    // through bpf_probe_read_kernel (`field`).
    let current = unsafe { bpf_get_current_task() } as *const u8;
    let current_leader: *const u8 = field(current, global(&TASK_GROUP_LEADER))?;
    let parent: *const u8 = field(current, global(&TASK_REAL_PARENT))?;
    let pid_tgid = bpf_get_current_pid_tgid();
    let record = SignalRecord {
        // SAFETY: a helper with no arguments that reads a clock.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        target_start_boottime_ns: field(target_leader, global(&TASK_START_BOOTTIME))?,
        sender_start_boottime_ns: field(current_leader, global(&TASK_START_BOOTTIME))?,
        addr,
        sender_tgid: (pid_tgid >> 32) as u32,
        sender_tid: pid_tgid as u32,
        sender_uid: bpf_get_current_uid_gid() as u32,
        parent_tgid: field(parent, global(&TASK_TGID))?,
        signal,
        code,
        // The processes' names (their leaders'), as `ps` shows them, not
        // those of the threads involved.
        sender_comm: field(current_leader, global(&TASK_COMM))?,
        parent_comm: field(
            field::<*const u8>(parent, global(&TASK_GROUP_LEADER))?,
            global(&TASK_COMM),
        )?,
    };
    SIGNALS.insert(&SignalKey { tgid, signal }, &record, 0)?;
    if global(&REPORT_SIGNALS) != 0 {
        if let Some(mut entry) = SENT.reserve::<SentRecord>(0) {
            entry.write(SentRecord {
                target_tgid: tgid,
                target_tid: field(target, global(&TASK_PID)).unwrap_or(tgid),
                group: u32::from(group != 0),
                _pad: 0,
                target_comm: field(target_leader, global(&TASK_COMM)).unwrap_or([0; COMM_LEN]),
                signal: record,
            });
            entry.submit(0);
        }
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
